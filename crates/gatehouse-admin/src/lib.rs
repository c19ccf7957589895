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
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use gatehouse_proxy::route::Compiled;
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, limit = MAX_CONNECTIONS, "admin connection limit reached; closing new connection");
            continue;
        };
        let svc = TowerToHyperService::new(app.clone());
        let (http, mut stopping) = (http.clone(), stopping.clone());
        tokio::spawn(async move {
            let _slot = slot;
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
