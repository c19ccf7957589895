//! Where access records go. `LineSink` writes the access line (target `access`, pretty or
//! JSON as `log.format` says) from a thread of its own, so formatting and the write to
//! stderr never run on a worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use super::AccessRecord;

/// Takes access records. Must never block the caller: a full sink drops the record and
/// counts it.
pub trait LogSink: Send + Sync {
    fn record(&self, record: AccessRecord);
}

/// Records waiting for the writer thread; beyond this they are dropped.
const QUEUE: usize = 8192;

/// Writes each record as one access-log event on its own thread.
pub struct LineSink {
    tx: SyncSender<AccessRecord>,
    dropped: Arc<AtomicU64>,
}

impl LineSink {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<AccessRecord>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let reported = dropped.clone();
        std::thread::Builder::new().name("gatehouse-access".into()).spawn(move || {
            let mut told = 0;
            while let Ok(r) = rx.recv() {
                write(&r);
                let now = reported.load(Ordering::Relaxed);
                if now != told {
                    tracing::warn!(dropped = now - told, "access records dropped: the log could not keep up");
                    told = now;
                }
            }
        })?;
        Ok(LineSink { tx, dropped })
    }
}

impl LogSink for LineSink {
    fn record(&self, record: AccessRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write(r: &AccessRecord) {
    let (side, kind, reason) = match &r.error {
        Some(f) => (f.side.as_str(), f.kind, f.reason.as_str()),
        None => ("-", "-", ""),
    };
    tracing::info!(
        target: "access",
        client = %r.client_label.as_deref().map_or_else(|| r.client.to_string(), str::to_string),
        method = r.method.as_ref().map_or("-", |m| m.as_str()),
        host = dash(&r.host),
        // The query stays out of the line: it may carry secrets (the database stores it
        // with their values redacted).
        path = dash(r.path.split('?').next().unwrap_or_default()),
        version = r.version.map_or("-", version),
        status = r.status,
        bytes_in = r.bytes_in,
        bytes_out = r.bytes_out,
        duration_us = r.duration.as_micros() as u64,
        site = r.site.as_deref().unwrap_or("-"),
        route = r.route.as_deref().unwrap_or("-"),
        upstream = r.backend.as_deref().unwrap_or("-"),
        retries = r.retries,
        error_side = side,
        error = kind,
        reason = dash(reason),
        request_id = r.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
        country = r.country.as_ref().and_then(|c| std::str::from_utf8(c).ok()).unwrap_or("-"),
        trace_id = r.trace.map_or_else(|| "-".to_string(), |t| crate::http::trace::hex(&t.trace_id)),
        span_id = r.trace.map_or_else(|| "-".to_string(), |t| crate::http::trace::hex(&t.span_id)),
    );
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "-",
    }
}
