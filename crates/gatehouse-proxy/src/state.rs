//! `RuntimeState`: everything a worker needs to serve requests, built from one validated
//! configuration and published atomically. In-flight requests keep the state they started with.
//! Building may block (backend names are resolved): it must never run on a worker thread.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_config::{Action, Config, Error, Errors};
use ipnet::IpNet;

use crate::route::Router;
use crate::upstream::{Group, build_groups};

pub struct RuntimeState {
    pub config: Arc<Config>,
    pub router: Router,
    pub trusted: Vec<IpNet>,
    /// Upstream groups by configuration key.
    pub groups: HashMap<String, Arc<Group>>,
    /// The bound HTTPS port, for HTTP -> HTTPS redirects.
    pub https_port: Option<u16>,
    /// The HTTP/3 port when HTTP/3 runs, and the Alt-Svc value advertising it.
    pub h3_port: Option<u16>,
    pub alt_svc: Option<http::HeaderValue>,
    /// 1 for the configuration the process started with, one more per published reload.
    pub version: u64,
    /// When this state was built.
    pub loaded_at: std::time::SystemTime,
    /// What outlives reloads (event sink, maintenance switched through the API).
    pub shared: Arc<Shared>,
}

/// What every state built from a previous one takes over unchanged.
#[derive(Default)]
pub struct Shared {
    /// Where backend events go (the binary sends them to the store and webhooks); set once.
    pub events: std::sync::OnceLock<crate::health::Events>,
    /// Maintenance switched on or off through the admin API, by site name; it wins over
    /// the site file's `maintenance.enabled` until switched back to `auto`.
    pub maintenance: arc_swap::ArcSwap<HashMap<String, crate::filter::MaintenanceSwitch>>,
    /// How many sites `maintenance` holds: 0 lets every request skip the lookup.
    pub switched: std::sync::atomic::AtomicUsize,
    /// Open WebSocket tunnels per site (`websocket.max_connections`), counted across
    /// reloads. Locked only while a state is built.
    tunnels: std::sync::Mutex<HashMap<String, Arc<std::sync::atomic::AtomicUsize>>>,
    /// The service registry (`/v1/services`).
    pub registry: crate::registry::Registry,
    /// Banned addresses (every site).
    pub bans: crate::security::ban::Bans,
    /// The GeoIP database, when one is loaded (the binary loads it).
    pub geo: crate::security::geo::Geo,
    /// Failed logins counted towards bans.
    pub failed_logins: crate::security::ban::FailedLogins,
    /// Keys fetched from each `jwt.jwks_url`, by URL (the binary fetches them).
    pub jwks: arc_swap::ArcSwap<HashMap<String, Arc<[gatehouse_config::JwtKey]>>>,
    /// Set by a request whose token names a key no set has: the fetcher goes sooner.
    pub jwks_wanted: tokio::sync::Notify,
    /// Rate-limit tables by route id and settings; locked only while a state is built.
    limiters: std::sync::Mutex<HashMap<String, Arc<crate::filter::ratelimit::State>>>,
}

impl Shared {
    /// The rate-limit tables of route `id` with `limit`: the same ones as before while the
    /// route keeps its settings. Tables no state uses any more go (`drop_unused_limiters`).
    pub fn limiter(&self, id: &str, limit: &gatehouse_config::RateLimit) -> Arc<crate::filter::ratelimit::State> {
        let mut map = self.limiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(format!("{id}:{limit:?}")).or_default().clone()
    }

    /// Forgets the rate-limit tables that only this map still holds: their route (or its
    /// settings) left with a state that is gone. A table can hold a million keys, so a
    /// reload that changes a limit must not keep the old one for the life of the process.
    fn drop_unused_limiters(&self) {
        let mut map = self.limiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, state| Arc::strong_count(state) > 1);
    }

    /// The open-tunnel counter of `site`.
    pub fn tunnels(&self, site: &str) -> Arc<std::sync::atomic::AtomicUsize> {
        let mut map = self.tunnels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(site.to_string()).or_default().clone()
    }

    /// Switches maintenance of `site` through the API; `None` hands it back to the site file.
    pub fn switch_maintenance(&self, site: &str, switch: Option<crate::filter::MaintenanceSwitch>) {
        self.maintenance.rcu(|m| {
            let mut m = HashMap::clone(m);
            match &switch {
                Some(s) => m.insert(site.to_string(), s.clone()),
                None => m.remove(site),
            };
            m
        });
        self.switched.store(self.maintenance.load().len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Logs `e` and hands it to the event sink, if one is set.
    pub fn event(&self, e: crate::health::Event) {
        use crate::health::EventKind as K;
        let (b, up, d) = (&e.backend, &e.upstream, &e.detail);
        match e.kind {
            K::Down => tracing::warn!(backend = %b, upstream = %up, reason = %d, "backend down: taken out of rotation"),
            K::Ejected => {
                tracing::warn!(backend = %b, upstream = %up, reason = %d, "backend ejected after failed requests")
            }
            K::BreakerOpen => {
                tracing::warn!(backend = %b, upstream = %up, reason = %d, "circuit breaker open: the backend gets no requests")
            }
            K::Up => tracing::info!(backend = %b, upstream = %up, reason = %d, "backend up: back in rotation"),
            K::BreakerHalfOpen => {
                tracing::info!(backend = %b, upstream = %up, reason = %d, "circuit breaker half-open: probing the backend")
            }
            K::BreakerClosed => {
                tracing::info!(backend = %b, upstream = %up, reason = %d, "circuit breaker closed: back in rotation")
            }
        }
        if let Some(sink) = self.events.get() {
            sink(e);
        }
    }
}

impl RuntimeState {
    /// Builds the state for `config`, taking over upstream groups (with their counters and
    /// balancer positions) from `previous` where the group is unchanged, and the state of
    /// each unchanged backend where the group changed. Its version is one more than
    /// `previous`'s: reloads are serialised, so the state built is the next one published.
    ///
    /// Fails when a part of the state cannot be made from a valid configuration: today, a
    /// backend TLS client (a CA file without a usable certificate, a client key that does
    /// not fit its certificate). Such a fault is Gatehouse's to report when the
    /// configuration is loaded, not a 502 for every request that would use it.
    pub fn build(
        config: Arc<Config>,
        previous: Option<&RuntimeState>,
        https_port: Option<u16>,
        h3_port: Option<u16>,
    ) -> Result<Self, Errors> {
        let empty = HashMap::new();
        let shared: Arc<Shared> = previous.map(|p| p.shared.clone()).unwrap_or_default();
        // The live state's tables are held by its filters; older states' are gone by now.
        shared.drop_unused_limiters();
        // Upstreams of a registry service get its instances now; their key then names the
        // instances too, so a changed set builds a new group (each instance's state carried).
        let mut resolved: HashMap<String, Arc<gatehouse_config::Upstream>> = HashMap::new();
        let mut resolve = |up: &Arc<gatehouse_config::Upstream>| -> Arc<gatehouse_config::Upstream> {
            let Some(name) = &up.service else { return up.clone() };
            resolved
                .entry(up.key.clone())
                .or_insert_with(|| {
                    let backends = shared.registry.backends(name);
                    let list: Vec<String> = backends.iter().map(|b| format!("{}*{}", b.url(), b.weight)).collect();
                    let mut u = gatehouse_config::Upstream::clone(up);
                    u.key = format!("{}:[{}]", up.key, list.join(","));
                    u.backends = backends;
                    Arc::new(u)
                })
                .clone()
        };
        // Every upstream a route uses: its action's, and its split's pools.
        let upstreams: Vec<Arc<gatehouse_config::Upstream>> = config
            .sites
            .iter()
            .flat_map(|s| s.routes.iter())
            .flat_map(|r| {
                let action = match &r.action {
                    Action::Proxy(up) => Some(up.clone()),
                    _ => None,
                };
                let pools = r.split.iter().flat_map(|s| s.pools.iter().map(|p| p.upstream.clone()));
                action.into_iter().chain(pools).collect::<Vec<_>>()
            })
            .chain(config.streams.iter().flat_map(|s| s.upstreams().cloned()))
            .map(|up| resolve(&up))
            .collect();
        let groups = build_groups(upstreams.into_iter(), previous.map_or(&empty, |p| &p.groups))
            .map_err(|failed| unusable_tls(&config, &failed))?;
        let acme_http01 =
            config.tls.acme.as_ref().is_some_and(|a| a.challenge == gatehouse_config::AcmeChallenge::Http01);
        let env = crate::filter::Env { https_port, acme_http01 };
        let group_for = |key: &str| groups.get(resolved.get(key).map_or(key, |u| u.key.as_str())).cloned();
        let router = Router::new(&config.sites, group_for, &env, &shared);
        let alt_svc = h3_port.and_then(|p| http::HeaderValue::from_str(&format!("h3=\":{p}\"; ma=86400")).ok());
        Ok(RuntimeState {
            trusted: config.trusted_proxies.clone(),
            config,
            router,
            groups,
            https_port,
            h3_port,
            alt_svc,
            version: previous.map_or(1, |p| p.version + 1),
            loaded_at: std::time::SystemTime::now(),
            shared,
        })
    }
}

impl RuntimeState {
    /// Backend host names that resolved to no address when the state was built (or since).
    pub fn unresolved(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .values()
            .flat_map(|g| g.backends.iter())
            .filter(|b| b.targets.load().is_empty())
            .filter_map(|b| b.dns_name().map(|(host, port)| format!("{host}:{port}")))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// One error per upstream whose group could not be built (its TLS client), located at the
/// first route using it.
fn unusable_tls(config: &Config, failed: &[crate::upstream::Unbuilt]) -> Errors {
    let mut errors = Errors::default();
    for (key, why) in failed {
        let first = config.sites.iter().find_map(|site| {
            site.routes
                .iter()
                .position(|r| matches!(&r.action, Action::Proxy(up) if key.starts_with(up.key.as_str())))
                .map(|i| (site, i))
        });
        if let Some((site, i)) = first {
            let message = format!("the TLS client for this route's https:// backends cannot be built: {why}");
            errors.push(Error::new(&site.file, None, format!("routes[{i}].upstream_tls"), message));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_minute: u32) -> Arc<Config> {
        let site = format!(
            "host: a.test\nroutes:\n  - path: /\n    backend: http://127.0.0.1:1\n    options: {{rate_limit: {{per_ip: {per_minute}/min}}}}\n"
        );
        Arc::new(
            gatehouse_config::load_from_str_for_tests("", &[("a", &site)], std::path::Path::new(".")).expect("valid"),
        )
    }

    #[test]
    fn rate_limit_tables_of_changed_limits_do_not_pile_up_across_reloads() {
        let mut live = RuntimeState::build(config(1), None, None, None).expect("state");
        for n in 2..=6 {
            live = RuntimeState::build(config(n), Some(&live), None, None).expect("state");
        }
        let held = live.shared.limiters.lock().expect("lock").len();
        assert!(held <= 2, "{held} tables kept for one route (the live one and the previous at most)");
        // An unchanged limit keeps its table.
        let again = RuntimeState::build(config(6), Some(&live), None, None).expect("state");
        let tables = again.shared.limiters.lock().expect("lock");
        assert!(tables.keys().any(|k| k.contains("count: 6")), "{:?}", tables.keys().collect::<Vec<_>>());
    }
}
