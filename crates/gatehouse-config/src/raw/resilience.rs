//! The resilience keys as written: health and passive checks, circuit breakers, retries,
//! traffic splits, error and maintenance pages, slow-request thresholds.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::S;

/// Retries of failed attempts.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    pub attempts: Option<S<String>>,
    pub backoff: Option<S<String>>,
    pub budget: Option<S<String>>,
    /// Response statuses tried again (`[502, 503]`).
    pub statuses: Option<Vec<S<String>>>,
    /// Methods retried beyond the idempotent ones.
    pub methods: Option<Vec<S<String>>>,
    /// Largest request body kept for replay.
    pub max_body: Option<S<String>>,
}

/// Passive checks: backends ejected after failed requests.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct PassiveCheck {
    pub failures: Option<S<String>>,
    pub ejection: Option<S<String>>,
    pub max_ejection: Option<S<String>>,
    pub count_5xx: Option<S<String>>,
}

/// Active health checks of an upstream's backends.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The proxy-manager's switch; `false` turns checks off.
    pub enabled: Option<S<String>>,
    /// `http` (default) or `tcp`.
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub path: Option<S<String>>,
    pub method: Option<S<String>>,
    /// The `Host` sent (default: the backend's host).
    pub host: Option<S<String>>,
    /// Statuses that count as healthy: `200-399` (default), `200`, `2xx`.
    pub expect_status: Option<S<String>>,
    /// Text the answer's body must contain.
    pub expect_body: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub unhealthy_after: Option<S<String>>,
    pub healthy_after: Option<S<String>>,
    /// Checks in the sliding window the success rate is taken over.
    pub window: Option<S<String>>,
    pub degraded_below: Option<S<String>>,
    pub down_below: Option<S<String>>,
}

/// A circuit breaker per backend. Aliases are the proxy-manager's names.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    pub enabled: Option<S<String>>,
    #[serde(alias = "failure_threshold")]
    pub failures: Option<S<String>>,
    #[serde(alias = "failure_ratio")]
    pub ratio: Option<S<String>>,
    pub window: Option<S<String>>,
    pub min_requests: Option<S<String>>,
    #[serde(alias = "timeout")]
    pub open_for: Option<S<String>>,
    #[serde(alias = "half_open_requests")]
    pub probes: Option<S<String>>,
    #[serde(alias = "success_threshold")]
    pub successes: Option<S<String>>,
    pub count_5xx: Option<S<String>>,
}

/// A route's traffic split.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub pools: Vec<SplitPool>,
    /// `{cookie: NAME}` or `{header: NAME}`.
    pub sticky: Option<Sticky>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SplitPool {
    pub upstream: S<String>,
    pub weight: Option<S<String>>,
    /// `{header: X-Canary, value: always}`: such requests always go to this pool.
    pub when: Option<SplitWhen>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SplitWhen {
    pub header: S<String>,
    pub value: S<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    pub cookie: Option<S<String>>,
    pub header: Option<S<String>>,
}

/// Status -> page file (`502: pages/502.html`).
pub type ErrorPages = S<BTreeMap<String, S<String>>>;

/// A site's maintenance mode.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub enabled: Option<S<String>>,
    /// Scheduled windows (RFC 3339 start and end).
    pub windows: Option<Vec<MaintenanceWindow>>,
    /// The page shown (a template file).
    pub page: Option<S<String>>,
    /// Addresses or networks that bypass it.
    pub allow: Option<Vec<S<String>>>,
    pub retry_after: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub start: S<String>,
    pub end: S<String>,
}

/// Slow-request thresholds of a route.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SlowRequest {
    pub warning: Option<S<String>>,
    pub critical: Option<S<String>>,
}

/// A site's WebSocket settings (the proxy-manager's key).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebSocket {
    pub enabled: Option<S<String>>,
    pub max_connections: Option<S<String>>,
    /// A duration, or seconds.
    pub max_duration: Option<S<String>>,
}

/// The service registry.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// A listener of its own for `/v1/services` (besides the admin listener).
    pub listen: Option<S<String>>,
    /// TTL of a registration that names none.
    pub ttl: Option<S<String>>,
    /// The longest TTL a registration may ask for.
    pub max_ttl: Option<S<String>>,
}
