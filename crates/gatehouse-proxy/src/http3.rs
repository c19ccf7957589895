//! HTTP/3 (quinn + h3) on the HTTPS port, over UDP. Requests enter exactly the same
//! pipeline as HTTP/1 and HTTP/2 (`http::handle`); this module only translates streams.
//!
//! h3 is a 0.0.x crate: everything that touches its API stays in this module. One QUIC
//! endpoint runs on the first worker (QUIC connections are tied to one UDP socket, and
//! several SO_REUSEPORT sockets would split a connection's datagrams after a client's
//! address changes).

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Buf, Bytes};
use http::{HeaderValue, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::watch;

use crate::body::{BoxError, Inbound, Outgoing};
use crate::conn::{ConnInfo, TlsInfo};
use crate::http::framing::Flags;
use crate::pipeline::handle;
use crate::state::RuntimeState;
use crate::tls::Resolver;

/// QUIC/TLS 1.3 settings with the same certificates as the HTTPS listener, ALPN `h3`.
pub fn server_config(resolver: Arc<Resolver>) -> Result<quinn::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// Accepts QUIC connections until shutdown.
pub async fn serve(
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
    shared: Arc<ArcSwap<RuntimeState>>,
    resolver: Arc<Resolver>,
    sink: Option<Arc<dyn crate::observe::LogSink>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let endpoint = match quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "HTTP/3 endpoint failed to start");
            return;
        }
    };
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        let (shared, resolver, sink) = (shared.clone(), resolver.clone(), sink.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(incoming, shared, resolver, sink).await {
                tracing::debug!(error = %e, "HTTP/3 connection ended");
            }
        });
    }
    // Tell clients to go away; in-flight streams get the QUIC close.
    endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
    endpoint.wait_idle().await;
}

async fn connection(
    incoming: quinn::Incoming,
    shared: Arc<ArcSwap<RuntimeState>>,
    resolver: Arc<Resolver>,
    sink: Option<Arc<dyn crate::observe::LogSink>>,
) -> Result<(), BoxError> {
    let conn = incoming.await?;
    // IPv4 clients of a dual-stack (`[::]`) endpoint as IPv4, as on TCP.
    let peer = conn.remote_address();
    let peer = std::net::SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let sni = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.server_name.map(|s| s.to_ascii_lowercase()));
    let info = ConnInfo {
        peer,
        peer_value: HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown")),
        proto: "https",
        framing: Arc::new(Flags::default()),
        tls: Some(Arc::new(TlsInfo { sni, client: None, resolver })),
        challenges: None,
        own_http1: false,
        sink,
    };
    let mut h3 = h3::server::builder().build::<_, Bytes>(h3_quinn::Connection::new(conn)).await?;
    while let Some(resolver) = h3.accept().await? {
        let (info, shared) = (info.clone(), shared.clone());
        tokio::spawn(async move {
            if let Err(e) = request(resolver, info, shared).await {
                tracing::debug!(error = %e, "HTTP/3 request failed");
            }
        });
    }
    Ok(())
}

type Resolving = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;

async fn request(resolver: Resolving, info: ConnInfo, shared: Arc<ArcSwap<RuntimeState>>) -> Result<(), BoxError> {
    let (req, stream) = resolver.resolve_request().await?;
    let (mut send, mut recv) = stream.split();
    // Read the first chunk now: a request that ends with its headers (every GET) then enters
    // the pipeline as bodiless, like on HTTP/1 and HTTP/2.
    let body = match recv.recv_data().await? {
        None => Inbound::Empty,
        Some(mut first) => {
            let first = first.copy_to_bytes(first.remaining());
            let rest = futures_util::stream::unfold(Some(recv), |state| async move {
                let mut recv = state?;
                match recv.recv_data().await {
                    Ok(Some(mut buf)) => Some((Ok(Frame::data(buf.copy_to_bytes(buf.remaining()))), Some(recv))),
                    Ok(None) => match recv.recv_trailers().await {
                        Ok(Some(t)) => Some((Ok(Frame::trailers(t)), None)),
                        Ok(None) => None,
                        Err(e) => Some((Err(Box::new(e) as BoxError), None)),
                    },
                    Err(e) => Some((Err(Box::new(e) as BoxError), None)),
                }
            });
            // Fused: a body may be polled again after its end (a reader that read ahead
            // does), and `unfold` must not be.
            let all = futures_util::StreamExt::fuse(futures_util::StreamExt::chain(
                futures_util::stream::once(async move { Ok(Frame::data(first)) }),
                rest,
            ));
            Inbound::Other(http_body_util::StreamBody::new(all).boxed_unsync())
        }
    };
    let resp = handle(&shared.load_full(), &info, req.map(|()| body)).await;
    let (parts, mut body): (_, Outgoing) = resp.into_parts();
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    send.finish().await?;
    Ok(())
}
