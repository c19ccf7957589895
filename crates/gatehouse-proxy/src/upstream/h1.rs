//! A small HTTP/1.1 client for plain (`http://`, `unix:`) backends, driven inline by the
//! request's own task.
//!
//! hyper's client runs each connection as a separate task fed through channels; for a
//! proxy that sends one request and streams one response at a time per connection, that
//! costs more than the protocol work itself (see bench/callgrind.sh). This codec writes the
//! request head in one write, parses the response head with httparse, and hands out a body
//! that reads the socket directly and puts the connection back in the pool when the
//! response ends cleanly. Upgrades, TLS and HTTP/2 backends keep using hyper.
//!
//! Must not be used for requests whose framing it cannot express: it only sends
//! `Content-Length` or chunked bodies, and reads length, chunked or close-delimited bodies.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use super::ActiveGuard;
use super::pool::Key;
use crate::body::{BoxError, Budget, Outgoing};
use crate::error::BodyError;
use crate::http::header::{self as hdr, FieldKind};
use crate::timer::{Deadline, IdleTimer};

/// Largest response head accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// A pooled connection is only reused if the backend has not closed it (or sent
    /// something unasked) while it sat idle.
    pub fn is_idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let r = match self {
            Stream::Tcp(s) => s.try_read(&mut probe),
            Stream::Unix(s) => s.try_read(&mut probe),
        };
        matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection with its read buffer (bytes read past one response stay for the next).
pub struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
    pub key: Key,
    pub max_idle: usize,
    /// How long it may stay idle in the pool (`timeouts.idle`).
    pub idle_timeout: std::time::Duration,
    /// Held while the connection exists (`pool.max_connections_per_host`).
    pub _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The response-head timeout, kept with the connection so a request does not register
    /// a new timer.
    pub timer: Deadline,
    /// Reused buffers: the request head being written, the response fields being parsed.
    pub out: Vec<u8>,
    pub fields: Vec<(HeaderName, std::ops::Range<usize>)>,
    /// Came from the idle pool (it may have been closed by the backend in the meantime).
    pub reused: bool,
    /// When its latest request started; its idle time in the pool counts from there.
    pub used_at: Instant,
}

/// A failed exchange.
pub struct SendError {
    pub error: io::Error,
    /// The connection broke before any byte of an answer arrived: on a reused connection,
    /// most likely the backend closed it while idle, and an idempotent request can be sent
    /// again on a new one.
    pub unanswered: bool,
    /// Handed back for a retry.
    pub active: ActiveGuard,
}

/// How the response should come back.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    /// `max_response_body`: the body is cut off (with an error) past this many bytes.
    pub limit: Option<u64>,
    /// Fields as lines (`Verbatim`) rather than in the response's map: only for a client
    /// side that writes the response head itself and has no rules to apply to the fields.
    pub verbatim: bool,
}

/// Sends a request and reads the response head, with hop-by-hop fields already removed.
/// The body is read by the returned `Response`'s `Outgoing::Raw` body, which releases the
/// connection when it has been read to its end.
pub async fn send(
    conn: Conn,
    parts: &http::request::Parts,
    body: Outgoing,
    forwarding: Option<&hdr::Forwarding>,
    (started, read_timeout): (Instant, Duration),
    wanted: Wanted,
    active: ActiveGuard,
) -> Result<Response<Outgoing>, SendError> {
    match exchange(conn, parts, body, forwarding, (started, read_timeout), wanted.verbatim).await {
        Ok((conn, (resp, framing, keep_alive, verbatim))) => {
            let body = RawBody {
                conn: Some(conn),
                framing,
                keep_alive,
                timer: IdleTimer::new(read_timeout),
                budget: Budget::new(wanted.limit),
                verbatim,
                _active: active,
            };
            Ok(resp.map(|()| Outgoing::Raw(Box::new(body))))
        }
        Err((error, answered)) => {
            let unanswered = !answered
                && matches!(
                    error.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::WriteZero
                );
            Err(SendError { error, unanswered, active })
        }
    }
}

type Exchanged = (Conn, Head);

/// Writes the request and reads the response head. On failure, says whether any byte of
/// an answer had arrived.
async fn exchange(
    mut conn: Conn,
    parts: &http::request::Parts,
    mut body: Outgoing,
    forwarding: Option<&hdr::Forwarding>,
    (started, read_timeout): (Instant, Duration),
    verbatim: bool,
) -> Result<Exchanged, (io::Error, bool)> {
    let none = |e: io::Error| (e, false);
    conn.used_at = started;
    let head_only = parts.method == Method::HEAD;
    let empty = body.is_end_stream();
    // Only a body, or a bodiless request of a method that normally has one, needs to know.
    let has_length = (!empty || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH))
        && parts.headers.contains_key(header::CONTENT_LENGTH);
    let chunked = !empty && !has_length;

    let mut head = std::mem::take(&mut conn.out);
    head.clear();
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    match forwarding {
        None => write_headers(&mut head, &parts.headers),
        Some(f) => {
            for (name, value) in &parts.headers {
                if !f.replaces(name) {
                    write_field(&mut head, name, value);
                }
            }
            for (name, value) in f.fields() {
                write_field(&mut head, name, value);
            }
        }
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if empty && !has_length && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        head.extend_from_slice(b"content-length: 0\r\n");
    }
    head.extend_from_slice(b"\r\n");
    // A backend that stops reading must not hold the request forever: every write gets
    // the read timeout.
    let stall = read_timeout;
    write(&mut conn.stream, &mut conn.timer, &head, stall).await.map_err(none)?;
    conn.out = head;

    if !empty {
        let mut trailers_sent = false;
        let mut chunk_head = Vec::with_capacity(16);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| none(io::Error::other(e)))?;
            match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) if chunked => {
                    // Small chunks go out with their framing in one write.
                    chunk_head.clear();
                    chunk_head.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    if data.len() <= 16 * 1024 {
                        chunk_head.extend_from_slice(&data);
                        chunk_head.extend_from_slice(b"\r\n");
                        write(&mut conn.stream, &mut conn.timer, &chunk_head, stall).await.map_err(none)?;
                    } else {
                        write(&mut conn.stream, &mut conn.timer, &chunk_head, stall).await.map_err(none)?;
                        write(&mut conn.stream, &mut conn.timer, &data, stall).await.map_err(none)?;
                        write(&mut conn.stream, &mut conn.timer, b"\r\n", stall).await.map_err(none)?;
                    }
                }
                Ok(data) => write(&mut conn.stream, &mut conn.timer, &data, stall).await.map_err(none)?,
                Err(frame) => {
                    if let (true, Ok(trailers)) = (chunked, frame.into_trailers()) {
                        let mut t = b"0\r\n".to_vec();
                        write_headers(&mut t, &trailers);
                        t.extend_from_slice(b"\r\n");
                        write(&mut conn.stream, &mut conn.timer, &t, stall).await.map_err(none)?;
                        trailers_sent = true;
                    }
                }
            }
        }
        if chunked && !trailers_sent {
            write(&mut conn.stream, &mut conn.timer, b"0\r\n\r\n", stall).await.map_err(none)?;
        }
    }

    // The wait for the answer starts once the request is out (for a bodiless one, that is
    // as good as when the request started; a clock read saved).
    conn.timer.set(crate::timer::after(if empty { started } else { Instant::now() }, read_timeout));
    match read_head(&mut conn, head_only, verbatim).await {
        Ok(head) => Ok((conn, head)),
        Err(e) => {
            let answered = !conn.buf.is_empty();
            Err((e, answered))
        }
    }
}

/// Writes all of `data`; the timer is only armed when the socket cannot take it at once
/// (the usual request head goes out in one non-blocking write, with no timer at all).
async fn write(stream: &mut Stream, timer: &mut Deadline, mut data: &[u8], limit: Duration) -> io::Result<()> {
    while !data.is_empty() {
        let r = match stream {
            Stream::Tcp(s) => s.try_write(data),
            Stream::Unix(s) => s.try_write(data),
        };
        match r {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "backend closed the connection")),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if data.is_empty() {
        return Ok(());
    }
    timer.set(crate::timer::after(Instant::now(), limit));
    crate::http::wire::write_all(stream, data, timer).await.map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            io::Error::new(io::ErrorKind::TimedOut, "backend stopped reading the request")
        } else {
            e
        }
    })
}

fn write_headers(out: &mut Vec<u8>, h: &HeaderMap) {
    for (name, value) in h {
        write_field(out, name, value);
    }
}

fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    crate::http::wire::put_field(out, name.as_str().as_bytes(), value.as_bytes());
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

async fn read_head(conn: &mut Conn, head_only: bool, verbatim: bool) -> io::Result<Head> {
    loop {
        let lines = verbatim.then_some(&mut conn.out);
        if let Some(head) = parse_head(&mut conn.buf, &mut conn.fields, head_only, lines)? {
            return Ok(head);
        }
        if conn.buf.len() >= MAX_HEAD {
            return Err(io::Error::other("backend response head too large"));
        }
        read_more(conn).await?;
    }
}

/// A parsed response head: the response (its fields in the map, or in `Verbatim`), how
/// its body is framed, and whether the connection can be reused after it.
pub(crate) type Head = (Response<()>, Framing, bool, Option<Verbatim>);

/// The backend's response fields kept as lines (`name: value\r\n`) instead of a
/// `HeaderMap`, for a client side that writes HTTP/1.1 itself and would only turn the map
/// back into lines. Left out: hop-by-hop fields, and `X-Request-ID` (the proxy sets its own
/// on every response). The lines sit in the connection's `out` buffer.
#[derive(Debug, Clone, Copy)]
pub struct Verbatim {
    /// The response's `Content-Length`, which is among the lines.
    pub length: Option<u64>,
    /// A `Date` field is among the lines.
    pub date: bool,
}

/// Reads more of the response head, within the connection's deadline.
async fn read_more(conn: &mut Conn) -> io::Result<()> {
    conn.buf.reserve(8 * 1024);
    let n =
        std::future::poll_fn(|cx| match tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf) {
            Poll::Pending if conn.timer.poll_expired(cx) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "backend did not answer in time")))
            }
            other => other,
        })
        .await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "backend closed the connection"));
    }
    Ok(())
}

/// A backend response body read straight from the connection.
pub struct RawBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    timer: IdleTimer,
    budget: Budget,
    /// Set when the fields were kept as lines in `conn.out`.
    verbatim: Option<Verbatim>,
    _active: ActiveGuard,
}

impl RawBody {
    /// The response's fields when they were kept as lines (see `Wanted::verbatim`). Only
    /// available before the body is first polled: a finished body has handed its
    /// connection, and with it the lines, back to the pool.
    pub fn verbatim(&self) -> Option<(&[u8], Verbatim)> {
        Some((&self.conn.as_ref()?.out, self.verbatim?))
    }

    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            super::pool::release_raw(conn);
        }
    }

    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }

    /// Reads more bytes into the buffer; `Ready(Ok(0))` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(Ok(0)) };
        conn.buf.reserve(16 * 1024);
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf)
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            let step = match this.framing {
                Framing::Empty => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if !conn.buf.is_empty() {
                        let take = (left as usize).min(conn.buf.len());
                        let data = conn.buf.split_to(take).freeze();
                        let left = left - take as u64;
                        this.framing = if left == 0 { Framing::Empty } else { Framing::Length(left) };
                        Some(data)
                    } else {
                        None
                    }
                }
                Framing::UntilClose => (!conn.buf.is_empty()).then(|| conn.buf.split().freeze()),
                Framing::Chunked(state) => match chunk_step(&mut conn.buf, state) {
                    Ok((next, data)) => {
                        this.framing = next;
                        if matches!(next, Framing::Empty) {
                            this.finish();
                            return match data {
                                Some(d) if !d.is_empty() => Poll::Ready(Some(Ok(Frame::data(d)))),
                                _ => Poll::Ready(None),
                            };
                        }
                        match data {
                            Some(d) if !d.is_empty() => Some(d),
                            Some(_) => continue,
                            None => None,
                        }
                    }
                    Err(e) => return this.fail(Box::new(e)),
                },
            };
            if let Some(data) = step {
                this.timer.progress();
                if let Some(limit) = this.budget.exceeded(data.len()) {
                    tracing::warn!(limit, "upstream response body exceeded the limit; response cut off");
                    return this.fail(Box::new(BodyError::ResponseTooLarge(limit)));
                }
                if matches!(this.framing, Framing::Empty) {
                    this.finish();
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    return if matches!(this.framing, Framing::UntilClose) {
                        this.conn = None;
                        Poll::Ready(None)
                    } else {
                        this.fail(Box::new(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "backend closed the connection mid-body",
                        )))
                    };
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return this.fail(Box::new(e)),
                Poll::Pending => {
                    if this.timer.expired(cx) {
                        return this.fail(Box::new(BodyError::Timeout));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for RawBody {
    fn drop(&mut self) {
        if matches!(self.framing, Framing::Empty) {
            self.finish();
        }
    }
}

/// One step of the chunked decoder over what is buffered. Returns the next state and, when
/// a piece of data was decoded, the data (`Some(empty)` = progress without data, `None` =
/// need more bytes).
pub(crate) fn chunk_step(buf: &mut BytesMut, state: Chunk) -> io::Result<(Framing, Option<Bytes>)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("invalid chunked body from backend: {m}"));
    match state {
        Chunk::Size => {
            let Some(end) = memchr::memchr(b'\n', buf) else {
                if buf.len() > 4096 {
                    return Err(bad("chunk size line too long"));
                }
                return Ok((Framing::Chunked(Chunk::Size), None));
            };
            // The same limit when the whole line came in one read (found by fuzz/).
            if end > 4096 {
                return Err(bad("chunk size line too long"));
            }
            let line = buf.split_to(end + 1);
            let size = chunk_size(&line).ok_or_else(|| bad("chunk size"))?;
            let next = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
            Ok((Framing::Chunked(next), Some(Bytes::new())))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok((Framing::Chunked(state), None));
            }
            let take = (left as usize).min(buf.len());
            let data = buf.split_to(take).freeze();
            let left = left - take as u64;
            let next = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
            Ok((Framing::Chunked(next), Some(data)))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok((Framing::Chunked(state), None));
            }
            if &buf[..2] != b"\r\n" {
                return Err(bad("missing CRLF after chunk"));
            }
            buf.advance(2);
            Ok((Framing::Chunked(Chunk::Size), Some(Bytes::new())))
        }
        Chunk::Trailers => {
            // Trailer fields are dropped (HTTP/1.1 backends rarely send them); the body ends
            // at the empty line.
            let Some(end) = memchr::memchr(b'\n', buf) else {
                if buf.len() > MAX_HEAD {
                    return Err(bad("trailers too long"));
                }
                return Ok((Framing::Chunked(state), None));
            };
            if end > MAX_HEAD {
                return Err(bad("trailers too long"));
            }
            let line = buf.split_to(end + 1);
            if line.as_ref() == b"\r\n" || line.as_ref() == b"\n" {
                Ok((Framing::Empty, None))
            } else {
                Ok((Framing::Chunked(Chunk::Trailers), Some(Bytes::new())))
            }
        }
    }
}

/// The size on a chunk-size line (ending in LF or CRLF): hex digits, then nothing or
/// extensions after a `;` (RFC 9112 §7.1, white space allowed before it). No sign, no
/// leading white space: a front end and a back end that read a size differently is how
/// responses get desynchronised.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = &line[digits..];
    if digits == 0 || !(rest.is_empty() || rest.trim_ascii_start().starts_with(b";")) {
        return None;
    }
    // Leading zeros are allowed and do not count against the 16 digits of a u64.
    let zeros = line[..digits].iter().take_while(|b| **b == b'0').count();
    let significant = &line[zeros..digits];
    if significant.len() > 16 {
        return None;
    }
    significant.iter().try_fold(0u64, |n, b| Some(n << 4 | u64::from((*b as char).to_digit(16)?)))
}

mod head;
pub(crate) use head::parse_head;

#[cfg(test)]
mod tests;
