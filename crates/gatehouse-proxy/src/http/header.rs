//! Header work on the proxy path: hop-by-hop stripping (RFC 9110 §7.6.1), forwarding
//! headers, request ids and configured header rules.

use std::net::IpAddr;

use gatehouse_config::HeaderRules;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
use super::trace::{TRACEPARENT, TRACESTATE};
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// RFC 7540 §3.2.1: connection-specific, sent only with `Upgrade: h2c`.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Header maps for the HTTP/1.1 hot path, kept per thread: a request or response head
/// builds its map in one that earlier traffic already allocated, and the map goes back
/// once the head has been written out. Two maps per proxied request (four allocations and
/// four frees) are spared this way.
pub(crate) mod maps {
    use std::cell::RefCell;

    use http::HeaderMap;

    /// Maps kept per thread, and the largest one worth keeping.
    const KEEP: usize = 256;
    const MAX_CAPACITY: usize = 128;

    thread_local! {
        static FREE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty map with room for at least `n` fields.
    pub fn take(n: usize) -> HeaderMap {
        match FREE.with(|f| f.borrow_mut().pop()) {
            Some(mut m) => {
                m.reserve(n);
                m
            }
            None => HeaderMap::with_capacity(n),
        }
    }

    /// Returns a map that is no longer needed.
    pub fn give(mut m: HeaderMap) {
        if m.capacity() == 0 || m.capacity() > MAX_CAPACITY {
            return;
        }
        m.clear();
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(m);
            }
        });
    }
}

/// Whether a field is hop-by-hop by definition (not counting the ones `Connection` lists).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
        || *name == HTTP2_SETTINGS
}

/// What a response field means to the proxy, told from the name's bytes (so a field that is
/// only passed on needs no `HeaderName`). The hop-by-hop names are the ones `is_hop_by_hop`
/// lists; a unit test keeps the two in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Another hop-by-hop field: `TE`, `Trailer`, `Upgrade`, `Keep-Alive`, `Proxy-Connection`,
    /// `HTTP2-Settings`.
    HopByHop,
    Date,
    /// `X-Request-ID`, which the proxy sets on every response.
    RequestId,
    Other,
}

impl FieldKind {
    pub fn of(name: &[u8]) -> FieldKind {
        let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
        match name.len() {
            2 if is(b"te") => FieldKind::HopByHop,
            4 if is(b"date") => FieldKind::Date,
            7 if is(b"trailer") || is(b"upgrade") => FieldKind::HopByHop,
            10 if is(b"connection") => FieldKind::Connection,
            10 if is(b"keep-alive") => FieldKind::HopByHop,
            12 if is(b"x-request-id") => FieldKind::RequestId,
            14 if is(b"content-length") => FieldKind::ContentLength,
            14 if is(b"http2-settings") => FieldKind::HopByHop,
            16 if is(b"proxy-connection") => FieldKind::HopByHop,
            17 if is(b"transfer-encoding") => FieldKind::TransferEncoding,
            _ => FieldKind::Other,
        }
    }

    pub fn is_hop_by_hop(self) -> bool {
        matches!(self, FieldKind::TransferEncoding | FieldKind::Connection | FieldKind::HopByHop)
    }
}

/// The field names a `Connection` value lists, other than the `close` and `keep-alive`
/// options (RFC 9110 §7.6.1: those fields are hop-by-hop too).
pub fn connection_listed(connection: &[u8]) -> impl Iterator<Item = &[u8]> {
    connection
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"))
}

/// Removes the fields a `Connection` value names (other than `close` and `keep-alive`).
pub fn remove_connection_listed(h: &mut HeaderMap, connection: &[u8]) {
    for token in connection_listed(connection) {
        if let Ok(n) = HeaderName::from_bytes(token) {
            h.remove(n);
        }
    }
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
/// `keep_upgrade` keeps `Upgrade` (and re-adds `Connection: upgrade`) for WebSocket.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds what is present, so the common message (nothing, or
    // just `Connection: keep-alive`) costs one scan instead of a hash lookup per name.
    const CONN: u8 = 1;
    const KA: u8 = 2;
    const PC: u8 = 4;
    const TE: u8 = 8;
    const TR: u8 = 16;
    const TE_: u8 = 32;
    const UP: u8 = 64;
    const H2S: u8 = 128;
    let mut found = 0u8;
    for name in h.keys() {
        found |= if name == header::CONNECTION {
            CONN
        } else if name == header::TE {
            TE
        } else if name == header::TRAILER {
            TR
        } else if name == header::TRANSFER_ENCODING {
            TE_
        } else if name == header::UPGRADE {
            UP
        } else if name == KEEP_ALIVE {
            KA
        } else if name == PROXY_CONNECTION {
            PC
        } else if name == HTTP2_SETTINGS {
            H2S
        } else {
            0
        };
    }
    if found & CONN != 0
        && let Some(conn) = h.remove(header::CONNECTION)
        && let Ok(list) = conn.to_str()
    {
        for token in list.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close") {
                continue;
            }
            if let Ok(n) = HeaderName::from_bytes(token.as_bytes())
                && !(keep_upgrade && n == header::UPGRADE)
            {
                h.remove(n);
            }
        }
    }
    for (bit, name) in [(KA, &KEEP_ALIVE), (PC, &PROXY_CONNECTION), (H2S, &HTTP2_SETTINGS)] {
        if found & bit != 0 {
            h.remove(name);
        }
    }
    for (bit, name) in [(TE, header::TE), (TR, header::TRAILER), (TE_, header::TRANSFER_ENCODING)] {
        if found & bit != 0 {
            h.remove(name);
        }
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if found & UP != 0 {
        h.remove(header::UPGRADE);
    }
}

/// Removes from request trailers every field that must not be a trailer (RFC 9110 §6.5.1):
/// framing, routing, authentication and control fields, hop-by-hop fields (`Proxy-*` too),
/// the forwarding fields the proxy vouches for, and `also` (the fields the route's request
/// rules set, add or remove). A client could otherwise set in a trailer what the proxy
/// replaced or refused in the head (`X-Forwarded-For`, `Host`, ...).
pub fn sanitise_trailers(h: &mut HeaderMap, also: &[HeaderName]) {
    const NEVER: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "content-range",
        "authorization",
        "cookie",
        "set-cookie",
        "expect",
        "max-forwards",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "cache-control",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "x-request-id",
    ];
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| connection_listed(v.as_bytes()))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
    let drop: Vec<HeaderName> = h
        .keys()
        .filter(|k| {
            is_hop_by_hop(k)
                || NEVER.contains(&k.as_str())
                || k.as_str().starts_with("proxy-")
                || listed.contains(k)
                || also.contains(k)
        })
        .cloned()
        .collect();
    for name in drop {
        h.remove(name);
    }
}

/// Whether an HTTP/1.1 request asks for a protocol upgrade that may be passed on
/// (WebSocket and the like), after taking `h2c` out of it.
///
/// `h2c` is never passed on: a backend that accepted it would give the client an HTTP/2
/// connection that no route, filter or rule of Gatehouse sees ("h2c smuggling"). Its token
/// (any case, with or without a version) and `h2` (TLS-only, never valid here) leave the
/// `Upgrade` list, which goes when nothing else is left; the request is then served as the
/// plain HTTP/1.1 request it also is.
pub fn request_upgrade(h: &mut HeaderMap) -> bool {
    if !h.contains_key(header::UPGRADE) {
        return false;
    }
    let is_h2 = |t: &str| {
        let name = t.split('/').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("h2c") || name.eq_ignore_ascii_case("h2")
    };
    // A value that is not text cannot be checked, so it goes the way h2c goes.
    let values: Vec<&str> = h.get_all(header::UPGRADE).iter().map(|v| v.to_str().unwrap_or("h2c")).collect();
    if values.iter().flat_map(|v| v.split(',')).any(is_h2) || values.len() > 1 {
        let kept: Vec<&str> =
            values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty() && !is_h2(t)).collect();
        let kept = (!kept.is_empty()).then(|| HeaderValue::from_str(&kept.join(", ")).ok()).flatten();
        match kept {
            Some(v) => {
                h.insert(header::UPGRADE, v);
            }
            None => {
                h.remove(header::UPGRADE);
                return false;
            }
        }
    }
    wants_upgrade(h)
}

/// Whether the request asks for a protocol upgrade (WebSocket) in HTTP/1.1 terms.
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address in `X-Forwarded-For` that is not itself trusted.
pub fn client_ip(peer: IpAddr, h: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    for value in h.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(s) = value.to_str() else { return client };
        for part in s.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(ip, trusted) {
                        return ip;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    // `::ffff:a.b.c.d` (a dual-stack socket, or a header) is the IPv4 address it maps.
    let ip = ip.to_canonical();
    trusted.iter().any(|n| n.contains(&ip))
}

/// The fields the proxy puts on a forwarded request: `X-Forwarded-*`, `X-Real-IP` and
/// `X-Request-ID`. Each replaces whatever the client sent under that name, except that a
/// trusted proxy's `X-Forwarded-Proto`/`-Host` are kept and its `X-Forwarded-For` chain is
/// extended.
///
/// Computed once, then either applied to the request's header map (`apply`) or, on the
/// inline HTTP/1.1 path, written straight into the upstream request head: the writer skips
/// the client's fields that `replaces` names and appends `fields`, which spares a map insert
/// per field.
#[derive(Clone)]
pub struct Forwarding {
    xff: HeaderValue,
    real_ip: Option<HeaderValue>,
    /// `None`: the trusted client's value stays.
    proto: Option<HeaderValue>,
    /// `None`: the trusted client's value stays; `Some(None)`: removed (no Host to copy).
    host: Option<Option<HeaderValue>>,
    request_id: HeaderValue,
    /// Gatehouse's `traceparent` for the backend.
    traceparent: HeaderValue,
    /// The client's `tracestate` goes on only with the trace it belongs to.
    drop_tracestate: bool,
}

impl Forwarding {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        h: &HeaderMap,
        peer: IpAddr,
        peer_value: &HeaderValue,
        client: IpAddr,
        peer_trusted: bool,
        proto: &'static str,
        host: Option<&HeaderValue>,
        request_id: &HeaderValue,
        trace: &super::trace::Trace,
    ) -> Self {
        // A trusted proxy's chain is kept whole (all header lines, in order) and extended.
        let prev: Vec<&str> = if peer_trusted {
            h.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).filter(|v| !v.is_empty()).collect()
        } else {
            Vec::new()
        };
        let xff = if prev.is_empty() {
            peer_value.clone()
        } else {
            HeaderValue::from_str(&format!("{}, {peer}", prev.join(", "))).unwrap_or_else(|_| peer_value.clone())
        };
        let real_ip =
            if client == peer { Some(peer_value.clone()) } else { HeaderValue::from_str(&client.to_string()).ok() };
        let proto = (!(peer_trusted && h.contains_key(&X_FORWARDED_PROTO))).then(|| HeaderValue::from_static(proto));
        let host = (!(peer_trusted && h.contains_key(&X_FORWARDED_HOST))).then(|| host.cloned());
        Forwarding {
            xff,
            real_ip,
            proto,
            host,
            request_id: request_id.clone(),
            traceparent: trace.header(),
            drop_tracestate: !trace.continued(),
        }
    }

    /// Sets (or removes) the fields in `h`.
    pub fn apply(self, h: &mut HeaderMap) {
        h.insert(&X_FORWARDED_FOR, self.xff);
        if let Some(v) = self.real_ip {
            h.insert(&X_REAL_IP, v);
        }
        if let Some(v) = self.proto {
            h.insert(&X_FORWARDED_PROTO, v);
        }
        match self.host {
            Some(Some(v)) => {
                h.insert(&X_FORWARDED_HOST, v);
            }
            Some(None) => {
                h.remove(&X_FORWARDED_HOST);
            }
            None => {}
        }
        h.insert(&X_REQUEST_ID, self.request_id);
        h.insert(&TRACEPARENT, self.traceparent);
        if self.drop_tracestate {
            h.remove(&TRACESTATE);
        }
    }

    /// Whether a client field of this name is replaced (must not be forwarded as sent).
    pub fn replaces(&self, name: &HeaderName) -> bool {
        // Every name here starts with "x-" or "trace": most fields are ruled out by a byte.
        let n = name.as_str().as_bytes();
        if n.len() < 9 || (n[0] != b'x' && n[0] != b't') {
            return false;
        }
        if n[0] == b't' {
            return *name == TRACEPARENT || (*name == TRACESTATE && self.drop_tracestate);
        }
        *name == X_FORWARDED_FOR
            || *name == X_REQUEST_ID
            || (*name == X_REAL_IP && self.real_ip.is_some())
            || (*name == X_FORWARDED_PROTO && self.proto.is_some())
            || (*name == X_FORWARDED_HOST && self.host.is_some())
    }

    /// The fields to send, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        [
            Some((&X_FORWARDED_FOR, &self.xff)),
            self.real_ip.as_ref().map(|v| (&X_REAL_IP, v)),
            self.proto.as_ref().map(|v| (&X_FORWARDED_PROTO, v)),
            self.host.as_ref().and_then(|h| h.as_ref()).map(|v| (&X_FORWARDED_HOST, v)),
            Some((&X_REQUEST_ID, &self.request_id)),
            Some((&TRACEPARENT, &self.traceparent)),
        ]
        .into_iter()
        .flatten()
    }
}

/// Keeps a client's `X-Request-ID` when it is a sane token, otherwise makes a new one.
pub fn request_id(h: &HeaderMap) -> HeaderValue {
    if let Some(v) = h.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 200
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            return v.clone();
        }
    }
    new_request_id()
}

fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    // All bytes are hex digits, so this cannot fail.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

/// The `Content-Length` value, when it is a number.
pub fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Applies configured edits: remove, then set, then add.
pub fn apply_rules(h: &mut HeaderMap, rules: &HeaderRules) {
    for n in &rules.remove {
        h.remove(n);
    }
    for (n, v) in &rules.set {
        h.insert(n.clone(), v.clone());
    }
    for (n, v) in &rules.add {
        h.append(n.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_keep_only_what_may_be_a_trailer() {
        let mut h = map(&[
            ("grpc-status", "0"),
            ("x-checksum", "abc"),
            ("x-forwarded-for", "6.6.6.6"),
            ("host", "evil.test"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("proxy-authorization", "Basic eA=="),
            ("authorization", "Bearer x"),
            ("x-request-id", "forged"),
            ("te", "trailers"),
            ("x-auth-user", "admin"),
        ]);
        sanitise_trailers(&mut h, &[HeaderName::from_static("x-auth-user")]);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["grpc-status", "x-checksum"]);
    }

    #[test]
    fn h2c_never_survives_an_upgrade() {
        let upgrade = |pairs: &[(&'static str, &'static str)]| {
            let mut h = map(pairs);
            let passes = request_upgrade(&mut h);
            let left: Vec<String> =
                h.get_all(header::UPGRADE).iter().map(|v| v.to_str().unwrap_or("?").to_string()).collect();
            (passes, left)
        };
        let conn = ("connection", "Upgrade, HTTP2-Settings");
        assert_eq!(upgrade(&[("upgrade", "h2c"), conn]), (false, vec![]));
        assert_eq!(upgrade(&[("upgrade", "H2C"), conn]), (false, vec![]));
        assert_eq!(upgrade(&[("upgrade", "h2c/1.0, h2"), conn]), (false, vec![]));
        assert_eq!(upgrade(&[("upgrade", "websocket, h2c"), conn]), (true, vec!["websocket".to_string()]));
        assert_eq!(upgrade(&[("upgrade", "h2c"), ("upgrade", "websocket"), conn]), (true, vec!["websocket".into()]));
        assert_eq!(upgrade(&[("upgrade", "websocket"), ("connection", "upgrade")]), (true, vec!["websocket".into()]));
        assert_eq!(upgrade(&[("upgrade", "websocket")]), (false, vec!["websocket".into()]));
        // HTTP2-Settings is hop-by-hop, listed in Connection or not.
        let mut h = map(&[("http2-settings", "AAMAAABkAAQAAP__"), ("x-keep", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("http2-settings") && h.contains_key("x-keep"));
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn field_kinds_agree_with_the_hop_by_hop_list() {
        let names = [
            "connection",
            "Keep-Alive",
            "proxy-connection",
            "TE",
            "trailer",
            "Transfer-Encoding",
            "upgrade",
            "content-length",
            "date",
            "server",
            "x-request-id",
            "tee",
            "dates",
            "upgrades",
        ];
        for n in names {
            let name = HeaderName::from_bytes(n.as_bytes()).expect("valid name");
            assert_eq!(FieldKind::of(n.as_bytes()).is_hop_by_hop(), is_hop_by_hop(&name), "{n}");
        }
        assert_eq!(FieldKind::of(b"Content-Length"), FieldKind::ContentLength);
        assert_eq!(FieldKind::of(b"DATE"), FieldKind::Date);
        assert_eq!(FieldKind::of(b"X-Request-Id"), FieldKind::RequestId);
        assert_eq!(FieldKind::of(b"content-type"), FieldKind::Other);
        let listed: Vec<&[u8]> = connection_listed(b"close, X-A ,keep-alive,,x-b").collect();
        assert_eq!(listed, [&b"X-A"[..], b"x-b"]);
    }

    #[test]
    fn connection_listed_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("x-kept", "y"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn client_ip_walks_trusted_chain() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let h = map(&[("x-forwarded-for", "203.0.113.9, 10.0.0.7")]);
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(client_ip(peer, &h, &trusted), "203.0.113.9".parse::<IpAddr>().expect("ip"));
        let untrusted: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(client_ip(untrusted, &h, &trusted), untrusted);
    }

    #[test]
    fn forwarding_replaces_untrusted_values() {
        let h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"), ("x-real-ip", "1.2.3.4")]);
        let peer: IpAddr = "198.51.100.1".parse().expect("ip");
        let pv = HeaderValue::from_static("198.51.100.1");
        let rid = HeaderValue::from_static("r1");
        let host = HeaderValue::from_static("example.test");
        let f = Forwarding::new(
            &h,
            peer,
            &pv,
            peer,
            false,
            "http",
            Some(&host),
            &rid,
            &super::super::trace::Trace::continue_from(&h),
        );
        assert!(f.replaces(&X_FORWARDED_FOR) && f.replaces(&X_FORWARDED_PROTO) && f.replaces(&X_REAL_IP));
        assert!(!f.replaces(&header::HOST));
        let sent: Vec<(String, String)> =
            f.fields().map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_string())).collect();
        let mut applied = h.clone();
        f.apply(&mut applied);
        // Both ways give the same fields.
        assert_eq!(applied.len(), sent.len());
        for (k, v) in &sent {
            assert_eq!(applied.get_all(k.as_str()).iter().collect::<Vec<_>>(), [v.as_str()]);
        }
        assert_eq!(applied["x-forwarded-proto"], "http");
        assert_eq!(applied["x-forwarded-host"], "example.test");

        // A trusted proxy's chain is extended and its proto kept.
        let trusted: IpAddr = "10.0.0.1".parse().expect("ip");
        let f = Forwarding::new(
            &h,
            trusted,
            &HeaderValue::from_static("10.0.0.1"),
            trusted,
            true,
            "http",
            None,
            &rid,
            &super::super::trace::Trace::continue_from(&h),
        );
        assert!(!f.replaces(&X_FORWARDED_PROTO));
        let mut applied = h.clone();
        f.apply(&mut applied);
        assert_eq!(applied["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(applied["x-forwarded-proto"], "https");
        assert!(!applied.contains_key("x-forwarded-host"));
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        let fresh = request_id(&map(&[("x-request-id", "bad value!")]));
        assert_eq!(fresh.len(), 32);
    }
}
