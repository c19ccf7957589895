//! Choosing the backend for an attempt: the balancer's first pick, then the next backends
//! in order when an attempt fails in a way that is safe to repeat elsewhere. This is where
//! traffic splitting and the circuit breaker will sit (they skip or reorder backends); the
//! exchange itself (`exchange`) never chooses.

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_config::{Algorithm, HashKey};
use http::HeaderMap;
use http::header;

use super::{BackendState, Group, hash_key};

/// The order in which one request tries a group's backends.
pub struct Selection<'g> {
    group: &'g Group,
    first: usize,
    tried: usize,
}

impl<'g> Selection<'g> {
    /// Starts with the balancer's pick for this request.
    pub fn new(group: &'g Group, client: IpAddr, headers: &HeaderMap) -> Self {
        let first = group.pick(request_hash(group, client, headers));
        Selection { group, first, tried: 0 }
    }
}

impl<'g> Iterator for Selection<'g> {
    type Item = &'g Arc<BackendState>;

    /// The next backend to try, or `None` once every backend has had its turn. Backends
    /// that health checks took out of rotation are skipped.
    fn next(&mut self) -> Option<&'g Arc<BackendState>> {
        let n = self.group.backends.len();
        while self.tried < n {
            let b = &self.group.backends[(self.first + self.tried) % n];
            self.tried += 1;
            if !b.health.is_down() {
                return Some(b);
            }
        }
        None
    }
}

/// The consistent-hash input for this request; falls back to the client address when the
/// configured header or cookie is missing.
fn request_hash(group: &Group, client: IpAddr, h: &HeaderMap) -> Option<u64> {
    if group.config.balance.algorithm != Algorithm::ConsistentHash {
        return None;
    }
    let from_ip = || match client {
        IpAddr::V4(v4) => hash_key(&v4.octets()),
        IpAddr::V6(v6) => hash_key(&v6.octets()),
    };
    Some(match &group.config.balance.hash_key {
        HashKey::ClientIp => from_ip(),
        HashKey::Header(name) => h.get(name).map(|v| hash_key(v.as_bytes())).unwrap_or_else(from_ip),
        HashKey::Cookie(name) => cookie(h, name).map(|v| hash_key(v.as_bytes())).unwrap_or_else(from_ip),
    })
}

fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
