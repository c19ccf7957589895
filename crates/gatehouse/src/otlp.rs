//! OpenTelemetry export (cargo feature `otlp`, on by default): one server span per
//! request, in the request's W3C trace, posted in batches as OTLP/HTTP JSON to
//! `<opentelemetry.endpoint>/v1/traces`. The workers hand spans over a bounded queue
//! (full: dropped and counted); a task on the control runtime sends them, so a slow
//! collector never delays a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gatehouse_config::OtlpConfig;
use gatehouse_proxy::http::trace::hex;
use gatehouse_proxy::observe::AccessRecord;
use http_body_util::Full;
use serde_json::{Value, json};

/// Spans waiting; more are dropped.
const QUEUE: usize = 8192;
/// Spans per export at most.
const BATCH: usize = 512;
/// Longest a span waits before its batch is sent.
const LINGER: Duration = Duration::from_secs(1);

/// One finished request, as a span.
struct Span {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    start_ns: u128,
    end_ns: u128,
    method: String,
    path: String,
    host: String,
    site: String,
    route: String,
    status: u16,
    error: Option<String>,
}

pub struct Exporter {
    tx: tokio::sync::mpsc::Sender<Span>,
    dropped: Arc<AtomicU64>,
}

impl Exporter {
    /// Starts the export task on the current runtime.
    pub fn start(config: OtlpConfig) -> Exporter {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(export(config, rx, dropped.clone()));
        Exporter { tx, dropped }
    }

    /// Queues the span of a finished request (on a worker; never waits).
    pub fn record(&self, r: &AccessRecord) {
        let Some(t) = r.trace else { return };
        let start_ns = r.time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let span = Span {
            trace_id: t.trace_id,
            span_id: t.span_id,
            parent_id: t.parent_id,
            start_ns,
            end_ns: start_ns + r.duration.as_nanos(),
            method: r.method.as_ref().map_or_else(String::new, |m| m.as_str().to_string()),
            // The query stays out: it may carry secrets.
            path: r.path.split('?').next().unwrap_or_default().to_string(),
            host: r.host.clone(),
            site: r.site.as_deref().unwrap_or("").to_string(),
            route: r.route.clone().unwrap_or_default(),
            status: r.status,
            error: r.error.as_ref().map(|f| format!("{}: {}", f.side.as_str(), f.kind)),
        };
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn text(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}

fn body(config: &OtlpConfig, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut attributes = vec![
                text("http.request.method", &s.method),
                text("url.path", &s.path),
                text("server.address", &s.host),
                json!({"key": "http.response.status_code", "value": {"intValue": s.status.to_string()}}),
            ];
            if !s.site.is_empty() {
                attributes.push(text("gatehouse.site", &s.site));
                attributes.push(text("http.route", &s.route));
            }
            if let Some(e) = &s.error {
                attributes.push(text("error.type", e));
            }
            let mut span = json!({
                "traceId": hex(&s.trace_id),
                "spanId": hex(&s.span_id),
                "name": if s.route.is_empty() { s.method.clone() } else { format!("{} {}", s.method, s.route) },
                "kind": 2,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": attributes,
                // ERROR for 5xx (the server's failure), else unset.
                "status": {"code": if s.status >= 500 { 2 } else { 0 }},
            });
            if let Some(p) = s.parent_id {
                span["parentSpanId"] = json!(hex(&p));
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [text("service.name", &config.service_name)]},
        "scopeSpans": [{"scope": {"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
    }]})
}

async fn export(config: OtlpConfig, mut rx: tokio::sync::mpsc::Receiver<Span>, dropped: Arc<AtomicU64>) {
    let Some(client) = crate::outbound::client() else { return };
    let url = format!("{}/v1/traces", config.endpoint);
    let host = crate::outbound::host(&url);
    let mut told = 0;
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let payload = Bytes::from(body(&config, &batch).to_string());
        for attempt in 1..=2 {
            let req = http::Request::post(url.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(payload.clone()));
            let Ok(req) = req else { break };
            match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => break,
                Ok(Ok(resp)) => {
                    tracing::warn!(
                        host,
                        status = resp.status().as_u16(),
                        spans = batch.len(),
                        attempt,
                        "OTLP export refused"
                    )
                }
                Ok(Err(e)) => tracing::warn!(host, error = %e, spans = batch.len(), attempt, "OTLP export failed"),
                Err(_) => tracing::warn!(host, spans = batch.len(), attempt, "OTLP export timed out"),
            }
        }
        let now = dropped.load(Ordering::Relaxed);
        if now != told {
            tracing::warn!(dropped = now - told, "spans dropped: the OTLP export could not keep up");
            told = now;
        }
    }
}
