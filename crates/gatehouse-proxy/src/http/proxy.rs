//! One request, start to finish. Every failure becomes a `ProxyError`, and
//! `ProxyError::status` is the only place that picks a status code.
//!
//! Runs on a worker thread: no blocking calls, no locks shared with other workers, no
//! per-request work that could be done once at configuration time.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use gatehouse_config::{Action, HashKey, RouteOptions};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper_util::rt::TokioIo;

use super::header as hdr;
use crate::body::{Inbound, Outgoing, Progress, RequestBody, UpstreamBody};
use crate::error::{BodyError, ProxyError, find_body_error};
use crate::route::{Compiled, Lookup, has_prefix, normalise_path};
use crate::state::RuntimeState;
use crate::timer::after;
use crate::upstream::h1;
use crate::upstream::pool::{self, Conn};
use crate::upstream::{ActiveGuard, BackendState, Group, hash_key};

/// What the listener knows about the client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub proto: &'static str,
    /// The peer address as a header value, formatted once per connection.
    pub peer_value: HeaderValue,
    /// What the raw-byte scanner found on this connection (HTTP/1.1 smuggling guard).
    pub framing: Arc<super::framing::Flags>,
    /// Set on HTTPS connections.
    pub tls: Option<Arc<TlsInfo>>,
    /// Pending ACME challenges (HTTP-01 answers).
    pub challenges: Option<Arc<crate::tls::Challenges>>,
    /// Responses go out through the own HTTP/1.1 loop (`server`), which writes the head
    /// itself and so can take a backend's fields as lines (`h1::Wanted::verbatim`). False
    /// once hyper serves the connection, and for HTTP/3.
    pub own_http1: bool,
}

/// The TLS side of a connection, as far as request handling cares.
#[derive(Debug)]
pub struct TlsInfo {
    /// The SNI the client sent, lower-case.
    pub sni: Option<String>,
    pub resolver: Arc<crate::tls::Resolver>,
}

/// Serves one request. Never fails: errors are answered with their status code.
pub async fn handle(state: &RuntimeState, conn: &ConnInfo, req: Request<Inbound>) -> Response<Outgoing> {
    // Only pay for the access log's clock read when the log is on.
    let started = tracing::enabled!(target: "access", tracing::Level::INFO).then(Instant::now);
    let rid = hdr::request_id(req.headers());
    let method = req.method().clone();
    let version = req.version();
    // Cheap clones (reference-counted bytes) so the request can move into the pipeline.
    let uri = req.uri().clone();
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_header = hosts.next().cloned();
    let single_host = hosts.next().is_none();
    let (host, host_fields_ok) = match request_host(&uri, host_header.as_ref()) {
        // An HTTP/1.0 request may name no host at all; over TLS the name the client asked
        // for in the handshake stands in for it.
        Some(h) if h.is_empty() => {
            (Cow::Borrowed(conn.tls.as_ref().and_then(|t| t.sni.as_deref()).unwrap_or("")), single_host)
        }
        Some(h) => (h, single_host),
        None => (Cow::Borrowed(""), false),
    };
    let mut upstream: Option<&Arc<BackendState>> = None;

    let meta = Meta { host: &host, host_header: host_header.as_ref(), host_fields_ok, rid: &rid };
    let mut resp = match serve(state, conn, req, &meta, &mut upstream).await {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(target: "gatehouse::proxy", host = %host, path = %uri.path(), error = %e, "request failed");
            }
            error_response(&e)
        }
    };
    resp.headers_mut().insert(&hdr::X_REQUEST_ID, rid.clone());
    // Advertise HTTP/3 to HTTPS clients that are not using it yet.
    if let (Some(alt), Some(_)) = (&state.alt_svc, &conn.tls)
        && version != Version::HTTP_3
    {
        resp.headers_mut().insert(header::ALT_SVC, alt.clone());
    }
    if let Some(started) = started {
        tracing::info!(
            target: "access",
            client = %conn.peer.ip(),
            method = %method,
            host = %host,
            path = %uri.path(),
            status = resp.status().as_u16(),
            upstream = upstream.as_ref().map_or_else(|| "-".to_string(), |b| b.backend.url()),
            duration_us = started.elapsed().as_micros() as u64,
            request_id = rid.to_str().unwrap_or(""),
        );
    }
    resp
}

pub(super) fn error_response(e: &ProxyError) -> Response<Outgoing> {
    let status = e.status();
    let mut r = Response::new(Outgoing::full(Bytes::from(format!("{status}\n"))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if let ProxyError::MethodNotAllowed(allow) = e
        && let Ok(v) = HeaderValue::from_str(allow)
    {
        h.insert(header::ALLOW, v);
    }
    if e.closes_connection() {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The routing host: from the URI authority (HTTP/2, HTTP/3, absolute-form) or else the
/// Host field; lower-case, without port, brackets or a trailing dot. `None` when the value
/// is not a host with an optional port (see `host_part`), so that the proxy can never route
/// on one host while the backend reads another.
pub(crate) fn request_host<'a>(uri: &'a Uri, host_header: Option<&'a HeaderValue>) -> Option<Cow<'a, str>> {
    let value = match uri.authority() {
        Some(a) => a.as_str(),
        None => match host_header {
            Some(h) => h.to_str().ok()?,
            None => "",
        },
    };
    let host = host_part(value)?.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// The host of a Host value or URI authority, checked against RFC 3986 §3.2.2-3 (as RFC
/// 9110 §7.2 asks): a name or IPv4 address, or an IP literal in brackets, then at most a
/// `:` and digits. No user information (`evil.test@app.test`), no second colon, nothing
/// after a bracket but the port. An empty value is an empty host.
pub(crate) fn host_part(v: &str) -> Option<&str> {
    let (host, rest) = match v.strip_prefix('[') {
        Some(literal) => {
            let (inside, rest) = literal.split_once(']')?;
            let ip_chars = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
            (!inside.is_empty() && inside.bytes().all(ip_chars)).then_some((inside, rest))?
        }
        None => {
            let (host, rest) = v.split_at(v.find(':').unwrap_or(v.len()));
            let name_chars = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            host.bytes().all(name_chars).then_some((host, rest))?
        }
    };
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Some(host),
        Some(port) if port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) => Some(host),
        _ => None,
    }
}

/// What `handle` has already worked out about the request.
struct Meta<'a> {
    /// Routing host: lower-case, no port.
    host: &'a str,
    host_header: Option<&'a HeaderValue>,
    /// At most one Host field, and a valid host where the request names one (RFC 9112
    /// §3.2 asks for 400 otherwise).
    host_fields_ok: bool,
    rid: &'a HeaderValue,
}

async fn serve<'s>(
    state: &'s RuntimeState,
    conn: &ConnInfo,
    req: Request<Inbound>,
    meta: &Meta<'_>,
    upstream: &mut Option<&'s Arc<BackendState>>,
) -> Result<Response<Outgoing>, ProxyError> {
    let h = req.headers();
    let host = meta.host;
    if req.version() <= Version::HTTP_11 && h.contains_key(header::TRANSFER_ENCODING) {
        check_transfer_encoding(&req, conn)?;
    }
    if req.version() == Version::HTTP_11 && meta.host_header.is_none() && req.uri().authority().is_none() {
        return Err(ProxyError::BadRequest("missing Host header"));
    }
    if !meta.host_fields_ok {
        return Err(ProxyError::BadRequest("several Host fields or an invalid host"));
    }
    let uri = req.uri();
    // (The raw target's first byte: `uri.path()` would search it for a `?`.)
    if (uri.scheme().is_none() && uri.authority().is_some() && req.method() != http::Method::CONNECT)
        || uri.path_and_query().is_some_and(|pq| pq.as_str().starts_with('*'))
    {
        return unusual_target(&req);
    }
    // RFC 9110 §15.5.20: a request for a host that this connection's certificate does not
    // serve belongs on another connection.
    if let Some(t) = &conn.tls
        && let Some(sni) = &t.sni
        && sni != host
        && !t.resolver.same_certificate(host, sni)
    {
        return Err(ProxyError::Misdirected);
    }
    let path = normalise_path(req.uri().path());
    // ACME HTTP-01 validations are answered before routing, for any host.
    if let (Some(c), Some(token)) = (&conn.challenges, path.strip_prefix("/.well-known/acme-challenge/"))
        && let Some(key_auth) = c.http01(token)
    {
        let mut r = Response::new(Outgoing::full(key_auth));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        return Ok(r);
    }
    let route = match state.router.lookup(host, &path, req.method()) {
        Lookup::Found(c) => c,
        Lookup::NoSite => return Err(ProxyError::NoSite),
        Lookup::NoRoute => return Err(ProxyError::NoRoute),
        Lookup::MethodNotAllowed(allow) => return Err(ProxyError::MethodNotAllowed(allow)),
    };
    if route.https_redirect
        && conn.tls.is_none()
        && !path.starts_with("/.well-known/acme-challenge/")
        && let Some(port) = state.https_port
    {
        return Ok(https_redirect(host, port, req.uri()));
    }
    let opts = &route.route.options;
    check_limits(&req, opts)?;
    let target_path = rewrite_path(route, &path);

    let mut resp = match &route.route.action {
        Action::Redirect { to, code } => {
            let pq = match req.uri().query() {
                Some(q) => format!("{target_path}?{q}"),
                None => target_path.into_owned(),
            };
            let location = to.replace("{uri}", &pq).replace("{host}", host);
            let mut r = Response::new(Outgoing::Empty);
            *r.status_mut() = *code;
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        // Boxed so the proxy path's future does not carry the file server's size.
        Action::Static(dir) => {
            Box::pin(crate::file::serve(dir, &target_path, &path, req.method(), req.headers())).await
        }
        Action::Proxy(_) => {
            let Some(group) = &route.group else {
                return Err(ProxyError::NoRoute);
            };
            // Usually the path goes out as the client sent it: then no copy is made.
            let changed = match target_path {
                Cow::Borrowed(p) if p == req.uri().path() => None,
                other => Some(other.into_owned()),
            };
            proxy(state, conn, route, group, req, changed.as_deref(), meta, upstream).await?
        }
    };
    hdr::apply_rules(resp.headers_mut(), &opts.response_headers);
    Ok(resp)
}

/// The framing checks for a request with `Transfer-Encoding` (rare, and kept out of line).
#[cold]
fn check_transfer_encoding(req: &Request<Inbound>, conn: &ConnInfo) -> Result<(), ProxyError> {
    let h = req.headers();
    // RFC 9112 §6.1: a message with both is a smuggling attempt until proven otherwise.
    // (hyper drops Content-Length when Transfer-Encoding is present; the raw-byte scanner
    // saw both then.)
    if h.contains_key(header::CONTENT_LENGTH) || (req.version() == Version::HTTP_11 && conn.framing.take_conflict()) {
        return Err(ProxyError::BadRequest("both Content-Length and Transfer-Encoding"));
    }
    // hyper frames `gzip, chunked` as chunked and would let the gzip coding vanish.
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter().flat_map(|v| v.as_bytes().split(|b| *b == b','));
    if !codings.all(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked")) {
        return Err(ProxyError::NotImplemented("a transfer coding other than chunked"));
    }
    Ok(())
}

/// Authority form (`GET host:port`) belongs to CONNECT alone (RFC 9112 §3.2.3), which
/// routing answers with 405. Asterisk form is a question about the server as a whole (RFC
/// 9110 §9.3.7), answered here: no backend has a resource called `*`.
#[cold]
fn unusual_target(req: &Request<Inbound>) -> Result<Response<Outgoing>, ProxyError> {
    let method = req.method();
    if req.uri().path() != "*" {
        return Err(ProxyError::BadRequest("authority-form target on a method other than CONNECT"));
    }
    if method != http::Method::OPTIONS {
        return Err(ProxyError::BadRequest("asterisk-form target on a method other than OPTIONS"));
    }
    let mut r = Response::new(Outgoing::Empty);
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(r)
}

/// 308 to the same URI on HTTPS (308 keeps the method and body, unlike 301).
fn https_redirect(host: &str, port: u16, uri: &Uri) -> Response<Outgoing> {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let location = if port == 443 { format!("https://{host}{pq}") } else { format!("https://{host}:{port}{pq}") };
    let mut r = Response::new(Outgoing::Empty);
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn check_limits(req: &Request<Inbound>, opts: &RouteOptions) -> Result<(), ProxyError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > opts.max_uri_length {
        return Err(ProxyError::UriTooLong);
    }
    let h = req.headers();
    if h.len() > opts.max_request_header_count {
        return Err(ProxyError::HeadersTooLarge);
    }
    let size: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if size as u64 > opts.max_request_headers {
        return Err(ProxyError::HeadersTooLarge);
    }
    // A request whose body is known to be empty has nothing to measure (and its
    // Content-Length is not even looked up).
    if let Some(max) = opts.max_request_body
        && !req.body().is_end_stream()
        && let Some(len) = content_length(h)
        // Also answers `Expect: 100-continue` before the client sends the body.
        && len > max
    {
        return Err(ProxyError::BodyTooLarge(max));
    }
    Ok(())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Applies `strip_prefix` and `rewrite` to the normalised path.
fn rewrite_path<'a>(route: &Compiled, path: &'a str) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(path);
    if let Some(prefix) = &route.route.strip_prefix
        && has_prefix(path, prefix)
    {
        let rest = &path[prefix.len()..];
        out = if rest.starts_with('/') { Cow::Borrowed(rest) } else { Cow::Owned(format!("/{rest}")) };
    }
    if let Some(rw) = &route.route.rewrite
        && let Cow::Owned(s) = rw.pattern.replace(&out, rw.replace.as_str())
    {
        out = Cow::Owned(if s.starts_with('/') { s } else { format!("/{s}") });
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn proxy<'s>(
    state: &RuntimeState,
    conn: &ConnInfo,
    route: &Compiled,
    group: &'s Arc<Group>,
    mut req: Request<Inbound>,
    // The path to send when it is not the request's own (normalised, stripped, rewritten).
    path: Option<&str>,
    meta: &Meta<'_>,
    upstream: &mut Option<&'s Arc<BackendState>>,
) -> Result<Response<Outgoing>, ProxyError> {
    let opts = &route.route.options;
    let upgrade = req.version() == Version::HTTP_11 && hdr::request_upgrade(req.headers_mut());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let peer = conn.peer.ip();
    let peer_trusted = !state.trusted.is_empty() && hdr::is_trusted(peer, &state.trusted);
    let client = if peer_trusted { hdr::client_ip(peer, &parts.headers, &state.trusted) } else { peer };
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    let wants_trailers = parts.headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));

    let headers = &mut parts.headers;
    hdr::strip_hop_by_hop(headers, upgrade);
    // HTTP/2 and HTTP/3 carry the host in the URI; HTTP/1.1 backends need it as a field.
    // An HTTP/1.1 request in absolute form names its host there too, and then the Host
    // field does not count (RFC 9112 §3.2.2): the backend gets the host that was routed on.
    let mut host_value = meta.host_header.cloned();
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
        peer,
        &conn.peer_value,
        client,
        peer_trusted,
        conn.proto,
        host_value.as_ref(),
        meta.rid,
    );
    // The forwarding fields go into the map now when something reads the map after them
    // (header rules, hashing on a header); otherwise they wait: the inline client writes
    // them straight into the request head.
    let hashes_header = group.config.balance.algorithm == gatehouse_config::Algorithm::ConsistentHash
        && matches!(group.config.balance.hash_key, HashKey::Header(_));
    let mut forwarding = if opts.request_headers.is_empty() && !hashes_header {
        Some(forwarding)
    } else {
        forwarding.apply(headers);
        hdr::apply_rules(headers, &opts.request_headers);
        None
    };

    // The common case forwards the client's origin-form URI untouched; only a changed path
    // (normalised, stripped, rewritten) or an absolute-form URI costs a new string.
    let pq = if parts.uri.scheme().is_none() && path.is_none() {
        None
    } else {
        let path = path.unwrap_or(parts.uri.path());
        Some(match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        })
    };
    let sent_at = Instant::now();
    let (mut body, progress) = if body.is_end_stream() {
        (Outgoing::Empty, None)
    } else {
        let progress = Arc::new(Progress::default());
        let body = RequestBody::new(body, opts.max_request_body, opts.write_timeout, sent_at, progress.clone());
        (Outgoing::Request(Box::new(body)), Some(progress))
    };

    // Pick a backend; on connection failure move on to the next one (nothing was sent yet).
    let hash = request_hash(group, client, &parts.headers);
    let n = group.backends.len();
    let first = group.pick(hash);
    let mut last_err = ProxyError::Connect { backend: String::new(), reason: "no backends".into() };
    let mut chosen = None;
    let want = if upgrade { pool::Want::Upgrade } else { pool::Want::Pooled };
    'backends: for attempt in 0..n {
        let backend = &group.backends[(first + attempt) % n];
        let tls = match &group.tls {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                last_err = ProxyError::Connect { backend: backend.backend.url(), reason: format!("TLS settings: {e}") };
                continue;
            }
        };
        // A host name may resolve to several addresses: requests rotate over them, and a
        // connection failure tries the next one before the next backend.
        let targets = backend.targets.load();
        if targets.is_empty() {
            last_err =
                ProxyError::Connect { backend: backend.backend.url(), reason: "host name does not resolve".into() };
            continue;
        }
        let start = if targets.len() == 1 { 0 } else { backend.requests.load(Ordering::Relaxed) as usize };
        for i in 0..targets.len() {
            let target = &targets[(start + i) % targets.len()];
            let key = pool::Key { target: target.clone(), tls: group.tls_profile };
            match pool::checkout(backend, &key, &group.config.pool, opts.connect_timeout, want, tls, sent_at).await {
                Ok(c) => {
                    chosen = Some((backend, c, key));
                    break 'backends;
                }
                Err(e) => {
                    tracing::warn!(target: "gatehouse::proxy", backend = %backend.backend.url(), address = ?target, error = %e, "backend connection failed");
                    last_err = e;
                }
            }
        }
    }
    let Some((backend, conn_out, key)) = chosen else {
        return Err(last_err);
    };
    if let (Conn::H2(_), Outgoing::Request(b)) = (&conn_out, &mut body) {
        b.keep_trailers(&opts.request_headers);
    }
    *upstream = Some(backend);
    let active = ActiveGuard::new(backend);

    let backend_label = || backend.backend.url();
    if host_missing
        && !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(&backend.backend.addr.authority())
    {
        parts.headers.insert(header::HOST, v);
    }
    if !matches!(conn_out, Conn::Raw(_))
        && let Some(f) = forwarding.take()
    {
        f.apply(&mut parts.headers);
    }
    let (response, pooled) = match conn_out {
        Conn::Raw(raw) => {
            // Plain HTTP/1.1: the inline client sends, waits (read timeout counted from the
            // end of the request body) and returns a body that reads the socket itself.
            parts.version = Version::HTTP_11;
            if let Some(pq) = pq {
                parts.uri = Uri::try_from(pq).map_err(|_| ProxyError::BadRequest("invalid path"))?;
            }
            let replayable = matches!(body, Outgoing::Empty) && parts.method.is_idempotent();
            let reused = raw.reused;
            let timing = (sent_at, opts.read_timeout);
            // The fields can skip the map when nothing edits them on the way out.
            let wanted = h1::Wanted {
                limit: opts.max_response_body,
                verbatim: conn.own_http1 && opts.response_headers.is_empty(),
            };
            let sent = match h1::send(raw, &parts, body, forwarding.as_ref(), timing, wanted, active).await {
                Err(failed) if failed.unanswered && reused && replayable => {
                    // The backend closed the pooled connection as the request went out (an
                    // idle timeout racing with reuse), so no application saw it: send it
                    // again on a new connection, as nginx and HAProxy do for idempotent
                    // requests.
                    tracing::debug!(target: "gatehouse::proxy", backend = %backend_label(), error = %failed.error, "pooled connection was closed; retrying on a new one");
                    let settings = &group.config.pool;
                    let fresh =
                        pool::checkout(backend, &key, settings, opts.connect_timeout, pool::Want::Fresh, None, sent_at);
                    // Boxed, like the second exchange: inline they would make every
                    // request's future larger.
                    match Box::pin(fresh).await? {
                        Conn::Raw(fresh) => {
                            let retry = forwarding.as_ref();
                            Box::pin(h1::send(fresh, &parts, Outgoing::Empty, retry, timing, wanted, failed.active))
                                .await
                        }
                        _ => Err(failed),
                    }
                }
                other => other,
            };
            hdr::maps::give(parts.headers);
            let resp = sent.map_err(|e| raw_error(e.error, backend_label()))?;
            return finish_response(resp, opts, &backend_label, false);
        }
        Conn::H1(mut pooled) => {
            parts.version = Version::HTTP_11;
            if let Some(pq) = pq {
                parts.uri = Uri::try_from(pq).map_err(|_| ProxyError::BadRequest("invalid path"))?;
            }
            let req = Request::from_parts(parts, body);
            let sent = Box::pin(with_read_timeout(
                opts.read_timeout,
                sent_at,
                progress.as_deref(),
                pooled.tx.send_request(req),
            ))
            .await;
            (sent, Some(pooled))
        }
        Conn::H2(mut tx) => {
            parts.version = Version::HTTP_2;
            if wants_trailers {
                parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            let host = backend.backend.addr.authority();
            let pq = pq.as_deref().or(parts.uri.path_and_query().map(|p| p.as_str())).unwrap_or("/");
            parts.uri = Uri::try_from(format!("{}://{host}{pq}", if backend.backend.tls { "https" } else { "http" }))
                .map_err(|_| ProxyError::BadRequest("invalid path"))?;
            let req = Request::from_parts(parts, body);
            let sent = with_read_timeout(opts.read_timeout, sent_at, progress.as_deref(), tx.send_request(req));
            (Box::pin(sent).await, None)
        }
    };
    let mut response = match response {
        Err(_) => {
            return Err(ProxyError::ReadTimeout { backend: backend_label() });
        }
        Ok(Err(e)) => {
            return Err(match find_body_error(&e) {
                Some(BodyError::TooLarge(n)) => ProxyError::BodyTooLarge(n),
                Some(BodyError::Timeout) => ProxyError::ClientTimeout,
                _ => ProxyError::Upstream { backend: backend_label(), reason: e.to_string() },
            });
        }
        Ok(Ok(r)) => r,
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_side) = client_upgrade
    {
        let backend_side = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let _active = active;
            match (client_side.await, backend_side.await) {
                (Ok(a), Ok(b)) => {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
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
    finish_response(resp, opts, &backend_label, true)
}

/// What every backend response gets: the size limit on a declared length, and hop-by-hop
/// headers removed (`strip`; the inline client leaves them out while parsing).
fn finish_response(
    mut resp: Response<Outgoing>,
    opts: &RouteOptions,
    backend_label: &dyn Fn() -> String,
    strip: bool,
) -> Result<Response<Outgoing>, ProxyError> {
    // Only parse the length when a limit is set (the common case has none).
    if let Some(limit) = opts.max_response_body
        && let Some(len) = content_length(resp.headers()).or_else(|| resp.body().verbatim().and_then(|(_, v)| v.length))
        && len > limit
    {
        tracing::warn!(target: "gatehouse::proxy", backend = %backend_label(), size = len, limit, "upstream response larger than the limit");
        return Err(ProxyError::ResponseTooLarge { size: len, limit });
    }
    if strip {
        hdr::strip_hop_by_hop(resp.headers_mut(), false);
    }
    Ok(resp)
}

/// Maps an inline-client failure: our own body errors (client too slow, body too large)
/// keep their meaning; a timeout waiting for the head is a 504; the rest is a 502.
fn raw_error(e: std::io::Error, backend: String) -> ProxyError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return ProxyError::ReadTimeout { backend };
    }
    match e.get_ref().and_then(|inner| find_body_error(inner)) {
        Some(BodyError::TooLarge(n)) => ProxyError::BodyTooLarge(n),
        Some(BodyError::Timeout) => ProxyError::ClientTimeout,
        _ => ProxyError::Upstream { backend, reason: e.to_string() },
    }
}

/// Waits for the response head. (Callers box this future: hyper's paths are not the hot
/// one, and inline they would make every request's future larger.) The read timeout counts from the end of the request body:
/// while the client is still uploading, the write timeout (inside the body) governs.
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

/// The consistent-hash input for this request; falls back to the client address when the
/// configured header or cookie is missing.
fn request_hash(group: &Group, client: IpAddr, h: &HeaderMap) -> Option<u64> {
    if group.config.balance.algorithm != gatehouse_config::Algorithm::ConsistentHash {
        return None;
    }
    let from_ip = || match client {
        IpAddr::V4(v4) => hash_key(&v4.octets()),
        IpAddr::V6(v6) => hash_key(&v6.octets()),
    };
    Some(match &group.config.balance.hash_key {
        HashKey::ClientIp => from_ip(),
        HashKey::Header(name) => h.get(name).map(|v| hash_key(v.as_bytes())).unwrap_or_else(from_ip),
        HashKey::Cookie(name) => cookie(h, name).map(|v| hash_key(v.as_bytes())).unwrap_or_else(from_ip),
    })
}

fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(authority: Option<&str>, host: Option<&'static str>) -> Option<String> {
        let uri: Uri = match authority {
            Some(a) => format!("http://{a}/").parse().expect("uri"),
            None => Uri::from_static("/"),
        };
        let field = host.map(HeaderValue::from_static);
        request_host(&uri, field.as_ref()).map(Cow::into_owned)
    }

    #[test]
    fn hosts_route_by_name_only_and_odd_shapes_are_refused() {
        for (host, want) in [
            ("App.Test", "app.test"),
            ("app.test.:8443", "app.test"),
            ("app.test:", "app.test"),
            ("[::1]:8080", "::1"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("192.0.2.7:80", "192.0.2.7"),
            ("", ""),
        ] {
            assert_eq!(routed(None, Some(host)).as_deref(), Some(want), "{host:?}");
        }
        for bad in
            ["a.test:b.test", "a.test:80:81", "[a.test", "a.test]", "[::1]x", "[]", "a b", "a/b", "a@b", "a:123456"]
        {
            assert_eq!(routed(None, Some(bad)), None, "{bad:?}");
        }
        // The URI's authority wins over the field, user information included.
        assert_eq!(routed(Some("shop.test:8080"), Some("other.test")).as_deref(), Some("shop.test"));
        assert_eq!(routed(Some("evil.test@shop.test"), Some("shop.test")), None);
        // No host anywhere (HTTP/1.0): an empty routing host.
        assert_eq!(routed(None, None).as_deref(), Some(""));
    }
}
