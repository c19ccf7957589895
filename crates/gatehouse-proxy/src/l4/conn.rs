//! One stream connection, start to end: admission, the protocol's negotiation (its own
//! module), the handshake, a backend, the pipe; then its counters and access record.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use gatehouse_config::StreamProtocol;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use super::io::{BoxIo, Prefixed};
use super::pipe::{self, End, Moved};
use super::sni::{self, Hello};
use super::stats::Outcome;
use super::{Live, Open, Target};
use crate::error::{ProxyError, Side};
use crate::upstream::{self, ActiveGuard};

/// What a connection learns on its way, for its record.
pub(super) struct Session<'l> {
    pub live: &'l Live,
    /// The client (from the PROXY header when a trusted balancer sent one).
    pub client: SocketAddr,
    /// The address the client connected to (the peer's when nothing needs it: see `serve`).
    pub local: SocketAddr,
    pub sni: Option<String>,
    /// The backend connected to, and its host (the name verified by re-encryption).
    pub backend: Option<(String, String)>,
    /// The backend's address, when it is reached over TCP.
    pub backend_addr: Option<SocketAddr>,
    pub tls: Option<&'static str>,
    pub moved: Moved,
    /// Why it ended, when not cleanly.
    pub detail: String,
    /// The pipe ended because the backend's side failed.
    pub backend_failed: bool,
}

pub(super) async fn serve(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
    open: Open,
) {
    // Its end counts as activity too: the thread's memory release waits until it settles.
    let _ends = crate::http::spare::Ends;
    let started = Instant::now();
    let time = SystemTime::now();
    live.stats.active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Only the PROXY header and FTP's passive replies need it (a system call).
    let wants_local = live.config.send_proxy.is_some() || live.config.protocol == StreamProtocol::Ftp;
    let local = if wants_local { tcp.local_addr().unwrap_or(peer) } else { peer };
    let mut s = Session {
        live: &live,
        client: peer,
        local,
        sni: None,
        backend: None,
        backend_addr: None,
        tls: None,
        moved: Moved::default(),
        detail: String::new(),
        backend_failed: false,
    };
    let drained = async {
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(live.drain).await;
    };
    let outcome = tokio::select! {
        o = s.run(tcp) => o,
        () = drained => Outcome::Drained,
    };
    let took = started.elapsed();
    let stats = &live.stats;
    stats.active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    stats.ended(outcome, took);
    let cfg = &live.config;
    if outcome != Outcome::Closed {
        tracing::debug!(stream = %cfg.name, client = %s.client, outcome = outcome.as_str(), detail = %s.detail, "stream connection ended");
    }
    if let Some(sink) = &live.sink {
        sink.record(s.record(outcome, time, took));
    }
    drop(open);
}

impl Session<'_> {
    async fn run(&mut self, mut tcp: tokio::net::TcpStream) -> Outcome {
        let cfg = self.live.config.clone();
        let _ = tcp.set_nodelay(true);
        let mut head = Bytes::new();
        if !cfg.proxy_from.is_empty() && crate::http::header::is_trusted(self.client.ip(), &cfg.proxy_from) {
            match crate::proxy_protocol::read(&mut tcp, cfg.handshake_timeout).await {
                Ok((h, rest)) => {
                    if let Some(src) = h.source {
                        self.client = src;
                    }
                    head = rest;
                }
                Err(e) => {
                    self.detail = e.to_string();
                    return Outcome::ProxyHeader;
                }
            }
        }
        // An IPv4 client on a dual-stack listener is `::ffff:a.b.c.d`: checked as IPv4.
        let ip = self.client.ip().to_canonical();
        if !allowed(&cfg, ip) || self.live.shared.bans.check(ip, SystemTime::now()).is_some() {
            return Outcome::Denied;
        }
        let Some(slot) = self.live.admission.try_room() else {
            self.detail = format!("max_connections ({}) reached", cfg.max_connections);
            return Outcome::Limited;
        };
        let Some(_ticket) = self.live.admission.admit(ip, slot) else {
            self.detail = format!("max_connections_per_ip ({}) reached", cfg.max_connections_per_ip);
            return Outcome::Limited;
        };
        let client: BoxIo = Box::new(Prefixed::new(head, tcp));
        match cfg.protocol {
            StreamProtocol::Generic => self.generic(client).await,
            StreamProtocol::Postgres => super::postgres::run(self, client).await,
            StreamProtocol::Mysql => super::mysql::run(self, client).await,
            StreamProtocol::Smtp | StreamProtocol::Imap | StreamProtocol::Pop3 => super::mail::run(self, client).await,
            StreamProtocol::Nats => super::nats::run(self, client).await,
            StreamProtocol::Ldap => super::ldap::run(self, client).await,
            StreamProtocol::Ftp => super::ftp::run(self, client).await,
        }
    }

    /// Bytes as they come, TLS from the first byte when the stream has `tls`, routed by SNI
    /// when it has routes.
    async fn generic(&mut self, client: BoxIo) -> Outcome {
        self.generic_session(client).await.unwrap_or_else(|o| o)
    }

    async fn generic_session(&mut self, mut client: BoxIo) -> Result<Outcome, Outcome> {
        let live = self.live;
        let tls = live.config.tls.as_ref();
        // The ClientHello is read ahead when its name picks the route, or when a client
        // without TLS may go on plain.
        let peek = !live.routes.is_empty() || tls.is_some_and(|t| !t.required);
        let mut plain = tls.is_none();
        if peek {
            let mut buf = BytesMut::with_capacity(1024);
            let hello = self
                .client_step("the ClientHello", async {
                    loop {
                        match sni::parse(&buf) {
                            Hello::Partial if buf.len() < sni::MAX_HELLO => {
                                if client.read_buf(&mut buf).await? == 0 {
                                    return Err(super::io::closed());
                                }
                            }
                            Hello::Partial => return Ok(Hello::NotTls),
                            done => return Ok(done),
                        }
                    }
                })
                .await?;
            match hello {
                Hello::Done(name) => self.sni = name,
                _ if tls.is_some_and(|t| !t.required) && live.routes.is_empty() => plain = true,
                _ if tls.is_some() => {
                    self.detail = "the client did not start with a TLS ClientHello".into();
                    return Err(Outcome::TlsRequired);
                }
                _ => {
                    self.detail = "SNI routes need a TLS ClientHello".into();
                    return Err(Outcome::Protocol);
                }
            }
            client = Box::new(Prefixed::new(buf.freeze(), client));
        }
        let Some(target) = live.target(self.sni.as_deref()) else {
            self.detail = format!("no route for SNI {:?}", self.sni.as_deref().unwrap_or(""));
            return Err(Outcome::NoRoute);
        };
        if !plain && !target.passthrough {
            client = self.handshake(client).await?;
        }
        let (backend, _active) = self.dial(target).await?;
        let backend = self.backend_tls(target, backend).await?;
        Ok(self.pipe(client, backend).await)
    }

    /// A step of the client's (its opening, its login), bounded by `handshake_timeout`:
    /// its error is the client's protocol error, lateness a failed handshake.
    pub(super) async fn client_step<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        step: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Outcome> {
        let limit = (self.live.config.handshake_timeout, "handshake_timeout");
        self.step(what, step, limit, (Outcome::Protocol, Outcome::Handshake)).await
    }

    /// A step of the backend's (its greeting, its STARTTLS), bounded by `connect_timeout`:
    /// any failure is the backend's.
    pub(super) async fn backend_step<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        step: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Outcome> {
        let limit = (self.live.config.connect_timeout, "connect_timeout");
        self.step(what, step, limit, (Outcome::Backend, Outcome::Backend)).await
    }

    /// `step` within `limit`: its error ends the connection as `failed.0`, lateness as
    /// `failed.1`, with the reason in `detail`.
    async fn step<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        step: impl std::future::Future<Output = Result<T, E>>,
        (limit, name): (std::time::Duration, &str),
        failed: (Outcome, Outcome),
    ) -> Result<T, Outcome> {
        match timeout(limit, step).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.detail = format!("{what}: {e}");
                Err(failed.0)
            }
            Err(_) => {
                self.detail = format!("{what}: not within {name}");
                Err(failed.1)
            }
        }
    }

    /// The PROXY header this stream sends its backends for this client, if it sends one.
    pub(super) fn proxy_header(&self) -> Option<Vec<u8>> {
        let v = self.live.config.send_proxy?;
        Some(crate::proxy_protocol::encode(v == gatehouse_config::ProxyVersion::V2, self.client, self.local))
    }

    /// The TLS handshake with the client (bounded by `handshake_timeout`).
    pub(super) async fn handshake(&mut self, client: BoxIo) -> Result<BoxIo, Outcome> {
        let Some(acceptor) = &self.live.acceptor else {
            self.detail = "the stream has no certificate".into();
            return Err(Outcome::Handshake);
        };
        match timeout(self.live.config.handshake_timeout, acceptor.accept(client)).await {
            Ok(Ok(tls)) => {
                let (_, session) = tls.get_ref();
                if self.sni.is_none() {
                    self.sni = session.server_name().map(str::to_ascii_lowercase);
                }
                let stats = &self.live.stats;
                self.tls = Some(match session.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_2) => {
                        stats.tls12.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        "TLSv1.2"
                    }
                    _ => {
                        stats.tls13.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        "TLSv1.3"
                    }
                });
                Ok(Box::new(tls))
            }
            Ok(Err(e)) => {
                self.detail = format!("TLS handshake: {e}");
                Err(Outcome::Handshake)
            }
            Err(_) => {
                self.detail = "TLS handshake not complete within handshake_timeout".into();
                Err(Outcome::Handshake)
            }
        }
    }

    /// Connects to a backend of `target`: the balancer's pick, then the others in turn
    /// when a connect fails (each failure counts towards its breaker and passive check).
    /// Sends the PROXY header when the stream does.
    pub(super) async fn dial(&mut self, target: &Target) -> Result<(BoxIo, ActiveGuard), Outcome> {
        let cfg = &self.live.config;
        let shared = &self.live.shared;
        let group = &target.group;
        let none = http::HeaderMap::new();
        let mut selection = upstream::select::Selection::new(group, shared, self.client.ip(), &none);
        let mut last = "every backend is out of rotation".to_string();
        while let Some(b) = selection.next() {
            let probe = selection.probe;
            let (name, host) = match &b.backend.addr {
                gatehouse_config::BackendAddr::Tcp { host, .. } => (b.backend.addr.authority(), host.clone()),
                gatehouse_config::BackendAddr::Unix(p) => (format!("unix:{}", p.display()), "localhost".to_string()),
            };
            let Some(t) = b.targets.load().first().cloned() else {
                last = format!("{name} does not resolve");
                continue;
            };
            let failure = match timeout(cfg.connect_timeout, connect(&t)).await {
                Ok(Ok(mut io)) => {
                    let sent = match self.proxy_header() {
                        Some(header) => pipe::write_all(&mut io, &header).await,
                        None => Ok(()),
                    };
                    match sent {
                        Ok(()) => {
                            upstream::exchange::report_outcome(group, b, Ok(false), shared, probe);
                            self.backend = Some((name, host));
                            self.backend_addr = match t {
                                upstream::Target::Tcp(a) => Some(a),
                                upstream::Target::Unix(_) => None,
                            };
                            return Ok((io, ActiveGuard::new(b)));
                        }
                        Err(e) => ProxyError::Connect { backend: name.clone(), reason: e.to_string() },
                    }
                }
                Ok(Err(e)) => ProxyError::Connect { backend: name.clone(), reason: e.to_string() },
                Err(_) => ProxyError::ConnectTimeout { backend: name.clone() },
            };
            upstream::exchange::report_outcome(group, b, Err(&failure), shared, probe);
            tracing::debug!(stream = %cfg.name, error = %failure, "stream backend failed; trying the next");
            last = failure.to_string();
        }
        self.detail = last;
        Err(Outcome::Backend)
    }

    /// `dial`, telling the client `refusal` (in its protocol's words) when no backend can
    /// be reached.
    pub(super) async fn dial_or_tell(
        &mut self,
        target: &Target,
        client: &mut BoxIo,
        refusal: &[u8],
    ) -> Result<(BoxIo, ActiveGuard), Outcome> {
        match self.dial(target).await {
            Ok(b) => Ok(b),
            Err(o) => {
                let _ = pipe::write_all(client, refusal).await;
                Err(o)
            }
        }
    }

    /// TLS to the backend when `target` re-encrypts (verified against its CA and name).
    pub(super) async fn backend_tls(&mut self, target: &Target, io: BoxIo) -> Result<BoxIo, Outcome> {
        let Some((connector, name)) = &target.tls else { return Ok(io) };
        let host = name.clone().or_else(|| self.backend.as_ref().map(|(_, h)| h.clone())).unwrap_or_default();
        let Ok(server) = rustls::pki_types::ServerName::try_from(host.clone()) else {
            self.detail = format!("{host:?} is not a name TLS can verify; set backend_tls.server_name");
            return Err(Outcome::Backend);
        };
        match timeout(self.live.config.connect_timeout, connector.connect(server, io)).await {
            Ok(Ok(tls)) => Ok(Box::new(tls)),
            Ok(Err(e)) => {
                self.detail = format!("TLS to the backend: {e}");
                Err(Outcome::Backend)
            }
            Err(_) => {
                self.detail = "TLS to the backend not complete within connect_timeout".into();
                Err(Outcome::Backend)
            }
        }
    }

    /// Moves bytes until both sides are done (or a limit ends the connection).
    pub(super) async fn pipe(&mut self, client: BoxIo, backend: BoxIo) -> Outcome {
        let cfg = &self.live.config;
        let (end, moved) = pipe::run(client, backend, cfg.idle_timeout, cfg.max_duration).await;
        self.moved(moved);
        match end {
            End::Done => Outcome::Closed,
            End::Idle => Outcome::Idle,
            End::MaxDuration => Outcome::MaxDuration,
            End::Failed { client } => {
                self.detail = format!("the {} side failed", if client { "client" } else { "backend" });
                self.backend_failed = !client;
                Outcome::Reset
            }
        }
    }

    /// Counts what this connection moved (its record and the stream's byte counters).
    pub(super) fn moved(&mut self, moved: Moved) {
        self.moved = moved;
        let stats = &self.live.stats;
        stats.bytes_in.fetch_add(moved.up, std::sync::atomic::Ordering::Relaxed);
        stats.bytes_out.fetch_add(moved.down, std::sync::atomic::Ordering::Relaxed);
    }

    /// The access record of this connection.
    fn record(&self, outcome: Outcome, time: SystemTime, took: std::time::Duration) -> crate::observe::AccessRecord {
        let mut r = crate::observe::AccessRecord::early(self.client.ip(), outcome.status(), "");
        let name = &self.live.config.name;
        r.time = time;
        r.duration = took;
        r.host = self.sni.clone().unwrap_or_default();
        r.path = self.live.config.protocol.as_str().to_string();
        r.site = Some(self.live.label.clone());
        r.route = Some(name.clone());
        r.backend = self.backend.as_ref().map(|(n, _)| n.clone());
        r.bytes_in = self.moved.up;
        r.bytes_out = self.moved.down;
        r.error = match outcome {
            Outcome::Closed => None,
            o => {
                let side = match o {
                    Outcome::Backend => Side::Backend,
                    Outcome::Reset if self.backend_failed => Side::Backend,
                    Outcome::Drained | Outcome::MaxDuration => Side::Gatehouse,
                    _ => Side::Client,
                };
                Some(crate::observe::Failure { side, kind: o.as_str(), reason: self.detail.clone() })
            }
        };
        r
    }
}

/// `allow` and `deny` of the stream (`ip` canonical: IPv4 as IPv4).
fn allowed(cfg: &gatehouse_config::Stream, ip: IpAddr) -> bool {
    !cfg.deny.iter().any(|n| n.contains(&ip)) && (cfg.allow.is_empty() || cfg.allow.iter().any(|n| n.contains(&ip)))
}

pub(super) async fn connect(target: &upstream::Target) -> std::io::Result<BoxIo> {
    match target {
        upstream::Target::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        upstream::Target::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path.as_ref()).await?)),
    }
}
