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
