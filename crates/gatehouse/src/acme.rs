//! Wiring of ACME to the running configuration: which host names want a certificate, the
//! maintenance task that keeps them, and the challenge answers it hands to the listeners.
//!
//! Owns the task's lifetime only; orders, renewal and storage are gatehouse-acme's. Must not
//! load certificates itself: a stored certificate is loaded through the reload queue.

use std::sync::Arc;

use gatehouse_acme::Wanted;
use gatehouse_config::{AcmeChallenge, AcmeConfig, Config, HostPattern};
use gatehouse_proxy::tls;
use tokio::task::JoinHandle;

use crate::reload::Queue;

/// Sites' host names that need a certificate from ACME: exact names (wildcards only with
/// DNS-01) that are not local and not covered by a certificate of another source.
pub fn wanted(config: &Config, acme: &AcmeConfig, store: &tls::Store) -> Vec<Wanted> {
    let mut out = Vec::new();
    for site in &config.sites {
        let hosts: Vec<String> = site
            .hosts
            .iter()
            .filter_map(|h| match h {
                HostPattern::Exact(n) if !tls::is_local(n) => Some(n.clone()),
                HostPattern::Wildcard(_) if matches!(acme.challenge, AcmeChallenge::Dns01 { .. }) => {
                    Some(h.to_string())
                }
                _ => None,
            })
            .filter(|n| uncovered(config, store, n))
            .collect();
        if !hosts.is_empty() {
            out.push(Wanted { site: site.name.clone(), hosts });
        }
    }
    // Streams that take their certificate from the shared store by name (`tls.hosts`).
    for s in &config.streams {
        let Some(t) = s.tls.as_ref().filter(|t| t.pair.is_none()) else { continue };
        let hosts: Vec<String> =
            t.hosts.iter().filter(|n| !tls::is_local(n)).filter(|n| uncovered(config, store, n)).cloned().collect();
        if !hosts.is_empty() {
            out.push(Wanted { site: format!("stream-{}", s.name), hosts });
        }
    }
    out
}

/// No certificate of another source covers `name` (our own earlier issuance does not count
/// as "covered elsewhere").
fn uncovered(config: &Config, store: &tls::Store, name: &str) -> bool {
    match store.lookup(name) {
        None => true,
        Some(c) => config.tls.acme_dir.as_ref().is_some_and(|d| c.info.path.as_ref().is_some_and(|p| p.starts_with(d))),
    }
}

/// ACME challenge answers go to the proxy's listeners.
struct Responder(Arc<tls::Challenges>);

impl gatehouse_acme::Responder for Responder {
    fn http01_set(&self, token: &str, key_authorization: &str) {
        if let Ok(mut m) = self.0.http01.write() {
            m.insert(token.to_string(), key_authorization.to_string());
        }
    }
    fn http01_clear(&self, token: &str) {
        if let Ok(mut m) = self.0.http01.write() {
            m.remove(token);
        }
    }
    fn tls_alpn01_set(&self, domain: &str, cert_der: Vec<u8>, key_der: Vec<u8>) {
        if let Err(e) = self.0.set_tls_alpn(domain, cert_der, key_der) {
            tracing::error!(domain, error = %e, "cannot install the TLS-ALPN-01 certificate");
        }
    }
    fn tls_alpn01_clear(&self, domain: &str) {
        if let Ok(mut m) = self.0.tls_alpn.write() {
            m.remove(domain);
        }
    }
}

/// The maintenance task for the running configuration, if it wants any certificate.
pub struct Acme {
    challenges: Arc<tls::Challenges>,
    running: Option<Running>,
    /// Where failed requests are announced (`cert_renewal_failed`).
    notifier: Option<Arc<crate::webhooks::Notifier>>,
}

struct Running {
    settings: AcmeConfig,
    wanted: Vec<Wanted>,
    task: JoinHandle<()>,
}

impl Acme {
    pub fn new(challenges: Arc<tls::Challenges>, notifier: Option<Arc<crate::webhooks::Notifier>>) -> Self {
        Acme { challenges, running: None, notifier }
    }

    /// Restarts the task when the ACME settings or the wanted names changed (a site added,
    /// removed or given other hosts; a certificate from another source now covering a name),
    /// and leaves it alone otherwise. A restart drops an order in progress (its HTTP-01 and
    /// TLS-ALPN-01 answers are withdrawn) and starts over, checking each certificate on disk
    /// first, so nothing fresh is requested twice.
    pub fn follow(&mut self, config: &Config, store: &tls::Store, queue: &Queue) {
        let next =
            config.tls.acme.as_ref().map(|a| (a.clone(), wanted(config, a, store))).filter(|(_, w)| !w.is_empty());
        let same = match (&self.running, &next) {
            (Some(r), Some((settings, wanted))) => r.settings == *settings && r.wanted == *wanted,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if let Some(r) = self.running.take() {
            r.task.abort();
        }
        let Some((settings, wanted)) = next else {
            tracing::info!("ACME: no certificate wanted any more; maintenance stopped");
            return;
        };
        tracing::info!(sites = wanted.len(), "ACME: maintaining certificates for the running configuration");
        let queue = queue.clone();
        // A new certificate on disk is loaded by a certificate reload, in turn with other reloads.
        let notifier = self.notifier.clone();
        let report = Arc::new(move |outcome: gatehouse_acme::Outcome<'_>| match outcome {
            gatehouse_acme::Outcome::Issued { .. } => queue.certs(),
            gatehouse_acme::Outcome::Failed { site, hosts, error, attempt, retry_in } => {
                if let Some(n) = &notifier {
                    n.notify(crate::webhooks::Event {
                        kind: "cert_renewal_failed",
                        subject: site.to_string(),
                        severity: crate::webhooks::Severity::Error,
                        title: format!("Certificate request failed for {site}"),
                        message: format!(
                            "Requesting a certificate for {} failed: {error}. The current certificate (if any) keeps serving.",
                            hosts.join(", ")
                        ),
                        fields: vec![
                            ("site", site.to_string()),
                            ("attempt", attempt.to_string()),
                            ("retry_in", format!("{}s", retry_in.as_secs())),
                        ],
                    });
                }
            }
        });
        let task = tokio::spawn(gatehouse_acme::maintain(
            settings.clone(),
            wanted.clone(),
            Arc::new(Responder(self.challenges.clone())),
            report,
        ));
        self.running = Some(Running { settings, wanted, task });
    }
}
