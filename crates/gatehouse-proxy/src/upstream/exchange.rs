//! One attempt at one backend: get a connection (pooled or new, trying each of the
//! backend's addresses), send the request, wait for the response head. The same function
//! serves every kind of backend connection: the inline HTTP/1.1 client, hyper's HTTP/1.1
//! (upgrades, TLS) and HTTP/2. The outcome is a response or a `ProxyError` that says whose
//! fault it was and whether another attempt is safe; the caller's retry loop decides, and
//! `report` is the one place an outcome is counted against a backend.
//!
//! Must not choose backends (`select` does) nor build the request (`http::proxy` does).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gatehouse_config::RouteOptions;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::breaker::Transition;
use super::pool::{self, Conn};
use super::{ActiveGuard, BackendState, Group, h1};
use crate::body::{Outgoing, Progress, UpstreamBody};
use crate::error::{ProxyError, Side, client_body_error, find_body_error};
use crate::health::{Event, EventKind};
use crate::http::header as hdr;
use crate::timer::after;

/// A request ready to go to a backend.
pub struct Outbound {
    pub parts: http::request::Parts,
    pub body: Outgoing,
    /// How far the request body has got (`None` for a bodiless request).
    pub progress: Option<Arc<Progress>>,
    /// The forwarding fields, when they have not been put into `parts.headers` yet.
    pub forwarding: Option<hdr::Forwarding>,
    /// The path and query to send when they are not the client's own.
    pub pq: Option<String>,
    /// The request named no host: it gets the backend's.
    pub host_missing: bool,
    /// The client asked for trailers (`TE: trailers`), which HTTP/2 backends need to hear.
    pub wants_trailers: bool,
    /// The client side of a protocol upgrade (WebSocket).
    pub client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The site's limits on the tunnel an upgrade opens: its slot (released when the tunnel
    /// ends) and how long it may last.
    pub tunnel: Option<Tunnel>,
    /// When the request left for the backend; the read timeout counts from here (or from
    /// the end of the request body).
    pub sent_at: Instant,
    /// The request counted in flight at the backend tried last, kept for a second attempt
    /// at the same backend (which is then not counted twice).
    pub active: Option<ActiveGuard>,
    /// The request's parts and body have gone to hyper: there is nothing left to send
    /// again, whatever the error says.
    pub consumed: bool,
}

/// A WebSocket tunnel's place in its site's `websocket.max_connections`, and its
/// `max_duration`.
pub struct Tunnel {
    pub open: Option<Arc<std::sync::atomic::AtomicUsize>>,
    pub max_duration: Option<Duration>,
}

impl Tunnel {
    /// Takes a slot under `max` (0: no limit); `None` when all are taken.
    pub fn take(
        open: &Arc<std::sync::atomic::AtomicUsize>,
        max: usize,
        max_duration: Option<Duration>,
    ) -> Option<Tunnel> {
        if max == 0 {
            return Some(Tunnel { open: None, max_duration });
        }
        open.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Tunnel { open: Some(open.clone()), max_duration })
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How the response should come back.
#[derive(Clone, Copy)]
pub struct Wanted<'a> {
    pub opts: &'a RouteOptions,
    /// The response's fields may stay as lines (`h1::Wanted::verbatim`).
    pub verbatim: bool,
    pub want: pool::Want,
}

/// One attempt: a connection to `backend`, the request, the response head.
pub async fn attempt(
    group: &Group,
    backend: &Arc<BackendState>,
    out: &mut Outbound,
    wanted: Wanted<'_>,
) -> Result<Response<Outgoing>, ProxyError> {
    let opts = wanted.opts;
    let conn = connect(group, backend, opts.connect_timeout, wanted.want, out.sent_at).await?;
    if let (Conn::H2(_), Outgoing::Request(b)) = (&conn, &mut out.body) {
        b.keep_trailers(&opts.request_headers);
    }
    let active = match out.active.take() {
        Some(a) if a.counts(backend) => a,
        _ => ActiveGuard::new(backend),
    };
    let label = || backend.backend.url();
    if out.host_missing
        && !out.parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(&backend.backend.addr.authority())
    {
        out.parts.headers.insert(header::HOST, v);
    }
    if !matches!(conn, Conn::Raw(_))
        && let Some(f) = out.forwarding.take()
    {
        f.apply(&mut out.parts.headers);
    }
    let body = std::mem::replace(&mut out.body, Outgoing::Empty);
    let (response, pooled) = match conn {
        Conn::Raw(raw) => {
            // Plain HTTP/1.1: the inline client sends, waits (read timeout counted from the
            // end of the request body) and returns a body that reads the socket itself.
            let parts = &mut out.parts;
            parts.version = Version::HTTP_11;
            if let Some(pq) = out.pq.take() {
                parts.uri = Uri::try_from(pq).map_err(|_| ProxyError::BadRequest("invalid path"))?;
            }
            let reused = raw.reused;
            let timing = (out.sent_at, opts.read_timeout);
            let h1_wanted = h1::Wanted { limit: opts.max_response_body, verbatim: wanted.verbatim };
            let sent = h1::send(raw, parts, body, out.forwarding.as_ref(), timing, h1_wanted, active).await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(failed) if failed.unanswered && reused => {
                    out.active = Some(failed.active);
                    return Err(ProxyError::Stale { backend: label(), reason: failed.error.to_string() });
                }
                Err(failed) => return Err(raw_error(failed.error, label())),
            };
            return finish(resp, opts, &label, false);
        }
        Conn::H1(mut pooled) => {
            out.consumed = true;
            let mut parts = take_parts(&mut out.parts);
            parts.version = Version::HTTP_11;
            if let Some(pq) = out.pq.take() {
                parts.uri = Uri::try_from(pq).map_err(|_| ProxyError::BadRequest("invalid path"))?;
            }
            let req = http::Request::from_parts(parts, body);
            let sent = Box::pin(with_read_timeout(
                opts.read_timeout,
                out.sent_at,
                out.progress.as_deref(),
                pooled.tx.send_request(req),
            ))
            .await;
            (sent, Some(pooled))
        }
        Conn::H2(mut tx) => {
            out.consumed = true;
            let mut parts = take_parts(&mut out.parts);
            parts.version = Version::HTTP_2;
            if out.wants_trailers {
                parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            let host = backend.backend.addr.authority();
            let pq = out.pq.as_deref().or(parts.uri.path_and_query().map(|p| p.as_str())).unwrap_or("/");
            let scheme = if backend.backend.tls { "https" } else { "http" };
            parts.uri =
                Uri::try_from(format!("{scheme}://{host}{pq}")).map_err(|_| ProxyError::BadRequest("invalid path"))?;
            let req = http::Request::from_parts(parts, body);
            let sent = with_read_timeout(opts.read_timeout, out.sent_at, out.progress.as_deref(), tx.send_request(req));
            (Box::pin(sent).await, None)
        }
    };
    let mut response = match response {
        Err(()) => return Err(ProxyError::ReadTimeout { backend: label() }),
        Ok(Err(e)) => {
            return Err(match find_body_error(&e).and_then(client_body_error) {
                Some(client) => client,
                None => ProxyError::Upstream { backend: label(), reason: e.to_string() },
            });
        }
        Ok(Ok(r)) => r,
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_side) = out.client_upgrade.take()
    {
        let backend_side = hyper::upgrade::on(&mut response);
        let mut tunnel = out.tunnel.take();
        tokio::spawn(async move {
            let _active = active;
            let limit = tunnel.as_ref().and_then(|t| t.max_duration).unwrap_or(Duration::MAX);
            match (client_side.await, backend_side.await) {
                (Ok(a), Ok(b)) => {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
                    let timed_out = tokio::time::timeout(limit, copy).await.is_err();
                    // The slot is free before the client sees the connection close.
                    drop(tunnel.take());
                    if timed_out {
                        tracing::debug!("WebSocket closed at websocket.max_duration");
                    }
                }
                _ => tracing::debug!("upgrade did not complete"),
            }
        });
        let (mut rp, _) = response.into_parts();
        hdr::strip_hop_by_hop(&mut rp.headers, true);
        return Ok(Response::from_parts(rp, Outgoing::Empty));
    }

    let resp = response.map(|b| {
        Outgoing::Upstream(Box::new(UpstreamBody::new(
            b,
            opts.read_timeout,
            opts.max_response_body,
            pooled,
            Some(active),
        )))
    });
    finish(resp, opts, &label, true)
}

/// Takes (or opens) a connection to one of the backend's addresses. A host name may
/// resolve to several: requests rotate over them, and a connection failure tries the next
/// one before giving up on the backend.
async fn connect(
    group: &Group,
    backend: &BackendState,
    connect_timeout: Duration,
    want: pool::Want,
    now: Instant,
) -> Result<Conn, ProxyError> {
    let tls = group.tls.as_ref();
    let targets = backend.targets.load();
    if targets.is_empty() {
        return Err(ProxyError::Unresolved { backend: backend.backend.url() });
    }
    let start = if targets.len() == 1 { 0 } else { backend.requests.load(Ordering::Relaxed) as usize };
    let mut last = None;
    for i in 0..targets.len() {
        let target = &targets[(start + i) % targets.len()];
        let key = pool::Key { target: target.clone(), tls: group.tls_profile };
        match pool::checkout(backend, &key, &group.config.pool, connect_timeout, want, tls, now).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(target: "gatehouse::proxy", backend = %backend.backend.url(), address = ?target, error = %e, "backend connection failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ProxyError::Connect { backend: backend.backend.url(), reason: "no address".into() }))
}

/// Counts an attempt's outcome against its backend: the one place passive health checks
/// and breakers listen. Only the backend's own failures count; a client's broken request
/// or a limit of Gatehouse's never does. Ejections and breaker changes go to `shared`'s
/// events; `probe` says the attempt was its half-open breaker's probe.
pub fn report(
    group: &Group,
    backend: &BackendState,
    outcome: &Result<Response<Outgoing>, ProxyError>,
    shared: &crate::state::Shared,
    probe: bool,
) {
    let outcome = outcome.as_ref().map(|resp| resp.status().is_server_error());
    report_outcome(group, backend, outcome, shared, probe);
}

/// `report` for an attempt that ended in `Ok(whether the answer was a server error)` or
/// an error; streams report their connections through it too.
pub fn report_outcome(
    group: &Group,
    backend: &BackendState,
    outcome: Result<bool, &ProxyError>,
    shared: &crate::state::Shared,
    probe: bool,
) {
    // Of the backend's side, a pooled connection it closed while idle is ordinary keep-alive
    // housekeeping, and a response over `limits.response_body` is Gatehouse's limit at work:
    // neither says the backend is unwell.
    let server_error = match outcome {
        Err(e) => {
            let backend_fault = e.side() == Side::Backend
                && !matches!(e, ProxyError::Stale { .. } | ProxyError::ResponseTooLarge { .. });
            // Not the backend's doing: says nothing about its health either way.
            if !backend_fault {
                return;
            }
            backend.failures.fetch_add(1, Ordering::Relaxed);
            // No connection, so `requests` did not count it: the error rate's denominator
            // needs it.
            if e.retry() == crate::error::Retry::Safe {
                backend.refused.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
        Ok(is_5xx) => Some(is_5xx),
    };
    if server_error == Some(true) {
        backend.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    let event = |kind, detail: String| {
        shared.event(Event { kind, upstream: group.config.id.clone(), backend: backend.backend.url(), detail })
    };
    if let Some(passive) = &group.config.passive {
        let failed = server_error.is_none_or(|is_5xx| is_5xx && passive.count_5xx);
        if let Some(time) = backend.health.observe(failed, passive) {
            backend.ejections.fetch_add(1, Ordering::Relaxed);
            event(EventKind::Ejected, format!("{} failed requests in a row; ejected for {time:?}", passive.failures));
        }
    }
    if let Some(cfg) = &group.config.breaker {
        let failed = server_error.is_none_or(|is_5xx| is_5xx && cfg.count_5xx);
        match backend.breaker.record(failed, probe, cfg, super::breaker::now_ms()) {
            Some(Transition::Opened) => event(
                EventKind::BreakerOpen,
                format!("failures reached the breaker's threshold; open for {:?}", cfg.open_for),
            ),
            Some(Transition::Closed) => {
                event(EventKind::BreakerClosed, format!("{} probe request(s) succeeded", cfg.successes))
            }
            _ => {}
        }
    }
}

/// The request's parts for hyper, which takes them by value; only a bodiless request on the
/// inline client is ever sent twice, so nothing is lost.
fn take_parts(parts: &mut http::request::Parts) -> http::request::Parts {
    let (empty, ()) = http::Request::new(()).into_parts();
    std::mem::replace(parts, empty)
}

/// What every backend response gets: the size limit on a declared length, and hop-by-hop
/// headers removed (`strip`; the inline client leaves them out while parsing).
fn finish(
    mut resp: Response<Outgoing>,
    opts: &RouteOptions,
    label: &dyn Fn() -> String,
    strip: bool,
) -> Result<Response<Outgoing>, ProxyError> {
    // Only parse the length when a limit is set (the common case has none).
    if let Some(limit) = opts.max_response_body
        && let Some(len) =
            hdr::content_length(resp.headers()).or_else(|| resp.body().verbatim().and_then(|(_, v)| v.length))
        && len > limit
    {
        tracing::warn!(target: "gatehouse::proxy", backend = %label(), size = len, limit, "upstream response larger than the limit");
        return Err(ProxyError::ResponseTooLarge { size: len, limit });
    }
    if strip {
        hdr::strip_hop_by_hop(resp.headers_mut(), false);
    }
    Ok(resp)
}

/// Maps an inline-client failure: the client's body errors (too slow, too large, broken)
/// stay the client's; a timeout waiting for the head is a 504; the rest is a 502.
fn raw_error(e: std::io::Error, backend: String) -> ProxyError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return ProxyError::ReadTimeout { backend };
    }
    match e.get_ref().and_then(|inner| find_body_error(inner)).and_then(client_body_error) {
        Some(client) => client,
        None => ProxyError::Upstream { backend, reason: e.to_string() },
    }
}

/// Waits for the response head. (Callers box this future: hyper's paths are not the hot
/// one, and inline they would make every request's future larger.) The read timeout counts
/// from the end of the request body: while the client is still uploading, the write timeout
/// (inside the body) governs.
async fn with_read_timeout<F: std::future::Future>(
    limit: Duration,
    start: Instant,
    progress: Option<&Progress>,
    fut: F,
) -> Result<F::Output, ()> {
    let mut fut = std::pin::pin!(fut);
    let mut deadline = after(start, limit);
    loop {
        match tokio::time::timeout_at(deadline, fut.as_mut()).await {
            Ok(out) => return Ok(out),
            Err(_) => match progress {
                None => return Err(()),
                Some(p) => match p.finished(start) {
                    Some(done) if after(done, limit) <= deadline => return Err(()),
                    Some(done) => deadline = after(done, limit),
                    None => deadline = after(Instant::now(), limit),
                },
            },
        }
    }
}
