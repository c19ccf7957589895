//! The admin listener: liveness and readiness probes, read-only JSON views of the routes,
//! certificates and running configuration, and `POST /api/reload`. Runs on the control
//! runtime, never on a proxy worker. Loopback by default; any other address requires a
//! bearer token for `/api/*` (enforced by configuration). Requests that change something
//! pass the `guard` (Host, Origin, Sec-Fetch-Site) first.
//!
//! Does not reload by itself: the binary hands in the reload capability, so this crate
//! never depends on it.

mod api;
mod bans;
mod conn;
mod data;
pub mod diff;
pub mod guard;
mod maintenance;
mod overview;
pub mod registry;

pub use data::Data;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gatehouse_proxy::StateHandle;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;

use conn::{PeerSlot, Peers, WriteDeadline};

/// The outcome of one reload: the version now running, or why the configuration was refused.
pub type ReloadOutcome = Result<u64, Vec<gatehouse_config::Error>>;

/// Runs one reload (queued behind one already running) and resolves with its outcome.
pub type Reload = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ReloadOutcome> + Send>> + Send + Sync>;

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
    /// `POST /api/reload`; `None` answers 503.
    pub reload: Option<Reload>,
    /// Hosts that requests changing something may name (`admin.allowed_hosts`).
    pub allowed_hosts: Arc<guard::Allowed>,
    /// The database (request logs, audit log, GDPR requests); `None` answers 503.
    pub data: Option<Data>,
    /// Renders `GET /metrics` (Prometheus text); `None` answers 503.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// Live figures for `/api/stats` (connections, requests, request-log rows, uptime).
    pub stats: Option<Arc<dyn Fn() -> serde_json::Value + Send + Sync>>,
    /// Serve only the registry (`/v1/services`): the `registry.listen` listener.
    pub registry_only: bool,
    /// The streams (L4 listeners), for `/api/streams`; `None` lists none.
    pub streams: Option<Arc<gatehouse_proxy::l4::Engine>>,
}

/// Most admin connections open at once; more are closed as they arrive. With the default
/// loopback address only local processes count; beyond loopback this bounds what an
/// unauthenticated client can hold (before this, idle connections could use up the
/// process's descriptors and make the proxy listeners fail to accept).
pub const MAX_CONNECTIONS: usize = 64;
/// Most admin connections open at once from one client address, so one client cannot take
/// every slot.
pub const MAX_PER_PEER: usize = 16;

/// Serves the admin API on `listener` until `shutdown` resolves, then lets requests in
/// flight finish for up to a second.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Admin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read = admin.header_read_timeout;
    let v1 = Router::new()
        .route("/v1/services", get(registry::list).post(registry::register))
        .route("/v1/services/{id}", get(registry::one).delete(registry::deregister))
        .route("/v1/services/{id}/heartbeat", axum::routing::put(registry::heartbeat));
    let api = if admin.registry_only {
        v1.route_layer(middleware::from_fn_with_state(admin.clone(), require_token))
    } else {
        Router::new()
            .route("/api/routes", get(api::routes))
            .route("/api/certs", get(api::certs))
            .route("/api/config", get(api::config))
            .route("/api/config/diff", get(api::config_diff))
            .route("/api/reload", post(api::reload))
            .route("/api/logs", get(data::logs))
            .route("/api/audit", get(data::audit_log))
            .route("/api/gdpr/export", get(data::gdpr_export))
            .route("/api/gdpr/erase", post(data::gdpr_erase))
            .route("/api/analytics/{what}", get(data::analytics))
            .route("/api/stats", get(overview::stats))
            .route("/api/backends", get(overview::backends))
            .route("/api/streams", get(api::streams))
            .route("/api/ai-context", get(overview::ai_context))
            .route("/api/maintenance", get(maintenance::list).post(maintenance::switch))
            .route("/api/bans", get(bans::list).post(bans::add))
            .route("/api/bans/{ip}", axum::routing::delete(bans::lift))
            .route("/metrics", get(metrics))
            .route("/api/openapi.json", get(openapi))
            .merge(v1)
            .route_layer(middleware::from_fn_with_state(admin.clone(), require_token))
    };
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/live", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(api::ready))
        .merge(api)
        // Outside the token check: a page that cannot know the token still gets no further.
        .layer(middleware::from_fn_with_state(admin.clone(), guard::guard))
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

/// The OpenAPI 3.0 description of this API (`GET /api/openapi.json`), kept by hand beside
/// the handlers and fuzzed against them by the integration tests (schemathesis).
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /metrics`: Prometheus text format, rendered on the blocking pool (a scrape reads
/// `/proc` and sums every worker's counters).
async fn metrics(State(admin): State<Admin>) -> Response {
    let Some(render) = admin.metrics.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "metrics are not available"}))).into_response();
    };
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": format!("metrics failed: {e}")}))).into_response()
        }
    }
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
