//! Byte-level HTTP/1.1 helpers shared by the client side (`http::server`) and the backend
//! side (`upstream::h1`): field lines, the cached `Date` value, writes bounded by a
//! deadline. The lowest layer of the HTTP code: it imports nothing from the modules that
//! use it.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::SystemTime;

use tokio::io::AsyncWrite;

use crate::timer::Deadline;

pub(crate) fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The current HTTP date, formatted once per second per thread.
pub(crate) fn date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((0, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let mut fresh = [0u8; 29];
        let s = httpdate::fmt_http_date(now);
        if s.len() == 29 {
            fresh.copy_from_slice(s.as_bytes());
        }
        c.set((secs, fresh));
        fresh
    })
}

/// Writes all of `data` within the timer's deadline.
pub(crate) async fn write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    mut data: &[u8],
    timer: &mut Deadline,
) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| match Pin::new(&mut *io).poll_write(cx, data) {
            Poll::Pending if timer.poll_expired(cx) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")))
            }
            other => other,
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

pub(crate) async fn flush<S: AsyncWrite + Unpin>(io: &mut S, timer: &mut Deadline) -> io::Result<()> {
    poll_fn(|cx| match Pin::new(&mut *io).poll_flush(cx) {
        Poll::Pending if timer.poll_expired(cx) => {
            Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")))
        }
        other => other,
    })
    .await
}
