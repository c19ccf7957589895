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
mod resilience;
mod security;
mod stream;
pub use access::*;
pub use auth::*;
pub use resilience::*;
pub use security::*;
pub use stream::*;

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

/// What is stored about each request (`logging`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Request logs go into the database.
    pub requests: bool,
    pub mask_ip: MaskIpMethod,
    /// Header names (lower case) never stored.
    pub strip_headers: Vec<String>,
    /// More words (lower case) marking secret query parameters.
    pub secret_params: Vec<String>,
    /// Path redaction patterns (`/reset/[TOKEN]`).
    pub redact_paths: Vec<PathPattern>,
}

/// A path redaction pattern: one part per path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `*`: any segment, kept.
    Any,
    /// `[LABEL]`: any segment, replaced by `[LABEL]`.
    Redact(String),
}

impl PathPattern {
    /// Parses `/reset/[TOKEN]`, `/users/*/invite/[CODE]`, …; the pattern must start with
    /// `/` and mark at least one segment to redact.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let body = text.strip_prefix('/').ok_or_else(|| format!("{text:?} must start with /"))?;
        let parts: Vec<Part> = body
            .trim_end_matches('/')
            .split('/')
            .map(|seg| match seg {
                "*" => Ok(Part::Any),
                s if s.len() > 2 && s.starts_with('[') && s.ends_with(']') => Ok(Part::Redact(s.to_string())),
                "" => Err(format!("{text:?} has an empty segment")),
                s if s.contains(['[', ']', '*']) => {
                    Err(format!("segment {s:?} of {text:?}: use * or [LABEL] for a whole segment"))
                }
                s => Ok(Part::Literal(s.to_string())),
            })
            .collect::<Result<_, _>>()?;
        if !parts.iter().any(|p| matches!(p, Part::Redact(_))) {
            return Err(format!("{text:?} marks no segment to redact (write one as [TOKEN])"));
        }
        Ok(PathPattern(parts))
    }

    /// The path with this pattern's marked segments replaced, when its leading segments
    /// match.
    pub fn apply(&self, path: &str) -> Option<String> {
        let body = path.strip_prefix('/')?;
        let segs: Vec<&str> = body.split('/').collect();
        if segs.len() < self.0.len() {
            return None;
        }
        for (part, seg) in self.0.iter().zip(&segs) {
            match part {
                Part::Literal(l) if l != seg => return None,
                _ if seg.is_empty() => return None,
                _ => {}
            }
        }
        let mut out = String::with_capacity(path.len());
        for (i, seg) in segs.iter().enumerate() {
            out.push('/');
            match self.0.get(i) {
                Some(Part::Redact(label)) => out.push_str(label),
                _ => out.push_str(seg),
            }
        }
        Some(out)
    }
}

/// How long stored records are kept (`data_retention`); the daily job deletes older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Request rows that did not fail (`access_logs`, default 7 days).
    pub access: Duration,
    /// Request rows with status 400 or more or a recorded error (`error_logs`, 30 days).
    pub errors: Duration,
    /// Bans, violations and WAF blocks (`security_logs`, 90 days).
    pub security: Duration,
    /// The audit log (`audit_logs`, 365 days).
    pub audit: Duration,
}

/// The events a webhook can be sent. Later features add theirs here.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "cert_expiring",
    "cert_renewal_failed",
    "high_error_rate",
    "config_reload_failed",
    "backend_down",
    "backend_recovered",
    "ban_created",
    "failed_login_spike",
    "waf_block_spike",
];

/// One webhook (`webhooks[]`).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://` or `https://`; a secret (Discord's carries a token): never logged.
    pub url: String,
    pub format: WebhookFormat,
    /// The events it gets (names from `WEBHOOK_EVENTS`); empty = all.
    pub events: Vec<String>,
    /// The same event about the same subject is sent at most once per this.
    pub throttle: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL stays out of debug output: it is a secret.
        f.debug_struct("WebhookConfig")
            .field("format", &self.format)
            .field("events", &self.events)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// True when this webhook gets `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"event", "severity", "title", "message", "fields", "time"}`.
    Json,
    /// A Discord message with one embed.
    Discord,
}

/// Where spans go (`opentelemetry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's base URL; spans are posted to `<endpoint>/v1/traces`.
    pub endpoint: String,
    pub service_name: String,
}

/// Scheduled backups (`backups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupsConfig {
    /// Take backups on schedule (`gatehouse backup now` works either way).
    pub enabled: bool,
    /// Where backups go (default `backups/` beside the database).
    pub dir: PathBuf,
    /// Time between scheduled backups.
    pub interval: Duration,
    /// Every backup is kept this long …
    pub hourly: Duration,
    /// … then the newest of each day this long …
    pub daily: Duration,
    /// … then the newest of each week this long.
    pub weekly: Duration,
}

/// When alert events fire (`alerts`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertsConfig {
    /// `high_error_rate` when this share of a site's requests (0 to 1) answered 5xx …
    pub error_rate: f64,
    /// … over this window …
    pub window: Duration,
    /// … with at least this many requests in it.
    pub min_requests: u64,
    /// `failed_login_spike` at this many failed logins (every route) within `window`; 0
    /// never.
    pub failed_logins: u64,
    /// `waf_block_spike` at this many WAF blocks (every route) within `window`; 0 never.
    pub waf_blocks: u64,
}

/// How client addresses are stored (`logging.mask_ip_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskIpMethod {
    /// IPv4 without its last octet, IPv6 to its /64.
    LastOctet,
    /// Whole (`mask_ip_method: none` or `mask_pii: false`).
    None,
    /// A keyed hash under a daily salt kept only in memory (`mask_ip_method: hash`).
    Hash,
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

#[derive(Debug, Clone)]
pub struct Route {
    /// `site-name#index`, stable across reloads while the file keeps its shape.
    pub id: String,
    pub path: PathMatch,
    pub methods: Option<Vec<Method>>,
    /// Higher wins; ties go to the more specific match (exact > longer prefix > regex), then file order.
    pub priority: i32,
    pub action: Action,
    pub strip_prefix: Option<String>,
    pub rewrite: Option<Rewrite>,
    pub options: RouteOptions,
    /// This route's `logging` when it has one (unset keys from its site's, then the main
    /// file's).
    pub logging: Option<LoggingConfig>,
    /// This route's `data_retention` when it has one.
    pub retention: Option<RetentionConfig>,
    /// Traffic shared between upstreams (`split`); the action's upstream is its first pool.
    pub split: Option<Arc<Split>>,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Matches the prefix at a segment boundary: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    Regex(Regex),
}

impl std::fmt::Display for PathMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathMatch::Exact(p) => write!(f, "= {p}"),
            PathMatch::Prefix(p) => write!(f, "{p}"),
            PathMatch::Regex(r) => write!(f, "~ {}", r.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rewrite {
    pub pattern: Regex,
    pub replace: String,
}

#[derive(Debug, Clone)]
pub enum Action {
    Proxy(Arc<Upstream>),
    Static(StaticDir),
    Redirect {
        to: String,
        code: StatusCode,
    },
    /// A fixed answer: `status`, and `body` as `text/plain` (none when empty).
    Respond {
        status: StatusCode,
        body: String,
    },
}

#[derive(Debug, Clone)]
pub struct StaticDir {
    pub root: PathBuf,
    pub index: Vec<String>,
    /// Directories without an index file are answered with a listing (`browse: true`).
    pub browse: bool,
    /// The file (relative to `root`, already checked to stay inside it) that answers a path
    /// naming nothing (`fallback`).
    pub fallback: Option<String>,
    /// Names starting with `.` are served (`dotfiles`, default true); `.well-known` always is.
    pub dotfiles: bool,
}

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

/// Options after merging defaults <- site <- route.
#[derive(Debug, Clone)]
pub struct RouteOptions {
    pub connect_timeout: Duration,
    /// Time to the first response byte, and between response body chunks.
    pub read_timeout: Duration,
    /// Time allowed between two request body chunks from the client.
    pub write_timeout: Duration,
    pub max_request_body: Option<u64>,
    pub max_request_headers: u64,
    pub max_request_header_count: usize,
    pub max_uri_length: usize,
    pub max_response_body: Option<u64>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// Requests slower than this are logged as slow (`slow_request.warning`).
    pub slow_warning: Option<Duration>,
    /// ... and this, as critically slow (`slow_request.critical`).
    pub slow_critical: Option<Duration>,
    /// `rate_limit`, when set.
    pub rate_limit: Option<std::sync::Arc<RateLimit>>,
    /// `waf`, when set and enabled.
    pub waf: Option<std::sync::Arc<Waf>>,
    /// `auth`, when set.
    pub auth: Option<std::sync::Arc<Auth>>,
    /// `cors`, when set and enabled.
    pub cors: Option<std::sync::Arc<Cors>>,
    /// `ip`: client address allow/deny lists.
    pub ip: Option<std::sync::Arc<IpRules>>,
    pub user_agent: Option<std::sync::Arc<AgentRules>>,
    pub referer: Option<std::sync::Arc<RefererRules>>,
    pub csrf: Option<std::sync::Arc<Csrf>>,
    /// `geo`: country rules.
    pub geo: Option<std::sync::Arc<GeoRules>>,
    /// `failed_logins`: the application's answers that count towards bans.
    pub failed_logins: Option<std::sync::Arc<FailedLogins>>,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_request_body: Some(10_000_000),
            max_request_headers: 64 * 1024,
            max_request_header_count: 100,
            max_uri_length: 8192,
            max_response_body: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            slow_warning: None,
            slow_critical: None,
            rate_limit: None,
            waf: None,
            auth: None,
            cors: None,
            ip: None,
            user_agent: None,
            referer: None,
            csrf: None,
            geo: None,
            failed_logins: None,
        }
    }
}

/// Header edits applied in order: remove, then set (replace), then add (append).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}
