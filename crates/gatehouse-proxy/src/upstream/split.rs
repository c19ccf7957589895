//! Traffic splitting (`split`): which of a route's upstream groups serves a request. In
//! order: a pool whose `when` header matches (`X-Canary: always`); the pool named in the
//! sticky cookie; with a sticky header, the pool its value hashes to (the same value, the
//! same pool, at the configured weights); otherwise a weighted random pick, remembered in
//! the sticky cookie when there is one.
//!
//! Built once per configuration load; choosing allocates nothing unless a cookie is set.

use std::sync::Arc;

use gatehouse_config::{Split, Sticky};
use http::HeaderMap;
use http::header::HeaderValue;

use super::{Group, hash_key};

pub struct Splitter {
    pub config: Arc<Split>,
    /// The pools' groups, in the configuration's order.
    pub groups: Vec<Arc<Group>>,
    total: u64,
}

/// What `choose` decided.
pub struct Choice {
    pub pool: usize,
    /// A `Set-Cookie` value to send (a new client of a cookie-sticky split).
    pub set_cookie: Option<HeaderValue>,
}

impl Splitter {
    pub fn new(config: Arc<Split>, groups: Vec<Arc<Group>>) -> Self {
        let total = config.pools.iter().map(|p| u64::from(p.weight)).sum();
        Splitter { config, groups, total }
    }

    /// The pool for a request with `headers`; `secure` marks the cookie `Secure`.
    pub fn choose(&self, headers: &HeaderMap, secure: bool) -> Choice {
        let pools = &self.config.pools;
        for (i, p) in pools.iter().enumerate() {
            if let Some((name, value)) = &p.when
                && headers.get_all(name).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
            {
                return Choice { pool: i, set_cookie: None };
            }
        }
        match &self.config.sticky {
            Some(Sticky::Cookie(name)) => {
                if let Some(v) = super::select::cookie(headers, name)
                    && let Some(i) = pools.iter().position(|p| p.name == v && p.weight > 0)
                {
                    return Choice { pool: i, set_cookie: None };
                }
                let pool = self.weighted(fastrand::u64(0..self.total.max(1)));
                let secure = if secure { "; Secure" } else { "" };
                let cookie = format!("{name}={}; Path=/; HttpOnly; SameSite=Lax{secure}", pools[pool].name);
                Choice { pool, set_cookie: HeaderValue::from_str(&cookie).ok() }
            }
            Some(Sticky::Header(name)) => {
                let at = match headers.get(name) {
                    Some(v) => hash_key(v.as_bytes()) % self.total.max(1),
                    None => fastrand::u64(0..self.total.max(1)),
                };
                Choice { pool: self.weighted(at), set_cookie: None }
            }
            None => Choice { pool: self.weighted(fastrand::u64(0..self.total.max(1))), set_cookie: None },
        }
    }

    /// The pool whose share of the total weight holds `at`.
    fn weighted(&self, mut at: u64) -> usize {
        for (i, p) in self.config.pools.iter().enumerate() {
            let w = u64::from(p.weight);
            if at < w {
                return i;
            }
            at -= w;
        }
        0
    }
}
