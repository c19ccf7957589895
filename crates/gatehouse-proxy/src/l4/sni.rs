//! Reading the server name from a TLS ClientHello without terminating TLS (SNI routing and
//! passthrough). Untrusted bytes: every length is checked, the message is bounded, nothing
//! panics.

/// The longest ClientHello read while looking for the name (post-quantum key shares make
/// them a few KB; 16 KiB is one full record).
pub const MAX_HELLO: usize = 16 * 1024 + 5;

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// Need more bytes.
    Partial,
    /// A ClientHello, with its server name (lower-case) if it sent one.
    Done(Option<String>),
    /// Not a TLS ClientHello.
    NotTls,
}

/// Parses the ClientHello at the start of `buf` (which may span several records).
pub fn parse(buf: &[u8]) -> Hello {
    // Reassemble the handshake message from the records' payloads.
    // Not a handshake record from its first bytes: a plaintext client that sent a short
    // line is told apart at once, without waiting for five bytes.
    if buf.first().is_some_and(|b| *b != 0x16) || buf.get(1).is_some_and(|b| *b != 3) {
        return Hello::NotTls;
    }
    let mut msg = Vec::new();
    let mut at = 0;
    loop {
        let Some(head) = buf.get(at..at + 5) else { return Hello::Partial };
        if head[0] != 0x16 || head[1] != 3 {
            return Hello::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        if len == 0 {
            return Hello::NotTls;
        }
        let Some(body) = buf.get(at + 5..at + 5 + len) else { return Hello::Partial };
        msg.extend_from_slice(body);
        at += 5 + len;
        if msg.len() >= 4 {
            if msg[0] != 1 {
                return Hello::NotTls;
            }
            let need = 4 + (usize::from(msg[1]) << 16 | usize::from(msg[2]) << 8 | usize::from(msg[3]));
            if need > MAX_HELLO {
                return Hello::NotTls;
            }
            if msg.len() >= need {
                return match server_name(&msg[4..need]) {
                    Some(name) => Hello::Done(name),
                    None => Hello::NotTls,
                };
            }
        }
    }
}

/// A cursor over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// The SNI of a ClientHello body: `Some(None)` when it has none, `None` when malformed.
fn server_name(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // version, random
    let n = r.u8()?;
    r.take(n)?; // session id
    let n = r.u16()?;
    r.take(n)?; // cipher suites
    let n = r.u8()?;
    r.take(n)?; // compression methods
    if r.0.is_empty() {
        return Some(None);
    }
    let n = r.u16()?;
    let mut ext = Reader(r.take(n)?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let n = ext.u16()?;
        let data = ext.take(n)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let n = list.u16()?;
        let mut names = Reader(list.take(n)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let n = names.u16()?;
            let name = names.take(n)?;
            if kind == 0 {
                let name = std::str::from_utf8(name).ok()?;
                if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
                {
                    return None;
                }
                return Some(Some(name.to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls sends it, for `name`.
    fn hello(name: &str) -> Vec<u8> {
        use std::io::Write;
        let roots = rustls::RootCertStore::empty();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), server).expect("client");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("hello");
        out.flush().expect("flush");
        out
    }

    #[test]
    fn finds_the_name_at_any_cut_and_refuses_what_is_not_tls() {
        let h = hello("Db.Example.test");
        assert_eq!(parse(&h), Hello::Done(Some("db.example.test".into())));
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]), Hello::Partial, "cut at {cut}");
        }
        assert_eq!(parse(b"Q"), Hello::NotTls);
        assert_eq!(parse(&[0x16, 1]), Hello::NotTls);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Hello::NotTls);
        assert_eq!(parse(&[0x16, 3, 1, 0, 0]), Hello::NotTls);
    }

    #[test]
    fn a_hello_split_over_two_records_is_reassembled() {
        let h = hello("a.test");
        let body = &h[5..];
        let (one, two) = body.split_at(40);
        let mut split = vec![0x16, 3, 1];
        split.extend_from_slice(&(one.len() as u16).to_be_bytes());
        split.extend_from_slice(one);
        split.extend_from_slice(&[0x16, 3, 1]);
        split.extend_from_slice(&(two.len() as u16).to_be_bytes());
        split.extend_from_slice(two);
        assert_eq!(parse(&split), Hello::Done(Some("a.test".into())));
    }

    #[test]
    fn garbage_never_panics() {
        let h = hello("b.test");
        for i in 5..h.len() {
            let mut bad = h.clone();
            bad[i] ^= 0xff;
            let _ = parse(&bad);
            bad.truncate(i);
            let _ = parse(&bad);
        }
    }
}
