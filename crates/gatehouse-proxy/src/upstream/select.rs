//! Choosing the backend for an attempt: the balancer's first pick, then the next backends
//! in order when an attempt fails in a way that is safe to repeat elsewhere. Backends that
//! health checks took out, and those whose circuit breaker is open, are skipped (a
//! half-open breaker admits its probes). Traffic splitting picks the group before this
//! (`split`); the exchange itself (`exchange`) never chooses.

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_config::{Algorithm, HashKey};
use http::HeaderMap;
use http::header;

use super::breaker::{Admit, Transition, now_ms};
use super::{BackendState, Group, hash_key};
use crate::health::{Event, EventKind};
use crate::state::Shared;

/// The order in which one request tries a group's backends.
pub struct Selection<'g> {
    group: &'g Group,
    shared: &'g Shared,
    first: usize,
    tried: usize,
    /// The soonest an open breaker that was skipped lets a probe through (milliseconds).
    pub open_ms: Option<u64>,
    /// The backend `next` returned last goes as its half-open breaker's probe.
    pub probe: bool,
}

impl<'g> Selection<'g> {
    /// Starts with the balancer's pick for this request.
    pub fn new(group: &'g Group, shared: &'g Shared, client: IpAddr, headers: &HeaderMap) -> Self {
        let first = group.pick(request_hash(group, client, headers));
        Selection { group, shared, first, tried: 0, open_ms: None, probe: false }
    }

    /// Whether `b`'s breaker (if any) lets a request through now.
    fn admitted(&mut self, b: &BackendState) -> bool {
        let Some(cfg) = &self.group.config.breaker else { return true };
        let now = now_ms();
        let (admit, change) = b.breaker.admit(cfg, now);
        self.probe = admit == Admit::Probe;
        if change == Some(Transition::HalfOpen) {
            self.shared.event(Event {
                kind: EventKind::BreakerHalfOpen,
                upstream: self.group.config.id.clone(),
                backend: b.backend.url(),
                detail: format!("letting up to {} probe request(s) through", cfg.probes),
            });
        }
        if admit == Admit::No {
            let wait = b.breaker.open_for_ms(now);
            self.open_ms = Some(self.open_ms.map_or(wait, |w| w.min(wait)));
        }
        admit != Admit::No
    }
}

impl<'g> Iterator for Selection<'g> {
    type Item = &'g Arc<BackendState>;

    /// The next backend to try, or `None` once every backend has had its turn. Backends
    /// that health checks took out of rotation, or whose breaker is open, are skipped.
    fn next(&mut self) -> Option<&'g Arc<BackendState>> {
        let n = self.group.backends.len();
        while self.tried < n {
            let b = &self.group.backends[(self.first + self.tried) % n];
            self.tried += 1;
            if !b.health.is_down() && self.admitted(b) {
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

pub(crate) fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
