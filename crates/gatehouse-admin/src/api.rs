//! The admin endpoints' handlers: readiness, the route and certificate views, the running
//! configuration and reload. Reads the published state; must not change it except through
//! the reload capability the binary hands in.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_proxy::route::Compiled;
use serde_json::{Value, json};

use crate::Admin;

pub(crate) async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    if admin.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "starting"})))
    }
}

pub(crate) async fn routes(State(admin): State<Admin>) -> Json<Value> {
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
    let day = crate::overview::route_day(&admin).await;
    let list: Vec<Value> = state
        .router
        .routes()
        .map(|c| {
            let mut v = route_json(c, hosts_of(&c.site));
            v["last_24h"] = crate::overview::day_json(day.get(&c.route.id));
            v
        })
        .collect();
    Json(json!({ "routes": list }))
}

/// The certificate inventory. `?warn_days=N` (default 30) flags certificates with N days
/// or fewer left.
pub(crate) async fn certs(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Response {
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

/// `GET /api/streams`: each stream with its address, protocol, counters and backends.
pub(crate) async fn streams(State(admin): State<Admin>) -> Json<Value> {
    let state = admin.state.load();
    let (addrs, stats) = match &admin.streams {
        Some(e) => (e.addrs(), e.stats().into_iter().collect::<std::collections::HashMap<_, _>>()),
        None => Default::default(),
    };
    let list: Vec<Value> = state
        .config
        .streams
        .iter()
        .map(|s| {
            let backends: Vec<Value> = s
                .upstreams()
                .filter_map(|up| state.groups.get(&up.key))
                .flat_map(|g| g.backends.iter().map(move |b| backend_json(g, b)))
                .collect();
            let counters = stats.get(&s.name).map(|st| {
                let outcomes: serde_json::Map<String, Value> =
                    st.outcomes().filter(|(_, n)| *n > 0).map(|(o, n)| (o.as_str().to_string(), json!(n))).collect();
                json!({
                    "active": st.active.load(Ordering::Relaxed).max(0),
                    "bytes_in": st.bytes_in.load(Ordering::Relaxed),
                    "bytes_out": st.bytes_out.load(Ordering::Relaxed),
                    "ended": outcomes,
                })
            });
            json!({
                "name": s.name,
                "listen": addrs.get(&s.name).map_or_else(|| s.listen.to_string(), ToString::to_string),
                "protocol": s.protocol.as_str(),
                "tls": s.tls.is_some(),
                "sni_routes": s.routes.len(),
                "backends": backends,
                "counters": counters,
            })
        })
        .collect();
    Json(json!({"streams": list}))
}

/// A backend with its counters and health, as `/api/routes` and `/api/backends` show it.
pub(crate) fn backend_json(g: &gatehouse_proxy::upstream::Group, b: &gatehouse_proxy::upstream::BackendState) -> Value {
    let failed = b.failures.load(Ordering::Relaxed) + b.server_errors.load(Ordering::Relaxed);
    // Attempts: requests sent, and those that got no connection (not in `requests`).
    let attempts = b.requests.load(Ordering::Relaxed) + b.refused.load(Ordering::Relaxed);
    let (recent, recent_failed) = b.health.recent.counts(attempts, failed);
    let mut v = json!({
        "url": b.backend.url(),
        "upstream": g.config.id,
        "weight": b.backend.weight,
        "active": b.active.load(Ordering::Relaxed),
        "requests": b.requests.load(Ordering::Relaxed),
        "failures": b.failures.load(Ordering::Relaxed),
        "retries": b.retries.load(Ordering::Relaxed),
        "ejections": b.ejections.load(Ordering::Relaxed),
        // `unchecked` without health checks on the upstream.
        "health": b.health.state(),
        "last_check_ms": b.health.last_check_ms(),
        // Requests (and the share that failed: backend errors and 5xx) over about the last
        // minute (counters sampled every 10 s).
        "recent_requests": recent,
        "recent_error_rate": if recent == 0 { 0.0 } else { recent_failed as f64 / recent as f64 },
    });
    if let Some(check) = &g.config.health {
        let (rate, checks) = b.health.success_rate(check.window);
        v["check_success_rate"] = json!(rate);
        v["checks_in_window"] = json!(checks);
    }
    if g.config.breaker.is_some() {
        v["breaker"] = json!(b.breaker.state());
        v["breaker_opened"] = json!(b.breaker.opened.load(Ordering::Relaxed));
    }
    v
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
            let backends: Vec<Value> =
                c.groups().into_iter().flat_map(|g| g.backends.iter().map(|b| backend_json(g, b))).collect();
            v["backends"] = json!(backends);
            if let Some(split) = &r.split {
                let pools: Vec<Value> = split
                    .pools
                    .iter()
                    .map(|p| json!({"upstream": p.name, "weight": p.weight, "when": p.when.as_ref().map(|(h, v)| json!({"header": h.as_str(), "value": v}))}))
                    .collect();
                v["split"] = json!(pools);
            }
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
        Action::Respond { status, body } => {
            v["action"] = json!("respond");
            v["status"] = json!(status.as_u16());
            v["body_bytes"] = json!(body.len());
        }
    }
    v
}

/// `POST /api/reload`: runs the one reload path and answers with its outcome.
pub(crate) async fn reload(State(admin): State<Admin>) -> Response {
    let Some(reload) = admin.reload.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "reload is not available"}))).into_response();
    };
    match reload().await {
        Ok(version) => Json(json!({"version": version})).into_response(),
        Err(errors) => refused(&errors),
    }
}

/// A configuration refused: 422 with every error's place and message.
fn refused(errors: &[gatehouse_config::Error]) -> Response {
    let list: Vec<Value> = errors
        .iter()
        .map(|e| json!({"file": e.file.display().to_string(), "line": e.line, "field": e.path, "message": e.message}))
        .collect();
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"errors": list}))).into_response()
}

/// `GET /api/config/diff`: what a reload would change now. The running configuration's
/// files are read and checked as a reload would (environment overrides included), on a
/// blocking thread, and nothing is applied.
pub(crate) async fn config_diff(State(admin): State<Admin>) -> Response {
    let state = admin.state.load();
    let source = state.config.source.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        gatehouse_config::load(&source, &gatehouse_config::EnvOverrides::from_env())
    })
    .await;
    match loaded {
        Ok(Ok(candidate)) => {
            let d = crate::diff::diff(&state.config, &candidate);
            Json(json!({"version": state.version, "diff": d, "lines": crate::diff::render(&d)})).into_response()
        }
        Ok(Err(errors)) => refused(&errors.0),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

/// `GET /api/config`: the running version and what it was built from.
pub(crate) async fn config(State(admin): State<Admin>) -> Json<Value> {
    let state = admin.state.load();
    let c = &state.config;
    let loaded_at = state.loaded_at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let files: Vec<String> = c.files().iter().map(|p| p.display().to_string()).collect();
    Json(json!({
        "version": state.version,
        "loaded_at": loaded_at,
        "files": files,
        "sites": c.sites.len(),
        "routes": c.sites.iter().map(|s| s.routes.len()).sum::<usize>(),
    }))
}
