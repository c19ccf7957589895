//! The validated resilience settings: health checks, passive checks, circuit breakers,
//! retries and traffic splits of upstreams; error and maintenance pages of sites.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderName;
use ipnet::IpNet;

use super::Upstream;

/// `retries`: a request whose attempt failed before a response head (the connection broke,
/// the backend did not answer in time), or was answered with one of `statuses`, is sent
/// again, to another backend when there is one. Requests with an idempotent method (or one
/// of `methods`) qualify, with a body only while it fits in `max_body` (kept for replay).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Pause before the first retry; doubled for each further one, with jitter.
    pub backoff: Duration,
    /// Retries allowed as a share of the upstream's requests over the last 10 seconds
    /// (at least 3 in any window), so retries cannot multiply load in an outage.
    pub budget: f64,
    /// Response statuses that are tried again (the answer is discarded), e.g. 503.
    pub statuses: Vec<u16>,
    /// Methods retried beyond the idempotent ones (`POST` for an API whose writes are
    /// idempotent by key).
    pub methods: Vec<http::Method>,
    /// Request bodies up to this size are kept in memory so they can be sent again;
    /// larger ones are streamed and never retried. 0: bodies are never retried.
    pub max_body: u64,
}

impl RetryPolicy {
    /// Whether requests with `method` may be retried at all.
    pub fn allows(&self, method: &http::Method) -> bool {
        method.is_idempotent() || self.methods.contains(method)
    }
}

/// `passive_check`: a backend that fails `failures` requests in a row is ejected for
/// `ejection`, doubling with each ejection in a row up to `max_ejection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveCheck {
    pub failures: u32,
    pub ejection: Duration,
    pub max_ejection: Duration,
    /// A 5xx answer counts as a failure too.
    pub count_5xx: bool,
}

/// How backends are checked (`upstreams.NAME.health_check`).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// `None`: a TCP connect is the check. `Some`: an HTTP request.
    pub http: Option<HttpCheck>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed checks that take a backend out of rotation.
    pub unhealthy_after: u32,
    /// Consecutive passed checks that bring it back.
    pub healthy_after: u32,
    /// The last this many checks make the success rate (at most 64).
    pub window: u32,
    /// A backend in rotation whose success rate is under this is reported `degraded`.
    pub degraded_below: f64,
    /// A success rate under this takes a backend out of rotation too (0: only
    /// `unhealthy_after` does).
    pub down_below: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub path: String,
    /// `Host` sent; `None`: the backend's host.
    pub host: Option<String>,
    /// Healthy statuses, inclusive.
    pub expect: (u16, u16),
    /// Text the body must contain (within its first 64 KiB).
    pub body: Option<String>,
}

/// `circuit_breaker`: per backend, opens after `failures` failed requests in a row, or
/// when at least `min_requests` requests within `window` failed at a share of `ratio` or
/// more. Open, the backend gets no requests for `open_for`; then up to `probes` requests
/// go through (half-open), and `successes` of them succeeding close it again, one failing
/// opens it again.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    pub failures: u32,
    pub ratio: Option<f64>,
    pub window: Duration,
    pub min_requests: u32,
    pub open_for: Duration,
    pub probes: u32,
    pub successes: u32,
    /// A 5xx answer counts as a failure (default on: an application failing every request
    /// is what a breaker is for).
    pub count_5xx: bool,
}

/// `split`: a route's traffic shared between upstreams by weight (canary, A/B).
#[derive(Debug, Clone)]
pub struct Split {
    pub pools: Vec<SplitPool>,
    /// How a client keeps its pool across requests.
    pub sticky: Option<Sticky>,
}

#[derive(Debug, Clone)]
pub struct SplitPool {
    /// The upstream's name, also the pool's name in the sticky cookie.
    pub name: String,
    pub upstream: Arc<Upstream>,
    pub weight: u32,
    /// Requests with this header value always go to this pool (`X-Canary: always`).
    pub when: Option<(HeaderName, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The pool is remembered in this cookie (set on the first answer).
    Cookie(String),
    /// The pool follows from this header's value (a user or tenant id), by hash.
    Header(HeaderName),
}

/// Pages shown for Gatehouse's own error answers, by status: templates where `{{status}}`,
/// `{{reason}}`, `{{message}}`, `{{request_id}}` and `{{time}}` are filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPages {
    pub pages: BTreeMap<u16, Arc<str>>,
}

impl ErrorPages {
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// `maintenance` of a site: while on, requests get a 503 with the page (except from
/// `allow`), and `Retry-After`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Maintenance {
    /// On now (the admin API can switch it too).
    pub enabled: bool,
    /// Scheduled windows, start and end.
    pub windows: Vec<(SystemTime, SystemTime)>,
    /// The page template (same fields as error pages); a built-in page otherwise.
    pub page: Option<Arc<str>>,
    /// Clients that still reach the site (the administrators checking their work).
    pub allow: Vec<IpNet>,
    /// `Retry-After` when no window gives an end.
    pub retry_after: Duration,
}

/// `websocket` of a site (the proxy-manager's key): whether upgrades pass, how many
/// tunnels may be open at once (0: no limit) and how long one may last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocket {
    pub enabled: bool,
    pub max_connections: usize,
    pub max_duration: Option<Duration>,
}

/// `registry` of the main file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// A listener serving only `/v1/services` (the admin listener serves it too).
    pub listen: Option<std::net::SocketAddr>,
    pub ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { listen: None, ttl: Duration::from_secs(30), max_ttl: Duration::from_secs(3600) }
    }
}
