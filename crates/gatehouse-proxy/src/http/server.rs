//! HTTP/1.1 client connections, served without hyper for the common case.
//!
//! A request without a body (GET, HEAD, DELETE, … — nearly all of them) is read with one
//! `read`, parsed with httparse, run through the pipeline (`handle`) and answered with one
//! `write` of head and first body bytes together. hyper's dispatcher, its per-request
//! channel and its timers are not involved (see bench/callgrind.sh for what they cost).
//!
//! The first request this loop does not serve itself — one with a body, an `Upgrade` or an
//! `Expect` header — hands the connection to hyper's HTTP/1 server for the rest of its life,
//! with the bytes read so far replayed in front (`framing::Inspected`); so does the HTTP/2
//! preface.
//! Requests with ambiguous framing are refused here with 400 before anything is handed on.
//!
//! Timeouts: until the first request head is complete, `header_read`; between requests,
//! `idle`; once bytes of a head have arrived, `header_read` again; while writing a response,
//! `send`. One `Sleep` per connection serves all of them: it is only moved when it fires
//! early, so a request costs a clock read, not a timer-wheel update.

use std::future::{Future, poll_fn};
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use super::header::maps;
use super::wire::{date, flush, put_field, write_all};
use crate::body::{Inbound, Outgoing};
use crate::conn::ConnInfo;
use crate::error::ProxyError;
use crate::observe::{AccessRecord, Failure};
use crate::state::RuntimeState;
use crate::timer::{Deadline, after};

/// Most header fields a request head may have here (hyper's limit was 100).
pub(crate) const MAX_HEADERS: usize = 256;
/// Body chunks up to this size are copied next to the head or chunk framing and go out in
/// the same write.
const COALESCE: usize = 16 * 1024;

pub struct Settings {
    pub header_read: Duration,
    pub idle: Duration,
    pub send: Duration,
    /// Largest request head accepted (431 beyond).
    pub max_head: usize,
}

/// How the loop ended.
pub enum Outcome<S> {
    Closed,
    /// A request for hyper: the connection and every byte read from it so far.
    HandOff {
        io: S,
        read: Bytes,
        h2: bool,
    },
}

/// How long a connection keeps its request state (the boxed `busy` loop and its buffers)
/// after a response while no next request arrives. A busy keep-alive connection keeps it
/// from one request to the next and allocates nothing; one idle for longer gives it back
/// and holds only the small idle wait. A worker lets a bounded number of connections
/// linger at a time (`spare::linger`).
const LINGER: Duration = Duration::from_secs(1);

/// Serves requests on `io` until the client closes, a timeout or error ends the
/// connection, shutdown is signalled, or a request needs hyper.
///
/// Two states. **Idle**: waiting for the first bytes of a request, holding no buffer (one
/// is lent by the worker's free list only while a read is tried). **Busy**: the request
/// loop (`busy`), boxed, so its state — parsing, the pipeline, the response write — is
/// allocated while requests come and freed after `LINGER` without one.
pub async fn serve<S>(
    mut io: S,
    info: &ConnInfo,
    shared: &ArcSwap<RuntimeState>,
    cfg: &Settings,
    stop: watch::Receiver<bool>,
) -> Outcome<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    let mut timer = Deadline::new(after(Instant::now(), cfg.header_read));
    // The live configuration, re-read only when a reload has swapped it.
    let mut state = arc_swap::Cache::new(shared);
    // One wait for the shutdown signal serves the whole connection (a fresh one per
    // request would register and unregister a waiter each time).
    let mut watcher = stop.clone();
    let mut stopping = std::pin::pin!(watcher.changed());
    let mut first = true;
    loop {
        // Idle: the head-read deadline for a new connection, the keep-alive one later.
        // Running out here, with nothing received, closes without an answer.
        match read_some(&mut io, &mut buf, &mut timer, stopping.as_mut(), true).await {
            Read::Data => {}
            Read::Closed | Read::Timeout | Read::Stop => return Outcome::Closed,
        }
        let mut conn = Busy { io: &mut io, buf: &mut buf, timer: &mut timer, first: &mut first };
        let ended = Box::pin(busy(&mut conn, info, &mut state, cfg, &stop, stopping.as_mut())).await;
        match ended {
            Ended::Lingered => super::spare::give_read_buffer(std::mem::take(&mut buf)),
            Ended::Closed => return Outcome::Closed,
            Ended::HandOff { h2 } => return Outcome::HandOff { io, read: buf.freeze(), h2 },
        }
    }
}

/// What the busy loop works on, borrowed from the connection.
struct Busy<'a, S> {
    io: &'a mut S,
    buf: &'a mut BytesMut,
    timer: &'a mut Deadline,
    /// No request has been read on this connection yet.
    first: &'a mut bool,
}

/// Why the busy loop returned.
enum Ended {
    /// No new request within `LINGER`: back to idle.
    Lingered,
    Closed,
    /// A request for hyper; the connection and `buf` go to it.
    HandOff {
        h2: bool,
    },
}

/// Serves requests as long as they come, starting with the bytes already in `buf`.
async fn busy<S, F>(
    conn: &mut Busy<'_, S>,
    info: &ConnInfo,
    state: &mut arc_swap::Cache<&ArcSwap<RuntimeState>, Arc<RuntimeState>>,
    cfg: &Settings,
    stop: &watch::Receiver<bool>,
    mut stopping: Pin<&mut F>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future,
{
    let Busy { io, buf, timer, first } = conn;
    super::spare::touch();
    // Reused for every request's parsed fields while the connection is busy.
    let mut spare = super::spare::field_list();
    let mut out = super::spare::write_buffer();
    // When the wait for the next request gives up and goes idle: `LINGER` after the last
    // response started (its clock read serves both deadlines).
    let mut rest_at: Option<Instant> = None;
    let ended = loop {
        // Wait for a complete request head. The timer carries the head-read deadline from
        // the connection's start, or from the first byte of a later head; until then, the
        // keep-alive deadline, or `LINGER` if that comes first.
        let mut head_deadline = **first;
        let head = loop {
            if !buf.is_empty() {
                if **first && b"PRI ".starts_with(&buf[..buf.len().min(4)]) {
                    if buf.len() < 4 {
                        // Too short to tell; read on.
                    } else {
                        break Err(Ended::HandOff { h2: true });
                    }
                } else {
                    match parse(buf, &mut spare) {
                        Ok(Some(head)) if head.len <= cfg.max_head => break Ok(head),
                        Ok(_) if buf.len() >= cfg.max_head => {
                            let status = too_large(buf, cfg.max_head);
                            early(info, status, "request head too large");
                            reject(*io, status).await;
                            break Err(Ended::Closed);
                        }
                        Ok(Some(head)) => break Ok(head),
                        Ok(None) => {}
                        Err(status) => {
                            tracing::debug!(peer = %info.peer, status = status.as_u16(), "malformed request head");
                            early(info, status, "malformed request head");
                            reject(*io, status).await;
                            break Err(Ended::Closed);
                        }
                    }
                }
                if !head_deadline {
                    head_deadline = true;
                    timer.set(after(Instant::now(), cfg.header_read));
                }
            }
            // Between requests the wait ends at `LINGER`; the keep-alive deadline stays.
            // When the worker has no place to linger left, the state goes back at once (the
            // idle wait reads what may already be there).
            let keep_alive_until = timer.at();
            let linger = rest_at.take().filter(|l| buf.is_empty() && *l < keep_alive_until);
            let _place = match linger {
                Some(l) => match super::spare::linger() {
                    Some(place) => {
                        timer.set(l);
                        Some(place)
                    }
                    None => break Err(Ended::Lingered),
                },
                None => None,
            };
            match read_some(*io, buf, timer, stopping.as_mut(), false).await {
                Read::Data => {}
                Read::Timeout if !buf.is_empty() => {
                    early(info, StatusCode::REQUEST_TIMEOUT, "request head not complete in time");
                    reject(*io, StatusCode::REQUEST_TIMEOUT).await;
                    break Err(Ended::Closed);
                }
                Read::Timeout if linger.is_some() => {
                    timer.set(keep_alive_until);
                    break Err(Ended::Lingered);
                }
                Read::Closed | Read::Timeout | Read::Stop => break Err(Ended::Closed),
            }
            if linger.is_some() {
                timer.set(keep_alive_until);
            }
        };
        let head = match head {
            Ok(h) => h,
            Err(ended) => break ended,
        };
        **first = false;
        if head.hand_off {
            break Ended::HandOff { h2: false };
        }

        let raw = buf.split_to(head.len).freeze();
        let (req, wants) = match head.into_request(&raw, &mut spare) {
            Ok(r) => r,
            Err(status) => {
                early(info, status, "malformed request head");
                reject(*io, status).await;
                break Ended::Closed;
            }
        };
        let (resp, pending) = crate::pipeline::serve(state.load(), info, req).await;
        drop(raw);

        // An idle time of zero is keep-alive off (`keepalive_timeout: 0`).
        let keep_alive = wants.keep_alive && !cfg.idle.is_zero() && !*stop.borrow();
        let now = Instant::now();
        timer.set(after(now, cfg.send));
        let mut delivered = Delivered { status: resp.status(), bytes: 0, body_failed: None };
        let written = write_response(*io, &mut out, resp, &wants, keep_alive, timer, &mut delivered).await;
        if let Some(p) = pending {
            let cut = match (&written, delivered.body_failed) {
                (_, Some(reason)) => Some(Failure::response_body(reason)),
                (Err(e), None) => Some(Failure::client_gone(e.to_string())),
                _ => None,
            };
            p.finish(delivered.status.as_u16(), delivered.bytes, cut);
        }
        match written {
            Ok(true) => {}
            Ok(false) => {
                shutdown(*io, timer).await;
                break Ended::Closed;
            }
            Err(e) => {
                tracing::debug!(peer = %info.peer, error = %e, "response not delivered");
                break Ended::Closed;
            }
        }
        // Counted from the start of the response: one clock read per request is enough.
        timer.set(after(now, cfg.idle));
        rest_at = Some(after(now, LINGER));
    };
    super::spare::give_field_list(spare);
    super::spare::give_write_buffer(out);
    ended
}

/// What the client's request head asked of the response.
pub(crate) struct Wants {
    head: bool,
    version: Version,
    keep_alive: bool,
    trailers: bool,
}

/// A header field: its name and where its value sits in the head.
pub(crate) type Field = (HeaderName, (usize, usize));

/// A parsed request head. Values are kept as ranges into the buffer so they can become
/// slices of one shared `Bytes` instead of copies.
pub(crate) struct Head {
    pub(crate) len: usize,
    pub(crate) method: Method,
    pub(crate) path: (usize, usize),
    pub(crate) version: Version,
    pub(crate) fields: Vec<Field>,
    keep_alive: bool,
    trailers: bool,
    /// The request needs hyper (body, upgrade, `Expect`).
    pub(crate) hand_off: bool,
}

/// The answer to a head longer than `max`: 414 while the request line alone does not fit
/// (RFC 9110 §15.5.15), 431 when the fields do not.
fn too_large(buf: &[u8], max: usize) -> StatusCode {
    match memchr::memchr(b'\n', buf) {
        Some(end) if end < max => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => StatusCode::URI_TOO_LONG,
    }
}

/// The longest request target `http::Uri` holds; longer ones are answered 414 here rather
/// than failing to parse (400).
const MAX_TARGET: usize = u16::MAX as usize - 1;
/// The longest field name `http::HeaderName` holds; longer ones are answered 431.
const MAX_NAME: usize = u16::MAX as usize;

/// Parses a request head: `Ok(None)` while incomplete; `Err(status)` for heads that must be
/// refused (malformed, ambiguous framing, too many fields).
pub(crate) fn parse(buf: &[u8], spare: &mut Vec<Field>) -> Result<Option<Head>, StatusCode> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start, start + s.len())
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
    let path = range(req.path.unwrap_or("").as_bytes());
    if path.1 - path.0 > MAX_TARGET {
        return Err(StatusCode::URI_TOO_LONG);
    }
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut head = Head {
        len,
        method,
        path,
        version,
        fields: std::mem::take(spare),
        keep_alive: version == Version::HTTP_11,
        trailers: false,
        hand_off: false,
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut chunked_fields = 0;
    for h in req.headers.iter() {
        if h.name.len() > MAX_NAME {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
        if name == header::CONTENT_LENGTH {
            // RFC 9112 §6.3: several different lengths are an error; repeats of one are not.
            // Digits only (RFC 9110 §8.6): `u64::from_str` would also take `+5`.
            let digits = h.value.trim_ascii();
            let n = std::str::from_utf8(digits)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(StatusCode::BAD_REQUEST)?;
            if length.is_some_and(|l| l != n) {
                return Err(StatusCode::BAD_REQUEST);
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // Only a final `chunked` frames a request body (RFC 9112 §6.3), applied once;
            // HTTP/1.0 has none. A coding before it (`gzip, chunked`) cannot be passed on
            // as if it were not there: 501, as nginx answers.
            chunked_fields += 1;
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            if version == Version::HTTP_10 || !last.trim_ascii().eq_ignore_ascii_case(b"chunked") || chunked_fields > 1
            {
                return Err(StatusCode::BAD_REQUEST);
            }
            if h.value.contains(&b',') {
                return Err(StatusCode::NOT_IMPLEMENTED);
            }
            chunked = true;
        } else if name == header::CONNECTION {
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    head.keep_alive = true;
                }
            }
        } else if name == header::UPGRADE || name == header::EXPECT {
            head.hand_off = true;
        } else if name == header::TE {
            head.trailers = h.value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
        }
        head.fields.push((name, range(h.value)));
    }
    // RFC 9112 §6.1: both together are a smuggling attempt until proven otherwise.
    if chunked && length.is_some() {
        return Err(StatusCode::BAD_REQUEST);
    }
    if chunked || length.is_some_and(|n| n > 0) {
        head.hand_off = true;
    }
    Ok(Some(head))
}

impl Head {
    /// Builds the request; hands the emptied field list back for the next request.
    pub(crate) fn into_request(
        mut self,
        raw: &Bytes,
        spare: &mut Vec<Field>,
    ) -> Result<(Request<Inbound>, Wants), StatusCode> {
        let uri = Uri::from_maybe_shared(raw.slice(self.path.0..self.path.1)).map_err(|_| StatusCode::BAD_REQUEST)?;
        // Room for the forwarding headers the proxy adds, so the map is not grown per request.
        let mut headers = maps::take(self.fields.len() + 8);
        for (name, (start, end)) in self.fields.drain(..) {
            let value = HeaderValue::from_maybe_shared(raw.slice(start..end)).map_err(|_| StatusCode::BAD_REQUEST)?;
            headers.append(name, value);
        }
        *spare = self.fields;
        let wants = Wants {
            head: self.method == Method::HEAD,
            version: self.version,
            keep_alive: self.keep_alive,
            trailers: self.trailers,
        };
        let mut req = Request::new(Inbound::Empty);
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = headers;
        Ok((req, wants))
    }
}

enum Read {
    Data,
    Closed,
    Timeout,
    Stop,
}

/// Reads what is available. The timer and the shutdown signal are only looked at when the
/// socket has nothing yet. With `lend`, an empty buffer is given back to the worker's free
/// list while the read waits (an idle connection holds none).
/// `stopping` resolves on shutdown; it must not be polled again once it has.
async fn read_some<S: AsyncRead + Unpin, F: Future>(
    io: &mut S,
    buf: &mut BytesMut,
    timer: &mut Deadline,
    mut stopping: Pin<&mut F>,
    lend: bool,
) -> Read {
    poll_fn(|cx| {
        if buf.capacity() == 0 {
            *buf = super::spare::read_buffer();
        }
        buf.reserve(super::spare::READ);
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Read::Closed),
            Poll::Ready(Ok(_)) => Poll::Ready(Read::Data),
            Poll::Pending => {
                if lend && buf.is_empty() {
                    super::spare::give_read_buffer(std::mem::take(buf));
                }
                if stopping.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Read::Stop)
                } else if timer.poll_expired(cx) {
                    Poll::Ready(Read::Timeout)
                } else {
                    Poll::Pending
                }
            }
        }
    })
    .await
}

/// Why a response is cut off: writing past its declared length would put the excess
/// where the client expects the next response (response splitting).
const TOO_LONG: &str = "response body longer than its Content-Length";

/// Writes the response; `Ok(true)` when the connection can serve another request.
async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
    resp: Response<Outgoing>,
    wants: &Wants,
    mut keep_alive: bool,
    timer: &mut Deadline,
    delivered: &mut Delivered,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let bodiless = wants.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    out.clear();
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut declared: Option<u64> = None;
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH {
            declared = value.to_str().ok().and_then(|s| s.trim().parse().ok());
        } else if *name == header::DATE {
            has_date = true;
        } else if *name == header::CONNECTION {
            if value.as_bytes().eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            }
            continue;
        } else if *name == header::TRANSFER_ENCODING {
            continue;
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some((lines, kept)) = body.verbatim() {
        // The backend's fields, hop-by-hop ones already gone; a field the proxy set in the
        // map (the request ID) replaces the backend's.
        declared = declared.or(kept.length);
        has_date |= kept.date;
        put_lines(out, lines, &parts.headers);
    }
    let framing = if declared.is_some() {
        Framing::Length
    } else if let Some(n) = body.size_hint().exact() {
        if !(status.is_informational() || status == StatusCode::NO_CONTENT) {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Length
    } else if bodiless {
        Framing::Length
    } else if wants.version == Version::HTTP_11 {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    if !has_date {
        put_field(out, b"date", &date());
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if wants.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        maps::give(parts.headers);
        write_all(io, out, timer).await?;
        flush(io, timer).await?;
        return Ok(keep_alive);
    }

    // The first chunk usually comes with the response head (or is already buffered):
    // poll once without waiting so both go out in one write.
    let mut sent: u64 = 0;
    let first = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
        Poll::Ready(Some(Ok(frame)))
            if declared.is_some_and(|n| frame.data_ref().is_some_and(|d| d.len() as u64 > n)) =>
        {
            Poll::Ready(Some(Err(TOO_LONG.into())))
        }
        other => other,
    };
    if let Poll::Ready(Some(Err(e))) = &first {
        // Nothing has gone out yet (a backend body broken from its first byte, such as a
        // malformed chunk size): there is still time for a status code. It is the usual
        // error answer, with the request's ID, on a connection that then closes.
        tracing::warn!(target: "gatehouse::proxy", error = %e, "backend response body failed before any byte was sent");
        let failed = ProxyError::Upstream { backend: String::new(), reason: e.to_string() };
        let mut answer = failed.answer();
        if let Some(id) = parts.headers.get(&super::header::X_REQUEST_ID) {
            answer.headers_mut().insert(&super::header::X_REQUEST_ID, id.clone());
        }
        maps::give(parts.headers);
        delivered.status = answer.status();
        delivered.body_failed = Some(format!("response body failed: {e}"));
        let mut answered = Delivered { status: answer.status(), bytes: 0, body_failed: None };
        Box::pin(write_response(io, out, answer, wants, false, timer, &mut answered)).await?;
        delivered.bytes = answered.bytes;
        return Ok(false);
    }
    maps::give(parts.headers);
    let mut pending = match first {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => {
            write_all(io, out, timer).await?;
            out.clear();
            None
        }
    };
    loop {
        let frame = match pending.take() {
            Some(f) => f,
            None => poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await,
        };
        match frame {
            None => break,
            Some(Err(e)) => {
                // Too late for a status code: cut the connection so the client sees the
                // response is incomplete.
                delivered.body_failed = Some(format!("response body failed: {e}"));
                return Err(io::Error::other(e));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if declared.is_some_and(|n| sent > n) {
                        delivered.body_failed = Some(TOO_LONG.into());
                        return Err(io::Error::other(TOO_LONG));
                    }
                    if framing == Framing::Chunked {
                        let _ = write!(out, "{:x}\r\n", data.len());
                    }
                    if data.len() <= COALESCE {
                        out.extend_from_slice(&data);
                    } else {
                        write_all(io, out, timer).await?;
                        out.clear();
                        write_all(io, &data, timer).await?;
                    }
                    if framing == Framing::Chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    // The last piece waits for the end of the body, so a chunked terminator
                    // goes out in the same write.
                    if !body.is_end_stream() {
                        write_all(io, out, timer).await?;
                        out.clear();
                        delivered.bytes = sent;
                    }
                }
                Err(frame) => {
                    if let (Framing::Chunked, true, Ok(trailers)) = (framing, wants.trailers, frame.into_trailers()) {
                        out.extend_from_slice(b"0\r\n");
                        for (name, value) in &trailers {
                            put_field(out, name.as_str().as_bytes(), value.as_bytes());
                        }
                        out.extend_from_slice(b"\r\n");
                        write_all(io, out, timer).await?;
                        out.clear();
                        delivered.bytes = sent;
                        flush(io, timer).await?;
                        return Ok(keep_alive);
                    }
                }
            },
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        write_all(io, out, timer).await?;
        out.clear();
    }
    delivered.bytes = sent;
    flush(io, timer).await?;
    if let Some(n) = declared
        && n != sent
    {
        // The backend's body did not match its Content-Length: the framing is broken.
        let reason = format!("response body was {sent} bytes, declared {n}");
        delivered.body_failed = Some(reason.clone());
        return Err(io::Error::other(reason));
    }
    Ok(keep_alive && framing != Framing::Close)
}

/// What a response write got to the client, for its access record.
struct Delivered {
    /// The status sent (a 502 when the backend's body failed before its first byte).
    status: StatusCode,
    /// Body bytes written to the connection.
    bytes: u64,
    /// Why the backend's body did not end normally.
    body_failed: Option<String>,
}

/// Records a request refused before it reached the pipeline.
fn early(info: &ConnInfo, status: StatusCode, reason: &str) {
    if let Some(sink) = &info.sink {
        sink.record(AccessRecord::early(info.peer.ip(), status.as_u16(), reason));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    Close,
}

/// Appends `name: value\r\n` lines, leaving out those whose name `set` has. (The lines
/// never hold an `X-Request-ID`: see `h1::Verbatim`.)
fn put_lines(out: &mut Vec<u8>, lines: &[u8], set: &HeaderMap) {
    if set.keys().all(|k| *k == super::header::X_REQUEST_ID) {
        out.extend_from_slice(lines);
        return;
    }
    let mut rest = lines;
    while let Some(end) = memchr::memchr(b'\n', rest) {
        let (line, next) = rest.split_at(end + 1);
        rest = next;
        let name = line.split(|b| *b == b':').next().unwrap_or(b"");
        if !set.keys().any(|k| k.as_str().as_bytes().eq_ignore_ascii_case(name)) {
            out.extend_from_slice(line);
        }
    }
}

/// Closes the write side (TLS close_notify), bounded by the timer.
async fn shutdown<S: AsyncWrite + Unpin>(io: &mut S, timer: &mut Deadline) {
    let _ = poll_fn(|cx| match Pin::new(&mut *io).poll_shutdown(cx) {
        Poll::Pending if timer.poll_expired(cx) => Poll::Ready(Ok(())),
        other => other,
    })
    .await;
}

/// Answers a request that cannot be served and closes (best effort, bounded).
async fn reject<S: AsyncWrite + Unpin>(io: &mut S, status: StatusCode) {
    let body = format!("{status}\n");
    let msg = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        String::from_utf8_lossy(&date()),
    );
    let mut timer = Deadline::new(Instant::now() + Duration::from_secs(5));
    if write_all(io, msg.as_bytes(), &mut timer).await.is_ok() {
        let _ = flush(io, &mut timer).await;
        shutdown(io, &mut timer).await;
    }
}

#[cfg(test)]
mod tests;
