//! LDAP with StartTLS (RFC 4511 §4.14): Gatehouse answers the client's StartTLS extended
//! request itself, terminates TLS, and only then connects the backend, so nothing the client
//! says in plaintext reaches it. Any other first operation gets a Notice of Disconnection
//! (confidentialityRequired) and the connection ends; bytes sent after the StartTLS request
//! and before TLS are refused (the injection attack). LDAPS (TLS from the first byte) is
//! the implicit-TLS `ldaps` protocol.
//!
//! With `backend_tls`, Gatehouse sends its own StartTLS to the backend before the
//! client's operations flow.

use bytes::BytesMut;

use super::conn::Session;
use super::io::{BoxIo, fill};
use super::pipe::write_all;
use super::stats::Outcome;

const START_TLS: &[u8] = b"1.3.6.1.4.1.1466.20037";
const NOTICE_OF_DISCONNECTION: &[u8] = b"1.3.6.1.4.1.1466.20036";
/// A StartTLS request is 31 bytes; the first message of any client is small.
const MAX_MESSAGE: usize = 16 * 1024;

/// A BER element: tag, contents.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// An ExtendedResponse with message id `id` (its encoded INTEGER contents).
fn extended_response(id: &[u8], code: u8, message: &str, name: &[u8]) -> Vec<u8> {
    let mut op = tlv(0x0a, &[code]);
    op.extend(tlv(0x04, b""));
    op.extend(tlv(0x04, message.as_bytes()));
    op.extend(tlv(0x8a, name));
    let mut msg = tlv(0x02, id);
    msg.extend(tlv(0x78, &op));
    tlv(0x30, &msg)
}

/// Length of the element starting at `buf` (header + contents), once its header is in.
fn element_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(&first) = buf.get(1) else { return Ok(None) };
    if first < 0x80 {
        return Ok(Some(2 + usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 3 {
        return Err("an LDAP message length this proxy does not take".into());
    }
    let Some(bytes) = buf.get(2..2 + n) else { return Ok(None) };
    Ok(Some(2 + n + bytes.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b))))
}

/// Reads one LDAPMessage into `buf`; returns its length.
async fn message(io: &mut BoxIo, buf: &mut BytesMut) -> Result<usize, String> {
    fill(io, buf, 2, MAX_MESSAGE).await.map_err(|e| e.to_string())?;
    if buf[0] != 0x30 {
        return Err("not an LDAP message".into());
    }
    let len = loop {
        match element_len(buf)? {
            Some(n) => break n,
            None => fill(io, buf, buf.len() + 1, MAX_MESSAGE).await.map_err(|e| e.to_string())?,
        }
    };
    fill(io, buf, len, MAX_MESSAGE).await.map_err(|e| e.to_string())?;
    Ok(len)
}

/// Splits the element at the start of `buf`: its tag, its contents, what follows it.
fn element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let total = element_len(buf).ok()??;
    let header = if buf.get(1)? & 0x80 == 0 { 2 } else { 2 + usize::from(buf[1] & 0x7f) };
    Some((*buf.first()?, buf.get(header..total)?, buf.get(total..)?))
}

/// The message id's contents and whether the operation is a StartTLS request.
fn parse(msg: &[u8]) -> Option<(Vec<u8>, bool)> {
    let (0x30, body, _) = element(msg)? else { return None };
    let (0x02, id, op) = element(body)? else { return None };
    let start_tls = match element(op) {
        Some((0x77, request, _)) => matches!(element(request), Some((0x80, name, _)) if name == START_TLS),
        _ => false,
    };
    Some((id.to_vec(), start_tls))
}

/// The resultCode of an ExtendedResponse message.
fn result_code(msg: &[u8]) -> Option<u8> {
    let (0x30, body, _) = element(msg)? else { return None };
    let (0x02, _, op) = element(body)? else { return None };
    let (0x78, response, _) = element(op)? else { return None };
    let (0x0a, code, _) = element(response)? else { return None };
    code.last().copied()
}

pub(super) async fn run(s: &mut Session<'_>, client: BoxIo) -> Outcome {
    session(s, client).await.unwrap_or_else(|o| o)
}

async fn session(s: &mut Session<'_>, mut client: BoxIo) -> Result<Outcome, Outcome> {
    let live = s.live;
    let target = live.default.as_ref().ok_or(Outcome::NoRoute)?;
    let mut buf = BytesMut::with_capacity(64);
    let first = s.client_step("the first LDAP message", message(&mut client, &mut buf)).await?;
    let Some((id, start_tls)) = parse(&buf[..first]) else {
        s.detail = "a malformed LDAP message".into();
        return Err(Outcome::Protocol);
    };
    if !start_tls {
        let notice = extended_response(&[0], 13, "StartTLS is required", NOTICE_OF_DISCONNECTION);
        let _ = write_all(&mut client, &notice).await;
        s.detail = "an operation before StartTLS".into();
        return Err(Outcome::TlsRequired);
    }
    if buf.len() > first {
        s.detail = "bytes after the StartTLS request, before TLS (injection attempt)".into();
        return Err(Outcome::Protocol);
    }
    s.client_step("answering StartTLS", write_all(&mut client, &extended_response(&id, 0, "", START_TLS))).await?;
    let client = s.handshake(client).await?;
    let (mut backend, _active) = s.dial(target).await?;
    if target.tls.is_some() {
        let request = tlv(0x30, &[tlv(0x02, &[1]), tlv(0x77, &tlv(0x80, START_TLS))].concat());
        let mut answer = BytesMut::with_capacity(64);
        let n = s
            .backend_step("StartTLS to the backend", async {
                write_all(&mut backend, &request).await.map_err(|e| e.to_string())?;
                message(&mut backend, &mut answer).await
            })
            .await?;
        if result_code(&answer[..n]) != Some(0) {
            s.detail = "the backend refused StartTLS".into();
            return Err(Outcome::Backend);
        }
        backend = s.backend_tls(target, backend).await?;
    }
    Ok(s.pipe(client, backend).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_tls_request_is_recognised_and_others_are_not() {
        // What ldapwhoami -ZZ sends first.
        let req = tlv(0x30, &[tlv(0x02, &[1]), tlv(0x77, &tlv(0x80, START_TLS))].concat());
        assert_eq!(parse(&req), Some((vec![1], true)));
        // An anonymous bind.
        let bind = tlv(
            0x30,
            &[tlv(0x02, &[2]), tlv(0x60, &[tlv(0x02, &[3]), tlv(0x04, b""), tlv(0x80, b"")].concat())].concat(),
        );
        assert_eq!(parse(&bind), Some((vec![2], false)));
        let long = tlv(0x30, &[tlv(0x02, &[7]), tlv(0x04, &[b'x'; 300])].concat());
        assert_eq!(parse(&long), Some((vec![7], false)));
        for cut in 0..req.len() {
            let _ = parse(&req[..cut]);
        }
        assert_eq!(parse(b"\x30"), None);
        assert_eq!(result_code(&extended_response(&[1], 0, "", START_TLS)), Some(0));
        assert_eq!(result_code(&extended_response(&[1], 53, "no", START_TLS)), Some(53));
        assert_eq!(result_code(&req), None);
    }
}
