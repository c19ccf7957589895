//! Access records: one per request, emitted when its response has ended (body finished,
//! failed or dropped) with the status the client saw and the bytes that moved, into a
//! `LogSink`.
//!
//! The request path never waits here: a sink takes a record or drops it (and counts the
//! drop). Today's sink writes the access line; the SQLite store plugs in as another sink.
//! Nothing is built when no sink is installed (the access log off): one branch per request.

pub mod connections;
mod logged;
mod sink;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Version};
use tokio::time::Instant;

use crate::body::Progress;
use crate::error::{ProxyError, Side};

pub use logged::Logged;
pub use sink::{LineSink, LogSink};

/// A site's own request-log settings (its file's `logging`), carried by its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteLog {
    /// Store this site's requests in the database.
    pub requests: bool,
    pub mask_ip: gatehouse_config::MaskIpMethod,
}

/// What went wrong with a request, for its record.
#[derive(Debug, Clone)]
pub struct Failure {
    pub side: Side,
    /// A stable short name (`ProxyError::kind`, or `response_body` / `client_gone`).
    pub kind: &'static str,
    pub reason: String,
}

impl Failure {
    pub fn of(e: &ProxyError) -> Self {
        Failure { side: e.side(), kind: e.kind(), reason: e.to_string() }
    }

    /// The client left before its response was complete.
    pub fn client_gone(reason: impl Into<String>) -> Self {
        Failure { side: Side::Client, kind: "client_gone", reason: reason.into() }
    }

    /// The backend's response body broke off after its head.
    pub fn response_body(reason: impl Into<String>) -> Self {
        Failure { side: Side::Backend, kind: "response_body", reason: reason.into() }
    }
}

/// One request, as it ended.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request head was complete.
    pub time: SystemTime,
    pub duration: Duration,
    pub request_id: Option<HeaderValue>,
    /// The request's W3C trace and Gatehouse's span in it.
    pub trace: Option<crate::http::trace::Trace>,
    /// The client: the peer, or the address `trusted_proxies` forwarding vouches for.
    pub client: IpAddr,
    /// What the access line shows for the client instead of `client` (a hashed form).
    pub client_label: Option<String>,
    /// The client's country (ISO code), when a GeoIP database knows it.
    pub country: Option<[u8; 2]>,
    /// `None` for requests refused before their head could be read.
    pub version: Option<Version>,
    /// `None` for requests refused before their head could be read.
    pub method: Option<Method>,
    pub host: String,
    /// Path and query, as the client sent them.
    pub path: String,
    pub user_agent: Option<HeaderValue>,
    pub site: Option<Arc<str>>,
    /// The site's own logging settings, when its file has them.
    pub site_log: Option<SiteLog>,
    pub route: Option<String>,
    pub backend: Option<String>,
    /// The status the client saw (for a response cut off midway, the one it started with).
    pub status: u16,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes handed to the client connection.
    pub bytes_out: u64,
    /// Attempts beyond the first (a stale pooled connection, a failed connect).
    pub retries: u32,
    pub error: Option<Failure>,
    /// Over the route's `slow_request` thresholds.
    pub slow: Option<Slow>,
    /// What a security filter did (refused or flagged the request), for the metrics.
    pub flag: Option<Flag>,
}

/// A security filter's decision on a request: kind (`waf_blocked`, `rate_limited`…) and
/// the rule that made it.
#[derive(Debug, Clone)]
pub struct Flag {
    pub kind: &'static str,
    pub rule: Arc<str>,
}

/// How slow a request was, against its route's `slow_request` thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    Warning,
    Critical,
}

impl Slow {
    pub fn as_str(self) -> &'static str {
        match self {
            Slow::Warning => "warning",
            Slow::Critical => "critical",
        }
    }
}

impl AccessRecord {
    /// A record for a request refused before it reached the pipeline (malformed or too
    /// large head, timeout before the head was complete, hyper's own answers).
    pub fn early(client: IpAddr, status: u16, reason: &str) -> Self {
        AccessRecord {
            time: SystemTime::now(),
            duration: Duration::ZERO,
            request_id: None,
            trace: None,
            client,
            client_label: None,
            country: None,
            version: None,
            method: None,
            host: String::new(),
            path: String::new(),
            user_agent: None,
            site: None,
            site_log: None,
            route: None,
            backend: None,
            status,
            bytes_in: 0,
            bytes_out: 0,
            retries: 0,
            error: Some(Failure { side: Side::Client, kind: "bad_request_head", reason: reason.to_string() }),
            slow: None,
            flag: None,
        }
    }
}

/// The access record of a request not logged yet. It is filled in as the pipeline goes
/// (`routed`, `tried`, `watch`), marked when the pipeline has a response (`respond`), and
/// emitted when that response has ended (`finish`). Dropped before that, it is emitted all
/// the same, so no request is missing from the log:
/// - before a response existed, the client went away (its connection closed, its HTTP/2
///   stream was reset) and the server dropped the request: status 499, nginx's "client
///   closed request", on the client's side;
/// - mid-response, the connection's task was dropped, which happens when the shutdown
///   timeout ends the connections still open: the status sent, cut by `shutdown`.
pub struct Pending {
    /// `None` once emitted.
    record: Option<AccessRecord>,
    started: Instant,
    /// The pipeline has a response (`record.status` is its status).
    responded: bool,
    /// Counts the request body's bytes once it streams to a backend.
    progress: Option<Arc<Progress>>,
    sink: Arc<dyn LogSink>,
    /// The route's `slow_request` thresholds (warning, critical).
    slow: (Option<Duration>, Option<Duration>),
}

impl Pending {
    pub fn new(record: AccessRecord, started: Instant, sink: Arc<dyn LogSink>) -> Self {
        Pending { record: Some(record), started, responded: false, progress: None, sink, slow: (None, None) }
    }

    /// The request body's bytes are counted by `progress`.
    pub fn watch(&mut self, progress: Arc<Progress>) {
        self.progress = Some(progress);
    }

    /// Routing found the request's site and route.
    pub fn routed(&mut self, site: &Arc<str>, route: &gatehouse_config::Route, site_log: Option<SiteLog>) {
        self.slow = (route.options.slow_warning, route.options.slow_critical);
        let route = route.id.as_str();
        if let Some(r) = &mut self.record {
            r.site = Some(site.clone());
            r.route = Some(route.to_string());
            r.site_log = site_log;
        }
    }

    /// An attempt goes to `backend` (its URL).
    pub fn tried(&mut self, backend: String, retries: u32) {
        if let Some(r) = &mut self.record {
            r.backend = Some(backend);
            r.retries = retries;
        }
    }

    /// The pipeline answers with `status` (and `error`, when it answers a failure).
    pub fn respond(&mut self, status: u16, error: Option<Failure>) {
        if let Some(r) = &mut self.record {
            r.status = status;
            r.error = error;
        }
        self.responded = true;
    }

    /// Notes what a security filter did with the request.
    pub fn flag(&mut self, flag: Flag) {
        if let Some(r) = &mut self.record {
            r.flag = Some(flag);
        }
    }

    /// The status the response started with.
    pub fn status(&self) -> u16 {
        self.record.as_ref().map_or(0, |r| r.status)
    }

    /// The response ended: `status` is what the client saw, `bytes_out` what it was
    /// given, `cut` why the body did not end normally.
    pub fn finish(mut self, status: u16, bytes_out: u64, cut: Option<Failure>) {
        self.emit(status, bytes_out, cut);
    }

    fn emit(&mut self, status: u16, bytes_out: u64, cut: Option<Failure>) {
        let Some(mut record) = self.record.take() else { return };
        record.status = status;
        record.bytes_out = bytes_out;
        record.duration = self.started.elapsed();
        if let Some(p) = &self.progress {
            record.bytes_in = p.bytes();
        }
        if let Some(cut) = cut {
            // The first failure is the cause; a cut after it is its consequence.
            record.error.get_or_insert(cut);
        }
        record.slow = match self.slow {
            (_, Some(c)) if record.duration >= c => Some(Slow::Critical),
            (Some(w), _) if record.duration >= w => Some(Slow::Warning),
            _ => None,
        };
        if let Some(level) = record.slow {
            tracing::warn!(
                target: "gatehouse::slow",
                level = level.as_str(),
                request_id = record.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
                route = record.route.as_deref().unwrap_or(""),
                backend = record.backend.as_deref().unwrap_or(""),
                status = record.status,
                duration_ms = record.duration.as_millis() as u64,
                "slow request"
            );
        }
        self.sink.record(record);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.record.is_none() {
            return;
        }
        if self.responded {
            let cut = Failure {
                side: Side::Gatehouse,
                kind: "shutdown",
                reason: "the response was cut off when the shutdown timeout ended the connection".into(),
            };
            self.emit(self.status(), 0, Some(cut));
        } else {
            self.emit(499, 0, Some(Failure::client_gone("the client went away before the response was ready")));
        }
    }
}
