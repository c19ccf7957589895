//! Webhooks: events (a certificate close to expiry, a failed renewal or reload, a high
//! error rate) posted to the URLs in `webhooks`, as generic JSON or a Discord embed.
//!
//! `Notifier::notify` never waits: it checks each webhook's throttle and queues a
//! delivery; deliveries run on the control runtime, a few at once, each retried with
//! backoff. Nothing here touches a proxy worker, so a slow or dead webhook endpoint never
//! affects proxying. The configuration is read from the running state at each event, so a
//! reload changes webhooks at once. URLs are secrets (Discord's carries a token): logs name
//! the host only.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use gatehouse_config::{WebhookConfig, WebhookFormat};
use gatehouse_proxy::StateHandle;
use http_body_util::Full;
use serde_json::{Value, json};

/// Attempts per delivery, and the pause before each retry.
const BACKOFF: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(4), Duration::from_secs(16)];
/// Time for one attempt (connect, send, answer).
const ATTEMPT: Duration = Duration::from_secs(10);
/// Deliveries waiting; more are dropped (and logged).
const QUEUE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// The embed's side colour on Discord.
    fn colour(self) -> u32 {
        match self {
            Severity::Info => 0x2e86de,
            Severity::Warning => 0xf0a500,
            Severity::Error => 0xd63031,
        }
    }
}

/// Something worth telling an administrator.
#[derive(Debug, Clone)]
pub struct Event {
    /// One of `gatehouse_config::WEBHOOK_EVENTS`.
    pub kind: &'static str,
    /// What the event is about (a certificate, a site); throttling is per kind and subject.
    pub subject: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub fields: Vec<(&'static str, String)>,
}

impl Event {
    /// The body posted for this event in `format`.
    pub fn payload(&self, format: WebhookFormat, time: SystemTime) -> Value {
        let unix = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match format {
            WebhookFormat::Json => json!({
                "event": self.kind,
                "severity": self.severity.as_str(),
                "subject": self.subject,
                "title": self.title,
                "message": self.message,
                "fields": self.fields.iter().map(|(k, v)| (k.to_string(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
                "time": unix,
            }),
            WebhookFormat::Discord => json!({
                "username": "Gatehouse",
                "embeds": [{
                    "title": cut(&self.title, 256),
                    "description": cut(&self.message, 4096),
                    "color": self.severity.colour(),
                    "fields": self.fields.iter().take(25).map(|(k, v)| json!({"name": k, "value": cut(v, 1024), "inline": true})).collect::<Vec<_>>(),
                    "footer": {"text": self.kind},
                    "timestamp": gatehouse_store::time::rfc3339(i64::try_from(unix).unwrap_or(0)),
                }],
            }),
        }
    }
}

/// `s` cut to at most `max` characters (Discord's limits are in characters).
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

use crate::outbound::{Client, host};

/// Sends events to the configured webhooks.
pub struct Notifier {
    state: StateHandle,
    tx: tokio::sync::mpsc::Sender<(WebhookConfig, Event)>,
    /// When each (webhook URL, kind, subject) was last sent.
    sent: Mutex<HashMap<(String, &'static str, String), Instant>>,
    /// Certificate thresholds already announced (subject, expiry, days).
    expiry: Mutex<HashSet<(String, i64, i64)>>,
}

impl Notifier {
    /// Starts the delivery task on the current runtime.
    pub fn start(state: StateHandle) -> Arc<Notifier> {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(deliver(rx));
        Arc::new(Notifier { state, tx, sent: Mutex::default(), expiry: Mutex::default() })
    }

    /// Queues `event` for every webhook that wants it and is not throttled for it.
    pub fn notify(&self, event: Event) {
        let config = self.state.load().config.clone();
        let now = Instant::now();
        for hook in config.webhooks.iter().filter(|w| w.wants(event.kind)) {
            {
                let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
                let key = (hook.url.clone(), event.kind, event.subject.clone());
                if let Some(last) = sent.get(&key)
                    && now.duration_since(*last) < hook.throttle
                {
                    tracing::debug!(event = event.kind, subject = %event.subject, "webhook throttled");
                    continue;
                }
                sent.insert(key, now);
                // Bounded: entries older than a day cannot throttle anything any more.
                if sent.len() > 10_000 {
                    sent.retain(|_, t| now.duration_since(*t) < Duration::from_secs(86_400));
                }
            }
            if self.tx.try_send((hook.clone(), event.clone())).is_err() {
                tracing::warn!(event = event.kind, host = %host(&hook.url), "webhook queue full; event dropped");
            }
        }
    }

    /// `cert_expiring` for each certificate at or under 30, 14 and 7 days left, once per
    /// threshold (per process) and certificate.
    pub fn check_expiry(&self, store: &gatehouse_proxy::tls::Store) {
        for c in store.certs() {
            let days = c.info.days_remaining();
            let Some(threshold) = [7, 14, 30].into_iter().find(|t| days <= *t) else { continue };
            let fresh = self.expiry.lock().unwrap_or_else(PoisonError::into_inner).insert((
                c.info.subject.clone(),
                c.info.not_after,
                threshold,
            ));
            if !fresh {
                continue;
            }
            self.notify(Event {
                kind: "cert_expiring",
                subject: format!("{} ({threshold} days)", c.info.subject),
                severity: match days {
                    ..=7 => Severity::Error,
                    8..=14 => Severity::Warning,
                    _ => Severity::Info,
                },
                title: format!("Certificate expires in {days} days"),
                message: format!("The certificate for {} expires in {days} days.", c.info.names.join(", ")),
                fields: vec![
                    ("names", c.info.names.join(", ")),
                    ("days_left", days.to_string()),
                    ("source", c.info.source.clone()),
                ],
            });
        }
    }
}

async fn deliver(mut rx: tokio::sync::mpsc::Receiver<(WebhookConfig, Event)>) {
    let mut client = None;
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    while let Some((hook, event)) = rx.recv().await {
        if client.is_none() {
            client = crate::outbound::client();
        }
        let Some(c) = client.clone() else { continue };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        tokio::spawn(async move {
            let _slot = slot;
            send(&c, &hook, &event).await;
        });
    }
}

/// Posts one event, retrying on failure (no answer, or a 5xx or 429 answer).
async fn send(client: &Client, hook: &WebhookConfig, event: &Event) {
    let body = Bytes::from(event.payload(hook.format, SystemTime::now()).to_string());
    let host = host(&hook.url);
    for (attempt, pause) in std::iter::once(Duration::ZERO).chain(BACKOFF).enumerate() {
        if !pause.is_zero() {
            // A little jitter, so retries of many events do not arrive together.
            tokio::time::sleep(pause + Duration::from_millis(fastrand_ms())).await;
        }
        let req = http::Request::post(hook.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("Gatehouse/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()));
        let Ok(req) = req else {
            tracing::warn!(host, "webhook URL not usable; event dropped");
            return;
        };
        let outcome = tokio::time::timeout(ATTEMPT, client.request(req)).await;
        let status = match outcome {
            Ok(Ok(resp)) => resp.status(),
            Ok(Err(e)) => {
                tracing::warn!(host, event = event.kind, attempt = attempt + 1, error = %e, "webhook delivery failed");
                continue;
            }
            Err(_) => {
                tracing::warn!(host, event = event.kind, attempt = attempt + 1, "webhook delivery timed out");
                continue;
            }
        };
        if status.is_success() {
            tracing::info!(host, event = event.kind, "webhook delivered");
            return;
        }
        if !(status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS) {
            tracing::warn!(host, event = event.kind, status = status.as_u16(), "webhook refused; not retried");
            return;
        }
        tracing::warn!(
            host,
            event = event.kind,
            attempt = attempt + 1,
            status = status.as_u16(),
            "webhook delivery failed"
        );
    }
    tracing::warn!(host, event = event.kind, "webhook not delivered after every retry; event dropped");
}

/// Up to 250 ms of jitter, from the clock's low bits (no randomness needed).
fn fastrand_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()) % 250)
}

/// Watches each site's share of 5xx answers over `alerts.window` (from the metrics'
/// counts) and sends `high_error_rate` when it reaches `alerts.error_rate` with at least
/// `alerts.min_requests` requests.
pub async fn watch_errors(notifier: Arc<Notifier>, metrics: Arc<crate::metrics::Metrics>) {
    // Per site: (when, requests, 5xx answers) samples, oldest first.
    let mut samples: HashMap<String, std::collections::VecDeque<(Instant, u64, u64)>> = HashMap::new();
    let mut last = Instant::now();
    loop {
        let alerts = notifier.state.load().config.alerts;
        let tick = (alerts.window / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        for (site, (requests, errors)) in metrics.by_site() {
            // A site not seen at the last look had nothing counted then.
            let history = samples.entry(site.clone()).or_insert_with(|| [(last, 0, 0)].into());
            history.push_back((now, requests, errors));
            // Keep one sample at or before the window's start, for the difference.
            while history.len() > 2 && history.get(1).is_some_and(|s| now.duration_since(s.0) >= alerts.window) {
                history.pop_front();
            }
            let Some(&(_, r0, e0)) = history.front() else { continue };
            let (n, bad) = (requests.saturating_sub(r0), errors.saturating_sub(e0));
            if n >= alerts.min_requests && n > 0 && bad as f64 / n as f64 >= alerts.error_rate {
                let name = if site.is_empty() { "(no site)".to_string() } else { site.clone() };
                let share = bad as f64 * 100.0 / n as f64;
                notifier.notify(Event {
                    kind: "high_error_rate",
                    subject: site.clone(),
                    severity: Severity::Error,
                    title: format!("High error rate on {name}"),
                    message: format!(
                        "{bad} of {n} requests to {name} ({share:.0}%) answered 5xx in the last {}s.",
                        alerts.window.as_secs()
                    ),
                    fields: vec![
                        ("site", name),
                        ("requests", n.to_string()),
                        ("errors_5xx", bad.to_string()),
                        ("error_rate", format!("{share:.1}%")),
                    ],
                });
            }
        }
        last = now;
    }
}

/// Sends `failed_login_spike` and `waf_block_spike` when failed logins or WAF blocks
/// (every route together) reach `alerts.failed_logins` / `alerts.waf_blocks` within
/// `alerts.window`: credential stuffing and scanners, as they start.
pub async fn watch_spikes(notifier: Arc<Notifier>, metrics: Arc<crate::metrics::Metrics>) {
    // (when, failed logins, WAF blocks) samples, oldest first.
    let mut history: std::collections::VecDeque<(Instant, u64, u64)> = [(Instant::now(), 0, 0)].into();
    loop {
        let alerts = notifier.state.load().config.alerts;
        let tick = (alerts.window / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let (logins, blocks) = metrics.security_totals();
        history.push_back((now, logins, blocks));
        while history.len() > 2 && history.get(1).is_some_and(|s| now.duration_since(s.0) >= alerts.window) {
            history.pop_front();
        }
        let Some(&(_, l0, b0)) = history.front() else { continue };
        let secs = alerts.window.as_secs();
        for (kind, what, n, threshold) in [
            ("failed_login_spike", "failed logins", logins.saturating_sub(l0), alerts.failed_logins),
            ("waf_block_spike", "requests blocked by the WAF", blocks.saturating_sub(b0), alerts.waf_blocks),
        ] {
            if threshold > 0 && n >= threshold {
                notifier.notify(Event {
                    kind,
                    subject: kind.to_string(),
                    severity: Severity::Warning,
                    title: format!("{n} {what} in {secs}s"),
                    message: format!(
                        "{n} {what} in the last {secs}s (alert at {threshold}); see /api/logs and /api/bans."
                    ),
                    fields: vec![("count", n.to_string()), ("window_seconds", secs.to_string())],
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        use gatehouse_store::time::rfc3339;
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_533_983), "2026-12-06T05:13:03Z");
    }

    #[test]
    fn discord_payloads_stay_within_discord_limits() {
        let e = Event {
            kind: "config_reload_failed",
            subject: "reload".into(),
            severity: Severity::Error,
            title: "t".repeat(300),
            message: "m".repeat(5000),
            fields: vec![("errors", "e".repeat(2000))],
        };
        let v = e.payload(WebhookFormat::Discord, SystemTime::UNIX_EPOCH);
        let embed = &v["embeds"][0];
        assert_eq!(embed["title"].as_str().map(|s| s.chars().count()), Some(256));
        assert_eq!(embed["description"].as_str().map(|s| s.chars().count()), Some(4096));
        assert_eq!(embed["fields"][0]["value"].as_str().map(|s| s.chars().count()), Some(1024));
        assert_eq!(embed["color"], 0xd63031);
        let j = e.payload(WebhookFormat::Json, SystemTime::UNIX_EPOCH);
        assert_eq!((j["event"].as_str(), j["severity"].as_str()), (Some("config_reload_failed"), Some("error")));
    }
}
