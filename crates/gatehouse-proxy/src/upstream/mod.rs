//! Upstream groups: the backends behind a route, their resolved addresses, load-balancing
//! state and counters. State is keyed by the upstream's configuration key so it survives
//! reloads that do not change the group.
//!
//! Shared across worker threads, so everything here is atomics or `ArcSwap`; no locks.

pub mod exchange;
pub mod h1;
pub mod pool;
pub mod select;
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
    /// TLS client for `https://` backends; `Err` holds why it could not be built.
    pub tls: Option<Result<tokio_rustls::TlsConnector, String>>,
    /// Identifies the TLS settings in pool keys (0 = plain).
    pub tls_profile: u64,
}

/// Virtual nodes per unit of weight on the hash ring: enough for an even spread with a
/// handful of backends, small enough to build instantly.
const RING_POINTS: u32 = 160;

impl Group {
    pub fn new(config: Arc<Upstream>) -> Self {
        let backends: Vec<Arc<BackendState>> = config
            .backends
            .iter()
            .map(|b| Arc::new(BackendState::new(b.clone(), config.pool.max_connections_per_host)))
            .collect();
        let weights: Vec<u32> = config.backends.iter().map(|b| b.weight).collect();
        let weighted_order = if config.balance.algorithm == Algorithm::WeightedRoundRobin {
            smooth_weighted_order(&weights)
        } else {
            Vec::new()
        };
        let ring = if config.balance.algorithm == Algorithm::ConsistentHash {
            build_ring(&config.backends)
        } else {
            Vec::new()
        };
        let tls = config.backends.iter().any(|b| b.tls).then(|| {
            tls::connector(&config.pool.tls)
                .inspect_err(|e| tracing::error!(error = %e, "backend TLS settings unusable"))
        });
        let tls_profile = if tls.is_some() { hash_of(format!("{:?}", config.pool.tls)) | 1 } else { 0 };
        Group { config, backends, cursor: AtomicUsize::new(0), weighted_order, ring, tls, tls_profile }
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
                // Start the scan at a rotating offset so ties spread instead of piling on backend 0.
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let mut best = start % n;
                let mut best_score = u64::MAX;
                for k in 0..n {
                    let i = (start + k) % n;
                    let b = &self.backends[i];
                    // Compare active/weight without division: active * W / weight.
                    let score =
                        (b.active.load(Ordering::Relaxed) as u64 * 1_000_000) / u64::from(b.backend.weight.max(1));
                    if score < best_score {
                        best_score = score;
                        best = i;
                    }
                }
                best
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

/// Keeps groups (and so their counters) across reloads: a group whose key is unchanged is
/// reused as is.
pub fn build_groups(
    upstreams: impl Iterator<Item = Arc<Upstream>>,
    previous: &HashMap<String, Arc<Group>>,
) -> HashMap<String, Arc<Group>> {
    let mut out = HashMap::new();
    for up in upstreams {
        if out.contains_key(&up.key) {
            continue;
        }
        let group = match previous.get(&up.key) {
            Some(g) if g.config.balance == up.balance && g.config.pool == up.pool => g.clone(),
            _ => Arc::new(Group::new(up.clone())),
        };
        out.insert(up.key.clone(), group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_weighted_matches_nginx_sequence() {
        // nginx's documented example: weights 5, 1, 1 give a a b a c a a.
        assert_eq!(smooth_weighted_order(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_order(&[1, 1]), vec![0, 1]);
    }
}
