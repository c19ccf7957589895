//! Downstream listeners and worker threads: one current-thread tokio runtime per worker,
//! each with its own SO_REUSEPORT socket, so accepted connections and their upstream pools
//! stay on one thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use gatehouse_config::ServerConfig;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::body::Inbound;
use crate::conn::{ConnInfo, TlsInfo};
use crate::http::framing::{Flags, Inspected};
use crate::http::server;
use crate::http::streams::{End, InFlight, Limits, Streams};
use crate::pipeline::handle;
use crate::state::RuntimeState;
use crate::upstream::pool;

/// Binds `addr` with SO_REUSEPORT so each worker can own a socket on the same port.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Listening sockets the service manager handed over (systemd socket activation), each
/// with whether a listener has used it. A listener whose address matches one uses a
/// duplicate of it instead of binding; the original stays here, so a reload that moves a
/// listener away and back finds it again (systemd keeps its own copy listening anyway).
static INHERITED: std::sync::Mutex<Vec<(std::net::TcpListener, bool)>> = std::sync::Mutex::new(Vec::new());

/// Keeps sockets the service manager passed (already listening) for `bind_workers`.
pub fn inherit(sockets: Vec<std::net::TcpListener>) {
    let mut kept = INHERITED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for s in sockets {
        if s.set_nonblocking(true).is_ok() {
            kept.push((s, false));
        }
    }
}

/// The addresses of passed sockets no listener has used.
pub fn unused_inherited() -> Vec<SocketAddr> {
    let kept = INHERITED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    kept.iter().filter(|(_, used)| !used).filter_map(|(s, _)| s.local_addr().ok()).collect()
}

/// A duplicate of the passed socket listening on exactly `addr`, if there is one.
fn inherited(addr: SocketAddr) -> Option<std::io::Result<std::net::TcpListener>> {
    let mut kept = INHERITED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (socket, used) = kept.iter_mut().find(|(s, _)| s.local_addr().is_ok_and(|a| a == addr))?;
    *used = true;
    Some(socket.try_clone())
}

/// Binds one socket per worker. With port 0 the first socket picks the port and the
/// others join it.
///
/// A socket the service manager passed for `addr` (see `inherit`) is used instead: every
/// worker gets a duplicate of it, so they share its one queue, which outlives this
/// process and keeps connection attempts waiting across a restart.
///
/// SO_REUSEPORT alone would let a second Gatehouse, or a second listener of this one, join
/// a port already in use and silently take part of its connections. So a fixed port is
/// first bound once without SO_REUSEPORT: that fails with "address in use" whenever anyone
/// else listens there, as nginx's bind would; only then do the workers' sockets share it.
pub fn bind_workers(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if let Some(passed) = inherited(addr) {
        let passed = passed?;
        let mut all = Vec::with_capacity(workers);
        for _ in 1..workers {
            all.push(passed.try_clone()?);
        }
        all.push(passed);
        return Ok(all);
    }
    if addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // Connections of an earlier run in TIME_WAIT do not hold the port.
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                std::io::Error::new(e.kind(), "address already in use (another process or listener holds this port)")
            } else {
                e
            }
        })?;
    }
    let first = bind(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(bind(actual)?);
    }
    Ok(all)
}

pub struct WorkerSettings {
    pub server: ServerConfig,
    pub shutdown_timeout: Duration,
    /// The largest request header section any route accepts; hyper's read buffer is sized
    /// to it so routes can answer 431 themselves.
    pub max_header_bytes: usize,
    /// TLS for the HTTPS listeners, with the resolver that picked the certificates.
    pub tls: Option<(tokio_rustls::TlsAcceptor, Arc<crate::tls::Resolver>)>,
    /// Pending ACME challenges, answered on the HTTP listener.
    pub challenges: Option<Arc<crate::tls::Challenges>>,
    /// Where access records go; `None` when the access log is off.
    pub sink: Option<Arc<dyn crate::observe::LogSink>>,
    /// Connection limits shared by every worker.
    pub admission: Arc<crate::admission::Admission>,
    /// Client connections counted per worker (metrics).
    pub connections: Arc<crate::observe::connections::Connections>,
    /// Hands memory the allocator keeps cached back to the system; called on a worker's
    /// thread once it has been quiet for a second after work (`Server::start`).
    pub release_memory: Option<fn()>,
}

/// One worker's sockets: the HTTP listener and, when configured, the HTTPS one.
pub struct WorkerSockets {
    pub http: std::net::TcpListener,
    pub https: Option<std::net::TcpListener>,
    /// New sockets for a listener whose address a reload changed.
    pub rebind: tokio::sync::mpsc::UnboundedReceiver<Rebind>,
    /// The HTTP/3 endpoint's UDP socket (first worker only) with its QUIC settings.
    #[cfg(feature = "http3")]
    pub h3: Option<(std::net::UdpSocket, quinn::ServerConfig, Arc<crate::tls::Resolver>)>,
}

/// A worker's new socket for a listener that moved; the old socket is closed (connections
/// already accepted on it go on until they end).
pub enum Rebind {
    Http(std::net::TcpListener),
    Https(std::net::TcpListener),
}

/// What the accept loop waits for.
enum Next {
    Accepted(std::io::Result<(tokio::net::TcpStream, SocketAddr)>, bool),
    Moved(Option<Rebind>),
    Stop,
}

/// Starts one worker thread per listener.
pub fn spawn_workers(
    listeners: Vec<WorkerSockets>,
    shared: Arc<ArcSwap<RuntimeState>>,
    shutdown: watch::Receiver<bool>,
    settings: Arc<WorkerSettings>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let (shared, shutdown, settings) = (shared.clone(), shutdown.clone(), settings.clone());
        // Built here, before the server reports itself started: a runtime that cannot be
        // made (no descriptors left) fails the start instead of leaving a port half served.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let t = std::thread::Builder::new().name(format!("gatehouse-worker-{i}")).spawn(move || {
            rt.block_on(worker(i, l, shared, shutdown, settings));
        })?;
        threads.push(t);
    }
    Ok(threads)
}

async fn worker(
    index: usize,
    sockets: WorkerSockets,
    shared: Arc<ArcSwap<RuntimeState>>,
    mut shutdown: watch::Receiver<bool>,
    settings: Arc<WorkerSettings>,
) {
    #[cfg(feature = "http3")]
    if let Some((udp, cfg, resolver)) = sockets.h3 {
        tokio::spawn(crate::http3::serve(udp, cfg, shared.clone(), resolver, settings.sink.clone(), shutdown.clone()));
    }
    let registered = tokio::net::TcpListener::from_std(sockets.http)
        .and_then(|http| Ok((http, sockets.https.map(tokio::net::TcpListener::from_std).transpose()?)));
    let mut rebind = sockets.rebind;
    let (mut listener, mut https) = match registered {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register listener");
            return;
        }
    };
    // HTTP/1.1 is served by Gatehouse's own loop (`http/server.rs`); hyper gets what it
    // hands over: HTTP/1.1 connections from their first request with a body, upgrade or
    // `Expect` on (http1 builder), and HTTP/2 (auto builder). One set of builders per
    // worker, shared by its connections; both get the same HTTP/1 settings.
    let header_read = settings.server.header_read_timeout;
    let buf_size = settings.max_header_bytes.max(16 * 1024) + 16 * 1024;
    // `keepalive_timeout: 0` turns keep-alive off, as in nginx: HTTP/1.1 answers with
    // `Connection: close`, HTTP/2 gets GOAWAY once its streams are done.
    let keep_alive = !settings.server.keepalive_timeout.is_zero();
    // hyper's own head timer would also run while the connection is idle (one timer for
    // both); `Streams` times the two apart, as the own loop does.
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new()).header_read_timeout(None).max_buf_size(buf_size).keep_alive(keep_alive);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .max_buf_size(buf_size)
        .keep_alive(keep_alive);
    // PINGs only find dead peers; idle connections are closed by the idle timer in `serve`.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(settings.server.h2_ping_interval)
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    let limits = Limits {
        first: header_read,
        idle: settings.server.keepalive_timeout,
        send: settings.server.send_timeout,
        head: header_read,
    };
    let fast = server::Settings {
        header_read,
        idle: settings.server.keepalive_timeout,
        send: settings.server.send_timeout,
        max_head: buf_size,
    };
    let serving = Arc::new(Serving {
        shared: shared.clone(),
        fast,
        hyper: Hyper { h1, auto: builder, limits },
        stop: shutdown.clone(),
    });
    // Each connection task holds a sender; when all are gone, every connection has ended.
    let (alive, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let admission = settings.admission.clone();
    let proxy_from = settings.server.proxy_protocol.clone();
    let counted = settings.connections.slot(index);

    // Idle upstream connections past their time are closed in the background too, not only
    // when the next checkout finds them.
    let pruner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            pool::prune();
        }
    });

    // After a burst the memory its requests used is free but stays cached by the allocator
    // (mimalloc returns pages to the system on later allocations, which a quiet worker does
    // not make). Once the worker has taken on no work for a second, it is released.
    let releaser = settings.release_memory.map(|release| tokio::spawn(crate::http::spare::release_when_quiet(release)));

    loop {
        // At `server.max_connections` the worker stops accepting until a connection ends:
        // new ones wait in the kernel's queue.
        tokio::select! {
            _ = admission.wait_for_room() => {}
            _ = shutdown.changed() => break,
        }
        let next = tokio::select! {
            r = listener.accept() => Next::Accepted(r, false),
            r = accept_maybe(https.as_ref()) => Next::Accepted(r, true),
            r = rebind.recv(), if !rebind.is_closed() => Next::Moved(r),
            _ = shutdown.changed() => Next::Stop,
        };
        let (accepted, secure) = match next {
            Next::Accepted(r, secure) => (r, secure),
            Next::Moved(Some(Rebind::Http(l))) => {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => listener = l,
                    Err(e) => tracing::error!(error = %e, "cannot register the moved HTTP listener; the old one stays"),
                }
                continue;
            }
            Next::Moved(Some(Rebind::Https(l))) => {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => https = Some(l),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot register the moved HTTPS listener; the old one stays")
                    }
                }
                continue;
            }
            Next::Moved(None) => continue,
            Next::Stop => break,
        };
        let (stream, peer) = match accepted {
            // On a dual-stack listener (`[::]`), an IPv4 client arrives as `::ffff:a.b.c.d`:
            // logs, bans, allow/deny lists and limits see it as the IPv4 address it is.
            Ok((stream, peer)) => (stream, SocketAddr::new(peer.ip().to_canonical(), peer.port())),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = tokio::select! {
            s = admission.room() => s,
            _ = shutdown.changed() => break,
        };
        // A load balancer's connection says whose it is in a PROXY header, read in the
        // connection's task; the per-address limit then counts that address.
        let balanced = !proxy_from.is_empty() && crate::http::header::is_trusted(peer.ip(), &proxy_from);
        let (permit, slot) = if balanced {
            (None, slot)
        } else if closes_banned(&serving, peer.ip()) {
            continue;
        } else {
            match admission.admit(peer.ip(), slot) {
                Some(ticket) => (Some(ticket), None),
                None => {
                    // Closed unanswered, before TLS: one address must not take every place.
                    tracing::debug!(peer = %peer, "connections per address at the limit; closing the new one");
                    continue;
                }
            }
        };
        crate::http::spare::touch();
        let _ = stream.set_nodelay(true);
        let peer_value =
            http::HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(http::HeaderValue::from_static("unknown"));
        let info = ConnInfo {
            peer,
            peer_value,
            proto: "http",
            framing: Arc::new(Flags::default()),
            tls: None,
            challenges: settings.challenges.clone(),
            own_http1: true,
            sink: settings.sink.clone(),
        };
        let (serving, alive) = (serving.clone(), alive.clone());
        let tls = if secure { settings.tls.clone() } else { None };
        let admission = admission.clone();
        let open = counted.open();
        tokio::spawn(async move {
            let _permit = permit;
            let _alive = alive;
            let _open = open;
            let _ends = crate::http::spare::Ends;
            let tls = tls.map(|(acceptor, resolver)| Tls { acceptor, resolver, header_read });
            if balanced {
                let behind = Balanced { admission, slot, header_read };
                Box::pin(serve_balanced(stream, behind, tls, info, &serving)).await;
                return;
            }
            match tls {
                None => serve(stream, false, info, &serving).await,
                // Boxed: a plain connection's future must not carry the size of the TLS
                // handshake and stream (the two branches would share one state layout).
                Some(tls) => Box::pin(serve_tls(stream, tls, info, &serving)).await,
            }
        });
    }
    drop(listener);
    drop(https);
    drop(alive);
    pruner.abort();
    if let Some(r) = releaser {
        r.abort();
    }
    tokio::select! {
        _ = all_done.recv() => {}
        _ = tokio::time::sleep(settings.shutdown_timeout) => {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
        }
    }
}

/// With `server.close_banned`, whether `ip` is banned: its connection is then closed
/// unanswered, before TLS. One atomic load while nobody is banned.
fn closes_banned(serving: &Serving, ip: std::net::IpAddr) -> bool {
    let state = serving.shared.load();
    let banned =
        state.config.server.close_banned && state.shared.bans.check(ip, std::time::SystemTime::now()).is_some();
    if banned {
        tracing::debug!(peer = %ip, "banned address; connection closed at accept");
    }
    banned
}

/// What a TLS connection needs beyond a plain one.
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<crate::tls::Resolver>,
    /// The handshake must be over within the header-read time.
    header_read: Duration,
}

/// What a connection from a load balancer (`server.proxy_protocol`) needs.
struct Balanced {
    admission: Arc<crate::admission::Admission>,
    /// Its place under `server.max_connections`, taken at accept.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The PROXY header must arrive within the header-read time.
    header_read: Duration,
}

/// Reads the PROXY header (required from these peers), takes the client's address from
/// it, applies the per-address limit to that address, then serves the connection as any
/// other, starting with what followed the header.
async fn serve_balanced(
    mut stream: tokio::net::TcpStream,
    behind: Balanced,
    tls: Option<Tls>,
    mut info: ConnInfo,
    serving: &Serving,
) {
    let (header, rest) = match crate::proxy_protocol::read(&mut stream, behind.header_read).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(peer = %info.peer, error = %e, "connection from a PROXY protocol source refused");
            return;
        }
    };
    if let Some(client) = header.source {
        info.peer = client;
        info.peer_value =
            http::HeaderValue::from_str(&client.ip().to_string()).unwrap_or(http::HeaderValue::from_static("unknown"));
    }
    if closes_banned(serving, info.peer.ip()) {
        return;
    }
    let Some(_ticket) = behind.admission.admit(info.peer.ip(), behind.slot) else {
        tracing::debug!(peer = %info.peer, "connections per address at the limit; closing the new one");
        return;
    };
    let io = Inspected::new(stream, rest, None);
    match tls {
        None => serve(io, false, info, serving).await,
        Some(tls) => serve_tls(io, tls, info, serving).await,
    }
}

/// Completes the TLS handshake (ALPN decides HTTP/2, `acme-tls/1` ends the connection),
/// then serves the connection like a plain one.
async fn serve_tls<S>(stream: S, tls: Tls, mut info: ConnInfo, serving: &Serving)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    // The handshake's state lives in its own allocation, freed when it ends, and the
    // stream (rustls's connection, about 1 KB inline) in another that the connection keeps:
    // neither takes room in this future for the connection's whole life.
    let handshake = Box::pin(async {
        let mut verified_by = None;
        let accepted = if tls.resolver.asks_client_certs() {
            // Some site asks for client certificates: the ClientHello's SNI picks the
            // configuration, so only that site's clients are asked.
            tokio::time::timeout(tls.header_read, async {
                let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
                let sni = start.client_hello().server_name().map(str::to_string);
                let config = match tls.resolver.for_sni(sni.as_deref()) {
                    Some((site, config)) => {
                        verified_by = Some(site);
                        config
                    }
                    None => tls.acceptor.config().clone(),
                };
                start.into_stream(config).await
            })
            .await
        } else {
            tokio::time::timeout(tls.header_read, tls.acceptor.accept(stream)).await
        };
        match accepted {
            Ok(Ok(s)) => Some((Box::new(s), verified_by)),
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => None,
        }
    });
    let Some((stream, verified_by)) = handshake.await else { return };
    let (_, session) = stream.get_ref();
    if session.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
        // A TLS-ALPN-01 validation ends with the handshake.
        return;
    }
    let h2 = session.alpn_protocol() == Some(b"h2");
    let sni = session.server_name().map(|s| s.to_ascii_lowercase());
    // Only the sites' configurations ask for certificates, so one here was verified by
    // the CAs of the site the SNI named.
    let client = verified_by.and_then(|site| {
        let (subject, cn) = session.peer_certificates()?.first().and_then(crate::client_auth::subject)?;
        Some(crate::conn::ClientCert { site, subject, cn })
    });
    info.proto = "https";
    info.tls = Some(Arc::new(TlsInfo { sni, client, resolver: tls.resolver }));
    serve(stream, h2, info, serving).await;
}

/// Serves a connection until it ends, shutdown is signalled (the in-flight requests
/// finish, then it closes: GOAWAY on HTTP/2) or `Streams` says it should end. A macro
/// because hyper's two connection types share `graceful_shutdown` but no trait.
macro_rules! serve_watched {
    ($conn:expr, $stop:expr, $streams:expr, $limits:expr) => {{
        let mut conn = std::pin::pin!($conn);
        let mut stop = $stop;
        let (streams, limits) = ($streams, $limits);
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = tokio::select! {
            r = conn.as_mut() => r.map_err(Into::into),
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await.map_err(Into::into)
            }
            end = streams.end(limits) => match end {
                // Closed gracefully (GOAWAY on HTTP/2). Requests the client sent before it
                // saw the GOAWAY are still served; the connection then ends like any other,
                // but sooner: after the header-read time with nothing in flight, or at a stall.
                End::Idle => {
                    conn.as_mut().graceful_shutdown();
                    let after = Limits { idle: limits.first, ..limits };
                    tokio::select! {
                        r = conn.as_mut() => r.map_err(Into::into),
                        _ = streams.end(after) => Ok(()),
                    }
                }
                // The client takes nothing, or sends a head too slowly: dropping the
                // connection closes it.
                End::Stalled => {
                    tracing::debug!("client took no response data within send_timeout; closing");
                    Ok(())
                }
                End::SlowHead => {
                    tracing::debug!("request head not complete within header_read_timeout; closing");
                    Ok(())
                }
            },
        };
        result
    }};
}

/// What every connection of a worker is served with.
struct Serving {
    shared: Arc<ArcSwap<RuntimeState>>,
    /// The own HTTP/1.1 loop's settings.
    fast: server::Settings,
    hyper: Hyper,
    /// Shutdown: each connection watches its own clone.
    stop: watch::Receiver<bool>,
}

/// hyper's servers, for the connections and requests the HTTP/1.1 loop hands over.
struct Hyper {
    h1: hyper::server::conn::http1::Builder,
    auto: auto::Builder<TokioExecutor>,
    /// When an HTTP/2 connection ends (`http::streams`).
    limits: Limits,
}

/// Serves one client connection: HTTP/1.1 in `server`'s own loop until (if ever) it hands
/// the connection to hyper; HTTP/2 (ALPN `h2` or the prior-knowledge preface) in hyper.
async fn serve<S>(io: S, alpn_h2: bool, info: ConnInfo, serving: &Serving)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, read, h2) = if alpn_h2 {
        (io, Bytes::new(), true)
    } else {
        match server::serve(io, &info, &serving.shared, &serving.fast, serving.stop.clone()).await {
            server::Outcome::Closed => return,
            server::Outcome::HandOff { io, read, h2 } => (io, read, h2),
        }
    };
    // Boxed, behind `dyn`: hyper's connection futures are large and most connections never
    // get here; inline (or inlined into this poll) they would make every connection's
    // future, and each of its polls, bigger.
    let rest: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> =
        Box::pin(serve_hyper(io, read, h2, info, serving));
    rest.await;
}

/// Serves the rest of a connection in hyper: HTTP/2, or HTTP/1.1 after the hand-off.
async fn serve_hyper<S>(io: S, read: Bytes, h2: bool, info: ConnInfo, serving: &Serving)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let framing = info.framing.clone();
    let (peer, peer_sink) = (info.peer, info.sink.clone());
    let (shared, hyper, stop) = (serving.shared.clone(), &serving.hyper, serving.stop.clone());
    let info = ConnInfo { own_http1: false, ..info };
    let streams = Streams::new();
    let counted = streams.clone();
    let svc = service_fn(move |req| {
        let state = shared.load_full();
        let info = info.clone();
        let in_flight = InFlight::new(&counted);
        async move {
            let resp = handle(&state, &info, req.map(Inbound::Hyper)).await;
            Ok::<_, Infallible>(resp.map(|body| in_flight.respond(body)))
        }
    });
    let limits = hyper.limits;
    let result = if h2 {
        let io = TokioIo::new(Inspected::new(io, read, None));
        serve_watched!(hyper.auto.serve_connection_with_upgrades(io, svc), stop, &streams, limits)
    } else {
        // hyper resolves Content-Length + Transfer-Encoding silently; the scanner sees it.
        let io = TokioIo::new(Inspected::new(io, read, Some(framing)).watched(streams.clone()));
        serve_watched!(hyper.h1.serve_connection(io, svc).with_upgrades(), stop, &streams, limits)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
        // hyper answered a malformed request itself, without asking the pipeline: the
        // record is written here.
        if let (Some(sink), Some(status)) = (&peer_sink, own_answer(e.as_ref())) {
            sink.record(crate::observe::AccessRecord::early(peer.ip(), status, &e.to_string()));
        }
    }
}

/// The status hyper's HTTP/1 server sends when it refuses a request head on its own
/// (its `on_error`: 400 for a bad method, URI, version or field, 431 for a head too large,
/// 414 for a URI too long; other parse errors close without an answer). hyper's public API
/// tells "too large" from "too long" only through the message.
fn own_answer(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if !e.is_parse() {
        return None;
    }
    let text = e.to_string();
    if e.is_parse_too_large() {
        Some(if text.contains("URI too long") { 414 } else { 431 })
    } else if text.contains("HTTP2 preface") || text.contains("status-code") || text.contains("internal error") {
        None
    } else {
        Some(400)
    }
}

/// Accepts on the HTTPS listener when there is one; otherwise never resolves.
async fn accept_maybe(l: Option<&tokio::net::TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}
