//! The one reload path: parse -> validate -> build -> swap, for every source (SIGHUP, the
//! file watcher, `POST /api/reload`), one reload at a time.
//!
//! Owns the reload queue, the order of a reload's steps, and what follows a reload: the
//! watched files and directories, and the ACME maintenance task. Must not run on a proxy
//! worker and must not read files or resolve names on the control runtime's threads: those
//! run on the blocking pool. Never changes the running state unless the whole new
//! configuration was accepted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gatehouse_config::{Config, EnvOverrides, Error};
use gatehouse_proxy::{Reloader, tls};
use tokio::sync::{Notify, oneshot};

use crate::acme::Acme;
use crate::watch::Watch;

/// The version now running, or every reason the configuration was refused.
pub type Outcome = Result<u64, Vec<Error>>;

/// Reloads asked for and not started yet.
#[derive(Default)]
struct Pending {
    /// Read the configuration again (certificates included).
    config: bool,
    /// Only the certificates, with the running configuration (directory change, ACME).
    certs: bool,
    /// Only the state, with the running configuration (the registry's instances changed).
    registry: bool,
    /// Callers waiting for the outcome of the next configuration reload.
    waiters: Vec<oneshot::Sender<Outcome>>,
    /// Who asked for the configuration reload (`sighup`, `file`, `api`), for the audit log.
    sources: std::collections::BTreeSet<&'static str>,
}

/// Where reloads are asked for, from any thread. Requests that arrive while a reload runs
/// are merged into one reload after it: a burst of signals or file events costs one more
/// reload, and every caller waiting sees an outcome that includes its change.
#[derive(Clone, Default)]
pub struct Queue {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
}

impl Queue {
    /// Asks for a configuration reload without waiting for it; `source` is `sighup` or
    /// `file`.
    pub fn config(&self, source: &'static str) {
        self.ask(|p| {
            p.config = true;
            p.sources.insert(source);
        });
    }

    /// Asks for the certificates to be loaded again with the running configuration.
    pub fn certs(&self) {
        self.ask(|p| p.certs = true);
    }

    /// Asks for the state to be built again with the running configuration (the registry
    /// changed).
    pub fn registry(&self) {
        self.ask(|p| p.registry = true);
    }

    /// Asks for a configuration reload and waits for its outcome (admin API).
    pub async fn reload(&self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.ask(|p| {
            p.config = true;
            p.sources.insert("api");
            p.waiters.push(tx);
        });
        rx.await.unwrap_or_else(|_| {
            Err(vec![Error::new(Path::new("gatehouse"), None, "", "shutting down; nothing was reloaded")])
        })
    }

    /// The reload capability the admin API is given.
    pub fn for_admin(&self) -> gatehouse_admin::Reload {
        let queue = self.clone();
        Arc::new(move || {
            let queue = queue.clone();
            Box::pin(async move { queue.reload().await })
        })
    }

    fn ask(&self, f: impl FnOnce(&mut Pending)) {
        // A poisoned lock means a panic elsewhere, and panics abort this process.
        if let Ok(mut p) = self.pending.lock() {
            f(&mut p);
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Pending {
        self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default()
    }
}

/// Runs the reloads `Queue` asks for, one at a time, and keeps what depends on the running
/// configuration (watchers, ACME) following it.
pub struct Reloading {
    path: PathBuf,
    reloader: Reloader,
    /// Moves listeners whose address a reload changed.
    listeners: Arc<gatehouse_proxy::Listeners>,
    /// The certificate resolver, when the process serves HTTPS.
    certs: Option<Arc<tls::Resolver>>,
    queue: Queue,
    watch: Watch,
    acme: Acme,
    /// Active health checks of the running configuration's backends.
    health: gatehouse_proxy::health::Checks,
    report: Reporting,
}

/// Where reloads are told about.
pub struct Reporting {
    /// The audit log (what changed, or why it was refused).
    pub audit: Option<gatehouse_store::Writer>,
    /// `gatehouse_config_reloads_total`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `config_reload_failed`, `cert_expiring` and `cert_renewal_failed` webhooks.
    pub notifier: Option<Arc<crate::webhooks::Notifier>>,
}

impl Reloading {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: PathBuf,
        reloader: Reloader,
        listeners: Arc<gatehouse_proxy::Listeners>,
        certs: Option<Arc<tls::Resolver>>,
        challenges: Arc<tls::Challenges>,
        queue: Queue,
        report: Reporting,
    ) -> Self {
        let acme = Acme::new(challenges, report.notifier.clone());
        // Every state built from this one shares its event sink.
        let _ = reloader.live().shared.events.set(backend_events(report.audit.clone(), report.notifier.clone()));
        Reloading {
            path,
            reloader,
            listeners,
            certs,
            queue,
            watch: Watch::default(),
            acme,
            health: gatehouse_proxy::health::Checks::new(),
            report,
        }
    }

    /// Serves the queue until the runtime ends. `follow` first, to start the watchers and
    /// ACME for the configuration the process started with.
    pub async fn run(mut self) {
        loop {
            self.queue.wake.notified().await;
            let asked = self.queue.take();
            if asked.config {
                let sources: Vec<&str> = asked.sources.iter().copied().collect();
                let before = self.reloader.live().config.clone();
                let outcome = self.reload().await;
                self.report.metrics.reloaded(outcome.is_ok());
                if let (Err(errors), Some(n)) = (&outcome, &self.report.notifier) {
                    n.notify(reload_failed(&sources.join(","), errors));
                }
                self.record(&sources.join(","), &before, &outcome);
                // A failed reload built nothing: what else was asked still has to happen.
                if outcome.is_err() {
                    if asked.certs {
                        self.reload_certs().await;
                    }
                    if asked.registry {
                        self.rebuild().await;
                    }
                }
                for w in asked.waiters {
                    let _ = w.send(outcome.clone());
                }
            } else {
                if asked.certs {
                    self.reload_certs().await;
                }
                if asked.registry {
                    self.rebuild().await;
                }
            }
        }
    }

    /// parse -> validate -> build -> swap. Files (configuration and certificates) are read
    /// and the state is built (backend names resolved) on a blocking thread; then the
    /// certificate store and the state are swapped one right after the other, so routes
    /// and certificates change together. On any configuration error nothing changes and
    /// each error is logged on its own line (`file:line field: message`).
    pub async fn reload(&mut self) -> Outcome {
        let started = Instant::now();
        let (path, reloader, resolver) = (self.path.clone(), self.reloader.clone(), self.certs.clone());
        let built = tokio::task::spawn_blocking(move || {
            let config = Arc::new(gatehouse_config::load(&path, &EnvOverrides::from_env()).map_err(|e| e.0)?);
            let store = resolver.map(|r| tls::Store::load(&config.tls, &config.sites, Some(&r.store())));
            let state = reloader.build(config.clone()).map_err(|e| e.0)?;
            // Streams are built and their new addresses bound now, before anything moves.
            let streams = reloader.prepare(&state).map_err(|e| e.0)?;
            Ok::<_, Vec<Error>>((config, store, state, streams))
        })
        .await;
        let (config, store, state, mut streams) = match built {
            Ok(Ok(b)) => b,
            Ok(Err(errors)) => {
                for e in &errors {
                    tracing::error!(error = %e, "reload rejected; the running configuration stays");
                }
                return Err(errors);
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; the running configuration stays");
                return Err(vec![Error::new(&self.path, None, "", format!("reload task failed: {e}"))]);
            }
        };
        let live = self.reloader.live();
        let state = match self.move_listeners(&live.config, &config, state).await {
            Ok((s, rebuilt)) => {
                // A state built anew has groups of its own, which the streams must share.
                if rebuilt && let Err(e) = self.reloader.rebuild_streams(&mut streams, &s) {
                    for e in &e.0 {
                        tracing::error!(error = %e, "reload rejected; the running configuration stays");
                    }
                    return Err(e.0);
                }
                s
            }
            Err(e) => {
                tracing::error!(error = %e, "reload rejected; the running configuration stays");
                return Err(vec![e]);
            }
        };
        let restart = restart_only(&live.config, &config);
        if !restart.is_empty() {
            tracing::warn!(
                settings = %restart.join(", "),
                "these settings change only on restart; the running values stay, everything else applies now"
            );
        }
        let version = state.version;
        self.reloader.publish(state, streams);
        if let (Some(resolver), Some((store, problems))) = (&self.certs, store) {
            for p in &problems {
                tracing::error!(problem = %p, "certificate not loaded on reload");
            }
            store.warn_notes();
            tls::warn_expiry(&store);
            if let Some(n) = &self.report.notifier {
                n.check_expiry(&store);
            }
            if let Some(w) = &self.report.audit {
                crate::logs::record_certificates(w, &store);
            }
            resolver.replace(store);
            for p in resolver.set_client_auth(&config.sites) {
                tracing::error!(problem = %p, "client certificates not asked for");
            }
        }
        tracing::info!(
            version,
            sites = config.sites.len(),
            took_us = started.elapsed().as_micros() as u64,
            "configuration reloaded"
        );
        self.follow();
        Ok(version)
    }

    /// Binds the listeners whose address `new` changes and hands them to the workers (the
    /// old sockets close; their connections finish). A moved HTTPS port is in redirects and
    /// Alt-Svc, so the state is built again for it (then `true`). Fails, changing nothing,
    /// when an address cannot be bound.
    async fn move_listeners(
        &self,
        old: &Config,
        new: &Arc<Config>,
        state: gatehouse_proxy::RuntimeState,
    ) -> Result<(gatehouse_proxy::RuntimeState, bool), Error> {
        let http = (new.listen_http != old.listen_http).then_some(new.listen_http);
        // Only an HTTPS listener that runs can move (one a reload added waits for a restart).
        let running = self.listeners.addrs().1.is_some();
        let https = new
            .listen_https
            .filter(|a| running && old.listen_https.is_some_and(|o| o != *a) && !new.http3 && !old.http3);
        if http.is_none() && https.is_none() {
            return Ok((state, false));
        }
        let before = self.listeners.addrs();
        let (h, s) = self.listeners.rebind(http, https).map_err(|(addr, e)| {
            let field = if Some(addr) == http { "listen.http" } else { "listen.https" };
            Error::new(&self.path, None, field, format!("cannot listen on {addr}: {e}; the old address keeps serving"))
        })?;
        tracing::info!(http = %h, https = ?s, was_http = %before.0, was_https = ?before.1, "listeners moved; the old addresses close and their connections finish");
        if https.is_none() {
            return Ok((state, false));
        }
        let (reloader, config) = (self.reloader.clone(), new.clone());
        match tokio::task::spawn_blocking(move || reloader.build(config)).await {
            Ok(Ok(s)) => Ok((s, true)),
            _ => Ok((state, false)),
        }
    }

    /// The state again from the running configuration, for the registry's instances now.
    /// Unchanged backends keep their state and connections (`build_groups`).
    async fn rebuild(&mut self) {
        let started = Instant::now();
        let (reloader, config) = (self.reloader.clone(), self.reloader.live().config.clone());
        // Built and swapped in one blocking task: both read files and bind addresses.
        let applied = tokio::task::spawn_blocking(move || {
            let state = reloader.build(config)?;
            let version = state.version;
            reloader.swap(state).map(|()| version)
        })
        .await;
        match applied {
            Ok(Ok(version)) => {
                tracing::info!(version, took_us = started.elapsed().as_micros() as u64, "registry change applied");
                self.follow();
            }
            Ok(Err(errors)) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "registry change not applied");
                }
            }
            Err(e) => tracing::error!(error = %e, "registry rebuild failed"),
        }
    }

    /// Writes the reload's outcome to the audit log: what changed, or why it was refused.
    fn record(&self, source: &str, before: &Config, outcome: &Outcome) {
        let Some(audit) = &self.report.audit else { return };
        let (action, detail) = match outcome {
            Ok(version) => {
                let mut d = gatehouse_admin::diff::diff(before, &self.reloader.live().config);
                d["version"] = serde_json::json!(version);
                ("config_reload", d)
            }
            Err(errors) => (
                "config_reload_failed",
                serde_json::json!({ "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>() }),
            ),
        };
        let entry = gatehouse_store::AuditEntry::now(source, action, detail.to_string());
        audit.run(move |store| {
            if let Err(e) = store.audit(&entry) {
                tracing::warn!(error = %e, "audit entry not written");
            }
        });
    }

    /// The certificates again, with the running configuration: a change in the certificate
    /// directory, or a certificate ACME just stored.
    async fn reload_certs(&mut self) {
        let Some(resolver) = self.certs.clone() else { return };
        let config = self.reloader.live().config.clone();
        let r = resolver.clone();
        let loaded =
            tokio::task::spawn_blocking(move || tls::Store::load(&config.tls, &config.sites, Some(&r.store())));
        let Ok((store, problems)) = loaded.await else {
            tracing::error!("certificate reload task failed; the current certificates stay");
            return;
        };
        for p in &problems {
            tracing::error!(problem = %p, "certificate not loaded; the previous one (if any) keeps serving");
        }
        store.warn_notes();
        tracing::info!(certificates = store.certs().len(), "certificates reloaded");
        tls::warn_expiry(&store);
        if let Some(n) = &self.report.notifier {
            n.check_expiry(&store);
        }
        if let Some(w) = &self.report.audit {
            crate::logs::record_certificates(w, &store);
        }
        resolver.replace(store);
        // A certificate that now covers a host may take it off ACME's list, or the reverse.
        self.follow();
    }

    /// Points the watchers and ACME at the running configuration and certificates. Needs
    /// the control runtime's context (ACME runs there).
    pub fn follow(&mut self) {
        self.health.follow(&self.reloader.live());
        let config = self.reloader.live().config.clone();
        self.watch.follow(&config, self.certs.is_some(), &self.queue);
        if let Some(resolver) = &self.certs {
            self.acme.follow(&config, &resolver.store(), &self.queue);
        }
    }
}

/// Settings a reload reads but cannot apply (listeners, workers, admin, logging, …), by
/// their configuration names, where `new` differs from `old`.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let checks: [(&'static str, bool); 13] = [
        ("workers", old.workers != new.workers),
        // A listener's address moves on reload; adding or removing HTTPS, or moving it
        // while HTTP/3 runs on its port, needs a restart.
        (
            "listen.https",
            old.listen_https.is_some() != new.listen_https.is_some()
                || (old.listen_https != new.listen_https && (old.http3 || new.http3)),
        ),
        ("http3", old.http3 != new.http3),
        ("admin.listen", old.admin_listen != new.admin_listen),
        ("admin.token", old.admin_token != new.admin_token),
        ("admin.allowed_hosts", old.admin_allowed_hosts != new.admin_allowed_hosts),
        ("log", old.log != new.log),
        ("shutdown_timeout", old.shutdown_timeout != new.shutdown_timeout),
        ("server", old.server != new.server),
        ("dns_refresh", old.dns_refresh != new.dns_refresh),
        ("storage.path", old.storage_path != new.storage_path),
        ("registry.listen", old.registry.listen != new.registry.listen),
        ("logging", old.logging != new.logging),
    ];
    checks.into_iter().filter(|(_, changed)| *changed).map(|(name, _)| name).collect()
}

/// Where backend events go: a row in the store, and `backend_down` / `backend_recovered`
/// webhooks when a backend leaves rotation (failed checks, ejection, breaker open) or comes
/// back (checks pass, breaker closed). Runs on the thread of the event (a worker, for
/// ejections and breakers): both sinks only queue.
fn backend_events(
    writer: Option<gatehouse_store::Writer>,
    notifier: Option<Arc<crate::webhooks::Notifier>>,
) -> gatehouse_proxy::health::Events {
    use gatehouse_proxy::health::EventKind as K;
    Arc::new(move |e: gatehouse_proxy::health::Event| {
        if let Some(w) = &writer {
            let row = gatehouse_store::BackendEvent {
                time_ms: gatehouse_store::now_us() / 1000,
                upstream: e.upstream.clone(),
                backend: e.backend.clone(),
                kind: e.kind.as_str().to_string(),
                detail: e.detail.clone(),
            };
            w.run(move |db| {
                if let Err(err) = db.backend_event(&row) {
                    tracing::warn!(error = %err, "backend event not recorded in the database");
                }
            });
        }
        let Some(n) = &notifier else { return };
        let url = &e.backend;
        let (kind, severity, title, message) = match e.kind {
            K::Down => (
                "backend_down",
                crate::webhooks::Severity::Error,
                format!("Backend down: {url}"),
                format!("{url} failed its health checks and gets no traffic until it passes again ({}).", e.detail),
            ),
            K::Ejected => (
                "backend_down",
                crate::webhooks::Severity::Error,
                format!("Backend ejected: {url}"),
                format!("{url} failed requests and gets no traffic for a while ({}).", e.detail),
            ),
            K::BreakerOpen => (
                "backend_down",
                crate::webhooks::Severity::Error,
                format!("Circuit open: {url}"),
                format!(
                    "{url}'s circuit breaker opened: it gets no traffic until probe requests succeed ({}).",
                    e.detail
                ),
            ),
            K::Up => (
                "backend_recovered",
                crate::webhooks::Severity::Info,
                format!("Backend recovered: {url}"),
                format!("{url} passes its health checks again and is back in rotation."),
            ),
            K::BreakerClosed => (
                "backend_recovered",
                crate::webhooks::Severity::Info,
                format!("Circuit closed: {url}"),
                format!("{url}'s probe requests succeeded: it is back in rotation."),
            ),
            K::BreakerHalfOpen => return,
        };
        n.notify(crate::webhooks::Event {
            kind,
            subject: url.to_string(),
            severity,
            title,
            message,
            fields: vec![
                ("backend", url.to_string()),
                ("upstream", e.upstream.clone()),
                ("event", e.kind.as_str().to_string()),
            ],
        });
    })
}

/// `config_reload_failed`, with the errors (file:line field: message; no values).
fn reload_failed(source: &str, errors: &[Error]) -> crate::webhooks::Event {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    crate::webhooks::Event {
        kind: "config_reload_failed",
        subject: "configuration".into(),
        severity: crate::webhooks::Severity::Error,
        title: "Configuration reload refused".into(),
        message: format!(
            "The new configuration was refused; the running one stays.\n{}",
            list.iter().take(10).map(|e| format!("- {e}")).collect::<Vec<_>>().join("\n")
        ),
        fields: vec![("source", source.to_string()), ("errors", list.len().to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_during_a_reload_merge_into_one_more() {
        let q = Queue::default();
        q.config("sighup");
        q.certs();
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.reload().await }
        });
        // Let the waiter register.
        while q.pending.lock().expect("lock").waiters.is_empty() {
            tokio::task::yield_now().await;
        }
        let asked = q.take();
        assert!(asked.config && asked.certs);
        assert_eq!(asked.waiters.len(), 1);
        assert!(!q.take().config, "taken once");
        for w in asked.waiters {
            let _ = w.send(Ok(7));
        }
        assert_eq!(waiting.await.expect("join"), Ok(7));
    }

    #[test]
    fn restart_only_settings_are_named() {
        let base = std::path::Path::new(".");
        let a = gatehouse_config::load_from_str_for_tests("listen: {http: 127.0.0.1:1}\n", &[], base).expect("valid");
        let b = gatehouse_config::load_from_str_for_tests("listen: {http: 127.0.0.1:2}\nworkers: 7\n", &[], base)
            .expect("valid");
        assert_eq!(restart_only(&a, &a), Vec::<&str>::new());
        assert_eq!(restart_only(&a, &b), ["workers"], "a listener moves on reload");
    }
}
