//! What the pipeline knows about a client connection: peer address, protocol, TLS
//! details, the framing scanner's findings. Filled by the listener (or the HTTP/3 endpoint)
//! once per connection; read by every request on it. Must not hold per-request state.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

/// What the listener knows about the client connection.
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub proto: &'static str,
    /// The peer address as a header value, formatted once per connection.
    pub peer_value: HeaderValue,
    /// What the raw-byte scanner found on this connection (HTTP/1.1 smuggling guard).
    pub framing: Arc<crate::http::framing::Flags>,
    /// Set on HTTPS connections.
    pub tls: Option<Arc<TlsInfo>>,
    /// Pending ACME challenges (HTTP-01 answers).
    pub challenges: Option<Arc<crate::tls::Challenges>>,
    /// Responses go out through the own HTTP/1.1 loop (`server`), which writes the head
    /// itself and so can take a backend's fields as lines (`h1::Wanted::verbatim`). False
    /// once hyper serves the connection, and for HTTP/3.
    pub own_http1: bool,
    /// Where access records go; `None` when the access log is off.
    pub sink: Option<Arc<dyn crate::observe::LogSink>>,
}

/// A client certificate verified in the handshake.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The site whose CAs verified it (the one the SNI named): it counts only there.
    pub site: Arc<str>,
    /// Its subject (RFC 4514) and common name.
    pub subject: String,
    pub cn: Option<String>,
}

/// The TLS side of a connection, as far as request handling cares.
#[derive(Debug)]
pub struct TlsInfo {
    /// The SNI the client sent, lower-case.
    pub sni: Option<String>,
    /// A client certificate verified against a site's `tls.client_ca`.
    pub client: Option<ClientCert>,
    pub resolver: Arc<crate::tls::Resolver>,
}
