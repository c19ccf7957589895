//! The admin listener: liveness and readiness probes and a read-only JSON view of the
//! routes. Runs on the control runtime, never on a proxy worker. Loopback by default; any
//! other address requires a bearer token for `/api/*` (enforced by configuration).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gatehouse_proxy::StateHandle;
use gatehouse_proxy::route::Compiled;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Admin {
    pub state: StateHandle,
    /// Set once the configuration is loaded and every listener is bound.
    pub ready: Arc<AtomicBool>,
    pub token: Option<Arc<str>>,
    /// The certificate resolver, when HTTPS is configured.
    pub certs: Option<Arc<gatehouse_proxy::tls::Resolver>>,
    /// Time a client has to send a request head, and the longest idle time between
    /// requests on a kept-alive connection (hyper's header-read timer covers both);
    /// `server.header_read_timeout`.
    pub header_read_timeout: Duration,
}

/// Most admin connections open at once; more are closed as they arrive. With the default
/// loopback address only local processes count; beyond loopback this bounds what an
/// unauthenticated client can hold (before this, idle connections could use up the
/// process's descriptors and make the proxy listeners fail to accept).
pub const MAX_CONNECTIONS: usize = 64;
/// Most admin connections open at once from one client address, so one client cannot take
/// every slot.
pub const MAX_PER_PEER: usize = 16;

type Peers = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One connection counted against its client address until dropped.
struct PeerSlot {
    peers: Peers,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    fn take(peers: &Peers, ip: std::net::IpAddr) -> Option<PeerSlot> {
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
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
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

/// Serves the admin API on `listener` until `shutdown` resolves, then lets requests in
/// flight finish for up to a second.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Admin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read = admin.header_read_timeout;
    let api = Router::new()
        .route("/api/routes", get(routes))
        .route("/api/certs", get(certs))
        .route_layer(middleware::from_fn_with_state(admin.clone(), require_token));
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/live", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .merge(api)
        .with_state(admin);

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_read).max_buf_size(64 * 1024);
    let http = Arc::new(http);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let peers: Peers = Arc::default();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(per_peer) = PeerSlot::take(&peers, peer.ip()) else {
            tracing::warn!(peer = %peer, limit = MAX_PER_PEER, "admin connection limit per client reached; closing new connection");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, limit = MAX_CONNECTIONS, "admin connection limit reached; closing new connection");
            continue;
        };
        let svc = TowerToHyperService::new(app.clone());
        let (http, mut stopping) = (http.clone(), stopping.clone());
        tokio::spawn(async move {
            let _slots = (slot, per_peer);
            // A client that stops reading (pipelining requests it never collects) must not
            // keep its slot: a write that makes no progress for the header-read time ends
            // the connection.
            let stream = WriteDeadline::new(stream, header_read);
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every slot back means every connection has ended.
    let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(MAX_CONNECTIONS as u32)).await;
    Ok(())
}

async fn require_token(State(admin): State<Admin>, req: Request, next: Next) -> Response {
    if let Some(token) = &admin.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return (StatusCode::UNAUTHORIZED, Json(json!({"error": "missing or wrong bearer token"}))).into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    if admin.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "starting"})))
    }
}

async fn routes(State(admin): State<Admin>) -> Json<Value> {
    let state = admin.state.load();
    let hosts_of = |site: &str| -> Vec<String> {
        state
            .config
            .sites
            .iter()
            .find(|s| s.name == site)
            .map(|s| s.hosts.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    };
    let list: Vec<Value> = state.router.routes().map(|c| route_json(c, hosts_of(&c.site))).collect();
    Json(json!({ "routes": list }))
}

/// The certificate inventory. `?warn_days=N` (default 30) flags certificates with N days
/// or fewer left.
async fn certs(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Response {
    let warn_days: i64 = match query.as_deref().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("warn_days=")))
    {
        None => 30,
        Some(v) => match v.parse() {
            Ok(n) if (0..=36_500).contains(&n) => n,
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "warn_days must be a whole number of days from 0 to 36500"})),
                )
                    .into_response();
            }
        },
    };
    let Some(resolver) = &admin.certs else { return Json(json!({"certificates": []})).into_response() };
    let store = resolver.store();
    let list: Vec<Value> = store
        .certs()
        .iter()
        .map(|c| {
            let days = c.info.days_remaining();
            let not_after = std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.info.not_after.max(0) as u64);
            json!({
                "subject": c.info.subject,
                "names": c.info.names,
                "issuer": c.info.issuer,
                "not_after": httpdate::fmt_http_date(not_after),
                "not_after_unix": c.info.not_after,
                "days_remaining": days,
                "warn": days <= warn_days,
                "source": c.info.source,
            })
        })
        .collect();
    Json(json!({"warn_days": warn_days, "certificates": list})).into_response()
}

fn route_json(c: &Compiled, hosts: Vec<String>) -> Value {
    use gatehouse_config::{Action, PathMatch};
    let r = &c.route;
    let (kind, path) = match &r.path {
        PathMatch::Exact(p) => ("exact", p.clone()),
        PathMatch::Prefix(p) => ("prefix", if p.is_empty() { "/".to_string() } else { p.clone() }),
        PathMatch::Regex(re) => ("regex", re.as_str().to_string()),
    };
    let mut v = json!({
        "id": r.id,
        "site": &*c.site,
        "hosts": hosts,
        "path": path,
        "match": kind,
        "methods": r.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_string()).collect::<Vec<_>>()),
        "priority": r.priority,
        "filters": c.chain.names(),
    });
    match &r.action {
        Action::Proxy(up) => {
            v["action"] = json!("proxy");
            v["load_balancing"] = json!(up.balance.algorithm.name());
            let backends: Vec<Value> = match &c.group {
                Some(g) => g
                    .backends
                    .iter()
                    .map(|b| {
                        json!({
                            "url": b.backend.url(),
                            "weight": b.backend.weight,
                            "active": b.active.load(Ordering::Relaxed),
                            "requests": b.requests.load(Ordering::Relaxed),
                            "failures": b.failures.load(Ordering::Relaxed),
                        })
                    })
                    .collect(),
                None => Vec::new(),
            };
            v["backends"] = json!(backends);
        }
        Action::Static(dir) => {
            v["action"] = json!("static");
            v["root"] = json!(dir.root.display().to_string());
        }
        Action::Redirect { to, code } => {
            v["action"] = json!("redirect");
            v["to"] = json!(to);
            v["code"] = json!(code.as_u16());
        }
    }
    v
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
