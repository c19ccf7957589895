//! Per-worker upstream connection pools.
//!
//! Each worker thread runs its own current-thread runtime, so its idle connections live in
//! a thread-local map: checkout and release never touch another thread. Pools are keyed by
//! the connection target, not by configuration, so they survive reloads untouched.
//! HTTP/1.1 connections are checked out exclusively; an HTTP/2 (h2c) connection is shared
//! by all requests of the worker to that target.

use std::cell::RefCell;
use std::time::Duration;

use tokio::time::Instant;

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
    /// When it stops being reusable (`timeouts.idle` after it went idle).
    until: Instant,
}

/// Connections are shared only between requests that would have opened the same one: same
/// target and same TLS settings (CA, client certificate, server name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub target: Target,
    /// `Group::tls_profile`; 0 for plain connections.
    pub tls: u64,
}

thread_local! {
    /// Idle inline-client connections, each with the time it stops being reusable.
    static IDLE_RAW: RefCell<FxHashMap<Key, Vec<(super::h1::Conn, Instant)>>> = RefCell::new(FxHashMap::default());
    static IDLE: RefCell<FxHashMap<Key, Vec<Idle>>> = RefCell::new(FxHashMap::default());
    static SHARED_H2: RefCell<FxHashMap<Key, H2>> = RefCell::new(FxHashMap::default());
}

/// A checked-out connection.
pub enum Conn {
    H1(Pooled),
    H2(H2),
    /// A plain HTTP/1.1 connection for the inline client.
    Raw(super::h1::Conn),
}

/// An HTTP/1.1 connection that goes back to this worker's pool on `release`; dropping it
/// instead closes the connection (used when a response was not read to its end).
pub struct Pooled {
    pub tx: H1,
    key: Key,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pooled {
    pub fn release(self) {
        if self.tx.is_closed() || self.max_idle == 0 {
            return;
        }
        IDLE.with(|m| {
            let mut m = m.borrow_mut();
            let list = m.entry(self.key).or_default();
            if list.len() < self.max_idle {
                list.push(Idle { tx: self.tx, until: crate::timer::after(Instant::now(), self.idle_timeout) });
            }
        });
    }
}

/// What kind of connection a request needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Any: an idle pooled connection when there is one.
    Pooled,
    /// A new HTTP/1.1 connection through hyper, kept by an upgraded request for good.
    Upgrade,
    /// A new connection for the inline client: a retry after a pooled one was found closed.
    Fresh,
}

/// Takes an idle connection to `target` or opens a new one.
pub async fn checkout(
    backend: &BackendState,
    key: &Key,
    settings: &PoolSettings,
    connect_timeout: Duration,
    want: Want,
    tls: Option<&tokio_rustls::TlsConnector>,
    now: Instant,
) -> Result<Conn, ProxyError> {
    let fresh = want != Want::Pooled;
    // h2c always, and TLS backends that chose h2 in ALPN, share one connection per worker.
    if backend.backend.h2c || (tls.is_some() && !fresh) {
        let existing = SHARED_H2.with(|m| m.borrow().get(key).filter(|tx| !tx.is_closed()).cloned());
        if let Some(tx) = existing {
            return Ok(Conn::H2(tx));
        }
    }
    // Plain HTTP/1.1 (no TLS, not an upgrade): the inline client.
    let raw = !backend.backend.h2c && tls.is_none() && want != Want::Upgrade;
    if raw && !fresh {
        loop {
            let Some((conn, until)) = IDLE_RAW.with(|m| m.borrow_mut().get_mut(key).and_then(Vec::pop)) else { break };
            if now <= until && conn.stream.is_idle_and_open() {
                let mut conn = conn;
                conn.reused = true;
                return Ok(Conn::Raw(conn));
            }
        }
    } else if !backend.backend.h2c && !fresh {
        while let Some(mut idle) = pop_idle(key) {
            if now > idle.until || idle.tx.is_closed() {
                continue;
            }
            // A connection whose previous response just ended may need one turn of its
            // task before it takes the next request.
            if idle.tx.ready().await.is_ok() {
                return Ok(Conn::H1(Pooled {
                    tx: idle.tx,
                    key: key.clone(),
                    max_idle: settings.max_idle_per_host,
                    idle_timeout: settings.idle_timeout,
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
        if raw {
            let stream = match &key.target {
                Target::Tcp(addr) => {
                    let s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    super::h1::Stream::Tcp(s)
                }
                Target::Unix(path) => super::h1::Stream::Unix(UnixStream::connect(path.as_path()).await?),
            };
            return Ok(Handshaken::Raw(stream, permit));
        }
        match &key.target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                match tls {
                    None => handshake(s, backend.backend.h2c, permit).await,
                    Some(connector) => {
                        let name = server_name(backend, settings)?;
                        let s = connector.connect(name, s).await?;
                        // An upgrade needs HTTP/1.1 even where the backend speaks h2.
                        let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2") && !fresh;
                        handshake(s, h2, permit).await
                    }
                }
            }
            Target::Unix(path) => {
                handshake(UnixStream::connect(path.as_path()).await?, backend.backend.h2c, permit).await
            }
        }
    };
    // Boxed: connecting (TCP, TLS, hyper's handshake) needs a large future, and keeping it
    // inline would make every request's future that large, pooled or not.
    let conn = match tokio::time::timeout(connect_timeout, Box::pin(connect)).await {
        Err(_) => return Err(ProxyError::ConnectTimeout { backend: name() }),
        Ok(Err(e)) => {
            return Err(ProxyError::Connect { backend: name(), reason: e.to_string() });
        }
        Ok(Ok(c)) => c,
    };
    Ok(match conn {
        Handshaken::H1(tx) => Conn::H1(Pooled {
            tx,
            key: key.clone(),
            max_idle: settings.max_idle_per_host,
            idle_timeout: settings.idle_timeout,
        }),
        Handshaken::Raw(stream, permit) => Conn::Raw(super::h1::Conn {
            stream,
            buf: bytes::BytesMut::new(),
            key: key.clone(),
            max_idle: settings.max_idle_per_host,
            idle_timeout: settings.idle_timeout,
            _permit: permit,
            timer: crate::timer::Deadline::new(now),
            out: Vec::new(),
            fields: Vec::new(),
            reused: false,
            used_at: now,
        }),
        Handshaken::H2(tx) => {
            SHARED_H2.with(|m| m.borrow_mut().insert(key.clone(), tx.clone()));
            Conn::H2(tx)
        }
    })
}

/// The name sent as SNI and checked in the backend's certificate.
fn server_name(
    backend: &BackendState,
    settings: &PoolSettings,
) -> std::io::Result<rustls_pki_types::ServerName<'static>> {
    let host = match (&settings.tls.server_name, &backend.backend.addr) {
        (Some(n), _) => n.clone(),
        (None, gatehouse_config::BackendAddr::Tcp { host, .. }) => host.clone(),
        (None, gatehouse_config::BackendAddr::Unix(_)) => "localhost".to_string(),
    };
    rustls_pki_types::ServerName::try_from(host).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Puts an inline-client connection back after its response was read to the end. Its idle
/// time counts from when its last request started (no clock read here).
pub fn release_raw(conn: super::h1::Conn) {
    if conn.max_idle == 0 {
        return;
    }
    IDLE_RAW.with(|m| {
        let mut m = m.borrow_mut();
        let until = crate::timer::after(conn.used_at, conn.idle_timeout);
        if let Some(list) = m.get_mut(&conn.key) {
            if list.len() < conn.max_idle {
                list.push((conn, until));
            }
        } else {
            m.insert(conn.key.clone(), vec![(conn, until)]);
        }
    });
}

fn pop_idle(key: &Key) -> Option<Idle> {
    IDLE.with(|m| m.borrow_mut().get_mut(key).and_then(Vec::pop))
}

enum Handshaken {
    H1(H1),
    H2(H2),
    Raw(super::h1::Stream, Option<OwnedSemaphorePermit>),
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

/// Closes this worker's idle connections past their `timeouts.idle` (or closed by the
/// backend); run periodically, so a burst's connections do not stay open for good.
pub fn prune() {
    let now = Instant::now();
    IDLE.with(|m| {
        let mut m = m.borrow_mut();
        for list in m.values_mut() {
            list.retain(|i| now <= i.until && !i.tx.is_closed());
        }
        m.retain(|_, l| !l.is_empty());
    });
    IDLE_RAW.with(|m| {
        let mut m = m.borrow_mut();
        for list in m.values_mut() {
            list.retain(|(conn, until)| now <= *until && conn.stream.is_idle_and_open());
        }
        m.retain(|_, l| !l.is_empty());
    });
    SHARED_H2.with(|m| m.borrow_mut().retain(|_, tx| !tx.is_closed()));
}
