//! The proxy action: turns the client's request into the upstream request (hop-by-hop
//! fields out, forwarding fields in, Host, rewritten path, request header rules), then runs
//! the one retry loop: `select` picks a backend, `exchange::attempt` tries it, `report`
//! counts the outcome, and the error's `retry` (or the upstream's `retries`) says whether
//! another attempt is made. A `split` route picks its pool's group first.
//!
//! Runs on a worker thread: no blocking calls, no locks shared with other workers, no
//! per-request work that could be done once at configuration time.

use std::sync::Arc;

use gatehouse_config::HashKey;
use http::header::{self, HeaderValue};
use http::{Request, Response, Version};
use http_body::Body as _;
use tokio::time::Instant;

use super::header as hdr;
use crate::body::{Inbound, Outgoing, Progress, RequestBody};
use crate::error::{ProxyError, Retry};
use crate::pipeline::Ctx;
use crate::route::Compiled;
use crate::upstream::Group;
use crate::upstream::exchange::{self, Outbound, Tunnel, Wanted};
use crate::upstream::pool::Want;
use crate::upstream::select::Selection;

/// Most backends one request tries after connection failures: an upstream of a thousand
/// registry instances that are all gone must not turn one request into a thousand
/// connection attempts (and log lines).
const FAILOVER_LIMIT: usize = 5;

/// What a retry needs to send the request again once an attempt has used it up: the head
/// as it was before the first attempt, and the body, kept in memory.
struct Replay {
    method: http::Method,
    uri: http::Uri,
    version: Version,
    headers: http::HeaderMap,
    forwarding: Option<hdr::Forwarding>,
    pq: Option<String>,
    body: Option<bytes::Bytes>,
}

impl Replay {
    fn restore(&self, out: &mut Outbound) {
        out.parts.method = self.method.clone();
        out.parts.uri = self.uri.clone();
        out.parts.version = self.version;
        out.parts.headers = self.headers.clone();
        out.forwarding = self.forwarding.clone();
        out.pq = self.pq.clone();
        out.body = self.body.clone().map_or(Outgoing::Empty, Outgoing::full);
        out.consumed = false;
    }
}

/// Proxies `req` to the route's upstream group (for a `split` route, the pool `split`
/// chooses). `path` is the normalised path. The one retry loop: `select` picks a backend,
/// `exchange::attempt` tries it, `report` counts the outcome, and the error's `retry` (or
/// the upstream's `retries`) says whether another attempt is made.
pub(crate) async fn forward<'a>(
    cx: &mut Ctx<'a>,
    route: &'a Compiled,
    group: &'a Arc<Group>,
    req: Request<Inbound>,
    path: &str,
) -> Result<Response<Outgoing>, ProxyError> {
    let (group, set_cookie) = match &route.split {
        None => (group, None),
        Some(split) => {
            let choice = split.choose(req.headers(), cx.conn.tls.is_some());
            (&split.groups[choice.pool], choice.set_cookie)
        }
    };
    let opts = &route.route.options;
    let mut out = outbound(cx, route, group, req, path);
    let upgrade = out.client_upgrade.is_some();
    if upgrade && let Some((ws, open)) = &route.websocket {
        out.tunnel = Some(
            Tunnel::take(open, ws.max_connections, ws.max_duration)
                .ok_or(ProxyError::TunnelsFull(ws.max_connections))?,
        );
    }
    // `retries`: a request it allows, whose body (if any) is small enough to keep.
    let policy = group.config.retries.as_ref().filter(|p| !upgrade && p.allows(&out.parts.method));
    // Boxed: only requests that may be retried pay for its state.
    let replay = match policy {
        Some(p) => Box::pin(keep_for_replay(&mut out, p.max_body)).await?,
        None => None,
    };
    let policy = policy.filter(|_| replay.is_some());
    // Without `retries`, only a bodiless idempotent request can be sent a second time once
    // it has gone out (on a fresh connection after a stale pooled one).
    let replayable = replay.is_some() || (matches!(out.body, Outgoing::Empty) && out.parts.method.is_idempotent());
    let verbatim = cx.conn.own_http1 && !route.chain.edits_responses() && route.split.is_none();
    let first_want = if upgrade { Want::Upgrade } else { Want::Pooled };
    let mut want = first_want;

    let shared = &*cx.state.shared;
    let mut selection = Selection::new(group, shared, cx.client, &out.parts.headers);
    let mut backend = selection.next();
    // Tries left after this one, for failures connect failover does not cover.
    let mut tries_left = policy.map_or(0, |p| p.attempts.saturating_sub(1));
    if policy.is_some() {
        group.budget.request();
    }
    let mut attempted = 0;
    let result = loop {
        let Some(b) = backend else {
            // Nothing tried yet: every backend is out of rotation (health checks, breakers).
            if cx.backend.is_none() {
                break Err(match selection.open_ms {
                    Some(ms) => ProxyError::CircuitOpen { retry_after: ms.div_ceil(1000) },
                    None => ProxyError::NoHealthyBackend,
                });
            }
            break Err(ProxyError::Connect { backend: String::new(), reason: "no backends".into() });
        };
        cx.backend = Some(b);
        attempted += 1;
        if let Some(r) = &mut cx.record {
            r.tried(b.backend.url(), cx.retries);
        }
        let outcome = exchange::attempt(group, b, &mut out, Wanted { opts, verbatim, want }).await;
        exchange::report(group, b, &outcome, shared, selection.probe);
        // May this request go again, after this outcome? (`retries`, within its budget.)
        let mut may_retry = |out: &mut Outbound| {
            let Some(p) = policy else { return false };
            if tries_left == 0 || !group.budget.take(p.budget) {
                return false;
            }
            tries_left -= 1;
            if let Some(r) = &replay {
                r.restore(out);
            }
            true
        };
        match outcome {
            Err(e) => match e.retry() {
                // Nothing reached this backend: the next one may serve it (unless the
                // request already went to hyper, which keeps it).
                Retry::Safe
                    if !out.consumed
                        && attempted < FAILOVER_LIMIT
                        && let Some(next) = selection.next() =>
                {
                    cx.retries += 1;
                    out.sent_at = Instant::now();
                    backend = Some(next);
                    want = first_want;
                }
                // The backend closed a pooled connection as the request went out (an idle
                // timeout racing with reuse), so no application saw it: send it again on a
                // new connection, as nginx and HAProxy do for idempotent requests.
                Retry::Stale if replayable && !out.consumed && want == Want::Pooled => {
                    tracing::debug!(target: "gatehouse::proxy", backend = %b.backend.url(), error = %e, "pooled connection was closed; retrying on a new one");
                    if let Some(r) = &replay {
                        r.restore(&mut out);
                    }
                    cx.retries += 1;
                    out.sent_at = Instant::now();
                    want = Want::Fresh;
                }
                // `retries`: the backend failed before a response head (the connection
                // broke, no answer in time): the request goes again, to the next backend
                // when there is one, after a growing pause.
                _ if e.side() == crate::error::Side::Backend
                    && policy.is_some()
                    && let Some(next) = retry_target(&mut selection, b, group)
                    && may_retry(&mut out) =>
                {
                    tracing::debug!(target: "gatehouse::proxy", backend = %b.backend.url(), error = %e, "retrying on another backend");
                    backoff(policy, tries_left).await;
                    backend = Some(retried(next, cx, &mut out));
                    want = Want::Fresh;
                }
                _ => break Err(e),
            },
            // `retries.statuses`: an answer that says "try again" is dropped for another try.
            Ok(resp)
                if policy.is_some_and(|p| p.statuses.contains(&resp.status().as_u16()))
                    && let Some(next) = retry_target(&mut selection, b, group)
                    && may_retry(&mut out) =>
            {
                tracing::debug!(target: "gatehouse::proxy", backend = %b.backend.url(), status = resp.status().as_u16(), "retrying on another backend");
                drop(resp);
                backoff(policy, tries_left).await;
                backend = Some(retried(next, cx, &mut out));
                want = Want::Fresh;
            }
            ok => break ok,
        }
    };
    hdr::maps::give(std::mem::take(&mut out.parts.headers));
    let mut resp = result?;
    if let Some(cookie) = set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// The backend for a retry: the next one in the selection, or `b` again when it is the
/// only one left and still in rotation with its breaker closed.
fn retry_target<'g>(
    selection: &mut Selection<'g>,
    b: &'g Arc<crate::upstream::BackendState>,
    group: &Group,
) -> Option<&'g Arc<crate::upstream::BackendState>> {
    selection.next().or_else(|| {
        let closed = group.config.breaker.is_none() || b.breaker.is_closed();
        (closed && !b.health.is_down()).then_some(b)
    })
}

/// The pause before a retry: `backoff`, doubled for each retry made, with up to half of it
/// again as jitter.
async fn backoff(policy: Option<&gatehouse_config::RetryPolicy>, tries_left: u32) {
    if let Some(p) = policy {
        let n = p.attempts.saturating_sub(1 + tries_left).max(1);
        let pause = p.backoff.saturating_mul(1 << (n - 1).min(10));
        let jitter = pause.mul_f64(fastrand::f64() * 0.5);
        tokio::time::sleep(pause + jitter).await;
    }
}

/// Counts a retry to `next`; its read timeout counts from now, not from the first try.
fn retried<'g>(
    next: &'g Arc<crate::upstream::BackendState>,
    cx: &mut Ctx<'_>,
    out: &mut Outbound,
) -> &'g Arc<crate::upstream::BackendState> {
    cx.retries += 1;
    out.sent_at = Instant::now();
    next.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    next
}

/// Before the first attempt of a request `retries` may repeat: a copy of its head, and
/// its body read into memory when it declares a length up to `max_body`. `None` when the
/// body is larger, or of unknown length: such a request is not retried.
async fn keep_for_replay(out: &mut Outbound, max_body: u64) -> Result<Option<Box<Replay>>, ProxyError> {
    // A body with trailers (gRPC, a `Trailer` field) would lose them in memory: streamed.
    let h = &out.parts.headers;
    let trailers = h.contains_key(header::TRAILER)
        || h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if trailers && !matches!(out.body, Outgoing::Empty) {
        return Ok(None);
    }
    let body = match std::mem::replace(&mut out.body, Outgoing::Empty) {
        Outgoing::Empty => None,
        Outgoing::Request(b) => {
            let len = b.size_hint().exact();
            if len.is_none_or(|n| n > max_body) {
                out.body = Outgoing::Request(b);
                return Ok(None);
            }
            use http_body_util::BodyExt;
            let bytes = b.collect().await.map_err(|e| {
                match crate::error::find_body_error(&*e).and_then(crate::error::client_body_error) {
                    Some(client) => client,
                    None => ProxyError::ClientBody(e.to_string()),
                }
            })?;
            Some(bytes.to_bytes())
        }
        other => {
            out.body = other;
            return Ok(None);
        }
    };
    out.body = body.clone().map_or(Outgoing::Empty, Outgoing::full);
    // The body is in memory now: each attempt's read timeout counts from its send.
    out.progress = None;
    Ok(Some(Box::new(Replay {
        method: out.parts.method.clone(),
        uri: out.parts.uri.clone(),
        version: out.parts.version,
        headers: out.parts.headers.clone(),
        forwarding: out.forwarding.clone(),
        pq: out.pq.clone(),
        body,
    })))
}

/// The upstream request for `req`.
fn outbound(cx: &mut Ctx<'_>, route: &Compiled, group: &Group, mut req: Request<Inbound>, path: &str) -> Outbound {
    let opts = &route.route.options;
    // A site with `websocket.enabled: false` passes no upgrade: the request goes on
    // without its Upgrade field, as a plain request.
    let upgrade = req.version() == Version::HTTP_11
        && route.websocket.as_ref().is_none_or(|(w, _)| w.enabled)
        && hdr::request_upgrade(req.headers_mut());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    let wants_trailers = parts.headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));

    let headers = &mut parts.headers;
    hdr::strip_hop_by_hop(headers, upgrade);
    // HTTP/2 and HTTP/3 carry the host in the URI; HTTP/1.1 backends need it as a field.
    // An HTTP/1.1 request in absolute form names its host there too, and then the Host
    // field does not count (RFC 9112 §3.2.2): the backend gets the host that was routed on.
    let mut host_value = cx.host_header.cloned();
    if let Some(a) = &authority
        && host_value.as_ref().is_none_or(|h| h.as_bytes() != a.as_bytes())
        && let Ok(v) = HeaderValue::from_str(a)
    {
        headers.insert(header::HOST, v.clone());
        host_value = Some(v);
    }
    // An HTTP/1.0 request may come without any host; it goes out as HTTP/1.1, which
    // needs one, so it gets the backend's (as nginx's default `proxy_set_header Host`).
    let host_missing = host_value.is_none();
    let forwarding = hdr::Forwarding::new(
        headers,
        cx.conn.peer.ip(),
        &cx.conn.peer_value,
        cx.client,
        cx.peer_trusted,
        cx.conn.proto,
        host_value.as_ref(),
        &cx.id,
        &cx.trace,
    );
    // The forwarding fields go into the map now when something reads the map after them
    // (header rules, hashing on a header); otherwise they wait: the inline client writes
    // them straight into the request head.
    let hashes_header = group.config.balance.algorithm == gatehouse_config::Algorithm::ConsistentHash
        && matches!(group.config.balance.hash_key, HashKey::Header(_));
    let forwarding = if opts.request_headers.is_empty() && !hashes_header {
        Some(forwarding)
    } else {
        forwarding.apply(headers);
        hdr::apply_rules(headers, &opts.request_headers);
        None
    };

    // The common case forwards the client's origin-form URI untouched; only a changed path
    // (normalised, stripped, rewritten) or an absolute-form URI costs a new string.
    let target = crate::route::rewrite_path(route, path);
    let changed = target != parts.uri.path();
    let pq = if parts.uri.scheme().is_none() && !changed {
        None
    } else {
        Some(match parts.uri.query() {
            Some(q) => format!("{target}?{q}"),
            None => target.into_owned(),
        })
    };
    let sent_at = Instant::now();
    let (body, progress) = if body.is_end_stream() {
        (Outgoing::Empty, None)
    } else {
        let progress = Arc::new(Progress::default());
        let body = RequestBody::new(body, opts.max_request_body, opts.write_timeout, sent_at, progress.clone())
            .min_rate(cx.state.config.server.request_body_min_rate);
        if let Some(r) = &mut cx.record {
            r.watch(progress.clone());
        }
        (Outgoing::Request(Box::new(body)), Some(progress))
    };
    Outbound {
        parts,
        body,
        progress,
        forwarding,
        pq,
        host_missing,
        wants_trailers,
        client_upgrade,
        tunnel: None,
        sent_at,
        active: None,
        consumed: false,
    }
}
