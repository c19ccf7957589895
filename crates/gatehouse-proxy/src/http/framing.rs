//! Request-smuggling guard for HTTP/1.1: spots request heads that carry both
//! `Content-Length` and `Transfer-Encoding`.
//!
//! hyper resolves that conflict itself (chunked wins, the length header is dropped, the
//! connection closes afterwards), which leaves no trace in the parsed request. We want such
//! a request refused outright, so a thin reader wrapper looks at the raw header lines as
//! they arrive and counts the header blocks that had both. The request pipeline consumes
//! one count per chunked request it sees and answers 400.
//!
//! Only the first bytes of each line are looked at; the scan is a `memchr` for newlines.
//!
//! The same wrapper replays the bytes Gatehouse's HTTP/1.1 loop had already read when it
//! hands a connection to hyper (see `http/server.rs`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per-connection findings shared between the reader and the request pipeline.
#[derive(Debug, Default)]
pub struct Flags {
    conflicting: AtomicU32,
}

impl Flags {
    /// Takes one "Content-Length and Transfer-Encoding together" finding, if any.
    pub fn take_conflict(&self) -> bool {
        self.conflicting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }
}

const CL: &[u8] = b"content-length:";
const TE: &[u8] = b"transfer-encoding:";

/// Line-by-line scanner state; lines may span reads.
#[derive(Default)]
struct Scanner {
    prefix: [u8; 18],
    prefix_len: usize,
    saw_cl: bool,
    saw_te: bool,
}

impl Scanner {
    fn feed(&mut self, mut data: &[u8], flags: &Flags) {
        while !data.is_empty() {
            let (line, rest, complete) = match memchr::memchr(b'\n', data) {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            let room = self.prefix.len() - self.prefix_len;
            let take = room.min(line.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&line[..take]);
            self.prefix_len += take;
            if complete {
                self.end_line(flags);
            }
            data = rest;
        }
    }

    fn end_line(&mut self, flags: &Flags) {
        let p = &self.prefix[..self.prefix_len];
        if p.is_empty() || p == b"\r" {
            // End of a header block (or a blank line inside a body).
            if self.saw_cl && self.saw_te {
                flags.conflicting.fetch_add(1, Ordering::AcqRel);
            }
            self.saw_cl = false;
            self.saw_te = false;
        } else if starts_with_ignore_case(p, CL) {
            self.saw_cl = true;
        } else if starts_with_ignore_case(p, TE) {
            self.saw_te = true;
        }
        self.prefix_len = 0;
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A client stream handed to hyper mid-way: it first yields the bytes Gatehouse's own
/// HTTP/1.1 loop already read (`replay`), then reads the socket. With `flags`, everything
/// read passes through the scanner (HTTP/1.1); without, it is a plain replay (HTTP/2).
pub struct Inspected<IO> {
    io: IO,
    replay: Bytes,
    scan: Option<(Scanner, Arc<Flags>)>,
    /// HTTP/1.1: told of every read, to time request heads (`Streams::read`).
    watch: Option<Arc<crate::http::streams::Streams>>,
}

impl<IO> Inspected<IO> {
    pub fn new(io: IO, replay: Bytes, flags: Option<Arc<Flags>>) -> Self {
        Inspected { io, replay, scan: flags.map(|f| (Scanner::default(), f)), watch: None }
    }

    pub(crate) fn watched(self, streams: Arc<crate::http::streams::Streams>) -> Self {
        Inspected { watch: Some(streams), ..self }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Inspected<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = if this.replay.is_empty() {
            Pin::new(&mut this.io).poll_read(cx, buf)
        } else {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            Poll::Ready(Ok(()))
        };
        if let (Poll::Ready(Ok(())), Some((scanner, flags))) = (&res, &mut this.scan) {
            scanner.feed(&buf.filled()[before..], flags);
        }
        if let (Poll::Ready(Ok(())), Some(streams)) = (&res, &this.watch)
            && buf.filled().len() > before
        {
            streams.read();
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Inspected<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> u32 {
        let flags = Flags::default();
        let mut s = Scanner::default();
        for c in chunks {
            s.feed(c, &flags);
        }
        flags.conflicting.load(Ordering::Relaxed)
    }

    #[test]
    fn finds_conflicts_across_reads() {
        assert_eq!(count(&[b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"]), 1);
        assert_eq!(
            count(&[b"POST / HTTP/1.1\r\nTransfer-Enc", b"oding: chunked\r\nconTENT-length: 4\r", b"\n\r\n"]),
            1
        );
        assert_eq!(count(&[b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"]), 0);
        assert_eq!(count(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"]), 0);
    }

    #[test]
    fn read_boundaries_do_not_change_the_verdict() {
        let valid: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        ];
        let mut rng = fastrand::Rng::with_seed(0xf1a9);
        let mut conflicts = 0;
        for raw in crate::mutate::damaged(0xf1a8, valid, 5_000) {
            let whole = count(&[&raw]);
            let mut pieces = Vec::new();
            let mut rest = &raw[..];
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at(rng.usize(1..=rest.len().min(12)));
                pieces.push(piece);
                rest = tail;
            }
            assert_eq!(count(&pieces), whole, "{:?}", String::from_utf8_lossy(&raw));
            conflicts += whole;
        }
        assert!(conflicts > 200, "too few damaged heads kept both fields ({conflicts})");
    }

    fn read_all(replay: &'static [u8], rest: &'static [u8], flags: Option<Arc<Flags>>) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut io = Inspected::new(rest, Bytes::from_static(replay), flags);
        let mut out = Vec::new();
        rt.block_on(io.read_to_end(&mut out)).expect("read");
        out
    }

    #[test]
    fn replays_read_bytes_first_and_scans_them() {
        let flags = Arc::new(Flags::default());
        let out = read_all(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n",
            b"Transfer-Encoding: chunked\r\n\r\n",
            Some(flags.clone()),
        );
        assert_eq!(out, b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(flags.take_conflict());
        assert_eq!(read_all(b"PRI * HTTP/2.0", b"\r\n", None), b"PRI * HTTP/2.0\r\n");
    }
}
