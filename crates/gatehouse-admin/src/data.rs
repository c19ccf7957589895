//! The stored data behind the admin API: request logs, the audit log, and GDPR subject
//! requests (a client's rows exported or erased, each recorded in the audit log). Reads
//! open their own read-only connection on the blocking pool; erasure and audit entries run
//! on the database's writer thread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_store::{AuditEntry, LogQuery, MaskIp, Reader, Writer, mask_ip};
use serde_json::{Value, json};

use crate::Admin;

/// The database: where it is (for readers) and its writer.
#[derive(Clone)]
pub struct Data {
    pub path: PathBuf,
    pub writer: Writer,
}

/// An answer other than success: a status and a message, as `{"error": "…"}`.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

pub(crate) type Answer = Result<Json<Value>, ApiError>;

pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn unavailable(message: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("database: {message}"))
}

/// `%XX` and `+` decoded; `None` for a broken escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query's parameters; an unknown name, a repeated one or a broken escape is an error
/// (a typo must not silently widen a filter).
fn params(query: Option<&str>, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut map = HashMap::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (decode(k), decode(v)) else {
            return Err(bad(format!("query parameter {pair:?} is not valid percent-encoded UTF-8")));
        };
        if !known.contains(&k.as_str()) {
            return Err(bad(format!("unknown query parameter {k:?}; known: {}", known.join(", "))));
        }
        if map.insert(k.clone(), v).is_some() {
            return Err(bad(format!("query parameter {k:?} given twice")));
        }
    }
    Ok(map)
}

fn number<T: std::str::FromStr>(p: &HashMap<String, String>, name: &str, what: &str) -> Result<Option<T>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| bad(format!("{name} must be {what}, got {v:?}"))),
    }
}

fn data(admin: &Admin) -> Result<Data, ApiError> {
    admin.data.clone().ok_or_else(|| unavailable("not configured"))
}

/// Runs a read on the blocking pool with a fresh read-only connection.
async fn read<T: Send + 'static>(
    data: &Data,
    f: impl FnOnce(&Reader) -> Result<T, gatehouse_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let path = data.path.clone();
    match tokio::task::spawn_blocking(move || Reader::open(&path).and_then(|r| f(&r))).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(e)),
    }
}

/// Appends to the audit log (on the writer thread; never waits for it).
fn audit(data: &Data, action: &str, detail: Value) {
    let entry = AuditEntry::now("api", action, detail.to_string());
    data.writer.run(move |store| {
        if let Err(e) = store.audit(&entry) {
            tracing::warn!(error = %e, "audit entry not written");
        }
    });
}

const LOG_PARAMS: &[&str] = &[
    "site",
    "route",
    "host",
    "method",
    "status",
    "status_class",
    "path_prefix",
    "error_side",
    "request_id",
    "trace_id",
    "since",
    "until",
    "after",
    "limit",
];

/// `GET /api/logs`: request rows, newest first, filtered; `next` continues the listing.
pub(crate) async fn logs(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Answer {
    let data = data(&admin)?;
    let q = log_query(query.as_deref())?;
    let limit = q.limit;
    let rows = read(&data, move |r| r.logs(&q)).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| format!("{}.{}", r.time_us, r.id))).flatten();
    Ok(Json(json!({"requests": rows, "next": next})))
}

fn log_query(query: Option<&str>) -> Result<LogQuery, ApiError> {
    let p = params(query, LOG_PARAMS)?;
    let text = |name: &str| p.get(name).cloned();
    let seconds = |name: &str| -> Result<Option<i64>, ApiError> {
        Ok(number::<i64>(&p, name, "a Unix time in seconds")?.map(|s| s.saturating_mul(1_000_000)))
    };
    let status_class = match p.get("status_class").map(String::as_str) {
        None => None,
        Some(c @ ("1xx" | "2xx" | "3xx" | "4xx" | "5xx")) => Some(c.as_bytes()[0] - b'0'),
        Some(other) => return Err(bad(format!("status_class must be one of 1xx to 5xx, got {other:?}"))),
    };
    let after = match p.get("after") {
        None => None,
        Some(v) => {
            let cursor = v.split_once('.').and_then(|(t, id)| Some((t.parse().ok()?, id.parse().ok()?)));
            Some(cursor.ok_or_else(|| bad(format!("after must be the `next` value of an earlier page, got {v:?}")))?)
        }
    };
    let limit = number::<usize>(&p, "limit", "a whole number from 1 to 1000")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!("limit must be from 1 to 1000, got {limit}")));
    }
    let status = number::<u16>(&p, "status", "an HTTP status code")?;
    if let Some(s) = status
        && !(100..=999).contains(&s)
    {
        return Err(bad(format!("status must be an HTTP status code (100 to 999), got {s}")));
    }
    Ok(LogQuery {
        site: text("site"),
        route: text("route"),
        host: text("host"),
        method: text("method"),
        status,
        status_class,
        path_prefix: text("path_prefix"),
        error_side: text("error_side"),
        request_id: text("request_id"),
        trace_id: text("trace_id"),
        since_us: seconds("since")?,
        until_us: seconds("until")?,
        after,
        limit,
    })
}

/// `GET /api/audit`: audit entries, newest first; `before` continues the listing.
pub(crate) async fn audit_log(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Answer {
    let data = data(&admin)?;
    let p = params(query.as_deref(), &["limit", "before"])?;
    let limit = number::<usize>(&p, "limit", "a whole number from 1 to 1000")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!("limit must be from 1 to 1000, got {limit}")));
    }
    let before = number::<i64>(&p, "before", "an entry id")?;
    let rows = read(&data, move |r| r.audit(limit, before)).await?;
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|e| {
            // The detail is JSON written by Gatehouse; shown as a value, not a string.
            let detail = e.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
            json!({"id": e.id, "time_ms": e.time_ms, "source": e.source, "action": e.action, "detail": detail})
        })
        .collect();
    let next = (entries.len() == limit).then(|| entries.last().map(|e| e["id"].clone())).flatten();
    Ok(Json(json!({"entries": entries, "next": next})))
}

fn client_ip(text: Option<&str>) -> Result<IpAddr, ApiError> {
    let text = text.ok_or_else(|| bad("give the client's address as ip"))?;
    text.trim().parse().map_err(|_| bad(format!("ip must be an IPv4 or IPv6 address, got {text:?}")))
}

/// `GET /api/gdpr/export?ip=`: every stored request of that address (matched on its keyed
/// hash: never the rows of the other addresses sharing its masked form). Recorded in the
/// audit log with the masked address.
pub(crate) async fn gdpr_export(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Answer {
    let data = data(&admin)?;
    let p = params(query.as_deref(), &["ip"])?;
    let ip = client_ip(p.get("ip").map(String::as_str))?;
    let rows = read(&data, move |r| r.client_rows(ip)).await?;
    let client = mask_ip(ip, MaskIp::LastOctet);
    audit(&data, "gdpr_export", json!({"client": client, "rows": rows.len()}));
    Ok(Json(json!({"client": client, "requests": rows})))
}

/// `POST /api/gdpr/erase` with `{"ip": "…"}`: deletes every stored request of that
/// address and its keyed hash. Recorded in the audit log with the masked address.
pub(crate) async fn gdpr_erase(State(admin): State<Admin>, body: Bytes) -> Answer {
    let data = data(&admin)?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body must be JSON like {{\"ip\": \"203.0.113.7\"}}: {e}")))?;
    let ip = client_ip(body.get("ip").and_then(Value::as_str))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let client = mask_ip(ip, MaskIp::LastOctet);
    let entry_client = client.clone();
    data.writer.run(move |store| {
        let result = store.erase_client(ip);
        if let Ok(n) = &result {
            let entry = AuditEntry::now("api", "gdpr_erase", json!({"client": entry_client, "deleted": n}).to_string());
            if let Err(e) = store.audit(&entry) {
                tracing::warn!(error = %e, "audit entry not written");
            }
        }
        let _ = tx.send(result.map_err(|e| e.to_string()));
    });
    match rx.await {
        Ok(Ok(n)) => Ok(Json(json!({"client": client, "deleted": n}))),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable("the writer stopped")),
    }
}

/// The span `hours` (default 24, at most 400 days) back from the end of the current hour,
/// and `site` when given.
fn span(query: Option<&str>, extra: &[&str]) -> Result<(gatehouse_store::Span, HashMap<String, String>), ApiError> {
    let mut known = vec!["hours", "site"];
    known.extend_from_slice(extra);
    let p = params(query, &known)?;
    let hours = number::<i64>(&p, "hours", "a whole number of hours from 1 to 9600")?.unwrap_or(24);
    if !(1..=9600).contains(&hours) {
        return Err(bad(format!("hours must be from 1 to 9600 (400 days), got {hours}")));
    }
    let until = gatehouse_store::hour_of(gatehouse_store::now_us()) + 3600;
    let span = gatehouse_store::Span { since: until - hours * 3600, until, site: p.get("site").cloned() };
    Ok((span, p))
}

/// `GET /api/analytics/{what}`: read from the hourly rollups.
/// - `summary`: totals with latency percentiles;
/// - `routes`: the same per route, most requests first (`limit`, default 10);
/// - `status`, `user_agents`, `countries`: counts, largest first;
/// - `heatmap`: requests by weekday (0 = Sunday) and hour of day, UTC.
pub(crate) async fn analytics(
    State(admin): State<Admin>,
    axum::extract::Path(what): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let data = data(&admin)?;
    let extra: &[&str] = if what == "routes" { &["limit"] } else { &[] };
    let (span, p) = span(query.as_deref(), extra)?;
    let window = json!({"since": span.since, "until": span.until, "site": span.site});
    let value = match what.as_str() {
        "summary" => {
            let t = read(&data, move |r| r.totals(&span, false, 1)).await?;
            json!({"window": window, "summary": t.into_iter().next().unwrap_or_default()})
        }
        "routes" => {
            let limit = number::<usize>(&p, "limit", "a whole number from 1 to 1000")?.unwrap_or(10);
            if !(1..=1000).contains(&limit) {
                return Err(bad(format!("limit must be from 1 to 1000, got {limit}")));
            }
            let t = read(&data, move |r| r.totals(&span, true, limit)).await?;
            json!({"window": window, "routes": t})
        }
        "status" | "user_agents" | "countries" => {
            let dimension = match what.as_str() {
                "status" => "status",
                "user_agents" => "agent",
                _ => "country",
            };
            let counts = read(&data, move |r| r.counts(&span, dimension)).await?;
            let list: Vec<Value> = counts.into_iter().map(|(k, n)| json!({"value": k, "requests": n})).collect();
            json!({"window": window, what.as_str(): list})
        }
        "heatmap" => {
            let map = read(&data, move |r| r.heatmap(&span)).await?;
            json!({"window": window, "weekday_hour": map})
        }
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no analytics called {other:?}; there are summary, routes, status, user_agents, countries and heatmap"
                ),
            ));
        }
    };
    Ok(Json(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded_and_checked() {
        let p = params(Some("ip=2001%3Adb8%3A%3A1&x=a+b"), &["ip", "x"]).expect("valid");
        assert_eq!(p["ip"], "2001:db8::1");
        assert_eq!(p["x"], "a b");
        assert!(params(Some("ip=%zz"), &["ip"]).is_err());
        assert!(params(Some("ip=%C3"), &["ip"]).is_err(), "a lone UTF-8 lead byte");
        assert!(params(Some("iq=1"), &["ip"]).is_err());
        assert!(params(Some("ip=1&ip=2"), &["ip"]).is_err());
        let q = log_query(Some("status_class=5xx&limit=10&after=17.3&since=2")).expect("valid");
        assert_eq!((q.status_class, q.limit, q.after, q.since_us), (Some(5), 10, Some((17, 3)), Some(2_000_000)));
        for bad in ["limit=0", "limit=1001", "status=42", "status_class=6xx", "after=x", "since=yesterday"] {
            assert!(log_query(Some(bad)).is_err(), "{bad} was accepted");
        }
    }
}
