//! Bans: addresses refused on every site until a time, made by rate-limit violations,
//! failed logins (`FailedLogins`) or through the admin API. Held in `state::Shared` (they outlive reloads); the binary saves
//! them in the store through `on_change`, so they outlive restarts too.
//!
//! Workers read this on every request, so an empty list costs one atomic load; with bans,
//! one short lock of a small map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub until: SystemTime,
    pub created: SystemTime,
    /// Why, in words (`5 rate-limit violations on panel#0`, `admin API`).
    pub reason: String,
}

/// A change to the list, for the store.
#[derive(Debug, Clone)]
pub enum Change {
    Added(IpAddr, Ban),
    Lifted(Vec<IpAddr>),
}

/// Told about each change (saving it); called on the thread that made it: must not block.
pub type OnChange = Arc<dyn Fn(Change) + Send + Sync>;

/// At most this many bans at once (a flood of violators cannot grow the list past it).
pub const MAX_BANS: usize = 1_000_000;

/// Failed logins by client address, across routes (wrong credentials at `auth`, or the
/// application's own 401/403 on a login path): enough of them within a route's window ban
/// the address. Bounded like a rate-limit table.
pub struct FailedLogins {
    table: crate::security::limit::Table,
}

impl Default for FailedLogins {
    fn default() -> Self {
        FailedLogins { table: crate::security::limit::Table::new(200_000) }
    }
}

impl FailedLogins {
    /// Counts one failed login of `client` under `rule`, banning it at `rule.after`
    /// (`Bans::strike`). Returns whether it banned.
    pub fn count(&self, bans: &Bans, client: IpAddr, rule: &gatehouse_config::BanRule, place: &str) -> bool {
        bans.strike(&self.table, client, rule, "failed logins", place)
    }
}

#[derive(Default)]
pub struct Bans {
    map: Mutex<HashMap<IpAddr, Ban>>,
    count: AtomicUsize,
    on_change: OnceLock<OnChange>,
}

impl Bans {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Ban>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn on_change(&self, f: OnChange) {
        let _ = self.on_change.set(f);
    }

    fn tell(&self, c: Change) {
        if let Some(f) = self.on_change.get() {
            f(c);
        }
    }

    /// The ban on `ip` in force at `now`, if any.
    pub fn check(&self, ip: IpAddr, now: SystemTime) -> Option<Ban> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.lock().get(&ip).filter(|b| now < b.until).cloned()
    }

    /// Counts one strike against `client` in `table` (a rate-limit violation, a failed
    /// login): `rule.after` of them within `rule.window` ban it for `rule.duration`, with
    /// the reason `N WHAT on PLACE`. Returns whether it banned.
    pub fn strike(
        &self,
        table: &crate::security::limit::Table,
        client: IpAddr,
        rule: &gatehouse_config::BanRule,
        what: &str,
        place: &str,
    ) -> bool {
        let key = crate::security::limit::ip_key(client);
        let n = table.count(key, rule.window, crate::security::limit::now_ns());
        if n < rule.after {
            return false;
        }
        table.forget(key);
        let now = SystemTime::now();
        tracing::warn!(%client, place, what, until = ?rule.duration, "address banned");
        self.add(client, Ban { until: now + rule.duration, created: now, reason: format!("{n} {what} on {place}") });
        true
    }

    /// Bans `ip` (a later end replaces an earlier one). `false` when the list is full.
    pub fn add(&self, ip: IpAddr, ban: Ban) -> bool {
        let mut map = self.lock();
        if !map.contains_key(&ip) && map.len() >= MAX_BANS {
            return false;
        }
        map.insert(ip, ban.clone());
        self.count.store(map.len(), Ordering::Relaxed);
        drop(map);
        self.tell(Change::Added(ip, ban));
        true
    }

    /// Lifts the ban on `ip`; `false` when there was none.
    pub fn lift(&self, ip: IpAddr) -> bool {
        let mut map = self.lock();
        let had = map.remove(&ip).is_some();
        self.count.store(map.len(), Ordering::Relaxed);
        drop(map);
        if had {
            self.tell(Change::Lifted(vec![ip]));
        }
        had
    }

    /// Removes the bans that ended by `now`.
    pub fn expire(&self, now: SystemTime) {
        let mut map = self.lock();
        let gone: Vec<IpAddr> = map.iter().filter(|(_, b)| b.until <= now).map(|(ip, _)| *ip).collect();
        for ip in &gone {
            map.remove(ip);
        }
        self.count.store(map.len(), Ordering::Relaxed);
        drop(map);
        if !gone.is_empty() {
            self.tell(Change::Lifted(gone));
        }
    }

    /// Restores a saved ban without telling (it is saved already).
    pub fn restore(&self, ip: IpAddr, ban: Ban) {
        let mut map = self.lock();
        if map.len() < MAX_BANS {
            map.insert(ip, ban);
        }
        self.count.store(map.len(), Ordering::Relaxed);
    }

    /// Bans held now (some may have just ended).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every ban, soonest to end first.
    pub fn list(&self) -> Vec<(IpAddr, Ban)> {
        let mut v: Vec<(IpAddr, Ban)> = self.lock().iter().map(|(ip, b)| (*ip, b.clone())).collect();
        v.sort_by_key(|(ip, b)| (b.until, *ip));
        v
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bans_hold_until_their_end_and_changes_are_told() {
        let bans = Bans::default();
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        bans.on_change(Arc::new(move |c| t.lock().expect("lock").push(format!("{c:?}"))));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(bans.check(ip, now), None);
        let ban = Ban { until: now + Duration::from_secs(60), created: now, reason: "test".into() };
        assert!(bans.add(ip, ban.clone()));
        assert_eq!(bans.check(ip, now), Some(ban));
        assert_eq!(bans.check("192.0.2.8".parse().expect("ip"), now), None);
        assert_eq!(bans.check(ip, now + Duration::from_secs(60)), None, "ended");
        bans.expire(now + Duration::from_secs(61));
        assert!(bans.list().is_empty());
        assert!(!bans.lift(ip));
        assert_eq!(told.lock().expect("lock").len(), 2);
    }
}
