//! Admin connections: the per-client share of connection slots and the write deadline that
//! frees the slot of a client that stops reading. Knows nothing about the endpoints.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::MAX_PER_PEER;

pub(crate) type Peers = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One connection counted against its client address until dropped.
pub(crate) struct PeerSlot {
    peers: Peers,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    pub(crate) fn take(peers: &Peers, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut map = peers.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot { peers: peers.clone(), ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.peers.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A stream whose writes fail once one has made no progress for `limit`.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, stalled: None }
    }

    /// Maps a pending write to an error once the deadline has passed; any progress clears it.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "admin client stopped reading")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        self.watch(cx, r)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_fails_after_the_limit() {
        // The other end never reads: after 64 bytes the pipe is full.
        let (near, _far) = tokio::io::duplex(64);
        let mut s = WriteDeadline::new(near, Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        let err = s.write_all(&[0u8; 1024]).await.expect_err("the reader is gone quiet");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn one_client_gets_a_share_of_the_slots() {
        let peers: Peers = Arc::default();
        let ip: std::net::IpAddr = [192, 0, 2, 1].into();
        let held: Vec<PeerSlot> = (0..MAX_PER_PEER).map(|_| PeerSlot::take(&peers, ip).expect("slot")).collect();
        assert!(PeerSlot::take(&peers, ip).is_none());
        assert!(PeerSlot::take(&peers, [192, 0, 2, 2].into()).is_some(), "another client is not affected");
        drop(held);
        assert!(PeerSlot::take(&peers, ip).is_some());
        assert!(peers.lock().expect("lock").is_empty(), "entries go when their connections do");
    }
}
