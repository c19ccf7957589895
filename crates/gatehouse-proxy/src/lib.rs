//! Gatehouse data plane: listeners, routing, upstream pools and the HTTP pipeline.
//!
//! The binary gives this crate a validated `Config`; it never reads files or environment
//! itself and never touches storage (see ../shared/DESIGN.md §3).

pub mod admission;
pub mod body;
mod client_auth;
pub mod conn;
pub mod error;
mod error_page;
mod file;
pub mod filter;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod hash;
pub mod health;
pub mod http;
#[cfg(feature = "http3")]
pub mod http3;
pub mod l4;
pub mod listener;
#[cfg(test)]
mod mutate;
pub mod observe;
pub mod pipeline;
pub mod proxy_protocol;
pub mod registry;
mod respond;
pub mod route;
pub mod security;
pub mod state;
pub mod timer;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use gatehouse_config::Config;
use tokio::sync::watch;

pub use state::RuntimeState;

/// A running proxy: worker threads plus the shared, swappable state.
pub struct Server {
    shared: Arc<ArcSwap<RuntimeState>>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    connections: Arc<observe::connections::Connections>,
    listeners: Arc<Listeners>,
    streams: Arc<l4::Engine>,
}

/// The addresses the workers listen on, and the way to move them (a reload that changes
/// `listen.http` or `listen.https`).
pub struct Listeners {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<listener::Rebind>>,
    addrs: std::sync::Mutex<(SocketAddr, Option<SocketAddr>)>,
}

impl Listeners {
    /// (HTTP, HTTPS) addresses now.
    pub fn addrs(&self) -> (SocketAddr, Option<SocketAddr>) {
        *self.addrs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Binds the new addresses (every socket first, so a failure changes nothing), then
    /// hands each worker its sockets; the old ones close as the workers take the new ones,
    /// and the connections accepted on them finish. An HTTPS move needs an HTTPS listener
    /// already. Returns the addresses bound, or the address that failed and why.
    pub fn rebind(
        &self,
        http: Option<SocketAddr>,
        https: Option<SocketAddr>,
    ) -> Result<(SocketAddr, Option<SocketAddr>), (SocketAddr, std::io::Error)> {
        let workers = self.senders.len();
        let bind = |addr: SocketAddr| listener::bind_workers(addr, workers).map_err(|e| (addr, e));
        let new_http = http.map(bind).transpose()?;
        let new_https = match (https, self.addrs().1) {
            (Some(addr), Some(_)) => Some(bind(addr)?),
            (Some(addr), None) => {
                return Err((
                    addr,
                    std::io::Error::other("there is no HTTPS listener to move; adding one needs a restart"),
                ));
            }
            (None, _) => None,
        };
        let mut addrs = self.addrs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(socks) = new_http {
            if let Some(Ok(a)) = socks.first().map(std::net::TcpListener::local_addr) {
                addrs.0 = a;
            }
            for (tx, s) in self.senders.iter().zip(socks) {
                let _ = tx.send(listener::Rebind::Http(s));
            }
        }
        if let Some(socks) = new_https {
            if let Some(Ok(a)) = socks.first().map(std::net::TcpListener::local_addr) {
                addrs.1 = Some(a);
            }
            for (tx, s) in self.senders.iter().zip(socks) {
                let _ = tx.send(listener::Rebind::Https(s));
            }
        }
        Ok(*addrs)
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // The cause is shown by the caller's error chain (`{:#}`), so it is not repeated here.
    #[error("cannot listen on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("the configuration cannot be put to work:\n{0}")]
    Config(String),
    #[error("cannot start worker threads: {0}")]
    Threads(std::io::Error),
}

impl Server {
    /// Binds the HTTP listener and, with `listen.https` and a certificate resolver, the HTTPS
    /// listener (one socket each per worker), and starts the workers.
    ///
    /// `release_memory`, when given, is called on a worker's thread once the worker has been
    /// quiet for a second after work, to hand memory the allocator caches back to the system
    /// (the binary passes its allocator's collect). `sink` takes every access record (the
    /// binary's: the access line log and the database).
    pub fn start(
        config: Arc<Config>,
        resolver: Option<Arc<tls::Resolver>>,
        challenges: Option<Arc<tls::Challenges>>,
        release_memory: Option<fn()>,
        sink: Option<Arc<dyn observe::LogSink>>,
    ) -> Result<Server, StartError> {
        let listen_err = |addr| move |source| StartError::Listen { addr, source };
        let http =
            listener::bind_workers(config.listen_http, config.workers).map_err(listen_err(config.listen_http))?;
        let http_addr = http[0].local_addr().map_err(listen_err(config.listen_http))?;
        let (https, tls) = match (config.listen_https, resolver) {
            (Some(addr), Some(resolver)) => {
                let socks = listener::bind_workers(addr, config.workers).map_err(listen_err(addr))?;
                let cfg = tls::server_config(resolver.clone()).map_err(|e| StartError::Tls(e.to_string()))?;
                (socks, Some((tokio_rustls::TlsAcceptor::from(cfg), resolver)))
            }
            (Some(_), None) => {
                return Err(StartError::Tls("listen.https is set but no certificates were loaded".into()));
            }
            _ => (Vec::new(), None),
        };
        let https_addr = https.first().and_then(|l| l.local_addr().ok());
        #[cfg(feature = "http3")]
        let mut h3 = match (config.http3, https_addr, &tls) {
            (true, Some(addr), Some((_, resolver))) => {
                let udp = std::net::UdpSocket::bind(addr).map_err(listen_err(addr))?;
                let cfg = http3::server_config(resolver.clone()).map_err(StartError::Tls)?;
                Some((udp, cfg, resolver.clone()))
            }
            _ => None,
        };
        let connections = observe::connections::Connections::new(config.workers);
        let certs = tls.as_ref().map(|(_, r)| r.clone());
        let streams = l4::Engine::new(config.workers, config.shutdown_timeout, certs, sink.clone(), release_memory);
        let settings = Arc::new(listener::WorkerSettings {
            server: config.server.clone(),
            shutdown_timeout: config.shutdown_timeout,
            max_header_bytes: max_header_bytes(&config),
            tls,
            challenges,
            sink,
            admission: admission::Admission::new(&config.server),
            connections: connections.clone(),
            release_memory,
        });
        let mut https = https.into_iter();
        let mut senders = Vec::new();
        let sockets = http
            .into_iter()
            .map(|h| {
                let (tx, rebind) = tokio::sync::mpsc::unbounded_channel();
                senders.push(tx);
                (h, rebind)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(h, rebind)| listener::WorkerSockets {
                http: h,
                https: https.next(),
                rebind,
                #[cfg(feature = "http3")]
                h3: h3.take(),
            })
            .collect();
        let h3_port = https_addr.filter(|_| config.http3 && cfg!(feature = "http3")).map(|a| a.port());
        let state = RuntimeState::build(config, None, https_addr.map(|a| a.port()), h3_port)
            .map_err(|e| StartError::Config(e.to_string()))?;
        streams.apply(&state).map_err(|e| StartError::Config(e.to_string()))?;
        let shared = Arc::new(ArcSwap::from_pointee(state));
        let (tx, rx) = watch::channel(false);
        let workers = listener::spawn_workers(sockets, shared.clone(), rx, settings).map_err(StartError::Threads)?;
        let listeners = Arc::new(Listeners { senders, addrs: std::sync::Mutex::new((http_addr, https_addr)) });
        Ok(Server { shared, shutdown: tx, workers, http_addr, https_addr, connections, listeners, streams })
    }

    /// Client connections, counted per worker.
    pub fn connections(&self) -> Arc<observe::connections::Connections> {
        self.connections.clone()
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The state requests are served from right now.
    pub fn state(&self) -> Arc<RuntimeState> {
        self.shared.load_full()
    }

    /// What a reload needs, apart from the server: building a state can block (backend
    /// host names are resolved), so it runs on a blocking thread, not where signals are
    /// handled. Listener-level settings (addresses, workers) need a restart.
    pub fn reloader(&self) -> Reloader {
        Reloader { shared: self.shared.clone(), listeners: self.listeners.clone(), streams: self.streams.clone() }
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout) and
    /// waits for the workers. Blocks.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let streams = self.streams.clone();
        let draining = std::thread::spawn(move || streams.shutdown());
        for w in self.workers {
            let _ = w.join();
        }
        let _ = draining.join();
    }

    /// The streams (L4 listeners): their addresses and counters.
    pub fn streams(&self) -> Arc<l4::Engine> {
        self.streams.clone()
    }

    /// The listeners' addresses, and moving them on reload.
    pub fn listeners(&self) -> Arc<Listeners> {
        self.listeners.clone()
    }

    /// A cheap handle for other components (admin API) that only read state.
    pub fn watcher(&self) -> StateHandle {
        StateHandle(self.shared.clone())
    }
}

/// Builds and publishes new states for a running server; see `Server::reloader`.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<ArcSwap<RuntimeState>>,
    listeners: Arc<Listeners>,
    streams: Arc<l4::Engine>,
}

impl Reloader {
    /// The state requests are served from right now.
    pub fn live(&self) -> Arc<RuntimeState> {
        self.shared.load_full()
    }

    /// The state for `config`, taking over unchanged upstream groups and backends from the
    /// live one; its version is the live one's plus one. May block on DNS. Callers run one
    /// build-and-swap at a time. Fails as `RuntimeState::build` does.
    pub fn build(&self, config: Arc<Config>) -> Result<RuntimeState, gatehouse_config::Errors> {
        let old = self.shared.load_full();
        let https_port = self.listeners.addrs().1.map(|a| a.port());
        RuntimeState::build(config, Some(&old), https_port, old.h3_port)
    }

    /// Publishes `state` (`prepare`, then `publish`). Fails, changing nothing, when a
    /// stream cannot be built or its new address bound.
    pub fn swap(&self, state: RuntimeState) -> Result<(), gatehouse_config::Errors> {
        let streams = self.prepare(&state)?;
        self.publish(state, streams);
        Ok(())
    }

    /// The streams of `state`, built and with their new addresses bound, not serving yet.
    pub fn prepare(&self, state: &RuntimeState) -> Result<l4::Prepared, gatehouse_config::Errors> {
        self.streams.prepare(state)
    }

    /// Builds prepared streams again from a state built anew from the same configuration.
    pub fn rebuild_streams(
        &self,
        streams: &mut l4::Prepared,
        state: &RuntimeState,
    ) -> Result<(), gatehouse_config::Errors> {
        self.streams.rebuild(streams, state)
    }

    /// Publishes `state` with its prepared streams; requests and stream connections in
    /// flight keep what they started with.
    pub fn publish(&self, state: RuntimeState, streams: l4::Prepared) {
        self.streams.commit(streams);
        self.shared.store(Arc::new(state));
    }
}

/// Read access to the live state.
#[derive(Clone)]
pub struct StateHandle(Arc<ArcSwap<RuntimeState>>);

impl StateHandle {
    pub fn load(&self) -> Arc<RuntimeState> {
        self.0.load_full()
    }
}

/// The access-log sink when the access log is on (`log.level` lets `access` through at
/// `info`); otherwise none, and requests build no records at all.
fn max_header_bytes(config: &Config) -> usize {
    config
        .sites
        .iter()
        .flat_map(|s| s.routes.iter())
        .map(|r| r.options.max_request_headers as usize)
        .max()
        .unwrap_or(64 * 1024)
}

/// Re-resolves backend host names every `interval` (containers come and go); keeps the old
/// addresses when a lookup fails. Runs until the process ends.
pub async fn refresh_dns(state: StateHandle, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let current = state.load();
        for group in current.groups.values() {
            for b in &group.backends {
                let Some((host, port)) = b.dns_name() else {
                    continue;
                };
                match tokio::net::lookup_host((host, port)).await {
                    Ok(addrs) => {
                        let fresh: Vec<upstream::Target> = addrs.map(upstream::Target::Tcp).collect();
                        if !fresh.is_empty() && **b.targets.load() != fresh {
                            tracing::info!(host, addresses = fresh.len(), "backend addresses changed");
                            b.targets.store(Arc::new(fresh));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(host, error = %e, "backend re-resolution failed; keeping old addresses")
                    }
                }
            }
        }
    }
}
