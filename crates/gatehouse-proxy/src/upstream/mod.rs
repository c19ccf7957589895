//! Upstream groups: the backends behind a route, their resolved addresses, load-balancing
//! state and counters. A group is kept whole across a reload that does not change it; when
//! it changes, each backend's state (counters, connection permits, resolved addresses) is
//! still kept where that backend did not change (see `build_groups`).
//!
//! Shared across worker threads, so everything here is atomics or `ArcSwap`; no locks.

pub mod breaker;
pub mod exchange;
pub mod h1;
pub mod pool;
pub mod select;
pub mod split;
pub mod tls;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use gatehouse_config::{Algorithm, Backend, BackendAddr, Upstream};
use tokio::sync::Semaphore;

/// Where a connection goes, after name resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(Arc<PathBuf>),
}

/// One backend of a group, with its live state.
pub struct BackendState {
    pub backend: Backend,
    /// Resolved addresses; replaced by the DNS refresher for host names.
    pub targets: ArcSwap<Vec<Target>>,
    /// Requests in flight (least-connections balancing).
    pub active: AtomicUsize,
    /// Requests sent, for the admin API and tests of distribution.
    pub requests: AtomicU64,
    /// Attempts that failed on the backend's side (`exchange::report`); a client's broken
    /// request never counts.
    pub failures: AtomicU64,
    /// Caps open connections across all workers when `max_connections_per_host` is set.
    pub permits: Option<Arc<Semaphore>>,
    /// What active health checks say (written by the checker only, read by every worker).
    pub health: crate::health::Health,
    /// The circuit breaker's state (used when the upstream has `circuit_breaker`).
    pub breaker: breaker::Breaker,
    /// Its 5xx answers, and attempts that got no connection (the admin API's error rate).
    pub server_errors: AtomicU64,
    pub refused: AtomicU64,
    /// Ejections by passive checks, and retries sent to this backend (metrics).
    pub ejections: AtomicU64,
    pub retries: AtomicU64,
}

impl BackendState {
    fn new(backend: Backend, max_conns: usize) -> Self {
        let targets = match &backend.addr {
            BackendAddr::Unix(p) => vec![Target::Unix(Arc::new(p.clone()))],
            BackendAddr::Tcp { host, port } => match host.parse::<IpAddr>() {
                Ok(ip) => vec![Target::Tcp(SocketAddr::new(ip, *port))],
                Err(_) => resolve_now(host, *port),
            },
        };
        BackendState {
            backend,
            targets: ArcSwap::from_pointee(targets),
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            permits: (max_conns > 0).then(|| Arc::new(Semaphore::new(max_conns))),
            health: crate::health::Health::default(),
            breaker: breaker::Breaker::default(),
            server_errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// The host name to re-resolve, if this backend has one.
    pub fn dns_name(&self) -> Option<(&str, u16)> {
        match &self.backend.addr {
            BackendAddr::Tcp { host, port } if host.parse::<IpAddr>().is_err() => Some((host, *port)),
            _ => None,
        }
    }
}

/// Resolves with the system resolver at build time; a name that does not resolve yet (a
/// container not started) leaves the backend without targets until the refresher finds it.
fn resolve_now(host: &str, port: u16) -> Vec<Target> {
    use std::net::ToSocketAddrs;
    match (host, port).to_socket_addrs() {
        Ok(addrs) => addrs.map(Target::Tcp).collect(),
        Err(e) => {
            tracing::warn!(host, error = %e, "backend host does not resolve yet; will retry");
            Vec::new()
        }
    }
}

/// Decrements a backend's in-flight counter when the request is done with it.
pub struct ActiveGuard(Arc<BackendState>);

impl ActiveGuard {
    pub fn new(b: &Arc<BackendState>) -> Self {
        b.active.fetch_add(1, Ordering::Relaxed);
        b.requests.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(b.clone())
    }

    /// Whether this guard counts a request at `b`.
    pub fn counts(&self, b: &Arc<BackendState>) -> bool {
        Arc::ptr_eq(&self.0, b)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A balanced group of backends.
pub struct Group {
    pub config: Arc<Upstream>,
    pub backends: Vec<Arc<BackendState>>,
    cursor: AtomicUsize,
    /// The smooth weighted round-robin order, computed once: picking is then one atomic add.
    weighted_order: Vec<u32>,
    /// Consistent-hash ring: (point, backend index), sorted by point.
    ring: Vec<(u64, u32)>,
    /// TLS client for `https://` backends.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Identifies the TLS settings in pool keys (0 = plain).
    pub tls_profile: u64,
    /// Requests and retries of the current 10-second window (`retries.budget`).
    pub budget: RetryBudget,
}

/// How many retries an upstream may make now: a share of its recent requests.
#[derive(Debug, Default)]
pub struct RetryBudget {
    window_ms: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    const WINDOW_MS: u64 = 10_000;

    fn roll(&self) {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let start = self.window_ms.load(Ordering::Relaxed);
        if now.saturating_sub(start) >= Self::WINDOW_MS
            && self.window_ms.compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.requests.store(0, Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a request that may retry.
    pub fn request(&self) {
        self.roll();
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry if the budget (`share` of this window's requests, at least 3) has room.
    pub fn take(&self, share: f64) -> bool {
        let allowed = ((self.requests.load(Ordering::Relaxed) as f64 * share) as u64).max(3);
        self.retries.fetch_add(1, Ordering::Relaxed) < allowed
    }
}

/// Virtual nodes per unit of weight on the hash ring: enough for an even spread with a
/// handful of backends, small enough to build instantly.
const RING_POINTS: u32 = 160;

impl Group {
    /// A group for `config`, taking each backend's state from `spare` where it holds one
    /// for the same backend (see `build_groups`).
    /// Fails when the TLS client for its `https://` backends cannot be built (the message
    /// says why).
    fn new(config: Arc<Upstream>, spare: &mut Spare) -> Result<Self, String> {
        let max_conns = config.pool.max_connections_per_host;
        let mut seen: Vec<&Backend> = Vec::new();
        let backends: Vec<Arc<BackendState>> = config
            .backends
            .iter()
            .map(|b| {
                let key = BackendKey::new(&config.id, b, max_conns, &mut seen);
                spare.remove(&key).unwrap_or_else(|| Arc::new(BackendState::new(b.clone(), max_conns)))
            })
            .collect();
        let weights: Vec<u32> = config.backends.iter().map(|b| b.weight).collect();
        // least_conn breaks its ties in this order too, so equal load is shared by weight.
        let weighted_order = if matches!(config.balance.algorithm, Algorithm::WeightedRoundRobin | Algorithm::LeastConn)
        {
            smooth_weighted_order(&weights)
        } else {
            Vec::new()
        };
        let ring = if config.balance.algorithm == Algorithm::ConsistentHash {
            build_ring(&config.backends)
        } else {
            Vec::new()
        };
        let tls = config.backends.iter().any(|b| b.tls).then(|| tls::connector(&config.pool.tls)).transpose()?;
        let tls_profile = if tls.is_some() { hash_of(format!("{:?}", config.pool.tls)) | 1 } else { 0 };
        Ok(Group {
            config,
            backends,
            cursor: AtomicUsize::new(0),
            weighted_order,
            ring,
            tls,
            tls_profile,
            budget: RetryBudget::default(),
        })
    }

    /// Picks the first backend to try. `hash` is the request's hash key for consistent hashing.
    pub fn pick(&self, hash: Option<u64>) -> usize {
        let n = self.backends.len();
        if n <= 1 {
            return 0;
        }
        match self.config.balance.algorithm {
            Algorithm::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            Algorithm::WeightedRoundRobin => {
                let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.weighted_order.len().max(1);
                self.weighted_order.get(i).map_or(0, |&b| b as usize)
            }
            Algorithm::LeastConn => {
                // Requests in flight per unit of weight (scaled to stay in integers).
                let load = |i: usize| {
                    self.backends.get(i).map_or(u64::MAX, |b| {
                        (b.active.load(Ordering::Relaxed) as u64 * 1_000_000) / u64::from(b.backend.weight.max(1))
                    })
                };
                let least = (0..n).map(load).min().unwrap_or(0);
                // Ties (all idle, say) go in the smooth weighted order, as nginx shares them:
                // a weight-3 backend takes three of every four tied requests, not one of two.
                let order = &self.weighted_order;
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                (0..order.len())
                    .filter_map(|k| order.get((start + k) % order.len()).map(|&b| b as usize))
                    .find(|&i| load(i) == least)
                    .unwrap_or(0)
            }
            Algorithm::ConsistentHash => {
                let h = hash.unwrap_or_else(|| fastrand::u64(..));
                let pos = self.ring.partition_point(|(p, _)| *p < h);
                self.ring.get(pos).or(self.ring.first()).map_or(0, |(_, b)| *b as usize)
            }
            Algorithm::Random => {
                let total: u64 = self.backends.iter().map(|b| u64::from(b.backend.weight)).sum();
                let mut r = fastrand::u64(0..total.max(1));
                for (i, b) in self.backends.iter().enumerate() {
                    let w = u64::from(b.backend.weight);
                    if r < w {
                        return i;
                    }
                    r -= w;
                }
                0
            }
        }
    }
}

/// nginx's smooth weighted round robin, unrolled into one full cycle of picks.
fn smooth_weighted_order(weights: &[u32]) -> Vec<u32> {
    // Scale very large weights down so a cycle stays small; ratios are kept approximately.
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let scale = (total / 10_000).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| (i64::from(*w) / scale as i64).max(1)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn hash_of(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Hashes a request key (client IP, header or cookie value) onto the ring's space.
pub fn hash_key(bytes: &[u8]) -> u64 {
    hash_of(bytes)
}

fn build_ring(backends: &[Backend]) -> Vec<(u64, u32)> {
    let mut ring = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let url = b.url();
        for v in 0..RING_POINTS * b.weight.min(100) {
            ring.push((hash_of((&url, v)), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

/// What a backend's state is carried across reloads by: the upstream it belongs to (its
/// id, without the backend list), the backend as written (address, scheme, weight: the
/// state holds it), which occurrence of it this is (a list may name one backend twice),
/// and the connection cap its permits were made for.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BackendKey {
    upstream: String,
    backend: Backend,
    nth: usize,
    max_conns: usize,
}

impl BackendKey {
    /// `seen` holds the backends of the same list before this one.
    fn new<'a>(upstream: &str, backend: &'a Backend, max_conns: usize, seen: &mut Vec<&'a Backend>) -> Self {
        let nth = seen.iter().filter(|b| **b == backend).count();
        seen.push(backend);
        BackendKey { upstream: upstream.to_string(), backend: backend.clone(), nth, max_conns }
    }
}

/// The previous states' backends not taken yet.
type Spare = HashMap<BackendKey, Arc<BackendState>>;

/// An upstream (by key) whose group could not be built, and why.
pub type Unbuilt = (String, String);

/// Keeps state across reloads: a group whose key (upstream id and backend list), balancing
/// and pool settings are unchanged is reused as is (balancer position included). Any other
/// group is built anew, but each of its backends takes over the state of the same backend
/// of the same upstream in `previous` (in-flight and request counters, connection permits,
/// resolved addresses), so adding or removing one backend leaves the others as they were.
/// A backend whose weight or `max_connections_per_host` changed starts afresh.
///
/// Fails with the upstreams whose group cannot be built, and why.
pub fn build_groups(
    upstreams: impl Iterator<Item = Arc<Upstream>>,
    previous: &HashMap<String, Arc<Group>>,
) -> Result<HashMap<String, Arc<Group>>, Vec<Unbuilt>> {
    let mut spare: Spare = HashMap::new();
    for g in previous.values() {
        let mut seen = Vec::new();
        let max_conns = g.config.pool.max_connections_per_host;
        for (b, state) in g.config.backends.iter().zip(&g.backends) {
            spare.insert(BackendKey::new(&g.config.id, b, max_conns, &mut seen), state.clone());
        }
    }
    let upstreams: Vec<Arc<Upstream>> = upstreams.collect();
    let mut out = HashMap::new();
    // Whole groups first, so a rebuilt group never takes a state a reused one still holds.
    for up in &upstreams {
        if let Some(g) = previous.get(&up.key)
            && g.config.balance == up.balance
            && g.config.pool == up.pool
            && !out.contains_key(&up.key)
        {
            let mut seen = Vec::new();
            let max_conns = g.config.pool.max_connections_per_host;
            for b in &g.config.backends {
                spare.remove(&BackendKey::new(&g.config.id, b, max_conns, &mut seen));
            }
            out.insert(up.key.clone(), g.clone());
        }
    }
    let mut failed: Vec<Unbuilt> = Vec::new();
    for up in upstreams {
        if !out.contains_key(&up.key) && !failed.iter().any(|(key, _)| *key == up.key) {
            match Group::new(up.clone(), &mut spare) {
                Ok(group) => {
                    out.insert(up.key.clone(), Arc::new(group));
                }
                Err(e) => failed.push((up.key.clone(), e)),
            }
        }
    }
    if failed.is_empty() { Ok(out) } else { Err(failed) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::{Balance, HashKey, PoolSettings};

    fn upstream(id: &str, ports: &[u16], max_conns: usize) -> Arc<Upstream> {
        let backends: Vec<Backend> = ports
            .iter()
            .map(|p| Backend {
                addr: BackendAddr::Tcp { host: "127.0.0.1".into(), port: *p },
                weight: 1,
                h2c: false,
                tls: false,
            })
            .collect();
        let list: Vec<String> = backends.iter().map(Backend::url).collect();
        Arc::new(Upstream {
            key: format!("{id}:{}", list.join(",")),
            id: id.into(),
            backends,
            balance: Balance { algorithm: Algorithm::RoundRobin, hash_key: HashKey::ClientIp },
            pool: PoolSettings { max_connections_per_host: max_conns, ..PoolSettings::default() },
            health: None,
            passive: None,
            retries: None,
            breaker: None,
            service: None,
        })
    }

    fn state(groups: &HashMap<String, Arc<Group>>, up: &Upstream, i: usize) -> Arc<BackendState> {
        groups[&up.key].backends[i].clone()
    }

    #[test]
    fn backends_keep_their_state_when_others_are_added_or_removed() {
        let two = upstream("site/app", &[1001, 1002], 4);
        let groups = build_groups([two.clone()].into_iter(), &HashMap::new()).expect("groups");
        let (a, b) = (state(&groups, &two, 0), state(&groups, &two, 1));
        a.requests.store(7, Ordering::Relaxed);
        b.requests.store(3, Ordering::Relaxed);
        let held = a.permits.as_ref().expect("capped").clone().try_acquire_owned().expect("permit");

        // Unchanged: the same group.
        let same = build_groups([two.clone()].into_iter(), &groups).expect("groups");
        assert!(Arc::ptr_eq(&same[&two.key], &groups[&two.key]));

        // One backend added: a new group, the old backends' states carried over.
        let three = upstream("site/app", &[1001, 1002, 1003], 4);
        let grown = build_groups([three.clone()].into_iter(), &groups).expect("groups");
        assert!(Arc::ptr_eq(&state(&grown, &three, 0), &a));
        assert!(Arc::ptr_eq(&state(&grown, &three, 1), &b));
        assert_eq!(state(&grown, &three, 0).requests.load(Ordering::Relaxed), 7);
        assert_eq!(state(&grown, &three, 0).permits.as_ref().map(|p| p.available_permits()), Some(3));
        assert_eq!(state(&grown, &three, 2).requests.load(Ordering::Relaxed), 0);
        drop(held);

        // The first removed: the others keep theirs.
        let tail = upstream("site/app", &[1002, 1003], 4);
        let shrunk = build_groups([tail.clone()].into_iter(), &grown).expect("groups");
        assert!(Arc::ptr_eq(&state(&shrunk, &tail, 0), &b));
        assert!(Arc::ptr_eq(&state(&shrunk, &tail, 1), &state(&grown, &three, 2)));

        // Another upstream naming the same backend, or a different cap, does not share it.
        let other = upstream("site/other", &[1002], 4);
        let capped = upstream("site/app", &[1002, 1003], 8);
        let next = build_groups([other.clone(), capped.clone()].into_iter(), &shrunk).expect("groups");
        assert!(!Arc::ptr_eq(&state(&next, &other, 0), &b));
        assert!(!Arc::ptr_eq(&state(&next, &capped, 0), &b));
        assert_eq!(state(&next, &capped, 0).permits.as_ref().map(|p| p.available_permits()), Some(8));
    }

    #[test]
    fn least_conn_shares_ties_by_weight_and_prefers_the_least_loaded() {
        let mut up = (*upstream("site/lc", &[1001, 1002], 0)).clone();
        up.backends[0].weight = 3;
        up.balance.algorithm = Algorithm::LeastConn;
        let up = Arc::new(up);
        let groups = build_groups([up.clone()].into_iter(), &HashMap::new()).expect("groups");
        let group = &groups[&up.key];
        // All idle: three of every four go to the weight-3 backend, as in nginx.
        let picks: Vec<usize> = (0..40).map(|_| group.pick(None)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 30, "{picks:?}");
        // Busy: 3 in flight on the weight-3 backend (1 per unit of weight), 0 on the other.
        group.backends[0].active.store(3, Ordering::Relaxed);
        assert!((0..8).all(|_| group.pick(None) == 1));
        // 3 against 1 is a tie per unit of weight: shared by weight again.
        group.backends[1].active.store(1, Ordering::Relaxed);
        let picks: Vec<usize> = (0..40).map(|_| group.pick(None)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 30, "{picks:?}");
    }

    #[test]
    fn a_backend_listed_twice_keeps_two_states() {
        let up = upstream("site/app", &[1001, 1001], 0);
        let groups = build_groups([up.clone()].into_iter(), &HashMap::new()).expect("groups");
        let (x, y) = (state(&groups, &up, 0), state(&groups, &up, 1));
        assert!(!Arc::ptr_eq(&x, &y));
        let more = upstream("site/app", &[1001, 1001, 1002], 0);
        let next = build_groups([more.clone()].into_iter(), &groups).expect("groups");
        assert!(Arc::ptr_eq(&state(&next, &more, 0), &x));
        assert!(Arc::ptr_eq(&state(&next, &more, 1), &y));
    }

    #[test]
    fn smooth_weighted_matches_nginx_sequence() {
        // nginx's documented example: weights 5, 1, 1 give a a b a c a a.
        assert_eq!(smooth_weighted_order(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_order(&[1, 1]), vec![0, 1]);
    }
}
