//! The GeoIP database (`geoip.database`): read at start, and again whenever the file's
//! modification time or size changes (a weekly GeoLite2 update replaces it in place), or
//! a reload names another file. A file that cannot be read keeps the database loaded
//! before (logged). Reading happens on the blocking pool, never on a worker.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use gatehouse_proxy::StateHandle;

/// How often the file is looked at.
const EVERY: Duration = Duration::from_secs(5);

/// What identifies the file as read: its path, modification time and size.
type Stamp = (PathBuf, Option<SystemTime>, u64);

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok();
    (path.to_path_buf(), meta.as_ref().and_then(|m| m.modified().ok()), meta.as_ref().map_or(0, |m| m.len()))
}

/// Loads the database the configuration names into the running state (at start, before
/// the listeners serve); returns what was read, for `follow`.
pub fn load_now(state: &StateHandle) -> Option<Stamp> {
    let live = state.load();
    let path = live.config.geoip.as_ref()?;
    // Taken before reading: a file replaced meanwhile is read again by `follow`.
    let seen = stamp(path);
    match gatehouse_proxy::security::geo::Geo::open(path) {
        Ok(r) => live.shared.geo.install(Some(r)),
        Err(e) => tracing::error!(path = %path.display(), error = %e, "GeoIP database not loaded"),
    }
    Some(seen)
}

/// Follows the file (and the configuration) for the life of the process.
pub async fn follow(state: StateHandle, mut seen: Option<Stamp>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let live = state.load();
        let Some(path) = live.config.geoip.clone() else {
            if live.shared.geo.loaded() {
                live.shared.geo.install(None);
                tracing::info!("GeoIP database unloaded (no geoip.database any more)");
            }
            seen = None;
            continue;
        };
        let p = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || stamp(&p)).await else { continue };
        if seen.as_ref() == Some(&now) {
            continue;
        }
        seen = Some(now);
        let p = path.clone();
        match tokio::task::spawn_blocking(move || gatehouse_proxy::security::geo::Geo::open(&p)).await {
            Ok(Ok(r)) => {
                live.shared.geo.install(Some(r));
                tracing::info!(path = %path.display(), "GeoIP database loaded");
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "GeoIP database not read; the one loaded before stays");
            }
            Err(e) => tracing::warn!(error = %e, "GeoIP load task failed"),
        }
    }
}
