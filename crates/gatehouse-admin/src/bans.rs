//! `GET /api/bans`, `POST /api/bans` (`{"ip", "for", "reason"}`) and
//! `DELETE /api/bans/{ip}`: the banned addresses of every site.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gatehouse_proxy::security::ban::Ban;
use serde_json::{Value, json};

use crate::Admin;
use crate::data::{Answer, ApiError, bad};

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn ban_json(ip: IpAddr, b: &Ban) -> Value {
    json!({"ip": ip.to_string(), "until": unix(b.until), "created": unix(b.created), "reason": b.reason})
}

/// `GET /api/bans`: bans in force, soonest to end first.
pub(crate) async fn list(State(admin): State<Admin>) -> Json<Value> {
    let state = admin.state.load();
    let now = SystemTime::now();
    let bans: Vec<Value> =
        state.shared.bans.list().iter().filter(|(_, b)| b.until > now).map(|(ip, b)| ban_json(*ip, b)).collect();
    Json(json!({ "bans": bans }))
}

/// `POST /api/bans`: bans an address on every site (`for` defaults to 1h).
pub(crate) async fn add(State(admin): State<Admin>, body: Bytes) -> Answer {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body must be JSON like {{\"ip\": \"203.0.113.7\", \"for\": \"1h\"}}: {e}")))?;
    let known = ["ip", "for", "reason"];
    if let Some(k) = body.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str()))) {
        return Err(bad(format!("unknown field {k:?}; known: ip, for, reason")));
    }
    let ip: IpAddr = body
        .get("ip")
        .and_then(Value::as_str)
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("`ip` must be an IPv4 or IPv6 address"))?;
    let duration = match body.get("for") {
        None | Some(Value::Null) => Duration::from_secs(3600),
        Some(Value::String(s)) => match gatehouse_config::units::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            _ => return Err(bad("`for` must be a duration such as \"1h\" (at most 365d)")),
        },
        _ => return Err(bad("`for` must be a duration such as \"1h\"")),
    };
    let reason = match body.get("reason") {
        None | Some(Value::Null) => "admin API".to_string(),
        Some(Value::String(r)) if r.len() <= 500 => r.clone(),
        _ => return Err(bad("`reason` must be text of at most 500 bytes")),
    };
    let now = SystemTime::now();
    let ban = Ban { until: now + duration, created: now, reason };
    let state = admin.state.load();
    if !state.shared.bans.add(ip, ban.clone()) {
        return Err(ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "the ban list is full"));
    }
    tracing::info!(%ip, until = ?duration, "address banned through the admin API");
    Ok(Json(ban_json(ip, &ban)))
}

/// `DELETE /api/bans/{ip}`: lifts a ban.
pub(crate) async fn lift(State(admin): State<Admin>, Path(ip): Path<String>) -> Answer {
    let addr: IpAddr = ip.trim().parse().map_err(|_| bad(format!("{ip:?} is not an IP address")))?;
    let state = admin.state.load();
    if !state.shared.bans.lift(addr) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{addr} is not banned")));
    }
    tracing::info!(ip = %addr, "ban lifted through the admin API");
    Ok(Json(json!({"lifted": addr.to_string()})))
}
