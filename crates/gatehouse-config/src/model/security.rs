//! The validated security settings: rate limits and bans.

use std::time::Duration;

use http::HeaderName;

/// `N/period`: N requests may arrive at once, then one every `period / N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

/// `options.rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Per client: its address (from `trusted_proxies`), or the `key` header's value.
    pub per_client: Option<Rate>,
    /// For the route as a whole.
    pub global: Option<Rate>,
    /// Requests above the rate allowed at once.
    pub burst: u32,
    /// Clients told apart by this header's value (their address when it is missing).
    pub key: Option<HeaderName>,
    /// Clients told apart by the user `auth` authenticated (checked after `auth`; by
    /// address when there is none).
    pub by_user: bool,
    /// `ban_after` violations within `ban_window` ban the address for `ban_for`.
    pub ban: Option<BanRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRule {
    pub after: u32,
    pub window: Duration,
    pub duration: Duration,
}

/// A site-wide rate limit (the proxy-manager's site-level `rate_limit`), for every request
/// of the site whose path starts with `prefix` (every request without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteLimit {
    pub prefix: Option<String>,
    pub limit: std::sync::Arc<RateLimit>,
}

/// `options.waf` (or a site's `waf`): the web application firewall for a route.
#[derive(Debug, Clone)]
pub struct Waf {
    pub mode: WafMode,
    pub groups: WafGroups,
    pub custom: Vec<WafRule>,
    pub exclusions: Vec<WafExclusion>,
    /// Bytes of a form or JSON body inspected (the rest passes unread by the WAF).
    pub body_limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafMode {
    /// Findings answer 403.
    Block,
    /// Findings are logged and counted; the request goes on.
    Log,
}

/// The built-in rule groups, each on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WafGroups {
    pub sql_injection: bool,
    pub xss: bool,
    pub path_traversal: bool,
    pub command_injection: bool,
    pub scanner_user_agents: bool,
    pub suspicious_headers: bool,
}

impl WafGroups {
    pub const NAMES: [&'static str; 6] =
        ["sql_injection", "xss", "path_traversal", "command_injection", "scanner_user_agents", "suspicious_headers"];

    pub fn all() -> Self {
        WafGroups {
            sql_injection: true,
            xss: true,
            path_traversal: true,
            command_injection: true,
            scanner_user_agents: true,
            suspicious_headers: true,
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "sql_injection" => &mut self.sql_injection,
            "xss" => &mut self.xss,
            "path_traversal" => &mut self.path_traversal,
            "command_injection" => &mut self.command_injection,
            "scanner_user_agents" => &mut self.scanner_user_agents,
            "suspicious_headers" => &mut self.suspicious_headers,
            _ => return None,
        })
    }
}

/// A rule of the administrator's own: a linear-time regex over one part of the request,
/// matched case-insensitively against the decoded (percent-decoded, lower-cased) value.
#[derive(Debug, Clone)]
pub struct WafRule {
    pub id: String,
    pub message: String,
    pub target: WafTarget,
    pub pattern: regex::Regex,
}

/// The part of a request a custom rule reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WafTarget {
    Path,
    /// Each query parameter's name and value.
    Query,
    /// One header's value.
    Header(HeaderName),
    /// Each cookie's value.
    Cookie,
    /// Each form field or JSON string of the inspected body.
    Body,
    /// All of the above but headers.
    Any,
}

/// A rule (by id, or a whole group by name) that does not apply to some requests: under
/// `path` (a prefix), or to one `field` (a query parameter, form field, JSON key, cookie
/// or header name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafExclusion {
    pub rule: String,
    pub path: Option<String>,
    pub field: Option<String>,
}
