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
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether a field is hop-by-hop by definition (not counting the ones `Connection` lists).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

/// Removes the fields a `Connection` value names (other than `close` and `keep-alive`).
pub fn remove_connection_listed(h: &mut HeaderMap, connection: &[u8]) {
    for token in connection.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
        if !token.eq_ignore_ascii_case(b"keep-alive")
            && !token.eq_ignore_ascii_case(b"close")
            && let Ok(n) = HeaderName::from_bytes(token)
        {
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
    for (bit, name) in [(KA, &KEEP_ALIVE), (PC, &PROXY_CONNECTION)] {
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
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trusted.iter().any(|n| n.contains(&ip))
}

/// Sets `X-Forwarded-*` and `X-Real-IP`. Client-supplied values are kept (and extended)
/// only when the peer is a trusted proxy; otherwise they are replaced.
pub fn set_forwarded(
    h: &mut HeaderMap,
    peer: IpAddr,
    peer_value: &HeaderValue,
    client: IpAddr,
    peer_trusted: bool,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    // A trusted proxy's chain is kept whole (all header lines, in order) and extended.
    let prev: Vec<&str> = if peer_trusted {
        h.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).filter(|v| !v.is_empty()).collect()
    } else {
        Vec::new()
    };
    let xff = if prev.is_empty() {
        peer_value.clone()
    } else {
        match HeaderValue::from_str(&format!("{}, {peer}", prev.join(", "))) {
            Ok(v) => v,
            Err(_) => peer_value.clone(),
        }
    };
    let real_ip = if client == peer { Ok(peer_value.clone()) } else { HeaderValue::from_str(&client.to_string()) };
    h.insert(&X_FORWARDED_FOR, xff);
    if let Ok(v) = real_ip {
        h.insert(&X_REAL_IP, v);
    }
    if !(peer_trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(peer_trusted && h.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(v) => {
                h.insert(&X_FORWARDED_HOST, v.clone());
            }
            None => {
                h.remove(&X_FORWARDED_HOST);
            }
        }
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

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
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
    fn request_ids() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        let fresh = request_id(&map(&[("x-request-id", "bad value!")]));
        assert_eq!(fresh.len(), 32);
    }
}
