//! Overviews: `/api/stats` (the process at a glance), `/api/backends` (every backend with
//! its counters), and `/api/ai-context` (a Markdown status report to paste into an
//! assistant: configuration summary, health, recent errors, anomalies; never a secret,
//! client addresses masked as stored).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gatehouse_store::{LogQuery, Span, Totals};
use serde_json::{Value, json};

use crate::Admin;

/// The last 24 hours up to the end of the current hour.
fn last_day(site: Option<String>) -> Span {
    let until = gatehouse_store::hour_of(gatehouse_store::now_us()) + 3600;
    Span { since: until - 24 * 3600, until, site }
}

/// Reads from the database on the blocking pool; `None` when there is no database or the
/// read fails (an overview shows what it can).
async fn stored<T: Send + 'static>(
    admin: &Admin,
    f: impl FnOnce(&gatehouse_store::Reader) -> Result<T, gatehouse_store::StoreError> + Send + 'static,
) -> Option<T> {
    let path = admin.data.as_ref()?.path.clone();
    tokio::task::spawn_blocking(move || gatehouse_store::Reader::open(&path).and_then(|r| f(&r))).await.ok()?.ok()
}

/// 24-hour figures per route id, from the rollups.
pub(crate) async fn route_day(admin: &Admin) -> std::collections::HashMap<String, Totals> {
    stored(admin, |r| r.totals(&last_day(None), true, 1000))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.route.clone()?, t)))
        .collect()
}

pub(crate) fn day_json(t: Option<&Totals>) -> Value {
    match t {
        Some(t) => json!({
            "requests": t.requests,
            "client_errors": t.client_errors,
            "server_errors": t.server_errors,
            "p50_ms": t.p50_ms,
            "p99_ms": t.p99_ms,
        }),
        None => json!({"requests": 0, "client_errors": 0, "server_errors": 0, "p50_ms": null, "p99_ms": null}),
    }
}

/// `GET /api/stats`.
pub(crate) async fn stats(State(admin): State<Admin>) -> Json<Value> {
    let state = admin.state.load();
    let live = admin.stats.as_ref().map(|f| f()).unwrap_or(Value::Null);
    let day = stored(&admin, |r| r.totals(&last_day(None), false, 1)).await.and_then(|t| t.into_iter().next());
    let db_bytes = admin.data.as_ref().and_then(|d| std::fs::metadata(&d.path).ok()).map(|m| m.len());
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config_version": state.version,
        "sites": state.config.sites.len(),
        "routes": state.router.routes().count(),
        "live": live,
        "last_24h": day_json(day.as_ref()),
        "database_bytes": db_bytes,
    }))
}

/// `GET /api/backends`: every backend of every proxy route, with its counters.
pub(crate) async fn backends(State(admin): State<Admin>) -> Json<Value> {
    let state = admin.state.load();
    let mut list = Vec::new();
    for c in state.router.routes() {
        for g in c.groups() {
            for b in &g.backends {
                let mut v = crate::api::backend_json(g, b);
                v["site"] = json!(&*c.site);
                v["route"] = json!(c.route.id);
                list.push(v);
            }
        }
    }
    // Each backend's latest events (health, ejections, breaker), from the store.
    let urls: Vec<String> = list.iter().map(|v| v["url"].as_str().unwrap_or_default().to_string()).collect();
    let events: Option<Vec<Vec<gatehouse_store::BackendEvent>>> =
        stored(&admin, move |r| urls.iter().map(|u| r.backend_events(Some(u), 5)).collect()).await;
    for (v, e) in list.iter_mut().zip(events.unwrap_or_default()) {
        v["events"] = json!(e);
    }
    Json(json!({ "backends": list }))
}

/// `GET /api/ai-context`: a Markdown report.
pub(crate) async fn ai_context(State(admin): State<Admin>) -> Response {
    let state = admin.state.load();
    let config = &state.config;
    let routes = route_day(&admin).await;
    let errors = stored(&admin, |r| {
        let q = LogQuery { status_class: Some(5), limit: 20, ..LogQuery::default() };
        let mut rows = r.logs(&q)?;
        let failed = r.logs(&LogQuery { error_side: Some("backend".into()), limit: 20, ..LogQuery::default() })?;
        rows.extend(failed);
        rows.sort_by_key(|x| std::cmp::Reverse((x.time_us, x.id)));
        rows.dedup_by_key(|x| x.id);
        rows.truncate(20);
        Ok(rows)
    })
    .await
    .unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "# Gatehouse status\n");
    let _ = writeln!(
        md,
        "Gatehouse {} · configuration version {} · {} sites · {} routes · HTTP {}{}\n",
        env!("CARGO_PKG_VERSION"),
        state.version,
        config.sites.len(),
        state.router.routes().count(),
        config.listen_http,
        config.listen_https.map(|a| format!(" · HTTPS {a}")).unwrap_or_default(),
    );
    let _ = writeln!(md, "## Routes (last 24 hours)\n");
    let _ = writeln!(md, "| route | site | hosts | action | requests | 4xx | 5xx | p50 ms | p99 ms |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let mut anomalies = Vec::new();
    for c in state.router.routes() {
        let hosts: Vec<String> = config
            .sites
            .iter()
            .find(|s| *s.name == *c.site)
            .map(|s| s.hosts.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let action = match &c.route.action {
            gatehouse_config::Action::Proxy(_) => "proxy",
            gatehouse_config::Action::Static(_) => "static",
            gatehouse_config::Action::Redirect { .. } => "redirect",
            gatehouse_config::Action::Respond { .. } => "respond",
        };
        let t = routes.get(&c.route.id);
        let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {action} | {} | {} | {} | {} | {} |",
            c.route.id,
            c.site,
            hosts.join(", "),
            t.map_or(0, |t| t.requests),
            t.map_or(0, |t| t.client_errors),
            t.map_or(0, |t| t.server_errors),
            ms(t.and_then(|t| t.p50_ms)),
            ms(t.and_then(|t| t.p99_ms)),
        );
        if let Some(t) = t
            && t.requests >= 20
            && t.server_errors * 20 > t.requests
        {
            anomalies.push(format!(
                "Route {} answered 5xx to {} of {} requests in 24 hours ({:.0}%).",
                c.route.id,
                t.server_errors,
                t.requests,
                t.server_errors as f64 * 100.0 / t.requests as f64
            ));
        }
    }
    let _ = writeln!(md, "\n## Backends\n");
    let _ = writeln!(md, "| route | backend | in flight | requests | failures |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for c in state.router.routes() {
        for b in c.groups().into_iter().flat_map(|g| g.backends.iter()) {
            let (requests, failures) = (b.requests.load(Ordering::Relaxed), b.failures.load(Ordering::Relaxed));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {requests} | {failures} |",
                c.route.id,
                b.backend.url(),
                b.active.load(Ordering::Relaxed)
            );
            if failures > 0 && failures * 10 >= requests.max(1) {
                anomalies.push(format!(
                    "Backend {} of {} failed {failures} of {requests} attempts.",
                    b.backend.url(),
                    c.route.id
                ));
            }
        }
    }
    if let Some(resolver) = &admin.certs {
        let _ = writeln!(md, "\n## Certificates\n");
        for c in resolver.store().certs().iter() {
            let days = c.info.days_remaining();
            let _ = writeln!(md, "- {}: {} days left ({})", c.info.names.join(", "), days, c.info.source);
            if days <= 14 {
                anomalies.push(format!("The certificate for {} expires in {days} days.", c.info.names.join(", ")));
            }
        }
    }
    if let Some(live) = admin.stats.as_ref().map(|f| f())
        && let Some(dropped) = live["request_log"]["dropped"].as_u64()
        && dropped > 0
    {
        anomalies.push(format!("{dropped} request-log rows were dropped (the database could not keep up)."));
    }
    let _ = writeln!(md, "\n## Recent errors\n");
    if errors.is_empty() {
        let _ = writeln!(md, "None stored.");
    }
    for e in &errors {
        let _ = writeln!(
            md,
            "- {} {} {} {} → {}{} (client {}, request {})",
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_micros(e.time_us.max(0) as u64)),
            e.method.as_deref().unwrap_or("-"),
            e.host,
            e.path,
            e.status,
            e.error_kind
                .as_deref()
                .map(|k| format!(" ({k}: {})", e.error_reason.as_deref().unwrap_or("")))
                .unwrap_or_default(),
            e.client,
            e.request_id.as_deref().unwrap_or("-"),
        );
    }
    let _ = writeln!(md, "\n## Anomalies\n");
    if anomalies.is_empty() {
        let _ = writeln!(md, "None found.");
    }
    for a in anomalies {
        let _ = writeln!(md, "- {a}");
    }
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], md).into_response()
}
