//! Per-worker upstream connection pools.
//!
//! Each worker thread runs its own current-thread runtime, so its idle connections live in
//! a thread-local map: checkout and release never touch another thread. Pools are keyed by
//! the connection target, not by configuration, so they survive reloads untouched.
//! HTTP/1.1 connections are checked out exclusively; an HTTP/2 (h2c) connection is shared
//! by all requests of the worker to that target.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_config::PoolSettings;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::OwnedSemaphorePermit;

use super::{BackendState, Target};
use crate::body::Outgoing;
use crate::error::ProxyError;
use crate::hash::FxHashMap;

type H1 = http1::SendRequest<Outgoing>;
type H2 = http2::SendRequest<Outgoing>;

struct Idle {
    tx: H1,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<FxHashMap<Target, Vec<Idle>>> = RefCell::new(FxHashMap::default());
    static SHARED_H2: RefCell<FxHashMap<Target, H2>> = RefCell::new(FxHashMap::default());
}

/// A checked-out connection.
pub enum Conn {
    H1(Pooled),
    H2(H2),
}

/// An HTTP/1.1 connection that goes back to this worker's pool on `release`; dropping it
/// instead closes the connection (used when a response was not read to its end).
pub struct Pooled {
    pub tx: H1,
    target: Target,
    max_idle: usize,
}

impl Pooled {
    pub fn release(self) {
        if self.tx.is_closed() || self.max_idle == 0 {
            return;
        }
        IDLE.with(|m| {
            let mut m = m.borrow_mut();
            let list = m.entry(self.target).or_default();
            if list.len() < self.max_idle {
                list.push(Idle { tx: self.tx, since: Instant::now() });
            }
        });
    }
}

/// Takes an idle connection to `target` or opens a new one.
/// `fresh` skips the pool (upgrade requests keep their connection for good).
pub async fn checkout(
    backend: &BackendState,
    target: &Target,
    settings: &PoolSettings,
    connect_timeout: Duration,
    fresh: bool,
) -> Result<Conn, ProxyError> {
    if backend.backend.h2c {
        let existing = SHARED_H2.with(|m| m.borrow().get(target).filter(|tx| !tx.is_closed()).cloned());
        if let Some(tx) = existing {
            return Ok(Conn::H2(tx));
        }
    } else if !fresh {
        while let Some(mut idle) = pop_idle(target) {
            if idle.since.elapsed() > settings.idle_timeout || idle.tx.is_closed() {
                continue;
            }
            // A connection whose previous response just ended may need one turn of its
            // task before it takes the next request.
            if idle.tx.ready().await.is_ok() {
                return Ok(Conn::H1(Pooled {
                    tx: idle.tx,
                    target: target.clone(),
                    max_idle: settings.max_idle_per_host,
                }));
            }
        }
    }

    let name = || backend.backend.url();
    let permit = match &backend.permits {
        None => None,
        Some(sem) => match tokio::time::timeout(connect_timeout, sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => return Err(ProxyError::PoolExhausted(settings.max_connections_per_host)),
        },
    };
    let connect = async {
        match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                handshake(s, backend.backend.h2c, permit).await
            }
            Target::Unix(path) => {
                handshake(UnixStream::connect(path.as_path()).await?, backend.backend.h2c, permit).await
            }
        }
    };
    let conn = match tokio::time::timeout(connect_timeout, connect).await {
        Err(_) => return Err(ProxyError::ConnectTimeout { backend: name() }),
        Ok(Err(e)) => {
            return Err(ProxyError::Connect { backend: name(), reason: e.to_string() });
        }
        Ok(Ok(c)) => c,
    };
    Ok(match conn {
        Handshaken::H1(tx) => Conn::H1(Pooled { tx, target: target.clone(), max_idle: settings.max_idle_per_host }),
        Handshaken::H2(tx) => {
            SHARED_H2.with(|m| m.borrow_mut().insert(target.clone(), tx.clone()));
            Conn::H2(tx)
        }
    })
}

fn pop_idle(target: &Target) -> Option<Idle> {
    IDLE.with(|m| m.borrow_mut().get_mut(target).and_then(Vec::pop))
}

enum Handshaken {
    H1(H1),
    H2(H2),
}

async fn handshake<IO>(io: IO, h2c: bool, permit: Option<OwnedSemaphorePermit>) -> std::io::Result<Handshaken>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let to_io = |e: hyper::Error| std::io::Error::other(e);
    if h2c {
        let (tx, conn) = http2::Builder::new(TokioExecutor::new()).handshake(io).await.map_err(to_io)?;
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Ok(Handshaken::H2(tx))
    } else {
        let (tx, conn) = http1::Builder::new().handshake(io).await.map_err(to_io)?;
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Handshaken::H1(tx))
    }
}

/// Idle connections of this worker to `target` (for tests and the admin API).
pub fn idle_count(target: &Target) -> usize {
    IDLE.with(|m| m.borrow().get(target).map_or(0, Vec::len))
}

/// Drops idle connections older than `max_age` on this worker; run periodically.
pub fn prune(max_age: Duration) {
    IDLE.with(|m| {
        let mut m = m.borrow_mut();
        for list in m.values_mut() {
            list.retain(|i| i.since.elapsed() <= max_age && !i.tx.is_closed());
        }
        m.retain(|_, l| !l.is_empty());
    });
    SHARED_H2.with(|m| m.borrow_mut().retain(|_, tx| !tx.is_closed()));
}

pub type SharedBackend = Arc<BackendState>;
