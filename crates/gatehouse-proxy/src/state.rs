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
        let upstreams = config.sites.iter().flat_map(|s| s.routes.iter()).filter_map(|r| match &r.action {
            Action::Proxy(up) => Some(up.clone()),
            _ => None,
        });
        let groups = build_groups(upstreams, previous.map_or(&empty, |p| &p.groups))
            .map_err(|failed| unusable_tls(&config, &failed))?;
        let acme_http01 =
            config.tls.acme.as_ref().is_some_and(|a| a.challenge == gatehouse_config::AcmeChallenge::Http01);
        let env = crate::filter::Env { https_port, acme_http01 };
        let router = Router::new(
            &config.sites,
            |r| match &r.action {
                Action::Proxy(up) => groups.get(&up.key).cloned(),
                _ => None,
            },
            &env,
        );
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
            site.routes.iter().position(|r| matches!(&r.action, Action::Proxy(up) if up.key == *key)).map(|i| (site, i))
        });
        if let Some((site, i)) = first {
            let message = format!("the TLS client for this route's https:// backends cannot be built: {why}");
            errors.push(Error::new(&site.file, None, format!("routes[{i}].upstream_tls"), message));
        }
    }
    errors
}
