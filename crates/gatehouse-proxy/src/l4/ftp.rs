//! FTP with AUTH TLS (RFC 4217): Gatehouse answers the plaintext part itself (greeting,
//! FEAT, AUTH TLS), terminates TLS on the control connection, then relays it to the
//! backend line by line, which lets it:
//! - answer PBSZ and PROT itself (the backend speaks plain FTP); when the stream requires
//!   TLS, clear data connections are refused (PROT C, and PASV/EPSV before PROT P: FTP's
//!   default protection is clear);
//! - refuse active mode (PORT, EPRT): the data connection would go from the backend to the
//!   client, around Gatehouse;
//! - rewrite each passive reply (227, 229) to a data port of its own, where it accepts the
//!   client's data connection (only from the same client address), terminates its TLS
//!   under PROT P, and connects it to the backend's data port, on the backend address it
//!   already uses for control (never the one the reply names: no FTP bounce).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::conn::Session;
use super::dialogue::{Reply, before_tls};
use super::io::{BoxIo, line};
use super::pipe::{self, write_all};
use super::stats::Outcome;

const MAX_LINE: usize = 4096;
/// How long a passive data port waits for the client.
const DATA_WAIT: Duration = Duration::from_secs(30);

/// The port of a passive reply: `227 … (h1,h2,h3,h4,p1,p2)` or `229 … (|||port|)`.
fn passive_port(reply: &str) -> Option<u16> {
    if let Some(rest) = reply.strip_prefix("227") {
        let inner = rest.split_once('(')?.1.split_once(')')?.0;
        let n: Vec<u16> = inner.split(',').map(|p| p.trim().parse().ok()).collect::<Option<_>>()?;
        if n.len() != 6 || n.iter().any(|v| *v > 255) {
            return None;
        }
        return Some(n[4] << 8 | n[5]);
    }
    let rest = reply.strip_prefix("229")?;
    let inner = rest.split_once('(')?.1.split_once(')')?.0;
    inner.trim_matches('|').parse().ok()
}

/// The passive reply the client gets: Gatehouse's address and data port.
fn passive_reply(code: &str, ip: IpAddr, port: u16) -> String {
    match (code, ip) {
        ("227", IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!(
                "227 Entering Passive Mode ({},{},{},{},{},{}).\r\n",
                o[0],
                o[1],
                o[2],
                o[3],
                port >> 8,
                port & 0xff
            )
        }
        _ => format!("229 Entering Extended Passive Mode (|||{port}|)\r\n"),
    }
}

/// What Gatehouse answers before TLS.
fn plaintext(line: &str) -> Reply {
    let say = |r: &[u8]| Reply::Say(r.to_vec());
    match line.to_ascii_uppercase().as_str() {
        "AUTH TLS" | "AUTH SSL" | "AUTH TLS-C" => Reply::StartTls(b"234 Proceed with TLS negotiation\r\n".to_vec()),
        "FEAT" => say(b"211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n PASV\r\n211 End\r\n"),
        "QUIT" => Reply::Bye(b"221 Goodbye\r\n".to_vec()),
        "NOOP" => say(b"200 OK\r\n"),
        _ => say(b"530 Use AUTH TLS first\r\n"),
    }
}

/// What a client command line gets on the relayed control connection.
enum Command {
    Forward,
    /// PASV or EPSV: forwarded once data connections are protected (or may be clear).
    Passive,
    Answer(&'static str),
    /// PROT: whether data connections are TLS from now on.
    Protect(bool),
}

fn command(line: &str, required: bool) -> Command {
    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    let arg = line.split_whitespace().nth(1).unwrap_or("").to_ascii_uppercase();
    match verb.as_str() {
        "PBSZ" => Command::Answer("200 PBSZ=0\r\n"),
        "PROT" if arg == "P" => Command::Protect(true),
        "PROT" if arg == "C" && !required => Command::Protect(false),
        "PROT" => Command::Answer("534 Only PROT P is allowed here\r\n"),
        "PASV" | "EPSV" => Command::Passive,
        "PORT" | "EPRT" | "LPRT" => {
            Command::Answer("502 Active mode is not available through this proxy; use passive mode\r\n")
        }
        "AUTH" => Command::Answer("503 TLS is already on\r\n"),
        "CCC" => Command::Answer("534 The control connection stays encrypted\r\n"),
        _ => Command::Forward,
    }
}

pub(super) async fn run(s: &mut Session<'_>, client: BoxIo) -> Outcome {
    session(s, client).await.unwrap_or_else(|o| o)
}

async fn session(s: &mut Session<'_>, mut client: BoxIo) -> Result<Outcome, Outcome> {
    let live = s.live;
    let cfg = &live.config;
    let target = live.default.as_ref().ok_or(Outcome::NoRoute)?;
    if !before_tls(s, &mut client, b"220 Gatehouse FTP ready (AUTH TLS required)\r\n", plaintext).await? {
        return Ok(Outcome::Closed);
    }
    let mut client = s.handshake(client).await?;
    let unreachable = b"421 Gatehouse could not reach the server\r\n";
    let (mut backend, _active) = s.dial_or_tell(target, &mut client, unreachable).await?;
    let Some(backend_ip) = s.backend_addr.map(|a| a.ip()) else {
        s.detail = "an FTP backend must be reached over TCP (its data ports)".into();
        return Err(Outcome::Backend);
    };
    // The backend's greeting: the client had Gatehouse's.
    let (mut from_client, mut from_backend) = (BytesMut::new(), BytesMut::new());
    s.backend_step("the backend's greeting", async {
        loop {
            let l = line(&mut backend, &mut from_backend, MAX_LINE).await?;
            if !l.starts_with(b"220") {
                let said = String::from_utf8_lossy(&l).trim_end().to_string();
                return Err(std::io::Error::other(format!("unexpected greeting {said:?}")));
            }
            if l.get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    })
    .await?;
    let required = cfg.tls.as_ref().is_none_or(|t| t.required);
    let acceptor = live.acceptor.clone();
    // Canonical: an IPv4 client on a dual-stack listener gets IPv4 in its `227` reply.
    let (client_ip, local_ip) = (s.client.ip().to_canonical(), s.local.ip().to_canonical());
    let mut private = false;
    // A passive reply is rewritten only as the answer to a PASV or EPSV the client sent.
    let mut passive_asked = false;
    let mut data: Option<DataTask> = None;
    let max_duration = cfg.max_duration;
    // Control and data bytes together.
    let (mut up, mut down) = (0u64, 0u64);
    let idle = cfg.idle_timeout;
    let end = loop {
        let next = tokio::select! {
            l = line(&mut client, &mut from_client, MAX_LINE) => (true, l),
            l = line(&mut backend, &mut from_backend, MAX_LINE) => (false, l),
            () = tokio::time::sleep(idle) => {
                // A long transfer keeps the control connection quiet: that is not idleness.
                if data.as_ref().is_some_and(|d| !d.0.is_finished()) {
                    continue;
                }
                break Outcome::Idle;
            }
        };
        let (from_client_side, l) = match next {
            (side, Ok(l)) => (side, l),
            (_, Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Outcome::Closed,
            (side, Err(e)) => {
                s.detail = format!("{} control connection: {e}", if side { "client" } else { "backend" });
                break Outcome::Reset;
            }
        };
        let text = String::from_utf8_lossy(&l).into_owned();
        let sent = if from_client_side {
            up += l.len() as u64;
            match command(&text, required) {
                // RFC 4217's default protection is clear: data connections wait for PROT P.
                Command::Passive if required && !private => {
                    relay(&mut client, b"534 Send PROT P first: data connections must be encrypted\r\n", idle).await
                }
                Command::Passive => {
                    passive_asked = true;
                    relay(&mut backend, &l, idle).await
                }
                Command::Forward => relay(&mut backend, &l, idle).await,
                Command::Answer(a) => relay(&mut client, a.as_bytes(), idle).await,
                Command::Protect(p) => {
                    private = p;
                    relay(&mut client, b"200 Protection level set\r\n", idle).await
                }
            }
        } else {
            down += l.len() as u64;
            // Only a final reply line (`227 `, not `227-`) answers the PASV asked for.
            let last = l.get(3) == Some(&b' ');
            let port = if passive_asked && last { passive_port(&text) } else { None };
            if last {
                passive_asked = false;
            }
            match port {
                Some(port) => {
                    let listener = match TcpListener::bind(SocketAddr::new(local_ip, 0)).await {
                        Ok(l) => l,
                        Err(e) => {
                            s.detail = format!("cannot open a data port: {e}");
                            break Outcome::Reset;
                        }
                    };
                    let ours = listener.local_addr().map_or(0, |a| a.port());
                    if let Some(old) = data.take()
                        && old.0.is_finished()
                    {
                        add(&mut up, &mut down, old.finish().await);
                    }
                    let tls = private.then(|| acceptor.clone()).flatten();
                    let backend_data = SocketAddr::new(backend_ip, port);
                    let task = data_connection(listener, client_ip, backend_data, tls, idle, max_duration);
                    data = Some(DataTask(tokio::spawn(task)));
                    relay(&mut client, passive_reply(&text[..3], local_ip, ours).as_bytes(), idle).await
                }
                None => relay(&mut client, &l, idle).await,
            }
        };
        if sent.is_err() {
            break Outcome::Reset;
        }
    };
    if let Some(d) = data {
        // A transfer in progress may finish (within DATA_WAIT); a port nobody used closes.
        // Dropped sooner (drain), the task ends with this connection.
        if let Ok(moved) = timeout(DATA_WAIT, d.finish()).await {
            add(&mut up, &mut down, moved);
        }
    }
    s.moved(pipe::Moved { up, down });
    Ok(end)
}

/// Writes a relayed line within `limit`: a peer that stops reading must not hold the relay
/// (and its idle timer) forever.
async fn relay(io: &mut BoxIo, bytes: &[u8], limit: Duration) -> std::io::Result<()> {
    timeout(limit, write_all(io, bytes)).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// A passive data connection's task: aborted when dropped, so no data connection outlives
/// its control connection (a drain, a reset, a newer passive reply).
struct DataTask(tokio::task::JoinHandle<pipe::Moved>);

impl DataTask {
    /// What it moved, once it ends.
    async fn finish(mut self) -> pipe::Moved {
        (&mut self.0).await.unwrap_or_default()
    }
}

impl Drop for DataTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn add(up: &mut u64, down: &mut u64, moved: pipe::Moved) {
    *up += moved.up;
    *down += moved.down;
}

/// One passive data connection: the client's (from its own address only), TLS under
/// PROT P, piped to the backend's data port. Returns the bytes it moved.
async fn data_connection(
    listener: TcpListener,
    client_ip: IpAddr,
    backend: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    idle: Duration,
    max_duration: Option<Duration>,
) -> pipe::Moved {
    let none = pipe::Moved::default();
    let accepted = timeout(DATA_WAIT, async {
        loop {
            let (tcp, peer) = listener.accept().await?;
            if peer.ip().to_canonical() == client_ip {
                return Ok::<_, std::io::Error>(tcp);
            }
            tracing::debug!(peer = %peer, "FTP data connection from another address refused");
        }
    })
    .await;
    let Ok(Ok(tcp)) = accepted else { return none };
    drop(listener);
    let _ = tcp.set_nodelay(true);
    let client: BoxIo = match tls {
        Some(acceptor) => match timeout(DATA_WAIT, acceptor.accept(tcp)).await {
            Ok(Ok(t)) => Box::new(t),
            _ => return none,
        },
        None => Box::new(tcp),
    };
    let Ok(Ok(server)) = timeout(DATA_WAIT, tokio::net::TcpStream::connect(backend)).await else { return none };
    pipe::run(client, Box::new(server), idle, max_duration).await.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies_are_read_and_written() {
        assert_eq!(passive_port("227 Entering passive mode (127,0,0,1,195,80)."), Some(50000));
        assert_eq!(passive_port("229 Entering extended passive mode (|||50001|)."), Some(50001));
        assert_eq!(passive_port("227 (1,2,3,4,5)"), None);
        assert_eq!(passive_port("227 (1,2,3,4,300,1)"), None);
        assert_eq!(passive_port("226 Transfer complete."), None);
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert_eq!(passive_reply("227", ip, 50000), "227 Entering Passive Mode (10,1,2,3,195,80).\r\n");
        assert_eq!(passive_reply("229", ip, 50000), "229 Entering Extended Passive Mode (|||50000|)\r\n");
    }

    #[test]
    fn data_stays_private_and_active_mode_is_refused() {
        assert!(matches!(command("PROT C\r\n", true), Command::Answer(_)));
        assert!(matches!(command("prot c\r\n", false), Command::Protect(false)));
        assert!(matches!(command("PROT P\r\n", true), Command::Protect(true)));
        assert!(matches!(command("PORT 127,0,0,1,4,1\r\n", true), Command::Answer(a) if a.starts_with("502")));
        assert!(matches!(command("EPRT |1|127.0.0.1|1025|\r\n", true), Command::Answer(a) if a.starts_with("502")));
        assert!(matches!(command("RETR a.txt\r\n", true), Command::Forward));
    }
}
