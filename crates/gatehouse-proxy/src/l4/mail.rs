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

use super::conn::Session;
use super::dialogue::{MAX_LINE, Reply, before_tls};
use super::io::{BoxIo, Prefixed, line};
use super::pipe::write_all;
use super::stats::Outcome;

fn greeting(p: StreamProtocol, name: &str) -> Vec<u8> {
    match p {
        StreamProtocol::Smtp => format!("220 {name} ESMTP Gatehouse\r\n"),
        StreamProtocol::Imap => "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Gatehouse ready\r\n".to_string(),
        _ => "+OK Gatehouse ready\r\n".to_string(),
    }
    .into_bytes()
}

fn reply(p: StreamProtocol, name: &str, line: &str) -> Reply {
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

pub(super) async fn run(s: &mut Session<'_>, client: BoxIo) -> Outcome {
    session(s, client).await.unwrap_or_else(|o| o)
}

async fn session(s: &mut Session<'_>, mut client: BoxIo) -> Result<Outcome, Outcome> {
    let live = s.live;
    let protocol = live.config.protocol;
    let target = live.default.as_ref().ok_or(Outcome::NoRoute)?;
    let name = live.config.tls.as_ref().and_then(|t| t.hosts.first().cloned()).unwrap_or_else(|| "gatehouse".into());
    if !before_tls(s, &mut client, &greeting(protocol, &name), |l| reply(protocol, &name, l)).await? {
        return Ok(Outcome::Closed);
    }
    let client = s.handshake(client).await?;
    let (mut backend, _active) = s.dial(target).await?;
    let mut buf = BytesMut::with_capacity(512);
    s.backend_step("the backend's greeting", async {
        skip_reply(protocol, &mut backend, &mut buf).await?;
        if target.tls.is_none() {
            return Ok(());
        }
        let (command, ok) = match protocol {
            StreamProtocol::Smtp => {
                write_all(&mut backend, b"EHLO gatehouse\r\n").await?;
                skip_reply(protocol, &mut backend, &mut buf).await?;
                (&b"STARTTLS\r\n"[..], "220")
            }
            StreamProtocol::Imap => (&b"gh1 STARTTLS\r\n"[..], "gh1 OK"),
            _ => (&b"STLS\r\n"[..], "+OK"),
        };
        write_all(&mut backend, command).await?;
        let l = line(&mut backend, &mut buf, MAX_LINE).await?;
        if !l.starts_with(ok.as_bytes()) {
            let said = String::from_utf8_lossy(&l).trim_end().to_string();
            return Err(std::io::Error::other(format!("the backend refused STARTTLS: {said}")));
        }
        Ok(())
    })
    .await?;
    let backend: BoxIo = match target.tls {
        Some(_) => s.backend_tls(target, backend).await?,
        None => Box::new(Prefixed::new(buf.freeze(), backend)),
    };
    Ok(s.pipe(client, backend).await)
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
