//! Bans in the process's life: the saved ones come back at start (those not ended), every
//! change is saved in the database (on the writer thread), and ended bans are removed every
//! second.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse_proxy::StateHandle;
use gatehouse_proxy::security::ban::{Ban, Change};

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Brings back the saved bans, saves every change from now on, and tells `ban_created`
/// webhooks about new bans.
/// `saved` is the database, opened once for everything restored at start.
pub fn start(
    state: &StateHandle,
    writer: &gatehouse_store::Writer,
    notifier: Arc<crate::webhooks::Notifier>,
    saved: Option<&gatehouse_store::Reader>,
) {
    let live = state.load();
    let bans = &live.shared.bans;
    let now = SystemTime::now();
    match saved.map(gatehouse_store::Reader::bans).transpose() {
        Ok(None) => {}
        Ok(Some(rows)) => {
            let mut back = 0;
            for row in rows {
                let until = SystemTime::UNIX_EPOCH + Duration::from_millis(row.until_ms.max(0) as u64);
                let (Ok(ip), true) = (row.ip.parse::<IpAddr>(), until > now) else { continue };
                let created = SystemTime::UNIX_EPOCH + Duration::from_millis(row.created_ms.max(0) as u64);
                bans.restore(ip, Ban { until, created, reason: row.reason });
                back += 1;
            }
            if back > 0 {
                tracing::info!(bans = back, "bans restored from the database");
            }
        }
        Err(e) => tracing::warn!(error = %e, "saved bans not read"),
    }
    let w = writer.clone();
    bans.on_change(Arc::new(move |change| {
        if let Change::Added(ip, ban) = &change {
            let secs = ban.until.duration_since(SystemTime::now()).map_or(0, |d| d.as_secs());
            notifier.notify(crate::webhooks::Event {
                kind: "ban_created",
                subject: ip.to_string(),
                severity: crate::webhooks::Severity::Warning,
                title: format!("Address banned: {ip}"),
                message: format!("{ip} is banned on every site for {secs} s: {}.", ban.reason),
                fields: vec![("ip", ip.to_string()), ("reason", ban.reason.clone()), ("seconds", secs.to_string())],
            });
        }
        w.run(move |db| {
            let result = match &change {
                Change::Added(ip, ban) => db.save_ban(&gatehouse_store::BanRow {
                    ip: ip.to_string(),
                    until_ms: unix_ms(ban.until),
                    created_ms: unix_ms(ban.created),
                    reason: ban.reason.clone(),
                }),
                Change::Lifted(ips) => db.delete_bans(&ips.iter().map(ToString::to_string).collect::<Vec<_>>()),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "ban change not saved in the database");
            }
        });
    }));
}

/// Removes ended bans every second.
pub async fn expire(state: StateHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.load().shared.bans.expire(SystemTime::now());
    }
}
