//! Moving bytes both ways between a client and its backend until both sides are done:
//! each direction ends with the reader's end of file, passed on as a half-close (the other
//! side may still answer); a connection with no bytes either way for `idle` ends, as does
//! one that reaches its maximum duration.
//!
//! Buffers are bounded (one per direction): a side that does not read holds the other side
//! back (backpressure) instead of making Gatehouse buffer.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::io::BoxIo;

/// Bytes in flight per direction: a connection starts with `BUF`, and a direction whose
/// reads keep filling it (a bulk transfer) grows to `BULK`, a quarter of the system calls
/// per byte, while interactive and idle connections keep the small one.
const BUF: usize = 16 * 1024;
const BULK: usize = 64 * 1024;

/// How a pipe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their sending half.
    Done,
    Idle,
    MaxDuration,
    /// A read or write failed; true when the client's side failed.
    Failed {
        client: bool,
    },
}

/// One direction: what was read and not yet written. The buffer is taken for a read and
/// given back when a read finds nothing (so a quiet connection holds none), and never
/// zeroed (reads fill its spare capacity): a short connection costs no 16 KiB memset.
struct Copy {
    buf: BytesMut,
    /// The capacity reads get (`BUF`, or `BULK` once a read filled it).
    size: usize,
    eof: bool,
    shut: bool,
    flush: bool,
    total: u64,
}

impl Copy {
    fn new() -> Self {
        Copy { buf: BytesMut::new(), size: BUF, eof: false, shut: false, flush: false, total: 0 }
    }

    /// Moves bytes from `from` to `to`; ready when this direction is over. Errors say which
    /// side failed (`true`: `from`).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut BoxIo,
        to: &mut BoxIo,
        moved: &mut bool,
    ) -> Poll<Result<(), bool>> {
        loop {
            if self.buf.is_empty() && !self.eof {
                // Empty: the whole capacity is free again (no copy, no reallocation).
                self.buf.clear();
                if self.buf.capacity() < self.size {
                    self.buf.reserve(self.size);
                }
                let room = self.buf.capacity();
                match tokio_util::io::poll_read_buf(Pin::new(&mut *from), cx, &mut self.buf) {
                    Poll::Ready(Ok(0)) => self.eof = true,
                    Poll::Ready(Ok(n)) => {
                        self.total += n as u64;
                        *moved = true;
                        if n == room {
                            self.size = BULK;
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(true)),
                    Poll::Pending => {
                        // Nothing more to read now: what TLS buffered goes out, and the
                        // empty buffer goes back to the allocator, so a quiet connection
                        // holds none (the next read takes one again).
                        self.buf = BytesMut::new();
                        if self.flush {
                            ready!(Pin::new(&mut *to).poll_flush(cx)).map_err(|_| false)?;
                            self.flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while !self.buf.is_empty() {
                match ready!(Pin::new(&mut *to).poll_write(cx, &self.buf)) {
                    Ok(0) | Err(_) => return Poll::Ready(Err(false)),
                    Ok(n) => {
                        self.buf.advance(n);
                        self.flush = true;
                        *moved = true;
                    }
                }
            }
            if self.eof {
                if !self.shut {
                    ready!(Pin::new(&mut *to).poll_shutdown(cx)).map_err(|_| false)?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Bytes moved by a pipe: client to backend, backend to client.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    pub up: u64,
    pub down: u64,
}

/// Pipes `client` and `backend` until both directions are over or a limit ends it.
pub async fn run(mut client: BoxIo, mut backend: BoxIo, idle: Duration, max: Option<Duration>) -> (End, Moved) {
    let (mut up, mut down) = (Copy::new(), Copy::new());
    let (mut up_done, mut down_done) = (false, false);
    let started = Instant::now();
    let deadline = max.map(|m| started + m);
    let mut last = started;
    let timer = tokio::time::sleep(idle.min(max.unwrap_or(idle)));
    tokio::pin!(timer);
    let end = poll_fn(|cx| {
        let mut moved = false;
        if !up_done {
            match up.poll(cx, &mut client, &mut backend, &mut moved) {
                Poll::Ready(Ok(())) => up_done = true,
                Poll::Ready(Err(from)) => return Poll::Ready(End::Failed { client: from }),
                Poll::Pending => {}
            }
        }
        if !down_done {
            match down.poll(cx, &mut backend, &mut client, &mut moved) {
                Poll::Ready(Ok(())) => down_done = true,
                Poll::Ready(Err(from)) => return Poll::Ready(End::Failed { client: !from }),
                Poll::Pending => {}
            }
        }
        if up_done && down_done {
            return Poll::Ready(End::Done);
        }
        if moved {
            last = Instant::now();
        }
        // The timer is re-armed only when it fires: activity just moves `last`.
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Poll::Ready(End::MaxDuration);
            }
            if now >= last + idle {
                return Poll::Ready(End::Idle);
            }
            let next = deadline.map_or(last + idle, |d| d.min(last + idle));
            timer.as_mut().reset(next);
        }
        Poll::Pending
    })
    .await;
    (end, Moved { up: up.total, down: down.total })
}

/// Copies what is left of `buf` into `io` (the few bytes a negotiation writes itself).
pub async fn write_all(io: &mut BoxIo, buf: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    io.write_all(buf).await?;
    io.flush().await
}
