//! A route's rate limit (`options.rate_limit`): a global limit for the route and one per
//! client (its address from `trusted_proxies`, or the `key` header's value), by GCRA
//! (`security::limit`). Over the limit: 429 with `Retry-After` and the IETF `RateLimit`
//! and `RateLimit-Policy` fields. With `ban_after`, that many 429s within `ban_window`
//! ban the client's address on every site for `ban_for`.
//!
//! The tables live in `state::Shared` by route and settings, so a reload that leaves the
//! route's limit as it was keeps its counts. Must not read the request body.

use std::sync::Arc;

use gatehouse_config::RateLimit as Config;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};

use super::{RequestFilter, Verdict};
use crate::body::Inbound;
use crate::pipeline::Ctx;
use crate::security::limit::{Decision, Gcra, Global, Table, ip_key, now_ns, text_key};

/// Keys one route's per-client table holds (about 1.8 million, 36 MB when full; a million
/// keys measured about 36 bytes each with bench/ratelimit.sh).
pub const MAX_KEYS: usize = 2_000_000;

/// A route's limiter state, kept across reloads while its settings stay.
pub struct State {
    pub clients: Table,
    pub global: Global,
    pub violations: Table,
}

impl Default for State {
    fn default() -> Self {
        State { clients: Table::new(MAX_KEYS), global: Global::default(), violations: Table::new(MAX_KEYS / 10) }
    }
}

pub struct RateLimit {
    /// The route (or site) the limit belongs to, for logs and ban reasons.
    route: String,
    /// Only paths under this (a site's per-path limit).
    prefix: Option<String>,
    config: Arc<Config>,
    /// Clients told apart by this header's value (the `key` header, or the header `auth`
    /// names its user in); by address without one.
    key: Option<http::HeaderName>,
    per_client: Option<Gcra>,
    global: Option<Gcra>,
    state: Arc<State>,
}

impl RateLimit {
    pub fn new(route: &str, config: Arc<Config>, state: Arc<State>) -> Self {
        let per_client = config.per_client.map(|r| Gcra::new(r, config.burst));
        let global = config.global.map(|r| Gcra::new(r, config.burst));
        let key = config.key.clone();
        RateLimit { route: route.to_string(), prefix: None, config, key, per_client, global, state }
    }

    /// Clients told apart by the user `auth` authenticated: the header it sets (and never
    /// takes from the client). The filter then runs after `auth`.
    pub fn by_user(mut self, user_header: http::HeaderName) -> Self {
        self.key = Some(user_header);
        self
    }

    /// A limit for the requests whose normalised path starts with `prefix`.
    pub fn under(mut self, prefix: Option<String>) -> Self {
        self.prefix = prefix;
        self
    }

    fn limited(
        &self,
        cx: &Ctx<'_>,
        headers: &http::HeaderMap,
        (g, policy): (&Gcra, &str),
        retry_after_s: u64,
        per_client: bool,
    ) -> Verdict {
        cx.answered_by("rate_limited", policy, format!("over the {policy} limit of {}", self.route));
        if per_client && let Some(ban) = &self.config.ban {
            cx.state.shared.bans.strike(&self.state.violations, cx.client, ban, "rate-limit violations", &self.route);
        }
        let mut r = super::refusal(cx, headers, StatusCode::TOO_MANY_REQUESTS, "Too many requests; try again later.");
        let h = r.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        if let Ok(v) = HeaderValue::from_str(&format!("{policy};q={};w={}", g.quota, g.window_s)) {
            h.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{policy};r=0;t={retry_after_s}")) {
            h.insert("ratelimit", v);
        }
        Verdict::Respond(r)
    }
}

impl RequestFilter for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        if let Some(prefix) = &self.prefix
            && !crate::route::under(path, prefix)
        {
            return Verdict::Continue;
        }
        let now = now_ns();
        // The client's own limit first: a client over it does not use up the route's.
        if let Some(g) = &self.per_client {
            let key = match &self.key {
                Some(name) => req
                    .headers()
                    .get(name)
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| ip_key(cx.client), |v| text_key(v.as_bytes())),
                None => ip_key(cx.client),
            };
            if let Decision::Limit { retry_after_s } = self.state.clients.check(key, g, now) {
                return self.limited(cx, req.headers(), (g, "per_client"), retry_after_s, true);
            }
        }
        if let Some(g) = &self.global
            && let Decision::Limit { retry_after_s } = self.state.global.check(g, now)
        {
            return self.limited(cx, req.headers(), (g, "global"), retry_after_s, false);
        }
        Verdict::Continue
    }
}
