//! Upstreams: their backends, balancing, connection pools and TLS to backends.

use super::*;

/// A group of backends behind one balancer.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Identity used to carry balancer state and counters across reloads.
    pub key: String,
    /// The upstream's identity apart from its backends: `SITE/NAME` for a named upstream,
    /// the route id for inline backends. Backend state is carried across reloads within it.
    pub id: String,
    pub backends: Vec<Backend>,
    pub balance: Balance,
    pub pool: PoolSettings,
    /// Active health checks of the backends (`health_check`), when configured.
    pub health: Option<HealthCheck>,
    /// Ejection after failed requests (`passive_check`), when configured.
    pub passive: Option<PassiveCheck>,
    /// Retries of failed attempts (`retries`), when configured.
    pub retries: Option<RetryPolicy>,
    /// A circuit breaker per backend (`circuit_breaker`), when configured.
    pub breaker: Option<CircuitBreaker>,
    /// The registry service whose instances are the backends (`backends` is then empty
    /// here; the proxy fills it from the registry each time it builds its state).
    pub service: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle keep-alive connections kept per backend and worker.
    pub max_idle_per_host: usize,
    /// Open connections per backend across all workers; 0 = unlimited.
    pub max_connections_per_host: usize,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// TLS settings for `https://` backends.
    pub tls: UpstreamTls,
}

/// TLS towards `https://` backends. Files were checked for readability; the proxy parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Trusted CA certificates (PEM); `None` = the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub client: Option<CertPair>,
    /// SNI and verified name; `None` = the backend's host.
    pub server_name: Option<String>,
}

impl UpstreamTls {
    /// The files it names: the CA bundle, the client certificate and key.
    pub fn files(&self) -> Vec<PathBuf> {
        let client = self.client.iter().flat_map(|c| [c.cert.clone(), c.key.clone()]);
        self.ca.iter().cloned().chain(client).collect()
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_idle_per_host: 10_000,
            max_connections_per_host: 0,
            idle_timeout: Duration::from_secs(60),
            tls: UpstreamTls::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    pub addr: BackendAddr,
    pub weight: u32,
    /// HTTP/2 with prior knowledge to the backend (`h2c://`), for gRPC.
    pub h2c: bool,
    /// TLS to the backend (`https://`); HTTP/2 when the backend offers it in ALPN.
    pub tls: bool,
}

impl Backend {
    pub fn url(&self) -> String {
        let scheme = if self.h2c {
            "h2c"
        } else if self.tls {
            "https"
        } else {
            "http"
        };
        match &self.addr {
            BackendAddr::Tcp { .. } => format!("{scheme}://{}", self.addr.authority()),
            BackendAddr::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendAddr {
    /// Host name or IP literal; names are resolved at start and re-resolved every `dns_refresh`.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

impl BackendAddr {
    /// `host:port` as written in a URL (IPv6 in brackets); `localhost` for unix sockets.
    pub fn authority(&self) -> String {
        match self {
            BackendAddr::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            BackendAddr::Tcp { host, port } => format!("{host}:{port}"),
            BackendAddr::Unix(_) => "localhost".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub algorithm: Algorithm,
    pub hash_key: HashKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConn,
    ConsistentHash,
    Random,
}

impl Algorithm {
    pub const NAMES: &[&str] = &["round_robin", "weighted_round_robin", "least_conn", "consistent_hash", "random"];
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConn => "least_conn",
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::Random => "random",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Header(HeaderName),
    Cookie(String),
}
