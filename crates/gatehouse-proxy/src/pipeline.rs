//! The request pipeline: the one place that orders the phases of a request, for every
//! client protocol (the own HTTP/1.1 loop, hyper's HTTP/1.1 and HTTP/2, HTTP/3).
//!
//! ```text
//! early request   request id, host, real client IP (trusted_proxies), framing checks
//! before routing  filters for every host (ACME HTTP-01)
//! route           host -> site -> route (path, method: 404 / 405 + Allow)
//! request filters the route's chain (HTTPS redirect, ip and agent rules, maintenance,
//!                 CORS, limits, WAF, CSRF, redirect)
//! limits          URI, header and body sizes
//! auth            the route's authentication (may wait on a password hash)
//! body filters    the route's chain, on the body's first bytes (the WAF)
//! action          static files, or select upstream -> exchange (http::proxy)
//! response filters the route's chain (header rules)
//! log             the access record, emitted when the response body has ended
//! ```
//!
//! A `Ctx` on the stack carries what the phases share. Every failure is a `ProxyError`,
//! answered by `ProxyError::answer`; nothing here picks a status code. Runs on worker
//! threads: no blocking, no locks shared between workers.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use gatehouse_config::Action;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use tokio::time::Instant;

use crate::body::{Inbound, Outgoing};
use crate::conn::ConnInfo;
use crate::error::ProxyError;
use crate::filter::Verdict;
use crate::http::header as hdr;
use crate::http::request;
use crate::observe::{AccessRecord, Failure, Flag, Logged, Pending};
use crate::route::{Compiled, Lookup, normalise_path};
use crate::state::RuntimeState;
use crate::upstream::BackendState;

/// What the phases of one request share.
pub struct Ctx<'a> {
    pub state: &'a RuntimeState,
    pub conn: &'a ConnInfo,
    /// The request ID (the client's when sane, else a new one); sent to the backend and
    /// back to the client.
    pub id: HeaderValue,
    /// The request's place in its W3C trace.
    pub trace: crate::http::trace::Trace,
    /// The client: the peer, or, behind a trusted proxy, the address it forwarded for.
    pub client: IpAddr,
    /// The peer is one of `trusted_proxies`.
    pub peer_trusted: bool,
    /// The client's country (ISO code), when a GeoIP database is loaded and knows it.
    pub country: Option<[u8; 2]>,
    /// Routing host: lower-case, no port, no trailing dot.
    pub host: &'a str,
    pub host_header: Option<&'a HeaderValue>,
    /// The request's `Origin` field (the CORS response filter reads it).
    pub origin: Option<&'a HeaderValue>,
    /// At most one Host field, and a valid host where the request names one.
    pub host_fields_ok: bool,
    /// The request target as the client sent it.
    pub uri: &'a Uri,
    pub route: Option<&'a Compiled>,
    /// The backend that answered (or failed last).
    pub backend: Option<&'a Arc<BackendState>>,
    /// Attempts beyond the first.
    pub retries: u32,
    /// The request's access record while the pipeline works on it (access log on).
    /// Boxed: a record is large, and the context (in every request's future) must not be.
    pub record: Option<Box<Pending>>,
    /// What a security filter did with the request (refused it, or only flagged it), for
    /// its record.
    pub answered: std::cell::RefCell<Option<Answered>>,
}

/// A security filter's decision on a request, for its record and the metrics.
pub struct Answered {
    /// `rate_limited`, `banned`, `waf_blocked`, `waf_logged`, `auth_required`,
    /// `auth_failed`, `cors_refused`, `ip_denied`, `user_agent_denied`, `referer_denied`,
    /// `csrf_refused`.
    pub kind: &'static str,
    /// The rule or policy that decided (`per_client`, `sqli-union`, a custom rule's id).
    pub rule: Arc<str>,
    /// For the request log.
    pub reason: String,
    /// The filter answered the request itself (otherwise it went on, flagged).
    pub refused: bool,
}

impl Ctx<'_> {
    /// Notes that a filter answers this request itself: its record gets `kind` as a
    /// client-side error (the request log) and a flag with the rule (metrics).
    pub fn answered_by(&self, kind: &'static str, rule: &str, reason: String) {
        *self.answered.borrow_mut() = Some(Answered { kind, rule: rule.into(), reason, refused: true });
    }

    /// Notes that a filter let this request go on but flags it (a WAF in `log` mode).
    pub fn flagged(&self, kind: &'static str, rule: &str, reason: String) {
        *self.answered.borrow_mut() = Some(Answered { kind, rule: rule.into(), reason, refused: false });
    }
}

/// Serves one request; its access record (when the access log is on) is emitted when the
/// returned body ends. For callers that hand the response to hyper or HTTP/3.
pub async fn handle(state: &RuntimeState, conn: &ConnInfo, req: Request<Inbound>) -> Response<Outgoing> {
    let (resp, pending) = serve(state, conn, req).await;
    match pending {
        None => resp,
        Some(p) => resp.map(|body| Outgoing::Logged(Box::new(Logged::new(body, p)))),
    }
}

/// Serves one request and hands back its pending access record, for a caller that writes
/// the response itself and so knows what the client got (the own HTTP/1.1 loop). Never
/// fails: errors are answered with their status code.
pub async fn serve(
    state: &RuntimeState,
    conn: &ConnInfo,
    req: Request<Inbound>,
) -> (Response<Outgoing>, Option<Box<Pending>>) {
    // Early request.
    let id = hdr::request_id(req.headers());
    let trace = crate::http::trace::Trace::continue_from(req.headers());
    let version = req.version();
    // Cheap clones (reference-counted bytes) so the request can move through the phases.
    let uri = req.uri().clone();
    // For the error answer (JSON or a page), should there be one.
    let accept = req.headers().get(header::ACCEPT).cloned();
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_header = hosts.next().cloned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let single_host = hosts.next().is_none();
    let (host, host_fields_ok) = match request::host(&uri, host_header.as_ref()) {
        // An HTTP/1.0 request may name no host at all; over TLS the name the client asked
        // for in the handshake stands in for it.
        Some(h) if h.is_empty() => {
            (Cow::Borrowed(conn.tls.as_ref().and_then(|t| t.sni.as_deref()).unwrap_or("")), single_host)
        }
        Some(h) => (h, single_host),
        None => (Cow::Borrowed(""), false),
    };
    let peer = conn.peer.ip();
    let peer_trusted = !state.trusted.is_empty() && hdr::is_trusted(peer, &state.trusted);
    let client = if peer_trusted { hdr::client_ip(peer, req.headers(), &state.trusted) } else { peer };
    let country = state.shared.geo.country(client);
    // The record, when the access log is on; emitted even if this future is dropped.
    let record = conn.sink.as_ref().map(|sink| {
        let record = AccessRecord {
            time: SystemTime::now(),
            duration: Default::default(),
            request_id: Some(id.clone()),
            trace: Some(trace),
            client,
            client_label: None,
            country,
            version: Some(version),
            method: Some(req.method().clone()),
            host: host.to_string(),
            path: uri.path_and_query().map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            site: None,
            site_log: None,
            route: None,
            backend: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            retries: 0,
            error: None,
            slow: None,
            flag: None,
        };
        Box::new(Pending::new(record, Instant::now(), sink.clone()))
    });
    let mut cx = Ctx {
        state,
        conn,
        id,
        trace,
        client,
        peer_trusted,
        country,
        host: &host,
        host_header: host_header.as_ref(),
        origin: origin.as_ref(),
        host_fields_ok,
        uri: &uri,
        route: None,
        backend: None,
        retries: 0,
        record,
        answered: std::cell::RefCell::new(None),
    };

    let mut failure = None;
    let mut resp = match phases(&mut cx, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(target: "gatehouse::proxy", host = %cx.host, path = %uri.path(), side = %e.side(), error = %e, "request failed");
            }
            if cx.record.is_some() {
                failure = Some(Failure::of(&e));
            }
            answer_error(&cx, &e, accept.as_ref())
        }
    };
    resp.headers_mut().insert(&hdr::X_REQUEST_ID, cx.id.clone());
    // Advertise HTTP/3 to HTTPS clients that are not using it yet.
    if let (Some(alt), Some(_)) = (&state.alt_svc, &conn.tls)
        && version != Version::HTTP_3
    {
        resp.headers_mut().insert(header::ALT_SVC, alt.clone());
    }
    let answered = cx.answered.take();
    if let Some(a) = &answered
        && a.refused
        && failure.is_none()
    {
        failure = Some(Failure { side: crate::error::Side::Client, kind: a.kind, reason: a.reason.clone() });
    }
    let mut pending = cx.record.take();
    if let Some(p) = &mut pending {
        p.respond(resp.status().as_u16(), failure);
        if let Some(a) = answered {
            p.flag(Flag { kind: a.kind, rule: a.rule });
        }
    }
    (resp, pending)
}

/// The answer to a failed request: the status and fields `ProxyError::answer` sets, with
/// the site's page for it (its maintenance page when every backend is out), or JSON for a
/// client that asks for JSON.
fn answer_error(cx: &Ctx<'_>, e: &ProxyError, accept: Option<&HeaderValue>) -> Response<Outgoing> {
    let mut resp = e.answer();
    let status = resp.status();
    let json = crate::error_page::wants_json(accept);
    let pages = match cx.route {
        Some(r) => &r.pages,
        None => cx.state.router.pages_for(cx.host).unwrap_or(&cx.state.config.error_pages),
    };
    let maintenance = cx.route.and_then(|r| r.maintenance_page.as_deref()).filter(|_| e.all_backends_out());
    let template = maintenance.or_else(|| pages.pages.get(&status.as_u16()).map(|p| &**p));
    if json || template.is_some() {
        let message = e.public_message();
        let page = crate::error_page::Page { status, message: &message, request_id: &cx.id, template };
        crate::error_page::fill(&mut resp, &page, json);
    }
    resp
}

/// The phases after the early request, in order; see the module chart.
async fn phases<'a>(cx: &mut Ctx<'a>, mut req: Request<Inbound>) -> Result<Response<Outgoing>, ProxyError> {
    request::check(cx, &req)?;
    if request::unusual_target(&req) {
        return request::answer_unusual_target(&req);
    }
    let uri = cx.uri;
    let path = normalise_path(uri.path());
    let state = cx.state;
    if let Verdict::Respond(r) = state.router.before.on_request(cx, &mut req, &path) {
        return Ok(r);
    }
    let route = match state.router.lookup(cx.host, &path, req.method()) {
        Lookup::Found(c) => c,
        Lookup::NoSite => return Err(ProxyError::NoSite),
        Lookup::NoRoute => return Err(ProxyError::NoRoute),
        // A CORS preflight asks about another method: the route for that one answers it
        // when it has a CORS policy (`methods: [GET, POST]` need not list OPTIONS).
        Lookup::MethodNotAllowed(allow) => {
            match crate::filter::cors_preflight_route(&state.router, cx.host, &path, &req) {
                Some(c) => c,
                None => return Err(ProxyError::MethodNotAllowed(allow)),
            }
        }
    };
    cx.route = Some(route);
    if let Some(r) = &mut cx.record {
        r.routed(&route.site, &route.route, route.log);
    }
    if let Verdict::Respond(mut r) = route.chain.on_request(cx, &mut req, &path) {
        route.chain.on_response(cx, &mut r);
        return Ok(r);
    }
    request::check_limits(&req, &route.route.options)?;
    if let Some(auth) = route.chain.auth() {
        let mut verdict = auth.check(cx, &mut req, &path).await;
        if let Verdict::Continue = verdict {
            verdict = route.chain.on_after_auth(cx, &mut req, &path);
        }
        if let Verdict::Respond(mut r) = verdict {
            route.chain.on_response(cx, &mut r);
            return Ok(r);
        }
    }
    // Filters that read the body (the WAF) get its first bytes; the backend still gets all
    // of it.
    if let Some(max) = route.chain.body_wanted(&req) {
        let (ahead, seen) = crate::body::peek(req, max, route.route.options.write_timeout).await?;
        req = ahead;
        if let Verdict::Respond(mut r) = route.chain.on_body(cx, &req, &seen, &path) {
            route.chain.on_response(cx, &mut r);
            return Ok(r);
        }
    }
    let mut resp = match &route.route.action {
        // Boxed so the proxy path's future does not carry the file server's size.
        Action::Static(dir) => {
            let target = crate::route::rewrite_path(route, &path);
            Box::pin(crate::file::serve(dir, &target, &path, req.method(), req.headers())).await
        }
        Action::Proxy(_) => {
            let Some(group) = &route.group else {
                return Err(ProxyError::NoRoute);
            };
            crate::http::proxy::forward(cx, route, group, req, &path).await?
        }
        // After every policy of the route (auth, limits, WAF), as a file or a backend.
        Action::Respond { status, body } => crate::respond::answer(*status, body, req.method()),
        // Answered by the route's `Redirect` filter.
        Action::Redirect { .. } => return Err(ProxyError::NoRoute),
    };
    route.chain.on_response(cx, &mut resp);
    Ok(resp)
}
