//! The byte streams a stream connection is made of: any socket or TLS session behind one
//! object type, and a stream that first gives back bytes already read from it (a peeked
//! ClientHello, bytes a client sent after its SSLRequest).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// A connection, to the client or a backend, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// `inner`, with `head` read first.
pub struct Prefixed<S> {
    head: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(head: Bytes, inner: S) -> Self {
        Prefixed { head, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a protocol's opening could not be read.
pub fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection")
}

/// Reads into `buf` until it holds at least `n` bytes; refuses to grow past `max`.
pub async fn fill<S: AsyncRead + Unpin>(io: &mut S, buf: &mut bytes::BytesMut, n: usize, max: usize) -> io::Result<()> {
    if n > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {n} bytes is over the {max}-byte limit"),
        ));
    }
    while buf.len() < n {
        buf.reserve(n - buf.len());
        if io.read_buf(buf).await? == 0 {
            return Err(closed());
        }
    }
    Ok(())
}

/// Reads one line ending in `\n` (at most `max` bytes) into `buf` and returns it, the end
/// of line included; bytes after it stay in `buf`.
pub async fn line<S: AsyncRead + Unpin>(io: &mut S, buf: &mut bytes::BytesMut, max: usize) -> io::Result<Bytes> {
    loop {
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            return Ok(buf.split_to(end + 1).freeze());
        }
        if buf.len() >= max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a line longer than {max} bytes")));
        }
        buf.reserve(512);
        if io.read_buf(buf).await? == 0 {
            return Err(closed());
        }
    }
}
