//! Streams: L4 listeners (`streams` in the main file or a site file), validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::{CertPair, HostPattern, Upstream, UpstreamTls};

/// What a stream speaks before its TLS handshake, and so how TLS is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamProtocol {
    /// Bytes as they come; with `tls`, TLS from the first byte (implicit TLS). The
    /// implicit-TLS protocol names (`redis`, `mongodb`, `smtps`…) are this.
    Generic,
    /// SSLRequest (and PostgreSQL 17's direct TLS).
    Postgres,
    /// MySQL/MariaDB: CLIENT_SSL in the greeting, the SSL request packet.
    Mysql,
    /// STARTTLS (RFC 3207).
    Smtp,
    /// STARTTLS (RFC 9051).
    Imap,
    /// STLS (RFC 2595).
    Pop3,
    /// The server's INFO rewritten to require TLS.
    Nats,
    /// The StartTLS extended operation (RFC 4511).
    Ldap,
    /// AUTH TLS (RFC 4217), with passive data connections proxied.
    Ftp,
}

impl StreamProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamProtocol::Generic => "generic",
            StreamProtocol::Postgres => "postgres",
            StreamProtocol::Mysql => "mysql",
            StreamProtocol::Smtp => "smtp",
            StreamProtocol::Imap => "imap",
            StreamProtocol::Pop3 => "pop3",
            StreamProtocol::Nats => "nats",
            StreamProtocol::Ldap => "ldap",
            StreamProtocol::Ftp => "ftp",
        }
    }
}

/// Which version of the PROXY header to send to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// The certificate a stream terminates TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTls {
    /// Its own pair (`tls.cert`, `tls.key`); otherwise the shared store by SNI.
    pub pair: Option<CertPair>,
    /// Names looked up in the shared store (`cert_dir`, ACME, sites' pairs) when the client
    /// sends no SNI, and the names ACME should cover for this stream.
    pub hosts: Vec<String>,
    /// Clients that do not start TLS are refused.
    pub required: bool,
}

/// Backends chosen by the client's SNI.
#[derive(Debug, Clone)]
pub struct SniRoute {
    pub hosts: Vec<HostPattern>,
    pub upstream: Arc<Upstream>,
    /// Forward the client's TLS bytes untouched.
    pub passthrough: bool,
    pub backend_tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub name: String,
    /// The file it was written in.
    pub file: PathBuf,
    pub listen: SocketAddr,
    pub protocol: StreamProtocol,
    pub tls: Option<StreamTls>,
    /// The backends when no SNI route matches (`None`: such a client is refused).
    pub upstream: Option<Arc<Upstream>>,
    /// TLS towards `upstream`'s backends (verified re-encryption).
    pub backend_tls: Option<UpstreamTls>,
    pub routes: Vec<SniRoute>,
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    pub max_duration: Option<Duration>,
    /// The client's part before data flows: PROXY header, STARTTLS dialogue, TLS handshake.
    pub handshake_timeout: Duration,
    /// 0 = unlimited.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Empty = everyone not denied.
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub proxy_from: Vec<IpNet>,
    pub send_proxy: Option<ProxyVersion>,
}

impl Stream {
    /// Every upstream this stream may connect to.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstream.iter().chain(self.routes.iter().map(|r| &r.upstream))
    }
}
