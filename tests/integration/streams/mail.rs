//! Mail behind STARTTLS terminated by Gatehouse, with real servers: SMTP with aiosmtpd
//! (from PyPI), IMAP and POP3 with Dovecot (run by the test on leased ports with a minimal
//! configuration); each dialogue as the real clients speak it, and the attacks on it:
//! commands before STARTTLS, and bytes injected after it.

use std::process::{Command, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Daemon, expect_metrics, files, need, read_until, s_client};
use crate::harness::{Gatehouse, TestCa, ci_python, within};

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
    expect_metrics(gh.admin, &["{stream=\"smtp\",outcome=\"protocol_error\"} 1"]).await;
}

/// Dovecot serving `protocol` (imap or pop3) alone on a leased port, with one mailbox
/// whose password is `secret` for any user.
fn dovecot(protocol: &'static str) -> Daemon {
    need("dovecot", "dovecot-imapd dovecot-pop3d");
    Daemon::start(|port, dir| {
        // Dovecot drops to an unprivileged user for mail: it must reach its directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mail = dir.join("mail");
        std::fs::create_dir(&mail).expect("mail dir");
        std::os::unix::fs::chown(&mail, Some(65534), Some(65534)).expect("chown");
        let d = dir.display();
        let conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/run\nlog_path = {d}/dovecot.log\nprotocols = {protocol}\n\
             listen = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\nfirst_valid_uid = 1\n\
             mail_location = maildir:{d}/mail/%u\npassdb {{\n  driver = static\n  args = password=secret\n}}\n\
             userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={d}/mail/%u\n}}\n\
             service {protocol}-login {{\n  inet_listener {protocol} {{\n    port = {port}\n  }}\n  inet_listener {protocol}s {{\n    port = 0\n  }}\n}}\n"
        );
        std::fs::write(dir.join("dovecot.conf"), conf).expect("dovecot.conf");
        let mut c = Command::new("dovecot");
        c.arg("-F").arg("-c").arg(dir.join("dovecot.conf")).stdout(Stdio::null());
        c
    })
}

/// A protocol's dialogue: name, opening command, STARTTLS command, its success, then the
/// commands after TLS with what each answer holds.
type Dialogue = (&'static str, &'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

#[tokio::test]
async fn imap_and_pop3_clients_start_tls_with_gatehouse_and_log_in_to_dovecot() {
    let ca = TestCa::new();
    let (imap, pop3) = (dovecot("imap"), dovecot("pop3"));
    let streams = format!(
        "{}{}",
        mail_stream("imap", "imap", &format!("127.0.0.1:{}", imap.port)),
        mail_stream("pop3", "pop3", &format!("127.0.0.1:{}", pop3.port))
    );
    let (gh, ca_path) = start(&streams, &ca);
    let steps: [Dialogue; 2] = [
        (
            "imap",
            "a1 CAPABILITY\r\n",
            "a2 STARTTLS\r\n",
            "a2 OK",
            &[("a3 LOGIN alice secret\r\n", "a3 OK"), ("a4 SELECT INBOX\r\n", "a4 OK"), ("a5 LOGOUT\r\n", "a5 OK")],
        ),
        (
            "pop3",
            "CAPA\r\n",
            "STLS\r\n",
            "+OK",
            &[
                ("USER alice\r\n", "+OK"),
                ("PASS secret\r\n", "+OK Logged in"),
                ("STAT\r\n", "+OK 0 0"),
                ("QUIT\r\n", "+OK"),
            ],
        ),
    ];
    for (name, opening, starttls, ok, session) in steps {
        let mut s = within("connect", TcpStream::connect(gh.stream(name))).await.expect("connect");
        let greeting = read_until(&mut s, "\r\n").await;
        s.write_all(opening.as_bytes()).await.expect("write");
        let caps = read_until(&mut s, if name == "imap" { "a1 OK" } else { "\r\n.\r\n" }).await;
        assert!(caps.contains(if name == "imap" { "STARTTLS" } else { "STLS" }), "{name}: {greeting}{caps}");
        // Logging in before TLS is refused: the password never reaches Dovecot in plaintext.
        s.write_all(if name == "imap" { b"a0 LOGIN alice secret\r\n".as_slice() } else { b"USER alice\r\n" })
            .await
            .expect("write");
        let refused = read_until(&mut s, "\r\n").await;
        assert!(refused.contains("BAD") || refused.starts_with("-ERR"), "{name}: {refused}");
        s.write_all(starttls.as_bytes()).await.expect("write");
        assert!(read_until(&mut s, "\r\n").await.starts_with(ok), "{name}");
        let mut tls = ca.connector(&[]).connect("mail.test".try_into().expect("name"), s).await.expect("handshake");
        // Dovecot's greeting was dropped: each command gets Dovecot's own answer.
        for (command, answer) in session {
            tls.write_all(command.as_bytes()).await.expect("write");
            let got = read_until(&mut tls, answer).await;
            assert!(got.contains(answer), "{name}: {command:?} -> {got:?}");
        }
        let (ok, out) = s_client(gh.stream(name), &["-starttls", name], &ca_path);
        assert!(ok, "{name}: {out}");
    }
    let log = std::fs::read_to_string(imap.dir.path().join("dovecot.log")).unwrap_or_default();
    assert!(log.contains("Login: user=<alice>"), "{log}");
}
