//! `GET /api/maintenance` (every site's maintenance state) and `POST /api/maintenance`
//! (switch a site on, off, or back to its file's settings). A switch lives in the proxy's
//! shared state, so it holds across reloads; it is written to the audit log.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_proxy::filter::{Maintenance, MaintenanceSwitch};
use gatehouse_store::AuditEntry;
use serde_json::{Value, json};

use crate::Admin;
use crate::data::{Answer, ApiError, bad};

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One site's maintenance, as both endpoints show it.
fn site_json(state: &gatehouse_proxy::RuntimeState, site: &gatehouse_config::Site, now: SystemTime) -> Value {
    let filter = Maintenance::new(site.name.as_str().into(), site.maintenance.clone());
    let active = filter.active(&state.shared, now);
    let switch = state.shared.maintenance.load().get(&site.name).cloned().filter(|s| s.until.is_none_or(|u| now < u));
    let windows: Vec<Value> = site
        .maintenance
        .iter()
        .flat_map(|m| m.windows.iter())
        .map(|(start, end)| json!({"start": unix(*start), "end": unix(*end)}))
        .collect();
    json!({
        "site": site.name,
        "active": active.is_some(),
        "until": active.as_ref().and_then(|a| a.until).map(unix),
        "switch": switch.map(|s| json!({"enabled": s.on, "until": s.until.map(unix), "message": s.message})),
        "enabled_in_file": site.maintenance.as_ref().is_some_and(|m| m.enabled),
        "windows": windows,
    })
}

/// `GET /api/maintenance`.
pub(crate) async fn list(State(admin): State<Admin>) -> Json<Value> {
    let state = admin.state.load();
    let now = SystemTime::now();
    let sites: Vec<Value> = state.config.sites.iter().map(|s| site_json(&state, s, now)).collect();
    Json(json!({ "sites": sites }))
}

/// `POST /api/maintenance` with `{"site": NAME, "enabled": true | false | "auto",
/// "for": "30m" | "until": RFC 3339, "message": TEXT}`.
pub(crate) async fn switch(State(admin): State<Admin>, body: Bytes) -> Answer {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body must be JSON like {{\"site\": \"panel\", \"enabled\": true}}: {e}")))?;
    let known = ["site", "enabled", "for", "until", "message"];
    if let Some(k) = body.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str()))) {
        return Err(bad(format!("unknown field {k:?}; known: {}", known.join(", "))));
    }
    let name = body.get("site").and_then(Value::as_str).ok_or_else(|| bad("`site` (a site name) is required"))?;
    let state = admin.state.load();
    let Some(site) = state.config.sites.iter().find(|s| s.name == name) else {
        let names: Vec<&str> = state.config.sites.iter().map(|s| s.name.as_str()).collect();
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no site {name:?}; sites: {}", names.join(", "))));
    };
    let on = match body.get("enabled") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s == "auto" => None,
        _ => return Err(bad("`enabled` must be true, false or \"auto\" (back to the site file's settings)")),
    };
    let now = SystemTime::now();
    let until = match (body.get("for"), body.get("until")) {
        (Some(_), Some(_)) => return Err(bad("give `for` or `until`, not both")),
        (Some(v), None) => {
            let d = v.as_str().map(gatehouse_config::units::parse_duration);
            match d {
                Some(Ok(d)) if d > Duration::ZERO => Some(now + d),
                _ => return Err(bad("`for` must be a duration such as \"30m\"")),
            }
        }
        (None, Some(v)) => match v.as_str().map(gatehouse_config::units::parse_time) {
            Some(Ok(t)) if t > now => Some(t),
            Some(Ok(_)) => return Err(bad("`until` is in the past")),
            _ => return Err(bad("`until` must be an RFC 3339 time such as 2026-12-24T22:00:00Z")),
        },
        (None, None) => None,
    };
    let message = match body.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) if m.len() <= 1000 => Some(m.clone()),
        _ => return Err(bad("`message` must be text of at most 1000 bytes")),
    };
    if on.is_none() && (until.is_some() || message.is_some()) {
        return Err(bad(
            "\"auto\" hands the site back to its file's settings: it takes no `for`, `until` or `message`",
        ));
    }
    let switch = on.map(|on| MaintenanceSwitch { on, until, message });
    state.shared.switch_maintenance(name, switch.clone());
    tracing::info!(site = name, enabled = ?on, "maintenance switched through the admin API");
    if let Some(data) = &admin.data {
        let detail = json!({"site": name, "enabled": on, "until": until.map(unix)}).to_string();
        let entry = AuditEntry::now("api", "maintenance", detail);
        data.writer.run(move |db| {
            if let Err(e) = db.audit(&entry) {
                tracing::warn!(error = %e, "audit entry not written");
            }
        });
    }
    Ok(Json(site_json(&state, site, now)))
}
