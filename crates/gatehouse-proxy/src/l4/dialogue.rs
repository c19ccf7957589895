//! The plaintext part of the line protocols whose STARTTLS Gatehouse answers itself (SMTP,
//! IMAP, POP3, FTP): its greeting, then each command line answered by the protocol's own
//! rules until the client asks for TLS, leaves, or runs out of commands. Nothing of it
//! reaches the backend. Bytes after the command that starts TLS, before the handshake, end
//! the connection (the STARTTLS injection attack).

use bytes::BytesMut;
use tokio::time::timeout;

use super::conn::Session;
use super::io::{BoxIo, line};
use super::pipe::write_all;
use super::stats::Outcome;

/// Command lines are short (RFC 5321 allows 512 bytes; IMAP tags add a little).
pub const MAX_LINE: usize = 1024;
/// Plaintext commands allowed before TLS.
const MAX_COMMANDS: usize = 20;

/// What a plaintext command line gets.
pub enum Reply {
    /// Send this, keep reading.
    Say(Vec<u8>),
    /// Send this, then TLS.
    StartTls(Vec<u8>),
    /// Send this, then close.
    Bye(Vec<u8>),
}

/// Runs the dialogue: `Ok(true)` when TLS is to start now, `Ok(false)` when the client left
/// (answered), `Err` with the outcome otherwise (the reason in `s.detail`).
pub async fn before_tls(
    s: &mut Session<'_>,
    client: &mut BoxIo,
    greeting: &[u8],
    reply: impl Fn(&str) -> Reply,
) -> Result<bool, Outcome> {
    let talk = async {
        write_all(client, greeting).await.map_err(|e| (Outcome::Reset, e.to_string()))?;
        let mut buf = BytesMut::with_capacity(256);
        for _ in 0..MAX_COMMANDS {
            let l = line(client, &mut buf, MAX_LINE).await.map_err(|e| (Outcome::Protocol, e.to_string()))?;
            match reply(String::from_utf8_lossy(&l).trim_end_matches(['\r', '\n'])) {
                Reply::Say(r) => write_all(client, &r).await.map_err(|e| (Outcome::Reset, e.to_string()))?,
                Reply::Bye(r) => {
                    let _ = write_all(client, &r).await;
                    return Ok(false);
                }
                Reply::StartTls(r) => {
                    if !buf.is_empty() {
                        return Err((
                            Outcome::Protocol,
                            "bytes after the command that starts TLS, before TLS (injection attempt)".into(),
                        ));
                    }
                    write_all(client, &r).await.map_err(|e| (Outcome::Reset, e.to_string()))?;
                    return Ok(true);
                }
            }
        }
        Err((Outcome::TlsRequired, format!("{MAX_COMMANDS} commands without starting TLS")))
    };
    match timeout(s.live.config.handshake_timeout, talk).await {
        Ok(Ok(go)) => Ok(go),
        Ok(Err((o, why))) => {
            s.detail = why;
            Err(o)
        }
        Err(_) => {
            s.detail = "TLS not started within handshake_timeout".into();
            Err(Outcome::TlsRequired)
        }
    }
}
