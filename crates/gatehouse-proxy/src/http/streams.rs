//! When a client connection served by hyper should end. hyper closes an HTTP/2 connection
//! only when the client does, and has no idle or send timeout for it; without these a
//! client could hold connections (descriptors, backend pool slots) by sending nothing, or by
//! opening streams and never granting flow-control window. hyper's HTTP/1.1 server has one
//! timer for the idle wait and the request head together; here they are two, as in the own
//! HTTP/1.1 loop: the idle time, then the head time from the first byte of the next request.
//!
//! `Streams` counts the requests in flight on one connection. A request is in flight from
//! the moment hyper hands it to the service until its response body is dropped (sent, or
//! the stream reset), so a long download is not "idle". While in flight it is either
//! waiting on the backend (the response head, or body data not there yet) or on the
//! client (body data ready, hyper not asking for it: no flow-control window).
//!
//! Owns only counters and the decision; the connection loop (`listener.rs`) acts on it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::body::{BoxError, Outgoing};

/// The requests in flight on one connection served by hyper.
pub(crate) struct Streams {
    start: Instant,
    active: AtomicUsize,
    /// HTTP/1.1: when the first byte of a request head arrived with nothing in flight, in
    /// milliseconds since `start` plus one; 0 when no head is being read.
    head_ms: AtomicU64,
    /// In-flight requests waiting on the backend.
    waiting: AtomicUsize,
    started: AtomicBool,
    /// When a response last went forward (head ready, or body data taken by hyper), in
    /// milliseconds since `start`.
    progress_ms: AtomicU64,
    changed: Notify,
}

/// Why a connection should end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// No request in flight for the idle time: close gracefully (GOAWAY).
    Idle,
    /// Every request in flight has had its data ready and the client took none of it for
    /// the send time: close now (the client is not reading, so a GOAWAY would not help).
    Stalled,
    /// HTTP/1.1: a request head begun and not finished within the head time: close now.
    SlowHead,
}

/// The times `Streams::end` works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Before the connection's first request.
    pub first: Duration,
    /// With no request in flight, after the first one.
    pub idle: Duration,
    /// With requests in flight and all of them waiting on the client.
    pub send: Duration,
    /// HTTP/1.1: from the first byte of a request head to its end.
    pub head: Duration,
}

impl Streams {
    pub(crate) fn new() -> Arc<Streams> {
        Arc::new(Streams {
            start: Instant::now(),
            active: AtomicUsize::new(0),
            head_ms: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            progress_ms: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// Resolves when the connection should end. Requests starting or finishing restart the
    /// wait; body progress is only looked at when the send time has passed.
    pub(crate) async fn end(&self, limits: Limits) -> End {
        loop {
            // Created before the counters are read: a change after the read still wakes it.
            let notified = self.changed.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                let head_ms = self.head_ms.load(Ordering::Acquire);
                if head_ms != 0 {
                    let since = self.start + Duration::from_millis(head_ms - 1);
                    tokio::select! {
                        _ = tokio::time::sleep_until(since + limits.head) => {
                            if self.active.load(Ordering::Acquire) == 0 && self.head_ms.load(Ordering::Acquire) == head_ms {
                                return End::SlowHead;
                            }
                        }
                        _ = notified => {}
                    }
                    continue;
                }
                let wait = if self.started.load(Ordering::Acquire) { limits.idle } else { limits.first };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        if self.active.load(Ordering::Acquire) == 0 && self.head_ms.load(Ordering::Acquire) == 0 {
                            return End::Idle;
                        }
                    }
                    _ = notified => {}
                }
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(limits.send) => {
                        if self.stalled(limits.send) {
                            return End::Stalled;
                        }
                    }
                    _ = notified => {}
                }
            }
        }
    }

    fn stalled(&self, send: Duration) -> bool {
        let since = (self.start.elapsed().as_millis() as u64).saturating_sub(self.progress_ms.load(Ordering::Acquire));
        self.active.load(Ordering::Acquire) > 0
            && self.waiting.load(Ordering::Acquire) == 0
            && Duration::from_millis(since) >= send
    }

    /// HTTP/1.1: bytes arrived. With no request in flight they begin the next request's
    /// head, which from now on has the head time, not the idle time, to be complete.
    pub(crate) fn read(&self) {
        if self.active.load(Ordering::Acquire) == 0 && self.head_ms.load(Ordering::Acquire) == 0 {
            self.head_ms.store(self.start.elapsed().as_millis() as u64 + 1, Ordering::Release);
            self.changed.notify_waiters();
        }
    }

    fn progress(&self) {
        self.progress_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Release);
    }
}

/// One request in flight; created when hyper hands the request over, waiting on the
/// backend until its response is ready.
pub(crate) struct InFlight {
    streams: Arc<Streams>,
    waiting: bool,
}

impl InFlight {
    pub(crate) fn new(streams: &Arc<Streams>) -> InFlight {
        streams.started.store(true, Ordering::Release);
        streams.head_ms.store(0, Ordering::Release);
        streams.waiting.fetch_add(1, Ordering::AcqRel);
        streams.active.fetch_add(1, Ordering::AcqRel);
        streams.changed.notify_waiters();
        InFlight { streams: streams.clone(), waiting: true }
    }

    fn wait_on_backend(&mut self, waiting: bool) {
        if waiting != self.waiting {
            if waiting {
                self.streams.waiting.fetch_add(1, Ordering::AcqRel);
            } else {
                self.streams.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            self.waiting = waiting;
        }
        if !waiting {
            self.streams.progress();
        }
    }

    /// The response is ready: from now on the request waits on whoever its body waits on.
    /// A response without a body ends the request here.
    pub(crate) fn respond(mut self, body: Outgoing) -> Outgoing {
        self.wait_on_backend(false);
        if body.is_end_stream() {
            body
        } else {
            Outgoing::Boxed(http_body_util::BodyExt::boxed_unsync(Tracked { body, in_flight: self }))
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.waiting {
            self.streams.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        self.streams.active.fetch_sub(1, Ordering::AcqRel);
        self.streams.changed.notify_waiters();
    }
}

/// A response body that keeps its request in flight until hyper drops it, and tells
/// whether it waits on the backend (its body is pending) or on the client (hyper has not
/// polled it again after data was ready).
struct Tracked {
    body: Outgoing,
    in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        this.in_flight.wait_on_backend(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        first: Duration::from_secs(3),
        idle: Duration::from_secs(5),
        send: Duration::from_secs(7),
        head: Duration::from_secs(2),
    };

    /// Runs `end` on paused time and returns what it decided and after how long.
    async fn ends(streams: &Arc<Streams>) -> (End, Duration) {
        let start = Instant::now();
        let end = tokio::time::timeout(Duration::from_secs(600), streams.end(LIMITS)).await.expect("an end");
        (end, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn idle_before_and_after_the_first_request() {
        let s = Streams::new();
        assert_eq!(ends(&s).await, (End::Idle, LIMITS.first));
        let req = InFlight::new(&s);
        drop(req.respond(Outgoing::Empty));
        assert_eq!(ends(&s).await, (End::Idle, LIMITS.idle));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_has_the_head_time_not_the_idle_time() {
        let s = Streams::new();
        drop(InFlight::new(&s).respond(Outgoing::Empty));
        // Idle for a while, then the first byte of the next request.
        tokio::time::advance(Duration::from_secs(4)).await;
        s.read();
        assert_eq!(ends(&s).await, (End::SlowHead, LIMITS.head));
        // The head completes in time: the request is served, and the idle time starts over.
        s.read();
        drop(InFlight::new(&s).respond(Outgoing::Empty));
        s.read();
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(InFlight::new(&s).respond(Outgoing::Empty));
        assert_eq!(ends(&s).await, (End::Idle, LIMITS.idle));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_on_the_backend_is_never_a_stall() {
        let s = Streams::new();
        let req = InFlight::new(&s);
        // No response for far longer than every limit: still not the client's fault.
        let waited = tokio::time::timeout(Duration::from_secs(600), s.end(LIMITS)).await;
        assert!(waited.is_err(), "ended while waiting on the backend: {waited:?}");
        drop(req);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_the_client_does_not_take_is_a_stall() {
        let s = Streams::new();
        let req = InFlight::new(&s);
        // Data ready, and hyper never polls again (no flow-control window).
        let body = req.respond(Outgoing::full("data"));
        let (end, after) = ends(&s).await;
        assert_eq!(end, End::Stalled);
        assert!(after >= LIMITS.send && after < LIMITS.send * 2, "{after:?}");
        drop(body);
        assert_eq!(ends(&s).await.0, End::Idle);
    }
}
