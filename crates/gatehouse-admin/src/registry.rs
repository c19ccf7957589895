//! The service registry's API: `POST /v1/services` (register), `PUT
//! /v1/services/{id}/heartbeat`, `DELETE /v1/services/{id}`, `GET /v1/services[/{id}]`.
//! Registrations are saved in the store (a heartbeat only moves the expiry in memory: after
//! a restart every saved instance gets one TTL to send its next heartbeat).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_proxy::registry::{Instance, Scheme};
use serde_json::{Map, Value, json};

use crate::Admin;
use crate::data::{ApiError, bad};

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An instance as the API shows it (and the store keeps it).
pub fn instance_json(i: &Instance) -> Value {
    json!({
        "id": i.id,
        "name": i.name,
        "address": i.address,
        "port": i.port,
        "scheme": i.scheme.as_str(),
        "weight": i.weight,
        "tags": i.tags,
        "metadata": i.metadata,
        "ttl_ms": i.ttl.as_millis() as u64,
        "registered_ms": unix_ms(i.registered),
        "expires_ms": unix_ms(i.expires),
        "url": i.backend().url(),
    })
}

/// A name or id: letters, digits, `.`, `_`, `-`.
fn token(v: Option<&Value>, field: &str, max: usize) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= max
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Ok(Some(s.clone()))
        }
        _ => Err(format!("`{field}` must be 1 to {max} letters, digits, '.', '_' or '-'")),
    }
}

fn host(v: Option<&Value>) -> Result<String, String> {
    let Some(Value::String(a)) = v else { return Err("`address` (an IP address or host name) is required".into()) };
    let a = a.trim_start_matches('[').trim_end_matches(']');
    let name_ok = !a.is_empty()
        && a.len() <= 253
        && a.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if a.parse::<IpAddr>().is_ok() || name_ok {
        Ok(a.to_string())
    } else {
        Err(format!("`address` {a:?} is neither an IP address nor a host name"))
    }
}

/// Reads a registration (the API's body, or a saved record when `saved`). `ttl` and
/// `max_ttl` are the registry's default and bound.
pub fn instance_from_json(
    v: &Value,
    now: SystemTime,
    (ttl, max_ttl): (Duration, Duration),
    saved: bool,
) -> Result<Instance, String> {
    let Some(o) = v.as_object() else { return Err("the body must be a JSON object".into()) };
    let known = [
        "id",
        "name",
        "address",
        "port",
        "scheme",
        "weight",
        "tags",
        "metadata",
        "ttl",
        "ttl_ms",
        "registered_ms",
        "expires_ms",
        "url",
    ];
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {k:?}; known: id, name, address, port, scheme, weight, tags, metadata, ttl"
        ));
    }
    let name = token(o.get("name"), "name", 64)?.ok_or("`name` (the service's name) is required")?;
    let address = host(o.get("address"))?;
    let port = match o.get("port").and_then(Value::as_u64) {
        Some(p @ 1..=65535) => p as u16,
        _ => return Err("`port` must be a number from 1 to 65535".into()),
    };
    let scheme = match o.get("scheme") {
        None | Some(Value::Null) => Scheme::Http,
        Some(Value::String(s)) => Scheme::parse(s).ok_or("`scheme` must be http, https or h2c")?,
        _ => return Err("`scheme` must be http, https or h2c".into()),
    };
    let weight = match o.get("weight") {
        None | Some(Value::Null) => 1,
        Some(w) => match w.as_u64() {
            Some(w @ 1..=1000) => w as u32,
            _ => return Err("`weight` must be a number from 1 to 1000".into()),
        },
    };
    let tags: Vec<String> = match o.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= 32 => list
            .iter()
            .map(|t| t.as_str().filter(|t| !t.is_empty() && t.len() <= 128).map(String::from))
            .collect::<Option<_>>()
            .ok_or("`tags` must be texts of 1 to 128 bytes")?,
        _ => return Err("`tags` must be a list of at most 32 texts".into()),
    };
    let metadata: BTreeMap<String, String> = match o.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) if m.len() <= 32 => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .filter(|v| k.len() <= 64 && !k.is_empty() && v.len() <= 512)
                    .map(|v| (k.clone(), v.to_string()))
            })
            .collect::<Option<_>>()
            .ok_or("`metadata` values must be texts (keys up to 64 bytes, values up to 512)")?,
        _ => return Err("`metadata` must be an object of at most 32 texts".into()),
    };
    let ttl = if saved {
        // A saved TTL over today's registry.max_ttl is cut to it.
        Duration::from_millis(o.get("ttl_ms").and_then(Value::as_u64).unwrap_or(ttl.as_millis() as u64)).min(max_ttl)
    } else {
        match o.get("ttl") {
            None | Some(Value::Null) => ttl,
            Some(Value::String(t)) => match gatehouse_config::units::parse_duration(t) {
                Ok(d) if d >= Duration::from_secs(1) && d <= max_ttl => d,
                _ => return Err(format!("`ttl` must be a duration from 1s to {max_ttl:?} (registry.max_ttl)")),
            },
            Some(v) => match v.as_u64() {
                Some(s) if (1..=max_ttl.as_secs()).contains(&s) => Duration::from_secs(s),
                _ => return Err(format!("`ttl` must be from 1 to {} seconds", max_ttl.as_secs())),
            },
        }
    };
    let id = match token(o.get("id"), "id", 128)? {
        Some(id) => id,
        None => format!("{name}-{:016x}", fastrand::u64(..)),
    };
    let registered = match o.get("registered_ms").and_then(Value::as_u64) {
        Some(ms) if saved => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
        _ => now,
    };
    Ok(Instance { id, name, address, port, scheme, weight, tags, metadata, ttl, registered, expires: now + ttl })
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no instance {id:?} (it may have expired)"))
}

/// Saves (or forgets) instances in the store, on the writer thread.
pub(crate) fn persist(admin: &Admin, save: Option<&Instance>, delete: Vec<String>) {
    let Some(data) = &admin.data else { return };
    let record = save.map(|i| (i.id.clone(), instance_json(i).to_string(), unix_ms(i.expires)));
    data.writer.run(move |db| {
        let result = match &record {
            Some((id, json, expires)) => db.save_service(id, json, *expires),
            None => db.delete_services(&delete),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "registry change not saved in the database");
        }
    });
}

/// `POST /v1/services`: 201 for a new instance, 200 for one registered again.
pub(crate) async fn register(State(admin): State<Admin>, body: Bytes) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        bad(format!("the body must be JSON like {{\"name\": \"api\", \"address\": \"10.0.0.5\", \"port\": 8080}}: {e}"))
    })?;
    let state = admin.state.load();
    let cfg = &state.config.registry;
    let instance = instance_from_json(&body, SystemTime::now(), (cfg.ttl, cfg.max_ttl), false).map_err(bad)?;
    let new = state
        .shared
        .registry
        .register(instance.clone())
        .map_err(|e| ApiError::new(StatusCode::INSUFFICIENT_STORAGE, e))?;
    persist(&admin, Some(&instance), Vec::new());
    tracing::info!(id = %instance.id, service = %instance.name, url = %instance.backend().url(), "service instance registered");
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(instance_json(&instance))).into_response())
}

/// `PUT /v1/services/{id}/heartbeat`.
pub(crate) async fn heartbeat(State(admin): State<Admin>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let state = admin.state.load();
    let i = state.shared.registry.heartbeat(&id, SystemTime::now()).ok_or_else(|| not_found(&id))?;
    Ok(Json(json!({"id": i.id, "expires_ms": unix_ms(i.expires)})))
}

/// `DELETE /v1/services/{id}`.
pub(crate) async fn deregister(State(admin): State<Admin>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let state = admin.state.load();
    let i = state.shared.registry.remove(&id).ok_or_else(|| not_found(&id))?;
    persist(&admin, None, vec![i.id.clone()]);
    tracing::info!(id = %i.id, service = %i.name, "service instance deregistered");
    Ok(Json(json!({"deleted": i.id})))
}

/// `GET /v1/services[?name=NAME]`.
pub(crate) async fn list(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let mut name = None;
    for pair in query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("name", v)) => name = Some(v.to_string()),
            _ => return Err(bad(format!("unknown query parameter in {pair:?}; known: name"))),
        }
    }
    let state = admin.state.load();
    let list: Vec<Value> = state.shared.registry.list(name.as_deref()).iter().map(instance_json).collect();
    let mut out = Map::new();
    out.insert("services".into(), Value::Array(list));
    Ok(Json(Value::Object(out)))
}

/// `GET /v1/services/{id}`.
pub(crate) async fn one(State(admin): State<Admin>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let state = admin.state.load();
    let i = state.shared.registry.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(instance_json(&i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_checked_and_round_trip_through_the_store_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let limits = (Duration::from_secs(30), Duration::from_secs(3600));
        let v = json!({"name": "api", "address": "10.0.0.5", "port": 8080, "tags": ["v2"], "metadata": {"zone": "a"}, "ttl": "10s"});
        let i = instance_from_json(&v, now, limits, false).expect("valid");
        assert_eq!((i.ttl, i.expires, i.weight), (Duration::from_secs(10), now + Duration::from_secs(10), 1));
        assert!(i.id.starts_with("api-"), "{}", i.id);
        let again = instance_from_json(&instance_json(&i), now, limits, true).expect("saved form");
        assert_eq!((again.id, again.ttl, again.tags, again.metadata), (i.id, i.ttl, i.tags, i.metadata));
        for (bad, why) in [
            (json!({"address": "10.0.0.5", "port": 1}), "name"),
            (json!({"name": "a b", "address": "10.0.0.5", "port": 1}), "name"),
            (json!({"name": "a", "address": "10.0.0.5 x", "port": 1}), "address"),
            (json!({"name": "a", "address": "h", "port": 0}), "port"),
            (json!({"name": "a", "address": "h", "port": 1, "ttl": "2h"}), "ttl"),
            (json!({"name": "a", "address": "h", "port": 1, "scheme": "ftp"}), "scheme"),
            (json!({"name": "a", "address": "h", "port": 1, "color": "red"}), "unknown field"),
            (json!([1]), "object"),
        ] {
            let e = instance_from_json(&bad, now, limits, false).expect_err("invalid");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
