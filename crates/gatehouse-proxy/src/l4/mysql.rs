//! MySQL and MariaDB: the server speaks first, so the backend is connected before the
//! client's TLS. Its greeting goes to the client with CLIENT_SSL added; the client's SSL
//! request packet starts TLS with Gatehouse; its login (HandshakeResponse) then goes on:
//! - to a plain backend, with CLIENT_SSL cleared and sequence ids renumbered (the backend
//!   never saw the SSL request packet) until the backend's OK or ERR ends the login;
//! - to a TLS backend, after Gatehouse's own SSL request and a verified handshake, as it is.
//!
//! A client that logs in without TLS on a stream that requires it gets error 3159
//! ("insecure transport") and is closed.

use bytes::{Bytes, BytesMut};

use super::conn::Session;
use super::io::{BoxIo, Prefixed, fill};
use super::pipe::write_all;
use super::stats::Outcome;

const CLIENT_SSL: u32 = 0x0800;
/// Packets of the greeting and login are small; anything bigger is refused.
const MAX_PACKET: usize = 64 * 1024;

/// One packet: sequence id and payload.
struct Packet {
    seq: u8,
    payload: Bytes,
}

impl Packet {
    fn encode(&self, seq: u8) -> Vec<u8> {
        let len = self.payload.len() as u32;
        let mut out = Vec::with_capacity(4 + self.payload.len());
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Reads one packet (cancel-safe: what was read stays in `buf`).
async fn read(io: &mut BoxIo, buf: &mut BytesMut) -> std::io::Result<Packet> {
    fill(io, buf, 4, MAX_PACKET).await?;
    let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
    fill(io, buf, 4 + len, MAX_PACKET + 4).await?;
    let seq = buf[3];
    let mut p = buf.split_to(4 + len);
    let payload = p.split_off(4).freeze();
    Ok(Packet { seq, payload })
}

/// Where the capability flags' lower half sits in a HandshakeV10 greeting.
fn caps_offset(greeting: &[u8]) -> Option<usize> {
    if greeting.first() != Some(&10) {
        return None;
    }
    let version_end = greeting[1..].iter().position(|b| *b == 0)? + 1;
    let at = version_end + 1 + 4 + 8 + 1;
    (greeting.len() >= at + 2).then_some(at)
}

fn err_packet(seq: u8, code: u16, message: &str) -> Vec<u8> {
    let mut payload = vec![0xff];
    payload.extend_from_slice(&code.to_le_bytes());
    payload.extend_from_slice(b"#HY000");
    payload.extend_from_slice(message.as_bytes());
    Packet { seq, payload: payload.into() }.encode(seq)
}

pub(super) async fn run(s: &mut Session<'_>, client: BoxIo) -> Outcome {
    session(s, client).await.unwrap_or_else(|o| o)
}

/// Writes `bytes` to the backend; a failure is the backend's.
async fn to_backend(s: &mut Session<'_>, backend: &mut BoxIo, bytes: &[u8]) -> Result<(), Outcome> {
    s.backend_step("writing to the backend", write_all(backend, bytes)).await
}

async fn session(s: &mut Session<'_>, mut client: BoxIo) -> Result<Outcome, Outcome> {
    let live = s.live;
    let target = live.default.as_ref().ok_or(Outcome::NoRoute)?;
    let unreachable = err_packet(0, 2003, "Gatehouse could not reach the database server");
    let (mut backend, _active) = s.dial_or_tell(target, &mut client, &unreachable).await?;
    let mut from_backend = BytesMut::new();
    let greeting = s.backend_step("the backend's greeting", read(&mut backend, &mut from_backend)).await?;
    let Some(at) = caps_offset(&greeting.payload) else {
        // An error packet (host blocked, too many connections) or something else: the
        // client gets it as it is.
        let _ = write_all(&mut client, &greeting.encode(greeting.seq)).await;
        s.detail = "the backend's greeting was not a HandshakeV10".into();
        return Err(Outcome::Backend);
    };
    let backend_caps = u32::from(u16::from_le_bytes([greeting.payload[at], greeting.payload[at + 1]]));
    if target.tls.is_some() && backend_caps & CLIENT_SSL == 0 {
        let _ = write_all(&mut client, &err_packet(0, 2026, "the database server does not offer TLS")).await;
        s.detail = "backend_tls is set but the backend does not offer CLIENT_SSL".into();
        return Err(Outcome::Backend);
    }
    let mut offered = greeting.payload.to_vec();
    offered[at + 1] |= (CLIENT_SSL >> 8) as u8;
    let greeting_out = Packet { seq: greeting.seq, payload: offered.into() }.encode(greeting.seq);
    s.client_step("sending the greeting", write_all(&mut client, &greeting_out)).await?;
    let mut from_client = BytesMut::new();
    let first = s.client_step("the client's login", read(&mut client, &mut from_client)).await?;
    let caps = |p: &Packet| p.payload.get(..4).map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let wants_tls = first.payload.len() == 32 && caps(&first) & CLIENT_SSL != 0;
    if !wants_tls {
        // With backend_tls the backend leg must be TLS, which a plaintext login cannot give.
        if live.config.tls.as_ref().is_none_or(|t| t.required) || target.tls.is_some() {
            let message = "Connections using insecure transport are prohibited: connect with TLS (--ssl)";
            let _ = write_all(&mut client, &err_packet(first.seq.wrapping_add(1), 3159, message)).await;
            s.detail = "plaintext login refused".into();
            return Err(Outcome::TlsRequired);
        }
        // Plain all the way: the login goes on as the client sent it.
        to_backend(s, &mut backend, &first.encode(first.seq)).await?;
        let client: BoxIo = Box::new(Prefixed::new(from_client.freeze(), client));
        let backend: BoxIo = Box::new(Prefixed::new(from_backend.freeze(), backend));
        return Ok(s.pipe(client, backend).await);
    }
    let mut client = s.handshake(Box::new(Prefixed::new(from_client.split().freeze(), client))).await?;
    let login = s.client_step("the login after the TLS handshake", read(&mut client, &mut from_client)).await?;
    if target.tls.is_some() {
        // The backend gets its own SSL request (the client's), then the login unchanged.
        to_backend(s, &mut backend, &first.encode(first.seq)).await?;
        let plain: BoxIo = Box::new(Prefixed::new(from_backend.split().freeze(), backend));
        let mut backend = match s.backend_tls(target, plain).await {
            Ok(b) => b,
            Err(o) => {
                let failed = err_packet(login.seq.wrapping_add(1), 2026, "TLS to the database server failed");
                let _ = write_all(&mut client, &failed).await;
                return Err(o);
            }
        };
        to_backend(s, &mut backend, &login.encode(login.seq)).await?;
        let client: BoxIo = Box::new(Prefixed::new(from_client.freeze(), client));
        return Ok(s.pipe(client, backend).await);
    }
    // A plain backend: it never saw the SSL request, so its login is one packet earlier.
    let mut payload = login.payload.to_vec();
    if payload.len() >= 4 {
        payload[1] &= !((CLIENT_SSL >> 8) as u8);
    }
    let shifted = Packet { seq: 0, payload: payload.into() };
    to_backend(s, &mut backend, &shifted.encode(login.seq.wrapping_sub(1))).await?;
    s.client_step("the login", renumber(&mut client, &mut from_client, &mut backend, &mut from_backend)).await?;
    let client: BoxIo = Box::new(Prefixed::new(from_client.freeze(), client));
    let backend: BoxIo = Box::new(Prefixed::new(from_backend.freeze(), backend));
    Ok(s.pipe(client, backend).await)
}

/// Relays the rest of the login (auth switches, more data) with each packet's sequence id
/// moved by one, until the backend's OK or ERR (forwarded too).
async fn renumber(
    client: &mut BoxIo,
    from_client: &mut BytesMut,
    backend: &mut BoxIo,
    from_backend: &mut BytesMut,
) -> std::io::Result<()> {
    loop {
        tokio::select! {
            p = read(backend, from_backend) => {
                let p = p?;
                write_all(client, &p.encode(p.seq.wrapping_add(1))).await?;
                if matches!(p.payload.first(), Some(0x00 | 0xff)) {
                    return Ok(());
                }
            }
            p = read(client, from_client) => {
                let p = p?;
                write_all(backend, &p.encode(p.seq.wrapping_sub(1))).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capabilities_are_found_in_a_greeting() {
        let mut g = vec![10];
        g.extend_from_slice(b"10.11.19-MariaDB\0");
        g.extend_from_slice(&[1, 0, 0, 0]);
        g.extend_from_slice(b"abcdefgh");
        g.push(0);
        g.extend_from_slice(&[0xfe, 0xf7]);
        let at = caps_offset(&g).expect("offset");
        assert_eq!(&g[at..at + 2], &[0xfe, 0xf7]);
        assert_eq!(caps_offset(&[0xff, 0x10, 0x04]), None);
        assert_eq!(caps_offset(&[10, b'x']), None);
    }
}
