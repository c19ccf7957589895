//! `streams`: L4 listeners, from the main file and site files. Every stream is checked on
//! its own here; names and listen addresses are checked across all of them (and against
//! the other listeners) once every file is read (`check_streams`).

use super::*;

/// Protocol names that mean TLS from the first byte (implicit TLS): the proxy needs to
/// know nothing more about them than a generic stream.
const IMPLICIT: &[&str] = &[
    "generic",
    "tcp",
    "tls",
    "redis",
    "mongodb",
    "amqp",
    "kafka",
    "memcached",
    "cassandra",
    "elasticsearch",
    "mqtt",
    "smtps",
    "imaps",
    "pop3s",
    "ldaps",
];

/// Protocols this version cannot terminate yet: refused, rather than proxied in a way the
/// administrator did not ask for.
const NOT_YET: &[(&str, &str)] = &[(
    "mssql",
    "SQL Server's TLS inside TDS PRELOGIN is not supported; with TDS 8.0 (strict encryption) use protocol generic",
)];

fn protocol(cx: &mut Ctx<'_>, v: Option<&S<String>>, at: &str) -> StreamProtocol {
    let Some(v) = v else { return StreamProtocol::Generic };
    let name = v.value.trim().to_ascii_lowercase();
    match name.as_str() {
        "postgres" | "postgresql" => StreamProtocol::Postgres,
        "mysql" | "mariadb" => StreamProtocol::Mysql,
        "smtp" => StreamProtocol::Smtp,
        "imap" => StreamProtocol::Imap,
        "pop3" => StreamProtocol::Pop3,
        "nats" => StreamProtocol::Nats,
        "ldap" => StreamProtocol::Ldap,
        "ftp" => StreamProtocol::Ftp,
        n if IMPLICIT.contains(&n) => StreamProtocol::Generic,
        n => {
            if let Some((_, why)) = NOT_YET.iter().find(|(p, _)| *p == n) {
                cx.err_at(v, at, *why);
            } else {
                let known = ["postgres", "mysql", "smtp", "imap", "pop3", "nats", "ldap", "ftp"]
                    .into_iter()
                    .chain(IMPLICIT.iter().copied());
                let hint = nearest(n, known.clone()).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                let list: Vec<&str> = known.collect();
                cx.err_at(v, at, format!("unknown protocol {n:?}{hint}; expected one of {}", list.join(", ")));
            }
            StreamProtocol::Generic
        }
    }
}

/// `host:port`, `[v6]:port` or `unix:/path`, each optionally followed by ` weight=N`.
fn backend(spec: &str) -> Result<Backend, String> {
    let first = spec.split_whitespace().next().unwrap_or("");
    if first.contains("://") {
        return Err(format!("a stream backend is an address (host:port or unix:/path), not a URL: {first:?}"));
    }
    let url = if first.starts_with("unix:") { spec.to_string() } else { format!("http://{}", spec.trim()) };
    let b = parse_backend(&url).map_err(|e| e.replace("http://", "").replace("backend URL", "backend address"))?;
    if let BackendAddr::Tcp { .. } = b.addr
        && split_host_port(first).and_then(|(_, p)| p).is_none()
    {
        return Err(format!("stream backend {first:?} needs a port (host:port)"));
    }
    Ok(b)
}

fn upstream_tls(cx: &mut Ctx<'_>, base: &Path, t: &raw::UpstreamTls, at: &str, origin: &str) -> UpstreamTls {
    let mut tls = UpstreamTls::default();
    if let Some(ca) = &t.ca {
        let p = base.join(ca.value.trim());
        match crate::file::check_regular(&p) {
            Ok(_) => tls.ca = Some(p),
            Err(e) => cx.err_at(ca, format!("{at}.ca"), format!("cannot read {}: {e}", p.display())),
        }
    }
    tls.client = cert_pair(cx, base, t.cert.as_ref(), t.key.as_ref(), at, origin);
    tls.server_name = t.server_name.as_ref().map(|n| n.value.trim().to_string());
    tls
}

/// What every upstream of a stream shares.
struct Common {
    balance: Balance,
    health: Option<HealthCheck>,
    breaker: Option<CircuitBreaker>,
}

impl Common {
    fn upstream(&self, id: String, backends: Vec<Backend>) -> Arc<Upstream> {
        let key =
            format!("{id}:{}:{:?}:{:?}:{:?}", backend_list_key(&backends), self.balance, self.health, self.breaker);
        Arc::new(Upstream {
            key,
            id,
            backends,
            balance: self.balance.clone(),
            pool: PoolSettings::default(),
            health: self.health.clone(),
            passive: None,
            retries: None,
            breaker: self.breaker.clone(),
            service: None,
        })
    }
}

/// One stream, checked on its own; `None` when it has errors (they are reported).
pub(super) fn stream(cx: &mut Ctx<'_>, base: &Path, s: raw::Stream, at: &str, https: bool) -> Option<(Stream, u64)> {
    let before = cx.errors.0.len();
    let line = s.name.referenced.line();
    let name = s.name.value.trim().to_string();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        cx.err_at(
            &s.name,
            format!("{at}.name"),
            "a stream name is letters, digits, - and _ (it labels metrics and logs)",
        );
    }
    let listen_text = s.listen.value.trim();
    let listen_text =
        if listen_text.starts_with(':') { format!("0.0.0.0{listen_text}") } else { listen_text.to_string() };
    let listen = SocketAddr::from_str(&listen_text).unwrap_or_else(|_| {
        cx.err_at(
            &s.listen,
            format!("{at}.listen"),
            format!("expected an address like 127.0.0.1:15432 or [::1]:15432, got {:?}", s.listen.value),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    let protocol = protocol(cx, s.protocol.as_ref(), &format!("{at}.protocol"));
    let origin = format!("stream:{name}");
    let tls = s.tls.as_ref().map(|t| {
        let pair = cert_pair(cx, base, t.cert.as_ref(), t.key.as_ref(), &format!("{at}.tls"), &origin);
        let mut hosts = Vec::new();
        for (i, h) in t.hosts.iter().flatten().enumerate() {
            match parse_host(&h.value) {
                Ok(HostPattern::Exact(n)) => hosts.push(n),
                _ => cx.err_at(
                    h,
                    format!("{at}.tls.hosts[{i}]"),
                    format!("expected a host name (no wildcard), got {:?}", h.value),
                ),
            }
        }
        let required = cx.flag(t.required.as_ref(), &format!("{at}.tls.required"), true);
        if pair.is_none() && hosts.is_empty() && t.cert.is_none() && t.key.is_none() {
            cx.err(
                Some(line),
                format!("{at}.tls"),
                "give the certificate: cert and key, or hosts (names whose certificate tls.cert_dir or ACME provides)",
            );
        }
        if pair.is_none() && !hosts.is_empty() && !https {
            cx.err(
                Some(line),
                format!("{at}.tls.hosts"),
                "certificates by host name come from the shared store, which needs listen.https; or give cert and key",
            );
        }
        if !required
            && matches!(protocol, StreamProtocol::Smtp | StreamProtocol::Imap | StreamProtocol::Pop3)
            && let Some(v) = &t.required
        {
            cx.err_at(
                v,
                format!("{at}.tls.required"),
                "this protocol is always required to start TLS here (mail: Gatehouse answers the plaintext part itself; NATS: the INFO it sends requires TLS)",
            );
        }
        StreamTls { pair, hosts, required }
    });
    if tls.is_none() && protocol != StreamProtocol::Generic {
        cx.err(
            Some(line),
            format!("{at}.protocol"),
            format!(
                "protocol {} terminates TLS: add tls (cert and key), or use protocol generic for plain TCP",
                protocol.as_str()
            ),
        );
    }
    let balance = match &s.load_balancing {
        Some(b) => parse_balance(
            cx,
            b,
            &format!("{at}.load_balancing"),
            Balance { algorithm: Algorithm::RoundRobin, hash_key: HashKey::ClientIp },
        ),
        None => Balance { algorithm: Algorithm::RoundRobin, hash_key: HashKey::ClientIp },
    };
    if !matches!(balance.hash_key, HashKey::ClientIp)
        && let Some(k) = s.load_balancing.as_ref().and_then(|b| b.hash_key.as_ref())
    {
        cx.err_at(
            k,
            format!("{at}.load_balancing.hash_key"),
            "a stream has no headers or cookies: it hashes the client address",
        );
    }
    let health = s.health_check.as_ref().and_then(|h| {
        let mut check = super::resilience::health_check(cx, h, &format!("{at}.health_check"))?;
        // A stream's backends are checked by connecting, unless HTTP is asked for (by
        // `type: http`, or by giving what an HTTP check sends or expects).
        let http_keys = [&h.path, &h.method, &h.host, &h.expect_status, &h.expect_body];
        if h.kind.is_none() && http_keys.iter().all(|k| k.is_none()) {
            check.http = None;
        }
        Some(check)
    });
    let breaker = s
        .circuit_breaker
        .as_ref()
        .and_then(|c| super::resilience::circuit_breaker(cx, c, &format!("{at}.circuit_breaker")));
    let common = Common { balance, health, breaker };
    let main_backends = parse_backends_with(cx, &s.backends, &format!("{at}.backends"), backend);
    let upstream = (!main_backends.is_empty()).then(|| common.upstream(origin.clone(), main_backends));
    let backend_tls = s.backend_tls.as_ref().map(|t| upstream_tls(cx, base, t, &format!("{at}.backend_tls"), &origin));
    let mut routes = Vec::new();
    for (i, r) in s.routes.iter().flatten().enumerate() {
        let rat = format!("{at}.routes[{i}]");
        let mut hosts = Vec::new();
        for (j, h) in r.sni.iter().enumerate() {
            match parse_host(&h.value) {
                Ok(p) => hosts.push(p),
                Err(e) => cx.err_at(h, format!("{rat}.sni[{j}]"), e),
            }
        }
        if r.sni.is_empty() {
            cx.err(Some(line), format!("{rat}.sni"), "a route needs at least one name (\"*\" for any)");
        }
        let list = parse_backends_with(cx, &r.backends, &format!("{rat}.backends"), backend);
        if r.backends.is_empty() {
            cx.err(Some(line), format!("{rat}.backends"), "a route needs backends");
        }
        let passthrough = cx.flag(r.passthrough.as_ref(), &format!("{rat}.passthrough"), false);
        let rtls = r.backend_tls.as_ref().map(|t| upstream_tls(cx, base, t, &format!("{rat}.backend_tls"), &origin));
        if passthrough && rtls.is_some() {
            cx.err(
                Some(line),
                format!("{rat}.backend_tls"),
                "a passthrough route forwards the client's own TLS: it cannot re-encrypt",
            );
        }
        if !passthrough && tls.is_none() {
            cx.err(
                Some(line),
                format!("{rat}.passthrough"),
                "this route terminates TLS, which needs the stream's tls (or passthrough: true)",
            );
        }
        routes.push(SniRoute {
            hosts,
            upstream: common.upstream(format!("{origin}/routes[{i}]"), list),
            passthrough,
            backend_tls: rtls,
        });
    }
    if protocol == StreamProtocol::Ftp && backend_tls.is_some() {
        cx.err(Some(line), format!("{at}.backend_tls"), "FTP re-encryption is not supported (data connections would need TLS to the backend too): the backend leg is plain");
    }
    if !routes.is_empty() && protocol != StreamProtocol::Generic {
        cx.err(
            Some(line),
            format!("{at}.routes"),
            "SNI routes need TLS from the first byte: use protocol generic (or an implicit-TLS name)",
        );
    }
    // (A list of only bad entries has its errors already.)
    if s.backends.is_empty() && s.routes.as_ref().is_none_or(Vec::is_empty) {
        cx.err(Some(line), format!("{at}.backends"), "a stream needs backends (or SNI routes)");
    }
    let connect_timeout =
        cx.timeout(s.connect_timeout.as_ref(), &format!("{at}.connect_timeout"), Duration::from_secs(5));
    let idle_timeout = cx.timeout(s.idle_timeout.as_ref(), &format!("{at}.idle_timeout"), Duration::from_secs(600));
    let handshake_timeout =
        cx.timeout(s.handshake_timeout.as_ref(), &format!("{at}.handshake_timeout"), Duration::from_secs(10));
    let max_duration = match &s.max_duration {
        Some(v) if matches!(v.value.trim(), "0" | "off" | "none") => None,
        Some(v) => Some(cx.timeout(Some(v), &format!("{at}.max_duration"), Duration::from_secs(3600))),
        None => None,
    };
    let max_connections = cx.count(s.max_connections.as_ref(), &format!("{at}.max_connections"), 0, MAX_CONNECTIONS);
    let max_connections_per_ip =
        cx.count(s.max_connections_per_ip.as_ref(), &format!("{at}.max_connections_per_ip"), 0, MAX_CONNECTIONS);
    let allow = super::access::nets(cx, s.allow.as_deref(), &format!("{at}.allow"));
    let deny = super::access::nets(cx, s.deny.as_deref(), &format!("{at}.deny"));
    if s.allow.as_ref().is_some_and(Vec::is_empty) {
        cx.err(Some(line), format!("{at}.allow"), "an empty allow list would refuse everyone; remove it to allow all");
    }
    let pp = s.proxy_protocol.unwrap_or_default();
    let proxy_from = super::access::nets(cx, pp.accept_from.as_deref(), &format!("{at}.proxy_protocol.accept_from"));
    let send_proxy = pp.send.as_ref().and_then(|v| match v.value.trim() {
        "v1" | "1" => Some(ProxyVersion::V1),
        "v2" | "2" => Some(ProxyVersion::V2),
        "off" | "none" => None,
        other => {
            cx.err_at(v, format!("{at}.proxy_protocol.send"), format!("expected v1 or v2, got {other:?}"));
            None
        }
    });
    if cx.errors.0.len() > before {
        return None;
    }
    let file = cx.file.to_path_buf();
    let stream = Stream {
        name,
        file,
        listen,
        protocol,
        tls,
        upstream,
        backend_tls,
        routes,
        connect_timeout,
        idle_timeout,
        max_duration,
        handshake_timeout,
        max_connections,
        max_connections_per_ip,
        allow,
        deny,
        proxy_from,
        send_proxy,
    };
    Some((stream, line))
}

/// Names are unique, and no two listeners (streams, HTTP, HTTPS, admin, registry) share
/// an address.
pub(super) fn check_streams(streams: &[(Stream, u64)], taken: &[(&str, SocketAddr)], errors: &mut Errors) {
    let overlaps = |a: SocketAddr, b: SocketAddr| {
        a.port() != 0
            && a.port() == b.port()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    for (i, (s, line)) in streams.iter().enumerate() {
        let mut push = |msg: String| errors.push(Error::new(&s.file, Some(*line), "streams", msg));
        if let Some((first, _)) = streams[..i].iter().find(|(o, _)| o.name == s.name) {
            push(format!("stream name {:?} is also used in {}", s.name, first.file.display()));
        }
        if let Some((other, _)) = streams[..i].iter().find(|(o, _)| overlaps(o.listen, s.listen)) {
            push(format!("{} is also the listen address of stream {:?}", s.listen, other.name));
        }
        if let Some((what, _)) = taken.iter().find(|(_, a)| overlaps(*a, s.listen)) {
            push(format!("stream {:?} listens on {}, which is also {what}", s.name, s.listen));
        }
    }
}
