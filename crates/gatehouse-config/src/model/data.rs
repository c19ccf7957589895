//! What is stored and sent about requests: the request log and its masking, retention,
//! webhooks, alerts, OTLP export and backups.

use super::*;

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
