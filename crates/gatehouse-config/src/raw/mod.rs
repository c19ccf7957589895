//! The configuration exactly as users write it. Every struct denies unknown keys; values
//! that need checking later keep their source location (`Spanned`) so that errors found
//! after parsing still point at a line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

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

/// The main file (`gatehouse.yaml`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Main {
    pub workers: Option<S<String>>,
    pub listen: Option<Listen>,
    pub admin: Option<Admin>,
    pub sites_dir: Option<S<String>>,
    pub storage: Option<Storage>,
    pub log: Option<Log>,
    /// What is stored about each request (the proxy-manager's `logging` key).
    pub logging: Option<Logging>,
    /// How long stored records are kept (the proxy-manager's `data_retention` key).
    pub data_retention: Option<DataRetention>,
    /// Where events are posted (Discord or generic JSON).
    pub webhooks: Option<Vec<Webhook>>,
    /// When events such as `high_error_rate` fire.
    pub alerts: Option<Alerts>,
    /// A GeoIP database, for countries in the request log and `geo` rules.
    pub geoip: Option<GeoIp>,
    /// Scheduled backups of the database and the ACME state.
    pub backups: Option<Backups>,
    /// Spans exported to an OpenTelemetry collector (OTLP over HTTP).
    pub opentelemetry: Option<OpenTelemetry>,
    pub shutdown_timeout: Option<S<String>>,
    pub server: Option<Server>,
    pub trusted_proxies: Option<Vec<S<String>>>,
    pub dns_refresh: Option<S<String>>,
    pub defaults: Option<Options>,
    pub tls: Option<Tls>,
    /// HTTP/3 on the HTTPS port (UDP).
    pub http3: Option<S<String>>,
    /// Pages for Gatehouse's own error answers, for sites without their own.
    pub error_pages: Option<ErrorPages>,
    /// The service registry (`/v1/services`).
    pub registry: Option<Registry>,
    /// L4 listeners (`streams`).
    pub streams: Option<Vec<Stream>>,
}

impl Main {
    /// True for a file with no keys at all (empty, or only comments).
    pub fn is_empty(&self) -> bool {
        // Destructured in full so that a new key cannot be forgotten here.
        let Main {
            workers,
            listen,
            admin,
            sites_dir,
            storage,
            log,
            logging,
            data_retention,
            webhooks,
            alerts,
            backups,
            opentelemetry,
            shutdown_timeout,
            server,
            trusted_proxies,
            dns_refresh,
            defaults,
            tls,
            http3,
            error_pages,
            registry,
            geoip,
            streams,
        } = self;
        workers.is_none()
            && listen.is_none()
            && admin.is_none()
            && sites_dir.is_none()
            && storage.is_none()
            && log.is_none()
            && logging.is_none()
            && error_pages.is_none()
            && registry.is_none()
            && data_retention.is_none()
            && webhooks.is_none()
            && alerts.is_none()
            && backups.is_none()
            && opentelemetry.is_none()
            && shutdown_timeout.is_none()
            && server.is_none()
            && trusted_proxies.is_none()
            && dns_refresh.is_none()
            && defaults.is_none()
            && tls.is_none()
            && http3.is_none()
            && geoip.is_none()
            && streams.is_none()
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub http: Option<S<String>>,
    pub https: Option<S<String>>,
}

/// Certificates: global in the main file; a site may name its own `cert`/`key`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert_dir: Option<S<String>>,
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    /// Host whose certificate answers handshakes with an unknown or missing SNI.
    pub default_host: Option<S<String>>,
    pub acme: Option<Acme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    pub email: S<String>,
    /// `letsencrypt`, `letsencrypt-staging`, `zerossl` or a directory URL.
    pub ca: Option<S<String>>,
    /// Extra trust anchor for a private ACME server (Pebble, step-ca).
    pub ca_root: Option<S<String>>,
    pub challenge: Option<S<String>>,
    pub dns_hook: Option<S<String>>,
    pub eab: Option<Eab>,
    /// Renew when this little validity is left (default: a third of the lifetime).
    pub renew_before: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eab {
    pub kid: S<String>,
    /// The HMAC key, or `env:NAME`; or `hmac_file`.
    pub hmac: Option<S<String>>,
    pub hmac_file: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SiteTls {
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    /// CA certificates (PEM) that client certificates for this site's names are verified
    /// against: Gatehouse then asks clients for one (`auth.client_cert` requires it).
    pub client_ca: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: Option<S<String>>,
    /// The token, or `env:NAME`.
    pub token: Option<S<String>>,
    /// A file holding the token (systemd `LoadCredential=`, Docker secrets).
    pub token_file: Option<S<String>>,
    /// `Host` values accepted on requests that change something (DNS-rebinding guard).
    pub allowed_hosts: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub path: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// Request logs into the database (default true).
    pub requests: Option<S<String>>,
    pub mask_pii: Option<S<String>>,
    pub mask_ip_method: Option<S<String>>,
    /// Headers never stored. No header is stored today; the names are checked and kept
    /// for when header capture comes.
    pub strip_headers: Option<Vec<S<String>>>,
    /// More words marking secret query parameters.
    pub secret_params: Option<Vec<S<String>>>,
    /// Path segments taken out of stored paths (`/reset/[TOKEN]`).
    pub redact_paths: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DataRetention {
    pub access_logs: Option<S<String>>,
    pub error_logs: Option<S<String>>,
    pub security_logs: Option<S<String>>,
    pub audit_logs: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The URL (it often holds a token), or `env:NAME`; or `url_file`.
    pub url: Option<S<String>>,
    pub url_file: Option<S<String>>,
    pub format: Option<S<String>>,
    pub events: Option<Vec<S<String>>>,
    pub throttle: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OpenTelemetry {
    pub endpoint: Option<S<String>>,
    pub service_name: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    pub enabled: Option<S<String>>,
    pub dir: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub hourly: Option<S<String>>,
    pub daily: Option<S<String>>,
    pub weekly: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    pub error_rate: Option<S<String>>,
    pub window: Option<S<String>>,
    pub min_requests: Option<S<String>>,
    /// `failed_login_spike` at this many failed logins within `window` (0: never).
    pub failed_logins: Option<S<String>>,
    /// `waf_block_spike` at this many WAF blocks within `window` (0: never).
    pub waf_blocks: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: Option<S<String>>,
    pub format: Option<S<String>>,
    /// The access log in a file of its own (JSON lines), or `-` for stdout.
    pub access_file: Option<S<String>>,
    pub access_file_max: Option<S<String>>,
    pub access_file_keep: Option<S<String>>,
}

/// Connection-level settings of the downstream listener.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub header_read_timeout: Option<S<String>>,
    pub keepalive_timeout: Option<S<String>>,
    pub send_timeout: Option<S<String>>,
    pub max_connections: Option<S<String>>,
    pub max_connections_per_ip: Option<S<String>>,
    /// Close connections from banned addresses at accept, before TLS (default: answer 403).
    pub close_banned: Option<S<String>>,
    pub request_body_min_rate: Option<S<String>>,
    pub proxy_protocol: Option<Vec<S<String>>>,
    /// PING interval on idle HTTP/2 client connections; off unless set.
    pub h2_ping_interval: Option<S<String>>,
}

/// Per-site / per-route options, also the global `defaults`. Merged field by field:
/// defaults <- site <- route.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub timeouts: Option<Timeouts>,
    pub limits: Option<Limits>,
    pub headers: Option<Headers>,
    pub load_balancing: Option<Balance>,
    pub pool: Option<Pool>,
    pub upstream_tls: Option<UpstreamTls>,
    pub slow_request: Option<SlowRequest>,
    pub rate_limit: Option<RateLimit>,
    pub waf: Option<Waf>,
    pub auth: Option<Auth>,
    pub cors: Option<Cors>,
    pub ip: Option<IpRules>,
    pub user_agent: Option<MatchRules>,
    pub referer: Option<MatchRules>,
    pub csrf: Option<Csrf>,
    pub geo: Option<GeoRules>,
    pub failed_logins: Option<FailedLogins>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub connect: Option<S<String>>,
    pub read: Option<S<String>>,
    pub write: Option<S<String>>,
    pub idle: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Also `max_request_body` (the proxy-manager's name).
    #[serde(alias = "max_request_body")]
    pub request_body: Option<S<String>>,
    #[serde(alias = "max_request_headers")]
    pub request_headers: Option<S<String>>,
    pub request_header_count: Option<S<String>>,
    pub uri_length: Option<S<String>>,
    #[serde(alias = "max_response_body")]
    pub response_body: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    pub preset: Option<S<String>>,
    pub request: Option<HeaderOps>,
    pub response: Option<HeaderOps>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    pub add: Option<S<BTreeMap<String, String>>>,
    pub set: Option<S<BTreeMap<String, String>>>,
    pub remove: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    pub algorithm: Option<S<String>>,
    pub hash_key: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Also `max_idle_conns_per_host` (the proxy-manager's `connection_pool`).
    #[serde(alias = "max_idle_conns_per_host")]
    pub max_idle_per_host: Option<S<String>>,
    #[serde(alias = "max_conns_per_host")]
    pub max_connections_per_host: Option<S<String>>,
}

/// How to talk TLS to `https://` backends.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM file of trusted CA certificates; default: the system's roots.
    pub ca: Option<S<String>>,
    /// Client certificate and key (mTLS).
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    /// Name sent as SNI and verified in the certificate; default: the backend's host.
    pub server_name: Option<S<String>>,
}

/// One file in `sites_dir`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub host: Option<S<String>>,
    pub hosts: Option<Vec<S<String>>>,
    pub backend: Option<S<String>>,
    pub backends: Option<Vec<S<String>>>,
    #[serde(rename = "static")]
    pub static_dir: Option<S<String>>,
    pub redirect: Option<Redirect>,
    pub upstreams: Option<BTreeMap<String, Upstream>>,
    pub routes: Option<Vec<Route>>,
    pub options: Option<Options>,
    pub tls: Option<SiteTls>,
    /// Redirect plain-HTTP requests to HTTPS (default: on when an HTTPS listener exists).
    pub https_redirect: Option<S<String>>,
    // Options written at the top of the site file, as the proxy-manager's files do; the
    // same as under `options` (a key given both ways is an error).
    pub timeouts: Option<Timeouts>,
    pub limits: Option<Limits>,
    pub headers: Option<Headers>,
    pub connection_pool: Option<Pool>,
    /// This site's request-log masking (the main file's `logging` otherwise).
    pub logging: Option<Logging>,
    /// This site's retention (the main file's `data_retention` otherwise).
    pub data_retention: Option<DataRetention>,
    // Keys of features not built yet: accepted by the parser so that `check` can name them
    // (an error: a rule the proxy would silently skip is worse than none).
    /// The proxy-manager's site-wide and per-path rate limits.
    pub rate_limit: Option<SiteRateLimit>,
    /// The WAF for every route of the site (the proxy-manager's layout).
    pub waf: Option<Waf>,
    pub compression: Option<S<serde::de::IgnoredAny>>,
    /// Checks for every upstream of this site that has none of its own (inline backends
    /// included), as the proxy-manager's files have it.
    pub health_check: Option<HealthCheck>,
    /// A breaker for every upstream of this site that has none of its own.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Pages for Gatehouse's own error answers, by status (files).
    pub error_pages: Option<ErrorPages>,
    pub maintenance: Option<Maintenance>,
    pub websocket: Option<WebSocket>,
    /// L4 listeners of this site's services (`streams`).
    pub streams: Option<Vec<Stream>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(default)]
    pub backends: Vec<S<String>>,
    /// The registry's instances of this service, instead of `backends`.
    pub service: Option<S<String>>,
    pub load_balancing: Option<Balance>,
    pub health_check: Option<HealthCheck>,
    pub passive_check: Option<PassiveCheck>,
    pub retries: Option<Retries>,
    pub circuit_breaker: Option<CircuitBreaker>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub path: Option<S<String>>,
    #[serde(rename = "match")]
    pub match_kind: Option<S<String>>,
    pub methods: Option<Vec<S<String>>>,
    pub priority: Option<S<String>>,
    pub backend: Option<S<String>>,
    pub backends: Option<Vec<S<String>>>,
    /// A named upstream of the site, or `{service: NAME}` for the registry's instances.
    pub upstream: Option<S<UpstreamRef>>,
    #[serde(rename = "static")]
    pub static_dir: Option<S<String>>,
    pub index: Option<Vec<String>>,
    /// A `static` route lists directories that have no index file.
    pub browse: Option<S<String>>,
    /// A `static` route answers paths that name no file with this file (an app's
    /// `index.html`), as nginx's `try_files $uri $uri/ /index.html`.
    pub fallback: Option<S<String>>,
    /// A `static` route serves files and directories whose names start with `.`.
    pub dotfiles: Option<S<String>>,
    pub redirect: Option<Redirect>,
    /// Answer with a fixed status and body.
    pub respond: Option<Respond>,
    pub strip_prefix: Option<S<String>>,
    pub rewrite: Option<Rewrite>,
    pub options: Option<Options>,
    /// This route's request-log settings (the site's otherwise).
    pub logging: Option<Logging>,
    /// This route's retention (the site's otherwise).
    pub data_retention: Option<DataRetention>,
    /// Traffic shared between upstreams by weight, instead of one `upstream`.
    pub split: Option<Split>,
}

/// What a route's `upstream` names.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum UpstreamRef {
    Name(String),
    Service(ServiceRef),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServiceRef {
    pub service: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub to: S<String>,
    pub code: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    pub status: S<String>,
    pub body: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    pub pattern: S<String>,
    pub replace: String,
}
