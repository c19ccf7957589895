//! What Gatehouse records and where it tells: `logging` and `data_retention` (main file,
//! site files, routes), `log.access_file`, `webhooks`, `alerts`, `backups` and
//! `opentelemetry`.

use std::path::Path;
use std::time::Duration;

use super::Ctx;
use crate::model::*;
use crate::raw::{self, S};

/// An `http://` or `https://` URL with a host.
fn is_http_url(url: &str) -> bool {
    http::Uri::try_from(url)
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
}

/// `log.access_file` (with its size and count of rotated files).
pub(super) fn access_file(cx: &mut Ctx<'_>, l: &raw::Log, base: &Path) -> Option<AccessFile> {
    let f = l.access_file.as_ref()?;
    let max_bytes = cx.size_in(l.access_file_max.as_ref(), "log.access_file_max", 100 << 20, (64 << 10, 1 << 40));
    let keep = cx.count(l.access_file_keep.as_ref(), "log.access_file_keep", 5, 1000);
    match f.value.trim() {
        "" => {
            cx.err_at(f, "log.access_file", "give a file path, or - for stdout");
            None
        }
        "-" => Some(AccessFile::Stdout),
        p => Some(AccessFile::File { path: base.join(p), max_bytes, keep }),
    }
}

pub(super) fn webhooks(cx: &mut Ctx<'_>, base: &Path, list: &[raw::Webhook]) -> Vec<WebhookConfig> {
    let mut webhooks = Vec::new();
    for (i, w) in list.iter().enumerate() {
        let path = format!("webhooks[{i}]");
        let Some(url) = cx.secret(base, w.url.as_ref(), w.url_file.as_ref(), &format!("{path}.url")) else {
            if w.url.is_none() && w.url_file.is_none() {
                cx.err(None, format!("{path}.url"), "a webhook needs url (or url_file)");
            }
            continue;
        };
        let url = url.trim();
        if !is_http_url(url) {
            // The URL may hold a token: the message does not repeat it.
            let line = w.url.as_ref().or(w.url_file.as_ref()).map(|v| v.referenced.line());
            cx.err(line, format!("{path}.url"), "expected an http:// or https:// URL with a host");
        }
        let format = match w.format.as_ref().map(|f| (f, f.value.trim())) {
            None | Some((_, "json")) => WebhookFormat::Json,
            Some((_, "discord")) => WebhookFormat::Discord,
            Some((f, other)) => {
                cx.err_at(f, format!("{path}.format"), format!("unknown format {other:?}; expected json or discord"));
                WebhookFormat::Json
            }
        };
        let mut events = Vec::new();
        for e in w.events.iter().flatten() {
            let name = e.value.trim();
            if WEBHOOK_EVENTS.contains(&name) {
                events.push(name.to_string());
            } else {
                cx.err_at(
                    e,
                    format!("{path}.events"),
                    format!("unknown event {name:?}; known: {}", WEBHOOK_EVENTS.join(", ")),
                );
            }
        }
        let throttle = cx.duration(w.throttle.as_ref(), &format!("{path}.throttle"), Duration::from_secs(900));
        webhooks.push(WebhookConfig { url: url.to_string(), format, events, throttle });
    }
    webhooks
}

pub(super) fn alerts(cx: &mut Ctx<'_>, raw: &raw::Alerts) -> AlertsConfig {
    let error_rate = cx.share(raw.error_rate.as_ref(), "alerts.error_rate", 0.1, true);
    let window = cx.duration(raw.window.as_ref(), "alerts.window", Duration::from_secs(300));
    if let Some(w) = &raw.window
        && window < Duration::from_secs(1)
    {
        cx.err_at(w, "alerts.window", "the window must be at least 1s");
    }
    let min_requests = cx.count(raw.min_requests.as_ref(), "alerts.min_requests", 20, 1_000_000_000) as u64;
    let failed_logins = cx.count(raw.failed_logins.as_ref(), "alerts.failed_logins", 20, 1_000_000_000) as u64;
    let waf_blocks = cx.count(raw.waf_blocks.as_ref(), "alerts.waf_blocks", 50, 1_000_000_000) as u64;
    AlertsConfig { error_rate, window: window.max(Duration::from_secs(1)), min_requests, failed_logins, waf_blocks }
}

pub(super) fn backups(cx: &mut Ctx<'_>, raw: &raw::Backups, base: &Path, storage_path: &Path) -> BackupsConfig {
    let day = |d: u64| Duration::from_secs(d * 86_400);
    let enabled = cx.flag(raw.enabled.as_ref(), "backups.enabled", true);
    let dir = match &raw.dir {
        Some(d) => base.join(d.value.trim()),
        None => storage_path.parent().unwrap_or(Path::new(".")).join("backups"),
    };
    let interval = cx.duration(raw.interval.as_ref(), "backups.interval", Duration::from_secs(3600));
    if let Some(v) = &raw.interval
        && interval < Duration::from_secs(60)
    {
        cx.err_at(v, "backups.interval", "take backups at most once a minute (at least 1m)");
    }
    let hourly = cx.duration(raw.hourly.as_ref(), "backups.hourly", day(7));
    let daily = cx.duration(raw.daily.as_ref(), "backups.daily", day(28));
    let weekly = cx.duration(raw.weekly.as_ref(), "backups.weekly", day(91));
    if let Some(v) = &raw.daily
        && daily < hourly
    {
        cx.err_at(v, "backups.daily", "must be at least backups.hourly (the tiers follow each other)");
    }
    if let Some(v) = &raw.weekly
        && weekly < daily
    {
        cx.err_at(v, "backups.weekly", "must be at least backups.daily (the tiers follow each other)");
    }
    BackupsConfig { enabled, dir, interval: interval.max(Duration::from_secs(60)), hourly, daily, weekly }
}

pub(super) fn otlp(cx: &mut Ctx<'_>, o: &raw::OpenTelemetry) -> Option<OtlpConfig> {
    let endpoint = o.endpoint.as_ref()?;
    let url = endpoint.value.trim().trim_end_matches('/');
    if !is_http_url(url) {
        cx.err_at(
            endpoint,
            "opentelemetry.endpoint",
            "expected the collector's http:// or https:// URL (OTLP over HTTP, e.g. http://127.0.0.1:4318)",
        );
        return None;
    }
    let service_name = o.service_name.as_ref().map_or("gatehouse".to_string(), |s| s.value.trim().to_string());
    Some(OtlpConfig { endpoint: url.to_string(), service_name })
}

/// `logging` of the main file (`inherit: None`) or of a site file (unset keys from the
/// main file's).
pub(super) fn logging(
    cx: &mut Ctx<'_>,
    raw: &raw::Logging,
    at: &str,
    inherit: Option<&LoggingConfig>,
) -> LoggingConfig {
    let requests = cx.flag(raw.requests.as_ref(), &format!("{at}.requests"), inherit.is_none_or(|l| l.requests));
    let mask_pii = cx.flag(raw.mask_pii.as_ref(), &format!("{at}.mask_pii"), true);
    let inherited = inherit.map_or(MaskIpMethod::LastOctet, |l| l.mask_ip);
    let method = match raw.mask_ip_method.as_ref().map(|v| (v, v.value.trim())) {
        None => inherited,
        Some((_, "last_octet")) => MaskIpMethod::LastOctet,
        Some((_, "none")) => MaskIpMethod::None,
        Some((_, "hash")) => MaskIpMethod::Hash,
        Some((v, other)) => {
            cx.err_at(
                v,
                format!("{at}.mask_ip_method"),
                format!("unknown method {other:?}; expected last_octet, hash or none"),
            );
            inherited
        }
    };
    let mask_ip = if raw.mask_pii.is_some() && !mask_pii { MaskIpMethod::None } else { method };
    let mut strip_headers = inherit.map(|l| l.strip_headers.clone()).unwrap_or_default();
    for h in raw.strip_headers.iter().flatten() {
        match http::HeaderName::from_bytes(h.value.trim().as_bytes()) {
            Ok(n) => strip_headers.push(n.as_str().to_string()),
            Err(_) => cx.err_at(h, format!("{at}.strip_headers"), format!("{:?} is not a header name", h.value)),
        }
    }
    let mut secret_params = inherit.map(|l| l.secret_params.clone()).unwrap_or_default();
    for w in raw.secret_params.iter().flatten() {
        let word = w.value.trim().to_ascii_lowercase();
        if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
            cx.err_at(w, format!("{at}.secret_params"), format!("{:?} is not a query parameter name", w.value));
        } else {
            secret_params.push(word);
        }
    }
    let mut redact_paths = inherit.map(|l| l.redact_paths.clone()).unwrap_or_default();
    for p in raw.redact_paths.iter().flatten() {
        match PathPattern::parse(p.value.trim()) {
            Ok(pattern) => redact_paths.push(pattern),
            Err(e) => cx.err_at(p, format!("{at}.redact_paths"), e),
        }
    }
    LoggingConfig { requests, mask_ip, strip_headers, secret_params, redact_paths }
}

/// `data_retention` of the main file (`inherit: None`) or of a site file (unset keys from
/// the main file's; the audit log is the instance's, not a site's).
pub(super) fn retention(
    cx: &mut Ctx<'_>,
    raw: &raw::DataRetention,
    at: &str,
    inherit: Option<&RetentionConfig>,
) -> RetentionConfig {
    let day = |d: u64| Duration::from_secs(d * 86_400);
    let base = inherit.copied().unwrap_or(RetentionConfig {
        access: day(7),
        errors: day(30),
        security: day(90),
        audit: day(365),
    });
    let mut keep = |v: Option<&S<String>>, key: &str, default: Duration| {
        let path = format!("{at}.{key}");
        let d = cx.duration(v, &path, default);
        match v {
            Some(s) if d < Duration::from_secs(3600) => {
                cx.err_at(s, path, "keep records at least 1h (the job that deletes them runs daily)");
                default
            }
            _ => d,
        }
    };
    let access = keep(raw.access_logs.as_ref(), "access_logs", base.access);
    let errors = keep(raw.error_logs.as_ref(), "error_logs", base.errors);
    let security = keep(raw.security_logs.as_ref(), "security_logs", base.security);
    let audit = keep(raw.audit_logs.as_ref(), "audit_logs", base.audit);
    if let (Some(_), Some(v)) = (inherit, &raw.audit_logs) {
        cx.err_at(
            v,
            format!("{at}.audit_logs"),
            "the audit log belongs to the whole instance: set audit_logs in the main file",
        );
    }
    RetentionConfig { access, errors, security, audit }
}
