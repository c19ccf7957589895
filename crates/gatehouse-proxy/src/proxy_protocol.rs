//! The PROXY protocol (HAProxy's, versions 1 and 2): the header an L4 load balancer sends
//! before a connection's own bytes to say whose connection it is. Accepted only from the
//! sources `server.proxy_protocol` lists, where it is then required; from anyone else the
//! same bytes are just a malformed request.
//!
//! Reads exactly what the header needs and hands back anything read past it, so the TLS
//! handshake or the HTTP request that follows starts where the header ends. Untrusted
//! bytes: bounded (a header longer than `MAX` is refused) and never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The version 2 signature.
const V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest header accepted: a version 1 line is at most 107 bytes; version 2 carries TLVs
/// after the addresses, which are skipped but bounded.
const MAX: usize = 4096;

/// Why a PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header longer than {MAX} bytes")]
    TooLong,
    #[error("PROXY protocol header not complete in time")]
    Timeout,
    #[error("connection closed inside the PROXY protocol header")]
    Closed,
}

/// A parsed header: its length, and the client's address (`None` for `LOCAL` and
/// `UNKNOWN`: the balancer's own connection, such as a health check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub source: Option<SocketAddr>,
}

/// Parses a header at the start of `buf`: `Ok(None)` while incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, Error> {
    let sig = &buf[..buf.len().min(V2.len())];
    if V2.starts_with(sig) {
        return if buf.len() < V2.len() { Ok(None) } else { parse_v2(buf) };
    }
    if !b"PROXY ".starts_with(&buf[..buf.len().min(6)]) {
        return Err(Error::Missing);
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Error> {
    const LONGEST: usize = 107;
    let Some(end) = buf.iter().take(LONGEST).position(|b| *b == b'\n') else {
        return if buf.len() >= LONGEST { Err(Error::Malformed("version 1 line too long")) } else { Ok(None) };
    };
    let line = buf[..end].strip_suffix(b"\r").ok_or(Error::Malformed("version 1 line without CRLF"))?;
    let line = std::str::from_utf8(line).map_err(|_| Error::Malformed("version 1 line is not text"))?;
    let mut parts = line.split(' ');
    let (_proxy, family) = (parts.next(), parts.next());
    let source = match family {
        Some("UNKNOWN") => None,
        Some(f @ ("TCP4" | "TCP6")) => {
            let fields: Vec<&str> = parts.collect();
            let [src, dst, sport, dport] = fields[..] else {
                return Err(Error::Malformed("version 1 line needs four fields"));
            };
            let ip = |s: &str| -> Result<IpAddr, Error> {
                let ip: IpAddr = s.parse().map_err(|_| Error::Malformed("version 1 address"))?;
                match (f, ip) {
                    ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
                    _ => Err(Error::Malformed("version 1 address of the other family")),
                }
            };
            let port = |s: &str| -> Result<u16, Error> {
                // Digits only, no sign or leading zeros beyond "0" (the specification's form).
                let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
                ok.then(|| s.parse().ok()).flatten().ok_or(Error::Malformed("version 1 port"))
            };
            let (src, _dst, sport, _dport) = (ip(src)?, ip(dst)?, port(sport)?, port(dport)?);
            Some(SocketAddr::new(src, sport))
        }
        _ => return Err(Error::Malformed("version 1 family")),
    };
    Ok(Some(Header { len: end + 1, source }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Error> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > MAX {
        return Err(Error::TooLong);
    }
    if ver_cmd >> 4 != 2 {
        return Err(Error::Malformed("version 2 header of another version"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let addr = &buf[16..len];
    let source = match ver_cmd & 0x0f {
        // LOCAL: the balancer's own connection; the peer address stands.
        0x0 => None,
        0x1 => match family {
            // TCP or UDP over IPv4: src, dst, src port, dst port.
            0x11 | 0x12 => {
                let a = addr.get(..12).ok_or(Error::Malformed("version 2 IPv4 block too short"))?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            0x21 | 0x22 => {
                let a = addr.get(..36).ok_or(Error::Malformed("version 2 IPv6 block too short"))?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[..16]);
                Some(SocketAddr::new(Ipv6Addr::from(octets).into(), u16::from_be_bytes([a[32], a[33]])))
            }
            // Unix sockets and unspecified families carry no IP address.
            _ => None,
        },
        _ => return Err(Error::Malformed("version 2 command")),
    };
    Ok(Some(Header { len, source }))
}

/// Reads a header from `io` within `limit`; returns it with the bytes read past it.
pub async fn read<S: AsyncRead + Unpin>(io: &mut S, limit: Duration) -> Result<(Header, Bytes), Error> {
    let mut buf = BytesMut::with_capacity(256);
    let reading = async {
        loop {
            if let Some(h) = parse(&buf)? {
                let rest = buf.split_off(h.len).freeze();
                return Ok((h, rest));
            }
            if buf.len() >= MAX {
                return Err(Error::TooLong);
            }
            buf.reserve(256);
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(Error::Closed),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, reading).await.unwrap_or(Err(Error::Timeout))
}

/// The header a stream sends to its backend for a client `src` that connected to `dst`:
/// version 1 (a text line) or version 2 (binary, PROXY command over TCP).
pub fn encode(v2: bool, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    // An IPv4 client on a dual-stack listener arrives as `::ffff:a.b.c.d`: it is IPv4.
    let unmap = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (src, dst) = (unmap(src), unmap(dst));
    // Both addresses in one family: an IPv4 one next to an IPv6 one is written mapped.
    let (src, dst) = match (src, dst) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => (src, dst),
        _ => (mapped(src), mapped(dst)),
    };
    if !v2 {
        let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        return format!("PROXY {family} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes();
    }
    let mut out = V2.to_vec();
    out.push(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // TCP over IPv4
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            out.push(0x21); // TCP over IPv6
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_encode_writes_parse_reads_back() {
        let src: SocketAddr = "203.0.113.7:5555".parse().expect("addr");
        let dst: SocketAddr = "192.0.2.1:5432".parse().expect("addr");
        let v6: SocketAddr = "[2001:db8::1]:443".parse().expect("addr");
        for v2 in [false, true] {
            for (s, d) in [(src, dst), (v6, v6), (src, v6)] {
                let h = encode(v2, s, d);
                let parsed = parse(&h).expect("valid").expect("complete");
                assert_eq!(parsed.len, h.len());
                let got = parsed.source.expect("a source");
                assert_eq!((got.port(), mapped(got).ip()), (s.port(), mapped(s).ip()), "v2={v2} {s} {d}");
            }
        }
        assert_eq!(encode(false, src, dst), b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 5432\r\n");
        let mapped_src: SocketAddr = "[::ffff:203.0.113.7]:5555".parse().expect("addr");
        let mapped_dst: SocketAddr = "[::ffff:192.0.2.1]:5432".parse().expect("addr");
        assert_eq!(encode(false, mapped_src, mapped_dst), b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 5432\r\n");
    }

    fn v2(cmd: u8, family: u8, addr: &[u8]) -> Vec<u8> {
        let mut out = V2.to_vec();
        out.extend_from_slice(&[0x20 | cmd, family]);
        out.extend_from_slice(&(addr.len() as u16).to_be_bytes());
        out.extend_from_slice(addr);
        out
    }

    #[test]
    fn version_1_lines() {
        let h = parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\nGET /").expect("valid").expect("complete");
        assert_eq!((h.len, h.source), (42, Some("203.0.113.7:5555".parse().expect("addr"))));
        let h = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n").expect("valid").expect("complete");
        assert_eq!(h.source, Some("[2001:db8::7]:5555".parse().expect("addr")));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").expect("valid").expect("complete").source, None);
        assert_eq!(parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 55"), Ok(None), "incomplete");
        assert_eq!(parse(b"PRO"), Ok(None), "incomplete");
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 203.0.113.7 192.0.2.1 5555\r\n",
            b"PROXY TCP4 2001:db8::7 192.0.2.1 5555 80\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 +555 80\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 05555 80\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 70000 80\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\n",
            b"PROXY UDP4 203.0.113.7 192.0.2.1 5555 80\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(30)).is_err(), "a line past 107 bytes");
    }

    #[test]
    fn version_2_blocks() {
        let mut v4 = vec![203, 0, 113, 7, 192, 0, 2, 1];
        v4.extend_from_slice(&5555u16.to_be_bytes());
        v4.extend_from_slice(&80u16.to_be_bytes());
        let raw = v2(1, 0x11, &v4);
        let h = parse(&raw).expect("valid").expect("complete");
        assert_eq!((h.len, h.source), (28, Some("203.0.113.7:5555".parse().expect("addr"))));
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        // TLVs after the addresses are skipped.
        let mut with_tlv = v4.clone();
        with_tlv.extend_from_slice(&[0x04, 0, 2, b'h', b'i']);
        assert_eq!(parse(&v2(1, 0x11, &with_tlv)).expect("valid").expect("complete").len, 16 + 17);
        let mut v6 = [0u8; 36];
        v6[15] = 1;
        v6[32..34].copy_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &v6)).expect("valid").expect("complete").source,
            Some("[::1]:443".parse().expect("a"))
        );
        assert_eq!(parse(&v2(0, 0x00, &[])).expect("valid").expect("complete").source, None, "LOCAL");
        assert!(parse(&v2(1, 0x11, &v4[..8])).is_err(), "IPv4 block too short");
        assert!(parse(&v2(2, 0x11, &v4)).is_err(), "unknown command");
        let mut long = V2.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&long), Err(Error::TooLong));
    }

    #[tokio::test]
    async fn read_hands_back_what_follows() {
        let mut io: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\nGET / HTTP/1.1\r\n\r\n";
        let (h, rest) = read(&mut io, Duration::from_secs(5)).await.expect("header");
        assert_eq!(h.source, Some("203.0.113.7:5555".parse().expect("addr")));
        let mut all = rest.to_vec();
        all.extend_from_slice(io);
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
        let mut none: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(read(&mut none, Duration::from_secs(5)).await.map(|(h, _)| h), Err(Error::Missing));
    }
}
