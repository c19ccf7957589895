//! The service registry's life in the process: the instances saved in the database come
//! back at start (each with one TTL to send its next heartbeat), a change to the set of
//! instances rebuilds the running state (through the reload queue), instances whose TTL
//! ran out are removed every second, and `registry.listen` gets a listener of its own.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse_proxy::StateHandle;

use crate::reload::Queue;

/// Wires the registry of the running state to the reload queue, and brings back the saved
/// instances (read from `saved`, the database opened once for everything restored at start).
pub fn start(state: &StateHandle, queue: &Queue, saved: Option<&gatehouse_store::Reader>) {
    let live = state.load();
    let registry = &live.shared.registry;
    let q = queue.clone();
    registry.on_change(Arc::new(move || q.registry()));
    let Some(reader) = saved else { return };
    let saved = match reader.services() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "saved registry instances not read");
            return;
        }
    };
    let now = SystemTime::now();
    let cfg = &live.config.registry;
    let mut back = 0;
    for (record, expires_ms) in saved {
        let parsed = serde_json::from_str(&record)
            .map_err(|e| e.to_string())
            .and_then(|v| gatehouse_admin::registry::instance_from_json(&v, now, (cfg.ttl, cfg.max_ttl), true));
        match parsed {
            Ok(mut i) => {
                let saved_expiry = SystemTime::UNIX_EPOCH + Duration::from_millis(expires_ms.max(0) as u64);
                i.expires = saved_expiry.max(now + i.ttl);
                if registry.register(i).is_ok() {
                    back += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "a saved registry instance is unreadable; skipped"),
        }
    }
    if back > 0 {
        tracing::info!(instances = back, "registry instances restored from the database");
    }
}

/// Removes expired instances every second (and from the database).
pub async fn expire(state: StateHandle, writer: gatehouse_store::Writer) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let gone = state.load().shared.registry.expire(SystemTime::now());
        if gone.is_empty() {
            continue;
        }
        for i in &gone {
            tracing::warn!(id = %i.id, service = %i.name, "service instance expired: no heartbeat within its TTL");
        }
        let ids: Vec<String> = gone.into_iter().map(|i| i.id).collect();
        writer.run(move |db| {
            if let Err(e) = db.delete_services(&ids) {
                tracing::warn!(error = %e, "expired registry instances not removed from the database");
            }
        });
    }
}
