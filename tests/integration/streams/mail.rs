//! Mail behind STARTTLS terminated by Gatehouse: SMTP with a real server (aiosmtpd, from
//! PyPI), and IMAP and POP3 with line servers of the test's own (no IMAP or POP3 server
//! is installed here); each dialogue as the real clients speak it, and the attacks on it:
//! commands before STARTTLS, and bytes injected after it.

use std::process::{Command, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{Daemon, files, read_until, s_client};
use crate::harness::{Gatehouse, TestCa, ci_python, metrics_with, within};

fn mail_stream(name: &str, protocol: &str, backend: &str) -> String {
    format!(
        "  - name: {name}\n    listen: 127.0.0.1:0\n    protocol: {protocol}\n    tls: {{cert: m.crt, key: m.key, hosts: [mail.test]}}\n    backends: [{backend}]\n"
    )
}

fn start(streams: &str, ca: &TestCa) -> (Gatehouse, std::path::PathBuf) {
    let own = ca.issue(&["mail.test"]);
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(dir.path(), &format!("streams:\n{streams}"), &[]);
    files(dir.path(), &[("m.crt", &own.cert_pem), ("m.key", &own.key_pem), ("ca.pem", &ca.pem())]);
    let ca_path = dir.path().join("ca.pem");
    (Gatehouse::start_in(dir), ca_path)
}

/// aiosmtpd on a leased port, printing what it receives.
fn smtpd() -> Daemon {
    let python = ci_python("aiosmtpd", "aiosmtpd==1.4.6");
    Daemon::start(|port, _| {
        let mut c = Command::new(&python);
        c.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]).stdout(Stdio::piped());
        c
    })
}

/// Reads one (possibly multi-line) SMTP reply.
async fn reply<S: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<S>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        within("smtp reply", r.read_line(&mut line)).await.expect("read");
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

#[tokio::test]
async fn smtp_starttls_is_terminated_and_mail_reaches_the_real_server() {
    let server = smtpd();
    let ca = TestCa::new();
    let (gh, _) = start(&mail_stream("smtp", "smtp", &format!("127.0.0.1:{}", server.port)), &ca);
    let tcp = within("connect", TcpStream::connect(gh.stream("smtp"))).await.expect("connect");
    let mut r = BufReader::new(tcp);
    assert!(reply(&mut r).await.starts_with("220 mail.test"));
    r.get_mut().write_all(b"EHLO client.test\r\n").await.expect("ehlo");
    assert!(reply(&mut r).await.contains("STARTTLS"));
    // Mail before TLS is refused: nothing reaches the server in plaintext.
    r.get_mut().write_all(b"MAIL FROM:<a@client.test>\r\n").await.expect("mail");
    assert!(reply(&mut r).await.starts_with("530"));
    r.get_mut().write_all(b"STARTTLS\r\n").await.expect("starttls");
    assert!(reply(&mut r).await.starts_with("220"));
    let tls =
        ca.connector(&[]).connect("mail.test".try_into().expect("name"), r.into_inner()).await.expect("handshake");
    let mut r = BufReader::new(tls);
    r.get_mut().write_all(b"EHLO client.test\r\n").await.expect("ehlo");
    let caps = reply(&mut r).await;
    assert!(caps.contains("8BITMIME") && !caps.contains("STARTTLS"), "not aiosmtpd's answer: {caps}");
    for (line, code) in [
        ("MAIL FROM:<a@client.test>\r\n", "250"),
        ("RCPT TO:<b@mail.test>\r\n", "250"),
        ("DATA\r\n", "354"),
        ("Subject: through gatehouse\r\n\r\nsent over TLS\r\n.\r\n", "250"),
        ("QUIT\r\n", "221"),
    ] {
        r.get_mut().write_all(line.as_bytes()).await.expect("write");
        let got = reply(&mut r).await;
        assert!(got.starts_with(code), "{line:?} -> {got:?}");
    }
    drop(r);
    let out = server.stop();
    assert!(out.contains("sent over TLS"), "aiosmtpd printed: {out}");

    // openssl's own STARTTLS dialogue verifies the certificate.
    let again = smtpd();
    let (gh2, ca_path) = start(&mail_stream("smtp", "smtp", &format!("127.0.0.1:{}", again.port)), &ca);
    let (ok, out) = s_client(gh2.stream("smtp"), &["-starttls", "smtp"], &ca_path);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn bytes_injected_after_starttls_end_the_connection() {
    let ca = TestCa::new();
    let (gh, _) = start(&mail_stream("smtp", "smtp", "127.0.0.1:9"), &ca);
    let mut s = within("connect", TcpStream::connect(gh.stream("smtp"))).await.expect("connect");
    assert!(read_until(&mut s, "\r\n").await.starts_with("220"));
    // The classic injection: a command pipelined after STARTTLS in the same packet.
    s.write_all(b"STARTTLS\r\nRSET\r\n").await.expect("write");
    let mut rest = Vec::new();
    let _ = within("closed", s.read_to_end(&mut rest)).await;
    assert!(!String::from_utf8_lossy(&rest).contains("220 2.0.0"), "{}", String::from_utf8_lossy(&rest));
    metrics_with(gh.admin, &["{stream=\"smtp\",outcome=\"protocol_error\"} 1"]).await;
}

/// A line server playing the backend: greets with `greeting`, then answers each line with
/// `backend says: LINE`.
async fn line_server(greeting: &'static str) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                let _ = r.get_mut().write_all(greeting.as_bytes()).await;
                let mut line = String::new();
                while r.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    let answer = format!("backend says: {}\r\n", line.trim_end());
                    if r.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn imap_and_pop3_start_tls_the_way_their_clients_do() {
    let ca = TestCa::new();
    let imap = line_server("* OK IMAP backend ready\r\n").await;
    let pop3 = line_server("+OK POP3 backend ready\r\n").await;
    let streams =
        format!("{}{}", mail_stream("imap", "imap", &imap.to_string()), mail_stream("pop3", "pop3", &pop3.to_string()));
    let (gh, ca_path) = start(&streams, &ca);
    for (name, opening, starttls, ok) in
        [("imap", "a1 CAPABILITY\r\n", "a2 STARTTLS\r\n", "a2 OK"), ("pop3", "CAPA\r\n", "STLS\r\n", "+OK")]
    {
        let mut s = within("connect", TcpStream::connect(gh.stream(name))).await.expect("connect");
        let greeting = read_until(&mut s, "\r\n").await;
        s.write_all(opening.as_bytes()).await.expect("write");
        let caps = read_until(&mut s, if name == "imap" { "a1 OK" } else { "\r\n.\r\n" }).await;
        assert!(caps.contains(if name == "imap" { "STARTTLS" } else { "STLS" }), "{name}: {greeting}{caps}");
        // Logging in before TLS is refused.
        s.write_all(if name == "imap" { b"a3 LOGIN u p\r\n".as_slice() } else { b"USER u\r\n" }).await.expect("write");
        let refused = read_until(&mut s, "\r\n").await;
        assert!(refused.contains("BAD") || refused.starts_with("-ERR"), "{name}: {refused}");
        s.write_all(starttls.as_bytes()).await.expect("write");
        assert!(read_until(&mut s, "\r\n").await.starts_with(ok), "{name}");
        let mut tls = ca.connector(&[]).connect("mail.test".try_into().expect("name"), s).await.expect("handshake");
        tls.write_all(b"after tls\r\n").await.expect("write");
        // The backend's greeting was dropped; its answer comes first.
        assert_eq!(read_until(&mut tls, "\r\n").await, "backend says: after tls\r\n", "{name}");
        let (ok, out) = s_client(gh.stream(name), &["-starttls", name], &ca_path);
        assert!(ok, "{name}: {out}");
    }
}
