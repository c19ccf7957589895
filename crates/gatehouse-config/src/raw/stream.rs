//! The `streams` key as written (main file or site files): L4 listeners with their
//! protocol, TLS, backends and connection limits.

use serde::Deserialize;

use super::{Balance, CircuitBreaker, HealthCheck, S, UpstreamTls};

/// One stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    pub name: S<String>,
    pub listen: S<String>,
    pub protocol: Option<S<String>>,
    pub tls: Option<StreamTls>,
    #[serde(default)]
    pub backends: Vec<S<String>>,
    pub load_balancing: Option<Balance>,
    pub health_check: Option<HealthCheck>,
    pub circuit_breaker: Option<CircuitBreaker>,
    /// TLS towards the backends (re-encryption), verified.
    pub backend_tls: Option<UpstreamTls>,
    /// Routing by the ClientHello's SNI.
    pub routes: Option<Vec<StreamRoute>>,
    pub connect_timeout: Option<S<String>>,
    pub idle_timeout: Option<S<String>>,
    pub max_duration: Option<S<String>>,
    pub handshake_timeout: Option<S<String>>,
    pub max_connections: Option<S<String>>,
    pub max_connections_per_ip: Option<S<String>>,
    pub allow: Option<Vec<S<String>>>,
    pub deny: Option<Vec<S<String>>>,
    pub proxy_protocol: Option<StreamProxyProtocol>,
}

/// The certificate a stream terminates TLS with.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StreamTls {
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    /// Names whose certificate comes from the shared store (`tls.cert_dir`, ACME, sites).
    pub hosts: Option<Vec<S<String>>>,
    /// Refuse clients that do not start TLS (default true).
    pub required: Option<S<String>>,
}

/// One SNI route of a stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRoute {
    pub sni: Vec<S<String>>,
    #[serde(default)]
    pub backends: Vec<S<String>>,
    /// Forward the TLS bytes as they are (no termination).
    pub passthrough: Option<S<String>>,
    pub backend_tls: Option<UpstreamTls>,
}

/// PROXY protocol: accepted from trusted sources, sent to backends.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StreamProxyProtocol {
    /// Sources whose connections start with a PROXY header (then required from them).
    pub accept_from: Option<Vec<S<String>>>,
    /// `v1` or `v2`: the header sent to backends.
    pub send: Option<S<String>>,
}
