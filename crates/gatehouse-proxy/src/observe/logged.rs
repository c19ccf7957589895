//! A response body that emits its request's access record when it ends: read to the end,
//! failed, or dropped by the connection (client gone, stream reset). Used for responses
//! that hyper or the HTTP/3 loop write; the own HTTP/1.1 loop finishes records itself.
//! Must not change what the body yields, only when an error is yielded (see `poll_frame`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{Failure, Pending};
use crate::body::{BoxError, Outgoing};

pub struct Logged {
    inner: Outgoing,
    pending: Option<Box<Pending>>,
    sent: u64,
    /// A body error held back for one poll (see `poll_frame`).
    failed: Option<BoxError>,
}

impl Logged {
    pub fn new(inner: Outgoing, pending: Box<Pending>) -> Self {
        Logged { inner, pending: Some(pending), sent: 0, failed: None }
    }

    fn finish(&mut self, cut: Option<Failure>) {
        if let Some(p) = self.pending.take() {
            let status = p.status();
            p.finish(status, self.sent, cut);
        }
    }

    pub fn inner(&self) -> &Outgoing {
        &self.inner
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(ref frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Some(Failure::response_body(format!("response body failed: {e}"))));
                // hyper drops what it has buffered for the client (HTTP/1.1) or queued on
                // the stream (HTTP/2) as soon as a body fails. Held back for one poll, the
                // error lets the connection flush what it was already given first, so the
                // client gets every byte the record counts, then the cut.
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(None) => this.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if self.pending.is_some() {
            let cut = (!self.inner.is_end_stream())
                .then(|| Failure::client_gone("the client connection ended before the response was complete"));
            self.finish(cut);
        }
    }
}
