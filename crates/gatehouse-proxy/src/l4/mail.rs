//! SMTP, IMAP and POP3 with STARTTLS: Gatehouse answers the plaintext part itself (its
//! greeting, the capability list offering STARTTLS, refusals of anything else), terminates
//! TLS on STARTTLS, and only then connects the backend: its greeting is read and dropped
//! (the client had Gatehouse's), and the client's next command (EHLO, CAPABILITY, CAPA)
//! goes to it. Nothing the client says in plaintext ever reaches the backend, and bytes
//! pipelined after the STARTTLS command are refused (the STARTTLS injection attack).
//!
//! With `backend_tls` the backend's own STARTTLS is done before the client's commands flow.

use bytes::BytesMut;
use gatehouse_config::StreamProtocol;
use tokio::time::timeout;

use super::conn::Session;
use super::io::{BoxIo, Prefixed, line};
use super::pipe::write_all;
use super::stats::Outcome;

/// Command lines are short (RFC 5321 allows 512 bytes; IMAP tags add a little).
const MAX_LINE: usize = 1024;
/// Plaintext commands allowed before TLS, beyond those answered.
const MAX_COMMANDS: usize = 20;

/// What a plaintext command line gets.
enum Reply {
    /// Send this, keep reading.
    Say(Vec<u8>),
    /// Send this, then TLS.
    StartTls(Vec<u8>),
    /// Send this, then close.
    Bye(Vec<u8>),
}

fn greeting(p: StreamProtocol, name: &str) -> Vec<u8> {
    match p {
        StreamProtocol::Smtp => format!("220 {name} ESMTP Gatehouse\r\n"),
        StreamProtocol::Imap => "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Gatehouse ready\r\n".to_string(),
        _ => "+OK Gatehouse ready\r\n".to_string(),
    }
    .into_bytes()
}

fn reply(p: StreamProtocol, name: &str, line: &str) -> Reply {
    let line = line.trim_end_matches(['\r', '\n']);
    match p {
        StreamProtocol::Smtp => {
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" => Reply::Say(format!("250-{name}\r\n250-PIPELINING\r\n250 STARTTLS\r\n").into_bytes()),
                "HELO" => Reply::Say(format!("250 {name}\r\n").into_bytes()),
                "STARTTLS" if line.len() == 8 => Reply::StartTls(b"220 2.0.0 Ready to start TLS\r\n".to_vec()),
                "NOOP" | "RSET" => Reply::Say(b"250 2.0.0 OK\r\n".to_vec()),
                "QUIT" => Reply::Bye(b"221 2.0.0 Bye\r\n".to_vec()),
                _ => Reply::Say(b"530 5.7.0 Must issue a STARTTLS command first\r\n".to_vec()),
            }
        }
        StreamProtocol::Imap => {
            let mut parts = line.splitn(3, ' ');
            let tag = parts.next().unwrap_or("*");
            let command = parts.next().unwrap_or("").to_ascii_uppercase();
            let tag = if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'+') {
                "*"
            } else {
                tag
            };
            match command.as_str() {
                "CAPABILITY" => Reply::Say(
                    format!("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n{tag} OK CAPABILITY completed\r\n")
                        .into_bytes(),
                ),
                "STARTTLS" => Reply::StartTls(format!("{tag} OK Begin TLS negotiation now\r\n").into_bytes()),
                "NOOP" => Reply::Say(format!("{tag} OK NOOP completed\r\n").into_bytes()),
                "LOGOUT" => {
                    Reply::Bye(format!("* BYE Gatehouse logging out\r\n{tag} OK LOGOUT completed\r\n").into_bytes())
                }
                _ => Reply::Say(format!("{tag} BAD Must issue a STARTTLS command first\r\n").into_bytes()),
            }
        }
        _ => match line.to_ascii_uppercase().as_str() {
            "CAPA" => Reply::Say(b"+OK Capability list follows\r\nSTLS\r\nUSER\r\n.\r\n".to_vec()),
            "STLS" => Reply::StartTls(b"+OK Begin TLS negotiation\r\n".to_vec()),
            "NOOP" => Reply::Say(b"+OK\r\n".to_vec()),
            "QUIT" => Reply::Bye(b"+OK Bye\r\n".to_vec()),
            _ => Reply::Say(b"-ERR Must issue the STLS command first\r\n".to_vec()),
        },
    }
}

pub(super) async fn run(s: &mut Session<'_>, mut client: BoxIo) -> Outcome {
    let cfg = s.live.config.clone();
    let Some(target) = s.live.default.as_ref() else { return Outcome::NoRoute };
    let name = cfg.tls.as_ref().and_then(|t| t.hosts.first().cloned()).unwrap_or_else(|| "gatehouse".to_string());
    let plaintext = timeout(cfg.handshake_timeout, async {
        write_all(&mut client, &greeting(cfg.protocol, &name)).await.map_err(|e| (Outcome::Reset, e.to_string()))?;
        let mut buf = BytesMut::with_capacity(256);
        for _ in 0..MAX_COMMANDS {
            let l = line(&mut client, &mut buf, MAX_LINE).await.map_err(|e| (Outcome::Protocol, e.to_string()))?;
            let text = String::from_utf8_lossy(&l);
            match reply(cfg.protocol, &name, &text) {
                Reply::Say(r) => write_all(&mut client, &r).await.map_err(|e| (Outcome::Reset, e.to_string()))?,
                Reply::Bye(r) => {
                    let _ = write_all(&mut client, &r).await;
                    return Ok(false);
                }
                Reply::StartTls(r) => {
                    if !buf.is_empty() {
                        return Err((
                            Outcome::Protocol,
                            "bytes after the STARTTLS command, before TLS (injection attempt)".into(),
                        ));
                    }
                    write_all(&mut client, &r).await.map_err(|e| (Outcome::Reset, e.to_string()))?;
                    return Ok(true);
                }
            }
        }
        Err((Outcome::TlsRequired, format!("{MAX_COMMANDS} commands without STARTTLS")))
    })
    .await;
    match plaintext {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Outcome::Closed,
        Ok(Err((o, why))) => {
            s.detail = why;
            return o;
        }
        Err(_) => {
            s.detail = "no STARTTLS within handshake_timeout".into();
            return Outcome::TlsRequired;
        }
    }
    let client = match s.handshake(client).await {
        Ok(c) => c,
        Err(o) => return o,
    };
    let (mut backend, _active) = match s.dial(target).await {
        Ok(b) => b,
        Err(o) => return o,
    };
    let mut buf = BytesMut::with_capacity(512);
    let opened = timeout(cfg.connect_timeout, async {
        skip_reply(cfg.protocol, &mut backend, &mut buf).await?;
        if target.tls.is_some() {
            let (command, ok) = match cfg.protocol {
                StreamProtocol::Smtp => {
                    write_all(&mut backend, b"EHLO gatehouse\r\n").await?;
                    skip_reply(cfg.protocol, &mut backend, &mut buf).await?;
                    (&b"STARTTLS\r\n"[..], "220")
                }
                StreamProtocol::Imap => (&b"gh1 STARTTLS\r\n"[..], "gh1 OK"),
                _ => (&b"STLS\r\n"[..], "+OK"),
            };
            write_all(&mut backend, command).await?;
            let l = line(&mut backend, &mut buf, MAX_LINE).await?;
            if !l.starts_with(ok.as_bytes()) {
                return Err(std::io::Error::other(format!(
                    "the backend refused STARTTLS: {}",
                    String::from_utf8_lossy(&l).trim_end()
                )));
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            s.detail = format!("backend greeting: {e}");
            return Outcome::Backend;
        }
        Err(_) => {
            s.detail = "no greeting from the backend within connect_timeout".into();
            return Outcome::Backend;
        }
    }
    let backend: BoxIo = if target.tls.is_some() {
        match s.backend_tls(target, backend).await {
            Ok(b) => b,
            Err(o) => return o,
        }
    } else {
        Box::new(Prefixed::new(buf.freeze(), backend))
    };
    s.pipe(client, backend).await
}

/// Reads one reply of the backend's (SMTP replies span lines `250-…` up to `250 …`).
async fn skip_reply(p: StreamProtocol, io: &mut BoxIo, buf: &mut BytesMut) -> std::io::Result<()> {
    loop {
        let l = line(io, buf, MAX_LINE * 4).await?;
        let ok = match p {
            StreamProtocol::Smtp => l.first() == Some(&b'2'),
            StreamProtocol::Imap => l.starts_with(b"* OK") || l.starts_with(b"* PREAUTH"),
            _ => l.starts_with(b"+OK"),
        };
        if !ok {
            return Err(std::io::Error::other(format!("unexpected {:?}", String::from_utf8_lossy(&l).trim_end())));
        }
        if p != StreamProtocol::Smtp || l.get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}
