//! The validated configuration the proxy is built from. Everything here has been checked:
//! addresses parse, regexes compile, durations are durations. Building a runtime from a
//! `Config` cannot fail for configuration reasons.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use regex::Regex;

mod access;
mod auth;
mod data;
mod resilience;
mod route;
mod security;
mod stream;
mod upstream;
pub use access::*;
pub use auth::*;
pub use data::*;
pub use resilience::*;
pub use route::*;
pub use security::*;
pub use stream::*;
pub use upstream::*;

#[derive(Debug, Clone)]
pub struct Config {
    /// The main file this configuration was read from.
    pub source: PathBuf,
    pub workers: usize,
    pub listen_http: SocketAddr,
    /// The HTTPS listener, when configured.
    pub listen_https: Option<SocketAddr>,
    /// HTTP/3 over QUIC on the same port as `listen_https`, advertised with Alt-Svc.
    pub http3: bool,
    pub tls: TlsConfig,
    /// The admin API's address; `None` with `admin.listen: off`.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin API; required when it listens beyond loopback.
    pub admin_token: Option<String>,
    /// `Host` values the admin API accepts on requests that change something; `None` =
    /// loopback names and the admin listen address.
    pub admin_allowed_hosts: Option<Vec<AllowedHost>>,
    pub sites_dir: PathBuf,
    pub storage_path: PathBuf,
    pub log: LogConfig,
    pub logging: LoggingConfig,
    pub retention: RetentionConfig,
    pub webhooks: Vec<WebhookConfig>,
    pub alerts: AlertsConfig,
    /// `geoip.database`: a MaxMind DB file, read by the binary (again when it changes).
    pub geoip: Option<PathBuf>,
    pub backups: BackupsConfig,
    /// Spans to an OTLP/HTTP collector (`opentelemetry.endpoint`), when set.
    pub otlp: Option<OtlpConfig>,
    pub shutdown_timeout: Duration,
    pub server: ServerConfig,
    pub trusted_proxies: Vec<IpNet>,
    pub dns_refresh: Duration,
    pub sites: Vec<Site>,
    /// Pages for Gatehouse's own errors, for sites without their own.
    pub error_pages: Arc<ErrorPages>,
    pub registry: RegistryConfig,
    /// L4 listeners, from the main file and the site files.
    pub streams: Vec<Stream>,
    /// What `check` should tell about settings that mean something other than a reader
    /// may expect (not errors).
    pub notes: Vec<String>,
}

/// Where certificates come from. Files are checked for readability here; parsing and
/// key/certificate matching happen when the proxy loads them (also in `gatehouse check`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Watched directory: certbot `live/<domain>/{fullchain,privkey}.pem` or flat
    /// `<name>.crt|.pem` + `<name>.key`.
    pub cert_dir: Option<PathBuf>,
    /// Explicit pairs: the global one and each site's.
    pub pairs: Vec<CertPair>,
    pub default_host: Option<String>,
    /// Automatic certificates.
    pub acme: Option<AcmeConfig>,
    /// Where issued certificates live (`<storage dir>/acme/certs/<site>/`); scanned like
    /// `cert_dir`, after it.
    pub acme_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    pub email: String,
    pub directory: String,
    pub ca_root: Option<PathBuf>,
    pub challenge: AcmeChallenge,
    /// External account binding (ZeroSSL): key id and the base64url HMAC key.
    pub eab: Option<(String, String)>,
    pub renew_before: Option<Duration>,
    /// Account and certificates (`<storage dir>/acme`).
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
    /// DNS-01 through a command run as `COMMAND set|clear NAME VALUE`.
    Dns01 {
        hook: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where it was configured, for the inventory (`main`, or the site name).
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    /// Where access lines go as JSON lines instead of the log stream (`log.access_file`).
    pub access_file: Option<AccessFile>,
}

/// `log.access_file`: a file rotated by size, or stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessFile {
    Stdout,
    File {
        path: PathBuf,
        /// Size at which the file is rotated (`log.access_file_max`).
        max_bytes: u64,
        /// Rotated files kept (`path.1` … `path.N`; `log.access_file_keep`).
        keep: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Downstream connection settings (apply before a request is routed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Time a client has to send a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// How long an idle client connection (HTTP/1.1 between requests, HTTP/2 with no open
    /// stream) is kept open; zero turns keep-alive off (`Connection: close`, GOAWAY).
    pub keepalive_timeout: Duration,
    /// PING interval on HTTP/2 client connections, to find dead peers; `None` = no PINGs.
    pub h2_ping_interval: Option<Duration>,
    /// Time a client has to take each part of a response (HTTP/1.1) before the connection
    /// is closed.
    pub send_timeout: Duration,
    /// Concurrent client connections of the whole process; 0 = unlimited. At the limit
    /// no more are accepted until one closes.
    pub max_connections: usize,
    /// Concurrent client connections from one address; 0 = unlimited. Beyond it a new
    /// connection is closed unanswered.
    pub max_connections_per_ip: usize,
    /// Slowest average request-body rate accepted, in bytes per second, after a grace
    /// period; `None` = no minimum.
    pub request_body_min_rate: Option<u64>,
    /// Peers that must open each connection with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: Vec<ipnet::IpNet>,
    /// Connections from a banned address (the peer, or the client a PROXY header names)
    /// are closed at accept, before TLS; otherwise banned clients get 403.
    pub close_banned: bool,
}

/// One entry of `admin.allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// `*`: any `Host`.
    Any,
    /// A name or IP address (lower-case, IPv6 without brackets), with a port or any port.
    Host { name: String, port: Option<u16> },
}

impl AllowedHost {
    /// `*`, `name`, `name:port`, `10.0.0.1[:port]`, `[::1][:port]`; also used on `Host`
    /// and `Origin` values, so both sides are read the same way.
    pub fn parse(s: &str) -> Option<AllowedHost> {
        let s = s.trim();
        if s == "*" {
            return Some(AllowedHost::Any);
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
            };
            (v6.to_string(), port)
        } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
            // `::1` is an address, not `::` with port 1.
            (s.to_string(), None)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().ok()?)),
                None => (s.to_string(), None),
            }
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        valid.then(|| AllowedHost::Host { name: host.to_ascii_lowercase(), port })
    }

    /// Whether a request's `Host` (parsed with `parse`) is this entry.
    pub fn admits(&self, name: &str, port: Option<u16>) -> bool {
        match self {
            AllowedHost::Any => true,
            AllowedHost::Host { name: n, port: p } => n == name && (p.is_none() || *p == port),
        }
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowedHost::Any => f.write_str("*"),
            AllowedHost::Host { name, port } => {
                if name.contains(':') {
                    write!(f, "[{name}]")?;
                } else {
                    f.write_str(name)?;
                }
                match port {
                    Some(p) => write!(f, ":{p}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Config {
    /// Every file this configuration was built from: the main file, each site file, and
    /// the certificate, key and CA files they name, each once, in that order. Directories
    /// (`tls.cert_dir`, static roots) are not listed.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = vec![self.source.clone()];
        out.extend(self.sites.iter().map(|s| s.file.clone()));
        for pair in &self.tls.pairs {
            out.extend([pair.cert.clone(), pair.key.clone()]);
        }
        for route in self.sites.iter().flat_map(|s| s.routes.iter()) {
            if let Action::Proxy(up) = &route.action {
                out.extend(up.pool.tls.files());
            }
        }
        out.extend(self.tls.acme.as_ref().and_then(|a| a.ca_root.clone()));
        // Streams: their certificates and their backends' TLS files.
        for s in &self.streams {
            if let Some(p) = s.tls.as_ref().and_then(|t| t.pair.as_ref()) {
                out.extend([p.cert.clone(), p.key.clone()]);
            }
            for t in s.backend_tls.iter().chain(s.routes.iter().filter_map(|r| r.backend_tls.as_ref())) {
                out.extend(t.files());
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }
}

#[derive(Debug, Clone)]
pub struct Site {
    /// File stem of the site file (`panel` for `sites/panel.yaml`).
    pub name: String,
    pub file: PathBuf,
    pub hosts: Vec<HostPattern>,
    pub routes: Vec<Route>,
    /// Plain-HTTP requests to this site are redirected to HTTPS.
    pub https_redirect: bool,
    /// This site's `logging`, when its file has one (unset keys from the main file's).
    pub logging: Option<LoggingConfig>,
    /// This site's `data_retention`, when its file has one.
    pub retention: Option<RetentionConfig>,
    /// Pages for Gatehouse's own errors: this site's, over the main file's.
    pub error_pages: Arc<ErrorPages>,
    /// This site's `maintenance` settings (the admin API can switch it on without them).
    pub maintenance: Option<Arc<Maintenance>>,
    /// This site's `websocket` settings, when its file has them.
    pub websocket: Option<Arc<WebSocket>>,
    /// Site-wide and per-path rate limits (the proxy-manager's `rate_limit`), checked for
    /// every route of the site.
    pub rate_limits: Vec<SiteLimit>,
    /// `tls.client_ca`: clients of this site's names are asked for a certificate, verified
    /// against these CAs (PEM).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `example.test` (stored lower-case, no port).
    Exact(String),
    /// `*.example.test`: stored as the suffix `.example.test`; matches one or more labels.
    Wildcard(String),
    /// `*`: every host not claimed by another site.
    Any,
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}
