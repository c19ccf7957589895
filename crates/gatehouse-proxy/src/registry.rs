//! The service registry: instances that register themselves (`POST /v1/services`), keep
//! themselves alive with heartbeats within their TTL, and leave (`DELETE`) or expire. An
//! upstream with `service: NAME` has the instances of NAME as its backends: each change
//! asks for the state to be built again (`on_change`), and building reads `backends`.
//!
//! Held in `state::Shared`, so it outlives reloads. Only the admin API, the expiry task and
//! state building touch it (a lock is fine there); workers never do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use gatehouse_config::{Backend, BackendAddr};

/// How an instance is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    H2c,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            "h2c" => Some(Scheme::H2c),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::H2c => "h2c",
        }
    }
}

/// One registered instance of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub name: String,
    /// An IP address or a host name.
    pub address: String,
    pub port: u16,
    pub scheme: Scheme,
    pub weight: u32,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Heartbeats must come within this.
    pub ttl: Duration,
    pub registered: SystemTime,
    /// Removed after this unless a heartbeat comes.
    pub expires: SystemTime,
}

impl Instance {
    /// The backend this instance is.
    pub fn backend(&self) -> Backend {
        Backend {
            addr: BackendAddr::Tcp { host: self.address.clone(), port: self.port },
            weight: self.weight,
            h2c: self.scheme == Scheme::H2c,
            tls: self.scheme == Scheme::Https,
        }
    }
}

/// Told when the set of instances changes.
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct Registry {
    instances: Mutex<BTreeMap<String, Instance>>,
    on_change: OnceLock<OnChange>,
}

/// At most this many instances (a registry is for a fleet's services, not a flood).
pub const MAX_INSTANCES: usize = 10_000;

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Instance>> {
        self.instances.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what is told about changes (once; later calls are ignored).
    pub fn on_change(&self, f: OnChange) {
        let _ = self.on_change.set(f);
    }

    fn changed(&self) {
        if let Some(f) = self.on_change.get() {
            f();
        }
    }

    /// Adds `i`, or replaces the instance with its id. `Err` when the registry is full.
    /// Returns whether it is new.
    pub fn register(&self, i: Instance) -> Result<bool, String> {
        let mut map = self.lock();
        let backend_changed = map.get(&i.id).is_none_or(|old| old.backend() != i.backend() || old.name != i.name);
        if !map.contains_key(&i.id) && map.len() >= MAX_INSTANCES {
            return Err(format!("the registry holds {MAX_INSTANCES} instances; remove some first"));
        }
        let new = map.insert(i.id.clone(), i).is_none();
        drop(map);
        if backend_changed {
            self.changed();
        }
        Ok(new)
    }

    /// Extends the instance's life by its TTL from `now`; `None` for an unknown id.
    pub fn heartbeat(&self, id: &str, now: SystemTime) -> Option<Instance> {
        let mut map = self.lock();
        let i = map.get_mut(id)?;
        i.expires = now + i.ttl;
        Some(i.clone())
    }

    pub fn remove(&self, id: &str) -> Option<Instance> {
        let removed = self.lock().remove(id);
        if removed.is_some() {
            self.changed();
        }
        removed
    }

    pub fn get(&self, id: &str) -> Option<Instance> {
        self.lock().get(id).cloned()
    }

    /// Every instance (of service `name` when given), by id.
    pub fn list(&self, name: Option<&str>) -> Vec<Instance> {
        self.lock().values().filter(|i| name.is_none_or(|n| i.name == n)).cloned().collect()
    }

    /// Removes the instances whose TTL ran out by `now`, and returns them.
    pub fn expire(&self, now: SystemTime) -> Vec<Instance> {
        let mut map = self.lock();
        let gone: Vec<String> = map.values().filter(|i| i.expires <= now).map(|i| i.id.clone()).collect();
        let removed: Vec<Instance> = gone.iter().filter_map(|id| map.remove(id)).collect();
        drop(map);
        if !removed.is_empty() {
            self.changed();
        }
        removed
    }

    /// The backends of service `name`, in id order (so a rebuild keeps their order).
    pub fn backends(&self, name: &str) -> Vec<Backend> {
        self.lock().values().filter(|i| i.name == name).map(Instance::backend).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn instance(id: &str, name: &str, port: u16, expires: SystemTime) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            address: "127.0.0.1".into(),
            port,
            scheme: Scheme::Http,
            weight: 1,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            ttl: Duration::from_secs(10),
            registered: SystemTime::UNIX_EPOCH,
            expires,
        }
    }

    #[test]
    fn instances_come_expire_and_changes_are_told() {
        let r = Registry::default();
        let changes = Arc::new(AtomicUsize::new(0));
        let c = changes.clone();
        r.on_change(Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(r.register(instance("a1", "api", 1, t0 + Duration::from_secs(10))), Ok(true));
        assert_eq!(r.register(instance("w1", "web", 2, t0 + Duration::from_secs(10))), Ok(true));
        // The same instance again (a restart of the client): no change to the backends.
        assert_eq!(r.register(instance("a1", "api", 1, t0 + Duration::from_secs(10))), Ok(false));
        assert_eq!(changes.load(Ordering::SeqCst), 2);
        assert_eq!(r.backends("api").len(), 1);
        // A heartbeat keeps a1; w1 expires.
        assert!(r.heartbeat("a1", t0 + Duration::from_secs(9)).is_some());
        assert!(r.heartbeat("nope", t0).is_none());
        let gone = r.expire(t0 + Duration::from_secs(12));
        assert_eq!(gone.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["w1"]);
        assert_eq!((r.list(None).len(), changes.load(Ordering::SeqCst)), (1, 3));
        assert!(r.expire(t0 + Duration::from_secs(12)).is_empty(), "nothing more to expire");
        assert_eq!(changes.load(Ordering::SeqCst), 3);
        assert!(r.remove("a1").is_some() && r.remove("a1").is_none());
        assert!(r.backends("api").is_empty());
    }
}
