//! The security keys as written: rate limits and bans.

use serde::Deserialize;

use super::S;

/// A route's (or a site's, under `options`) rate limit.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `5/min`: per client (its address, or the `key` header's value).
    pub per_ip: Option<S<String>>,
    /// `1000/s`: for the route as a whole.
    pub global: Option<S<String>>,
    /// Requests allowed above the rate at once.
    pub burst: Option<S<String>>,
    /// `{header: X-Api-Key}`: clients are told apart by this header (their address when
    /// it is missing).
    pub key: Option<RateKey>,
    /// Violations (429s) within `ban_window` that ban the client's address.
    pub ban_after: Option<S<String>>,
    pub ban_for: Option<S<String>>,
    /// Default: the per-client limit's period.
    pub ban_window: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateKey {
    pub header: Option<S<String>>,
    /// `true`: by the user `auth` authenticated (a JWT's subject, a basic user, an API
    /// key's name, a client certificate's name), checked after `auth`.
    pub user: Option<S<String>>,
}

/// The proxy-manager's site-level `rate_limit`: `global` and `per_ip` as requests per
/// minute for the whole site, and stricter rules for paths (`ban_duration` in seconds).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SiteRateLimit {
    pub global: Option<S<String>>,
    pub per_ip: Option<S<String>>,
    pub burst: Option<S<String>>,
    pub ban_after: Option<S<String>>,
    #[serde(alias = "ban_for")]
    pub ban_duration: Option<S<String>>,
    pub paths: Option<Vec<PathRateLimit>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PathRateLimit {
    /// `/auth/*`: every path under `/auth/`; `/login`: that path and those under it.
    pub path: S<String>,
    pub global: Option<S<String>>,
    pub per_ip: Option<S<String>>,
    pub burst: Option<S<String>>,
    pub ban_after: Option<S<String>>,
    #[serde(alias = "ban_for")]
    pub ban_duration: Option<S<String>>,
}

/// `waf` under `options` (or at the top of a site file, as the proxy-manager writes it).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Waf {
    /// `false` turns the WAF off (for a route under a site that has one).
    pub enabled: Option<S<String>>,
    /// `block` (default) or `log`.
    pub mode: Option<S<String>>,
    /// Groups on or off; every group is on unless turned off here.
    pub rules: Option<std::collections::BTreeMap<String, S<String>>>,
    pub custom: Option<Vec<WafRule>>,
    pub exclude: Option<Vec<WafExclusion>>,
    /// How much of a form or JSON body is inspected (default 64KB).
    pub body_limit: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WafRule {
    pub id: S<String>,
    pub message: Option<S<String>>,
    /// `path`, `query`, `body`, `cookie`, `any` or `header:NAME`.
    #[serde(rename = "in")]
    pub target: S<String>,
    pub pattern: S<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WafExclusion {
    pub rule: S<String>,
    pub path: Option<S<String>>,
    pub field: Option<S<String>>,
}
