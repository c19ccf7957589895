//! Body types on the proxy path. One enum serves both directions so upstream connections
//! and the downstream server share a body type without boxing on the hot path.
//!
//! Owns the streaming limits and idle timers on bodies; must not buffer whole bodies (a
//! filter's read-ahead, `peek`, is bounded by the filter).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::error::BodyError;
use crate::timer::IdleTimer;
use crate::upstream::ActiveGuard;
use crate::upstream::pool::Pooled;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body arriving from a client: hyper's (HTTP/1 and HTTP/2) or any other
/// (HTTP/3 streams), so every protocol enters the same pipeline.
pub enum Inbound {
    /// A request without a body (the HTTP/1.1 server's own path).
    Empty,
    Hyper(Incoming),
    Other(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Inbound::Empty => Poll::Ready(None),
            Inbound::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(|e| Box::new(e) as BoxError),
            Inbound::Other(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Empty => true,
            Inbound::Hyper(b) => b.is_end_stream(),
            Inbound::Other(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Empty => SizeHint::with_exact(0),
            Inbound::Hyper(b) => b.size_hint(),
            Inbound::Other(b) => b.size_hint(),
        }
    }
}

/// A body leaving Gatehouse: to the client, or to a backend.
pub enum Outgoing {
    Empty,
    Full(Option<Bytes>),
    /// A backend's response streaming to the client.
    Upstream(Box<UpstreamBody>),
    /// A response read by the inline HTTP/1.1 client (`upstream::h1`).
    Raw(Box<crate::upstream::h1::RawBody>),
    /// A client's request body streaming to a backend.
    Request(Box<RequestBody>),
    /// Anything else (static files).
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
    /// A response whose access record is emitted when it ends (`observe::Logged`).
    Logged(Box<crate::observe::Logged>),
}

impl Outgoing {
    pub fn full(b: impl Into<Bytes>) -> Self {
        Outgoing::Full(Some(b.into()))
    }

    /// A backend response's fields kept as lines beside the (then nearly empty) map; see
    /// `upstream::h1::Wanted::verbatim`. Read before the body is first polled.
    pub fn verbatim(&self) -> Option<(&[u8], crate::upstream::h1::Verbatim)> {
        match self {
            Outgoing::Raw(b) => b.verbatim(),
            Outgoing::Logged(l) => l.inner().verbatim(),
            _ => None,
        }
    }
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Outgoing::Empty => Poll::Ready(None),
            Outgoing::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Outgoing::Upstream(u) => Pin::new(u.as_mut()).poll_frame(cx),
            Outgoing::Raw(r) => Pin::new(r.as_mut()).poll_frame(cx),
            Outgoing::Request(r) => Pin::new(r.as_mut()).poll_frame(cx),
            Outgoing::Boxed(b) => Pin::new(b).poll_frame(cx),
            Outgoing::Logged(l) => Pin::new(l.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Empty => true,
            Outgoing::Full(b) => b.is_none(),
            Outgoing::Upstream(u) => u.inner.is_end_stream(),
            Outgoing::Raw(r) => r.is_end_stream(),
            Outgoing::Request(r) => r.inner.is_end_stream(),
            Outgoing::Boxed(b) => b.is_end_stream(),
            Outgoing::Logged(l) => l.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outgoing::Empty => SizeHint::with_exact(0),
            Outgoing::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Outgoing::Upstream(u) => u.inner.size_hint(),
            Outgoing::Raw(r) => r.size_hint(),
            Outgoing::Request(r) => r.inner.size_hint(),
            Outgoing::Boxed(b) => b.size_hint(),
            Outgoing::Logged(l) => l.size_hint(),
        }
    }
}

/// Counts a body's bytes against an optional size limit.
pub(crate) struct Budget {
    limit: Option<u64>,
    seen: u64,
}

impl Budget {
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Budget { limit, seen: 0 }
    }

    /// Records `n` more bytes; returns the limit once it has been passed.
    pub(crate) fn exceeded(&mut self, n: usize) -> Option<u64> {
        let limit = self.limit?;
        self.seen += n as u64;
        (self.seen > limit).then_some(limit)
    }
}

/// A backend's response body: enforces the read timeout between chunks and the response
/// size limit, and hands the connection back to the pool once the body has ended cleanly.
pub struct UpstreamBody {
    inner: Incoming,
    timer: IdleTimer,
    budget: Budget,
    conn: Option<Pooled>,
    _active: Option<ActiveGuard>,
}

impl UpstreamBody {
    pub fn new(
        inner: Incoming,
        read_timeout: Duration,
        limit: Option<u64>,
        conn: Option<Pooled>,
        active: Option<ActiveGuard>,
    ) -> Self {
        UpstreamBody { inner, timer: IdleTimer::new(read_timeout), budget: Budget::new(limit), conn, _active: active }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer.progress();
                if let Some(limit) = frame.data_ref().and_then(|d| this.budget.exceeded(d.len())) {
                    this.conn = None;
                    tracing::warn!(limit, "upstream response body exceeded the limit; response cut off");
                    return Poll::Ready(Some(Err(Box::new(BodyError::ResponseTooLarge(limit)))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                if let Some(c) = this.conn.take() {
                    c.release();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.expired(cx) {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(BodyError::Timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper stops polling once a body reports its end, so a body that was read to its
        // known length returns its connection here.
        if let Some(c) = self.conn.take()
            && self.inner.is_end_stream()
        {
            c.release();
        }
    }
}

/// How far a request body has got, so the response timeout can start once it is sent
/// (a slow upload is governed by the write timeout, not the read timeout).
#[derive(Default)]
pub struct Progress {
    /// Milliseconds after the start at which the body ended, plus one; 0 while it still flows.
    done_at_ms: AtomicU64,
    /// Body bytes received so far (for the access record).
    bytes: AtomicU64,
}

impl Progress {
    /// When the body finished, if it has.
    pub fn finished(&self, start: Instant) -> Option<Instant> {
        match self.done_at_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(start + Duration::from_millis(ms - 1)),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A client's request body on its way to a backend: enforces the body size limit and the
/// time allowed between chunks (`timeouts.write`).
pub struct RequestBody {
    inner: Inbound,
    timer: IdleTimer,
    budget: Budget,
    start: Instant,
    progress: Arc<Progress>,
    /// Request trailers go on only to HTTP/2 backends (gRPC), and only fields that may be
    /// trailers; an HTTP/1.1 backend never sees them (as with nginx). `None`: dropped.
    keep_trailers: Option<Vec<http::HeaderName>>,
    /// `server.request_body_min_rate`, bytes per second.
    min_rate: Option<u64>,
}

/// How long a body may take before its average rate is held against
/// `server.request_body_min_rate` (a slow start, TCP's included, is not a slow client).
pub const MIN_RATE_GRACE: Duration = Duration::from_secs(5);

impl RequestBody {
    pub fn new(inner: Inbound, limit: Option<u64>, timeout: Duration, start: Instant, progress: Arc<Progress>) -> Self {
        RequestBody {
            inner,
            timer: IdleTimer::new(timeout),
            budget: Budget::new(limit),
            start,
            progress,
            keep_trailers: None,
            min_rate: None,
        }
    }

    /// Fails the body (408) when, after `MIN_RATE_GRACE`, it has come in slower than
    /// `rate` bytes per second on average: a client that trickles a byte just before each
    /// `timeouts.write` would otherwise hold its connection and backend slot for good.
    pub fn min_rate(mut self, rate: Option<u64>) -> Self {
        self.min_rate = rate;
        self
    }

    /// Passes the client's trailers on (for an HTTP/2 backend), less the fields that must
    /// not be trailers and the fields `rules` (the route's request header rules) set, add
    /// or remove: a trailer must not undo what the route did to the head.
    pub fn keep_trailers(&mut self, rules: &gatehouse_config::HeaderRules) {
        let touched = rules.remove.iter().chain(rules.set.iter().chain(rules.add.iter()).map(|(n, _)| n));
        self.keep_trailers = Some(touched.cloned().collect());
    }

    fn finish(&self) {
        let ms = self.start.elapsed().as_millis() as u64 + 1;
        self.progress.done_at_ms.store(ms, Ordering::Relaxed);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                this.timer.progress();
                this.finish();
                let kept = match frame.into_trailers() {
                    Ok(mut fields) if let Some(touched) = &this.keep_trailers => {
                        crate::http::header::sanitise_trailers(&mut fields, touched);
                        (!fields.is_empty()).then(|| Frame::trailers(fields))
                    }
                    _ => None,
                };
                // Trailers end the body: what is left of it is nothing.
                Poll::Ready(kept.map(Ok))
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.timer.progress();
                if let Some(d) = frame.data_ref() {
                    let bytes = this.progress.bytes.fetch_add(d.len() as u64, Ordering::Relaxed) + d.len() as u64;
                    if let Some(limit) = this.budget.exceeded(d.len()) {
                        return Poll::Ready(Some(Err(Box::new(BodyError::TooLarge(limit)))));
                    }
                    if let Some(rate) = this.min_rate
                        && !this.inner.is_end_stream()
                    {
                        let elapsed = this.start.elapsed();
                        if elapsed > MIN_RATE_GRACE && (bytes as f64) < rate as f64 * elapsed.as_secs_f64() {
                            return Poll::Ready(Some(Err(Box::new(BodyError::TooSlow(rate)))));
                        }
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // Whatever breaks the client's body (bad chunk framing, a reset stream, a
            // closed connection) is the client's doing: marked so, it becomes a 400 and is
            // never taken for a backend failure.
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(BodyError::Client(e.to_string()))))),
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.expired(cx) {
                    return Poll::Ready(Some(Err(Box::new(BodyError::Timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body whose first frames were read ahead (for a filter that inspects them),
/// then the rest as it arrives. Keeps the body's declared length, so its framing towards
/// the backend is what it would have been.
pub struct Peeked {
    ahead: std::collections::VecDeque<Frame<Bytes>>,
    rest: Inbound,
    ahead_len: u64,
}

impl Body for Peeked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.ahead.pop_front() {
            if let Some(d) = f.data_ref() {
                self.ahead_len -= d.len() as u64;
            }
            return Poll::Ready(Some(Ok(f)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + self.ahead_len);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + self.ahead_len);
        }
        hint
    }
}

/// Reads up to `max` bytes of `req`'s body ahead, within `timeout`, and gives the request
/// back with the same body (what was read, then the rest) and a copy of what was read.
pub async fn peek(
    req: http::Request<Inbound>,
    max: usize,
    timeout: Duration,
) -> Result<(http::Request<Inbound>, Bytes), crate::error::ProxyError> {
    use http_body_util::BodyExt;
    let (parts, mut body) = req.into_parts();
    let mut ahead = std::collections::VecDeque::new();
    let mut seen = bytes::BytesMut::new();
    let mut ended = false;
    let read = async {
        while seen.len() < max && !body.is_end_stream() {
            match body.frame().await {
                None => {
                    ended = true;
                    break;
                }
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        seen.extend_from_slice(&d[..d.len().min(max - seen.len())]);
                    }
                    ahead.push_back(f);
                }
                Some(Err(e)) => {
                    return Err(match crate::error::find_body_error(&*e).and_then(crate::error::client_body_error) {
                        Some(client) => client,
                        None => crate::error::ProxyError::ClientBody(e.to_string()),
                    });
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r?,
        Err(_) => return Err(crate::error::ProxyError::ClientTimeout),
    }
    let ahead_len = ahead.iter().filter_map(|f| f.data_ref()).map(|d| d.len() as u64).sum();
    // A body that ended while read ahead is not polled again (not every body may be, and
    // its end must show in `is_end_stream`).
    let rest = if ended || body.is_end_stream() { Inbound::Empty } else { body };
    let body =
        if ahead.is_empty() { rest } else { Inbound::Other(UnsyncBoxBody::new(Peeked { ahead, rest, ahead_len })) };
    Ok((http::Request::from_parts(parts, body), seen.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A client body of `chunks` pieces of 10 bytes, one every `every`.
    fn trickle(chunks: usize, every: Duration) -> Inbound {
        let stream = futures_util::stream::unfold(0, move |n| async move {
            if n == chunks {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"0123456789"))), n + 1))
        });
        Inbound::Other(http_body_util::StreamBody::new(stream).boxed_unsync())
    }

    async fn read_all(inbound: Inbound, rate: Option<u64>) -> Result<usize, BodyError> {
        let progress = Arc::new(Progress::default());
        let mut body =
            RequestBody::new(inbound, None, Duration::from_secs(60), Instant::now(), progress).min_rate(rate);
        let mut got = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => got += f.data_ref().map_or(0, |d| d.len()),
                Err(e) => return Err(e.downcast_ref::<BodyError>().cloned().expect("a body error")),
            }
        }
        Ok(got)
    }

    /// `server.request_body_min_rate`: 10 bytes a second against a minimum of 100 fails
    /// once the grace period is over; the same trickle passes without a minimum, and a
    /// body at twice the rate passes with it. (Paused clock.)
    #[tokio::test(start_paused = true)]
    async fn a_body_under_the_minimum_rate_fails_after_the_grace_period() {
        let started = Instant::now();
        assert_eq!(read_all(trickle(20, Duration::from_secs(1)), Some(100)).await, Err(BodyError::TooSlow(100)));
        let took = started.elapsed();
        assert!(took > MIN_RATE_GRACE && took <= MIN_RATE_GRACE + Duration::from_secs(1), "failed after {took:?}");
        assert_eq!(read_all(trickle(20, Duration::from_secs(1)), None).await, Ok(200));
        assert_eq!(read_all(trickle(200, Duration::from_millis(50)), Some(100)).await, Ok(2000));
    }
}
