//! Streams: L4 listeners (`streams`), each connection a forward-only state machine
//! (DESIGN.md §4): admit (allow/deny, bans, PROXY header, limits) -> negotiate (the
//! protocol's own way into TLS: SSLRequest, CLIENT_SSL, STARTTLS; or SNI peeking) ->
//! handshake -> connect a backend (balanced, with failover, optionally re-encrypted) ->
//! pipe. Every step is bounded by byte caps and timeouts.
//!
//! Owns the stream listeners and their threads (one current-thread runtime per worker,
//! each with its own SO_REUSEPORT socket per stream, like the HTTP workers) and what a
//! reload changes of them. The stream settings come from the `RuntimeState` a reload built
//! (its upstream groups carry health, breakers and counters, as HTTP's do); this module
//! never reads files except the certificates a stream names.

mod conn;
mod dialogue;
mod ftp;
pub mod io;
mod ldap;
mod mail;
mod mysql;
mod nats;
mod pipe;
mod postgres;
mod sni;
pub mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use gatehouse_config::{Error, Errors, HostPattern, Stream, UpstreamTls};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::{Notify, watch};

use crate::state::RuntimeState;
use crate::upstream::Group;

pub use stats::Stats;

/// Where a connection goes: a group of backends, and how to reach them.
pub struct Target {
    pub group: Arc<Group>,
    /// TLS towards the backends (verified), with the name to verify when the stream
    /// names one; otherwise the backend's host.
    pub tls: Option<(tokio_rustls::TlsConnector, Option<String>)>,
    /// The client's TLS goes through untouched.
    pub passthrough: bool,
}

/// One stream as connections see it: built from one state, swapped whole on reload.
pub struct Live {
    pub config: Arc<Stream>,
    pub default: Option<Target>,
    pub routes: Vec<(Vec<HostPattern>, Target)>,
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub admission: Arc<crate::admission::Admission>,
    pub stats: Arc<Stats>,
    pub shared: Arc<crate::state::Shared>,
    pub sink: Option<Arc<dyn crate::observe::LogSink>>,
    /// How long connections go on once their listener stops (reload or shutdown).
    pub drain: Duration,
    /// `stream:NAME`, the site of its access records.
    pub label: Arc<str>,
}

impl Live {
    /// The target for a client that named `sni` (the default one when no route matches).
    fn target(&self, sni: Option<&str>) -> Option<&Target> {
        let by_route = sni.and_then(|name| {
            let matches = |p: &HostPattern| match p {
                HostPattern::Exact(h) => h == name,
                HostPattern::Wildcard(suffix) => name.ends_with(suffix.as_str()) && name.len() > suffix.len(),
                HostPattern::Any => false,
            };
            self.routes.iter().find(|(hosts, _)| hosts.iter().any(matches)).map(|(_, t)| t)
        });
        let any = || self.routes.iter().find(|(hosts, _)| hosts.contains(&HostPattern::Any)).map(|(_, t)| t);
        by_route.or_else(any).or(self.default.as_ref())
    }
}

/// The certificate of a terminating stream: its own pair, or the shared store by SNI
/// (with the stream's first host for clients that send none).
#[derive(Debug)]
struct Certs {
    own: Option<Arc<CertifiedKey>>,
    shared: Option<Arc<crate::tls::Resolver>>,
    hosts: Vec<String>,
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(k) = &self.own {
            return Some(k.clone());
        }
        let store = self.shared.as_ref()?.store();
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let wanted =
            name.as_deref().filter(|n| self.hosts.iter().any(|h| h == n)).or(self.hosts.first().map(String::as_str));
        name.as_deref().and_then(|n| store.lookup(n)).or_else(|| store.lookup(wanted?)).map(|c| c.key.clone())
    }
}

/// Connections still open, across every stream (shutdown waits for them).
#[derive(Default)]
struct Tracker {
    open: AtomicUsize,
    gone: Notify,
}

/// Held by each connection.
pub(crate) struct Open(Arc<Tracker>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.gone.notify_waiters();
        }
    }
}

/// A stream's settings with the limits its admission was made for.
type Built = (Live, (usize, usize), Arc<crate::admission::Admission>);

/// Streams built and bound by `Engine::prepare`, waiting for `Engine::commit`.
pub struct Prepared {
    built: Vec<Built>,
    sockets: HashMap<String, Vec<std::net::TcpListener>>,
}

/// A stream whose listeners run.
struct Running {
    listen: SocketAddr,
    bound: SocketAddr,
    live: Arc<ArcSwap<Live>>,
    stop: watch::Sender<bool>,
    /// The limits `admission` was made for.
    limits: (usize, usize),
    admission: Arc<crate::admission::Admission>,
}

#[derive(Default)]
struct Inner {
    runtimes: Vec<tokio::runtime::Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    running: HashMap<String, Running>,
    stats: HashMap<String, Arc<Stats>>,
}

/// Every stream's listeners.
pub struct Engine {
    workers: usize,
    drain: Duration,
    certs: Option<Arc<crate::tls::Resolver>>,
    sink: Option<Arc<dyn crate::observe::LogSink>>,
    inner: Mutex<Inner>,
    tracker: Arc<Tracker>,
    end: watch::Sender<bool>,
    /// Hands freed memory back to the system (`Server::start`'s `release_memory`).
    release_memory: Option<fn()>,
}

impl Engine {
    pub fn new(
        workers: usize,
        drain: Duration,
        certs: Option<Arc<crate::tls::Resolver>>,
        sink: Option<Arc<dyn crate::observe::LogSink>>,
        release_memory: Option<fn()>,
    ) -> Arc<Self> {
        Arc::new(Engine {
            workers: workers.max(1),
            drain,
            certs,
            sink,
            inner: Mutex::new(Inner::default()),
            tracker: Arc::default(),
            end: watch::channel(false).0,
            release_memory,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The addresses streams listen on, by name (port 0 resolved).
    pub fn addrs(&self) -> HashMap<String, SocketAddr> {
        self.inner().running.iter().map(|(n, r)| (n.clone(), r.bound)).collect()
    }

    /// Each stream's counters, by name (kept across reloads while the name stays).
    pub fn stats(&self) -> Vec<(String, Arc<Stats>)> {
        let inner = self.inner();
        let mut all: Vec<_> =
            inner.running.keys().filter_map(|n| Some((n.clone(), inner.stats.get(n)?.clone()))).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Makes the running streams those of `state` (`prepare`, then `commit`). Fails with
    /// every reason, changing nothing.
    pub fn apply(&self, state: &RuntimeState) -> Result<(), Errors> {
        let prepared = self.prepare(state)?;
        self.commit(prepared);
        Ok(())
    }

    /// Builds each stream's settings from `state` and binds the addresses that are new (all
    /// of them before anything runs, so a failure changes nothing): nothing is served from
    /// them until `commit`. Dropped instead, the new sockets close.
    pub fn prepare(&self, state: &RuntimeState) -> Result<Prepared, Errors> {
        let built = self.build(state)?;
        let mut inner = self.inner();
        let mut errors = Errors::default();
        let mut sockets = HashMap::new();
        for (live, _, _) in &built {
            let s = &live.config;
            if inner.running.get(&s.name).is_some_and(|r| r.listen == s.listen) {
                continue;
            }
            match crate::listener::bind_workers(s.listen, self.workers) {
                Ok(socks) => {
                    sockets.insert(s.name.clone(), socks);
                }
                Err(e) => errors.push(Error::new(
                    &s.file,
                    None,
                    format!("streams[{}].listen", s.name),
                    format!("cannot listen on {}: {e}", s.listen),
                )),
            }
        }
        if !built.is_empty()
            && inner.runtimes.is_empty()
            && let Err(e) = self.start_threads(&mut inner)
        {
            let why = format!("cannot start stream threads: {e}");
            errors.push(Error::new(&state.config.source, None, "streams", why));
        }
        if !errors.0.is_empty() {
            return Err(errors);
        }
        Ok(Prepared { built, sockets })
    }

    /// Builds the settings of `prepared` again from `state`: the same configuration in a
    /// state built anew (a listener moved), whose upstream groups the streams must share.
    /// The sockets stay bound.
    pub fn rebuild(&self, prepared: &mut Prepared, state: &RuntimeState) -> Result<(), Errors> {
        prepared.built = self.build(state)?;
        Ok(())
    }

    /// Every stream's settings from `state`, taking over counters and (while its limits
    /// stay) admission from the running one of the same name.
    fn build(&self, state: &RuntimeState) -> Result<Vec<Built>, Errors> {
        let inner = self.inner();
        let mut errors = Errors::default();
        let mut built = Vec::new();
        for s in &state.config.streams {
            let stats = inner.stats.get(&s.name).cloned().unwrap_or_default();
            let limits = (s.max_connections, s.max_connections_per_ip);
            let admission = match inner.running.get(&s.name) {
                Some(r) if r.limits == limits => r.admission.clone(),
                _ => crate::admission::Admission::with_limits(limits.0, limits.1),
            };
            match self.live(s, state, stats, admission.clone()) {
                Ok(live) => built.push((live, limits, admission)),
                Err(why) => errors.push(Error::new(&s.file, None, format!("streams[{}]", s.name), why)),
            }
        }
        if errors.0.is_empty() { Ok(built) } else { Err(errors) }
    }

    /// Runs what `prepare` made: the streams that went stop accepting (their connections
    /// drain), the others take their new settings, the new ones start.
    pub fn commit(&self, prepared: Prepared) {
        let Prepared { built, mut sockets } = prepared;
        let mut inner = self.inner();
        let wanted: HashMap<&str, SocketAddr> =
            built.iter().map(|(l, _, _)| (l.config.name.as_str(), l.config.listen)).collect();
        inner.running.retain(|name, r| {
            let keep = wanted.get(name.as_str()) == Some(&r.listen);
            if !keep {
                tracing::info!(stream = %name, listen = %r.bound, "stream listener closed; its connections finish");
                let _ = r.stop.send(true);
            }
            keep
        });
        for (live, limits, admission) in built {
            let name = live.config.name.clone();
            inner.stats.insert(name.clone(), live.stats.clone());
            let live = Arc::new(live);
            if let Some(r) = inner.running.get_mut(&name) {
                r.live.store(live);
                (r.limits, r.admission) = (limits, admission);
                continue;
            }
            let Some(socks) = sockets.remove(&name) else { continue };
            let bound = socks.first().and_then(|s| s.local_addr().ok()).unwrap_or(live.config.listen);
            let (stop, _) = watch::channel(false);
            let shared = Arc::new(ArcSwap::new(live.clone()));
            for (sock, rt) in socks.into_iter().zip(inner.runtimes.iter().cycle()) {
                let (shared, stop, tracker) = (shared.clone(), stop.subscribe(), self.tracker.clone());
                rt.spawn(accept(sock, shared, stop, tracker));
            }
            tracing::info!(stream = %name, listen = %bound, protocol = live.config.protocol.as_str(), "stream listening");
            inner
                .running
                .insert(name, Running { listen: live.config.listen, bound, live: shared, stop, limits, admission });
        }
        let names: Vec<String> = inner.running.keys().cloned().collect();
        inner.stats.retain(|n, _| names.contains(n));
    }

    fn start_threads(&self, inner: &mut Inner) -> std::io::Result<()> {
        for i in 0..self.workers {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            inner.runtimes.push(rt.handle().clone());
            let mut end = self.end.subscribe();
            let release = self.release_memory;
            let t = std::thread::Builder::new().name(format!("gatehouse-stream-{i}")).spawn(move || {
                rt.block_on(async move {
                    // As the HTTP workers do, memory freed by connections goes back to the
                    // system once the thread is quiet.
                    let quiet = async {
                        match release {
                            Some(r) => crate::http::spare::release_when_quiet(r).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = end.wait_for(|e| *e) => {}
                        () = quiet => {}
                    }
                });
            })?;
            inner.threads.push(t);
        }
        Ok(())
    }

    /// Stops every listener, waits (up to the drain time) for the connections to end, then
    /// ends the threads. Blocks.
    pub fn shutdown(&self) {
        let threads = {
            let mut inner = self.inner();
            for r in inner.running.values() {
                let _ = r.stop.send(true);
            }
            inner.running.clear();
            std::mem::take(&mut inner.threads)
        };
        let deadline = std::time::Instant::now() + self.drain;
        while self.tracker.open.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.end.send(true);
        for t in threads {
            let _ = t.join();
        }
    }

    /// The settings of stream `s` in `state`.
    fn live(
        &self,
        s: &Stream,
        state: &RuntimeState,
        stats: Arc<Stats>,
        admission: Arc<crate::admission::Admission>,
    ) -> Result<Live, String> {
        let target = |up: &Arc<gatehouse_config::Upstream>,
                      tls: Option<&UpstreamTls>,
                      passthrough: bool|
         -> Result<Target, String> {
            let group = state.groups.get(&up.key).cloned().ok_or("its backends were not built")?;
            let tls = tls
                .map(|t| {
                    let cfg = crate::upstream::tls::client_config(t).map_err(|e| format!("backend_tls: {e}"))?;
                    Ok::<_, String>((tokio_rustls::TlsConnector::from(Arc::new(cfg)), t.server_name.clone()))
                })
                .transpose()?;
            Ok(Target { group, tls, passthrough })
        };
        let default = s.upstream.as_ref().map(|up| target(up, s.backend_tls.as_ref(), false)).transpose()?;
        let routes = s
            .routes
            .iter()
            .map(|r| Ok((r.hosts.clone(), target(&r.upstream, r.backend_tls.as_ref(), r.passthrough)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let acceptor = s
            .tls
            .as_ref()
            .map(|t| {
                let own = t
                    .pair
                    .as_ref()
                    .map(|p| crate::tls::load_pair(&p.cert, &p.key, &crate::tls::provider()))
                    .transpose()
                    .map_err(|e| format!("tls: {e}"))?;
                if own.is_none() && self.certs.is_none() {
                    return Err("tls.hosts needs the shared certificate store (listen.https)".to_string());
                }
                let certs = Certs { own, shared: self.certs.clone(), hosts: t.hosts.clone() };
                let mut cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .map_err(|e| e.to_string())?
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(certs));
                if s.protocol == gatehouse_config::StreamProtocol::Postgres {
                    // PostgreSQL 17's direct TLS requires it; older clients send no ALPN.
                    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
                }
                Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
            })
            .transpose()?;
        Ok(Live {
            config: Arc::new(s.clone()),
            default,
            routes,
            acceptor,
            admission,
            stats,
            shared: state.shared.clone(),
            sink: self.sink.clone(),
            drain: self.drain,
            label: Arc::from(format!("stream:{}", s.name)),
        })
    }
}

/// What `gatehouse check` finds wrong with the streams' files: certificates that cannot be
/// loaded (or whose key does not match), backend TLS settings that cannot be used. The
/// same checks run when a stream starts; this reports them before.
pub fn check(config: &gatehouse_config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    for s in &config.streams {
        if let Some(p) = s.tls.as_ref().and_then(|t| t.pair.as_ref())
            && let Err(e) = crate::tls::load_pair(&p.cert, &p.key, &crate::tls::provider())
        {
            problems.push(format!("{}: stream {}: tls ({}): {e}", s.file.display(), s.name, p.cert.display()));
        }
        let tls = s.backend_tls.iter().chain(s.routes.iter().filter_map(|r| r.backend_tls.as_ref()));
        for t in tls {
            if let Err(e) = crate::upstream::tls::client_config(t) {
                problems.push(format!("{}: stream {}: backend_tls: {e}", s.file.display(), s.name));
            }
        }
    }
    problems
}

/// Accepts on one socket of a stream until its listener stops.
async fn accept(
    sock: std::net::TcpListener,
    live: Arc<ArcSwap<Live>>,
    mut stop: watch::Receiver<bool>,
    tracker: Arc<Tracker>,
) {
    let listener = match tokio::net::TcpListener::from_std(sock) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register a stream listener");
            return;
        }
    };
    let conns = stop.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    crate::http::spare::touch();
                    tracker.open.fetch_add(1, Ordering::AcqRel);
                    let open = Open(tracker.clone());
                    tokio::spawn(conn::serve(tcp, peer, live.load_full(), conns.clone(), open));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stream accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}
