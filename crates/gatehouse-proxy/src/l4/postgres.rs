//! PostgreSQL: the client's SSLRequest is answered `S` and its TLS terminated here (or
//! PostgreSQL 17's direct TLS, ALPN `postgresql`); GSSENCRequest is answered `N` (the
//! client then asks for TLS or goes on plain); a plaintext startup is refused with a
//! FATAL error when the stream requires TLS (no downgrade). CancelRequest is plaintext
//! even from TLS clients (libpq sends it on a new connection): it carries no data and is
//! passed to the backends as it is.
//!
//! Towards the backend the startup goes plain, or (with `backend_tls`) after Gatehouse's
//! own SSLRequest and a verified handshake. A plain backend leg never offers
//! SCRAM-SHA-256-PLUS, so `channel_binding=prefer` clients log in; over a re-encrypted leg
//! channel binding cannot work through any terminating proxy (docs/l4-protocols.md).

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use super::conn::Session;
use super::io::{BoxIo, Prefixed, fill};
use super::pipe::write_all;
use super::stats::Outcome;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3: u32 = 196_608;
/// The server's own limit on a startup packet.
const MAX_STARTUP: usize = 10_000;

/// What the client's opening asked for.
enum Opening {
    /// TLS (after SSLRequest, or direct).
    Tls,
    /// A startup or other message without TLS; `buf` holds it.
    Plain,
    Cancel,
}

pub(super) async fn run(s: &mut Session<'_>, client: BoxIo) -> Outcome {
    session(s, client).await.unwrap_or_else(|o| o)
}

async fn session(s: &mut Session<'_>, mut client: BoxIo) -> Result<Outcome, Outcome> {
    let live = s.live;
    let required = live.config.tls.as_ref().is_none_or(|t| t.required);
    let mut buf = BytesMut::with_capacity(64);
    let opening = s.client_step("startup", opening(&mut client, &mut buf)).await?;
    let target = live.default.as_ref().ok_or(Outcome::NoRoute)?;
    match opening {
        Opening::Cancel => {
            cancel(s, &buf).await;
            Ok(Outcome::Closed)
        }
        Opening::Plain if required => {
            let refusal = fatal("28000", "this server requires TLS: connect with sslmode=require or stronger");
            let _ = write_all(&mut client, &refusal).await;
            s.detail = "plaintext startup refused".into();
            Err(Outcome::TlsRequired)
        }
        Opening::Plain => {
            // TLS is optional for the client; the backend leg is as configured.
            let client: BoxIo = Box::new(Prefixed::new(buf.freeze(), client));
            let (backend, _active) = backend(s, target).await?;
            Ok(s.pipe(client, backend).await)
        }
        Opening::Tls => {
            let mut client = s.handshake(Box::new(Prefixed::new(buf.freeze(), client))).await?;
            match backend(s, target).await {
                Ok((backend, _active)) => Ok(s.pipe(client, backend).await),
                Err(o) => {
                    let _ =
                        write_all(&mut client, &fatal("08006", "Gatehouse could not reach the database server")).await;
                    Err(o)
                }
            }
        }
    }
}

/// A backend connection, after Gatehouse's own SSLRequest and a verified handshake when
/// the stream re-encrypts.
async fn backend(
    s: &mut Session<'_>,
    target: &super::Target,
) -> Result<(BoxIo, crate::upstream::ActiveGuard), Outcome> {
    let (mut backend, active) = s.dial(target).await?;
    if target.tls.is_some() {
        let mut request = Vec::with_capacity(8);
        request.put_u32(8);
        request.put_u32(SSL_REQUEST);
        let answer = s
            .backend_step("SSLRequest to the backend", async {
                write_all(&mut backend, &request).await?;
                backend.read_u8().await
            })
            .await?;
        if answer != b'S' {
            s.detail = format!("the backend answered {:?} to SSLRequest: it does not accept TLS", char::from(answer));
            return Err(Outcome::Backend);
        }
        backend = s.backend_tls(target, backend).await?;
    }
    Ok((backend, active))
}

/// Reads the client's first message(s): answers SSLRequest `S` and GSSENCRequest `N`.
async fn opening(client: &mut BoxIo, buf: &mut BytesMut) -> Result<Opening, String> {
    for _ in 0..3 {
        fill(client, buf, 1, MAX_STARTUP).await.map_err(|e| e.to_string())?;
        if buf[0] == 0x16 {
            // Direct TLS: the ClientHello itself.
            return Ok(Opening::Tls);
        }
        fill(client, buf, 8, MAX_STARTUP).await.map_err(|e| e.to_string())?;
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if !(8..=MAX_STARTUP).contains(&len) {
            return Err(format!("a startup message of {len} bytes"));
        }
        match code {
            SSL_REQUEST if len == 8 => {
                let _ = buf.split_to(8);
                write_all(client, b"S").await.map_err(|e| e.to_string())?;
                return Ok(Opening::Tls);
            }
            GSSENC_REQUEST if len == 8 => {
                let _ = buf.split_to(8);
                write_all(client, b"N").await.map_err(|e| e.to_string())?;
            }
            // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
            CANCEL_REQUEST if (16..=268).contains(&len) => {
                fill(client, buf, len, 268).await.map_err(|e| e.to_string())?;
                buf.truncate(len);
                return Ok(Opening::Cancel);
            }
            PROTOCOL_3 => return Ok(Opening::Plain),
            c if c >> 16 == 3 => return Ok(Opening::Plain),
            other => return Err(format!("unknown startup code {other}")),
        }
    }
    Err("too many negotiation requests".into())
}

/// Passes a CancelRequest to every backend of the stream (only the one holding the
/// session knows its key; the others ignore it).
async fn cancel(s: &mut Session<'_>, request: &[u8]) {
    let Some(target) = s.live.default.as_ref() else { return };
    for b in &target.group.backends {
        let Some(t) = b.targets.load().first().cloned() else { continue };
        let header = s.proxy_header();
        let sent = timeout(s.live.config.connect_timeout, async {
            let mut io = super::conn::connect(&t).await?;
            if let Some(h) = &header {
                write_all(&mut io, h).await?;
            }
            write_all(&mut io, request).await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(stream = %s.live.config.name, "a cancel request did not reach a backend");
        }
    }
}

/// An ErrorResponse with severity FATAL.
fn fatal(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', message)] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&body);
    out
}
