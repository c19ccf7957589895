//! FTP behind AUTH TLS terminated by Gatehouse: a real FTP server (pyftpdlib, from PyPI)
//! and a real client (curl), with passive data connections (EPSV and PASV) proxied and
//! encrypted, and the plaintext and active-mode attempts refused.

use std::process::{Command, Stdio};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Daemon, expect_metrics, files, need, read_until, run, s_client};
use crate::harness::{Gatehouse, TestCa, ci_python, within};

/// pyftpdlib serving a directory holding `hello.txt`, anonymous, with uploads allowed.
fn ftpd() -> Daemon {
    let python = ci_python("pyftpdlib", "pyftpdlib==2.0.1");
    Daemon::start(|port, dir| {
        std::fs::write(dir.join("hello.txt"), "hello over FTPS\n").expect("file");
        let mut c = Command::new(&python);
        c.args(["-m", "pyftpdlib", "-i", "127.0.0.1", "-p", &port.to_string(), "-w", "-d"])
            .arg(dir)
            .stdout(Stdio::null());
        c
    })
}

#[tokio::test]
async fn curl_lists_downloads_and_uploads_over_explicit_ftps() {
    need("curl", "curl");
    let server = ftpd();
    let port = server.port;
    let ca = TestCa::new();
    let own = ca.issue(&["ftp.test", "127.0.0.1"]);
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(
        dir.path(),
        &format!(
            "streams:\n  - name: ftp\n    listen: 127.0.0.1:0\n    protocol: ftp\n    tls: {{cert: f.crt, key: f.key}}\n    backends: [127.0.0.1:{port}]\n"
        ),
        &[],
    );
    files(
        dir.path(),
        &[
            ("f.crt", &own.cert_pem),
            ("f.key", &own.key_pem),
            ("ca.pem", &ca.pem()),
            ("up.txt", "uploaded through gatehouse\n"),
        ],
    );
    let (ca_path, up) = (dir.path().join("ca.pem"), dir.path().join("up.txt"));
    let gh = Gatehouse::start_in(dir);
    let base = format!("ftp://{}/", gh.stream("ftp"));
    let curl = |extra: &[&str], path: &str| {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
            .arg(&ca_path)
            .args(extra)
            .arg(format!("{base}{path}"));
        run(&mut c)
    };
    // EPSV (curl's first choice) and PASV, each with the data connection under TLS.
    let (ok, out) = curl(&[], "hello.txt");
    assert!(ok && out == "hello over FTPS\n", "{out}");
    let (ok, out) = curl(&["--disable-epsv"], "");
    assert!(ok && out.contains("hello.txt"), "{out}");
    let upload = up.display().to_string();
    let (ok, out) = curl(&["-T", &upload], "up.txt");
    assert!(ok, "{out}");
    let stored = std::fs::read_to_string(server.dir.path().join("up.txt")).expect("uploaded file");
    assert_eq!(stored, "uploaded through gatehouse\n");
    // Encrypted control with clear data (no PROT P): the data connection is refused.
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--ftp-ssl-control", "--cacert"]).arg(&ca_path).arg(format!("{base}hello.txt"));
    let (ok, out) = run(&mut c);
    assert!(!ok && !out.contains("hello over FTPS"), "{out}");
    // Active mode goes around the proxy: refused.
    let (ok, out) = curl(&["--ftp-port", "-"], "hello.txt");
    assert!(!ok, "{out}");

    let (ok, out) = s_client(gh.stream("ftp"), &["-starttls", "ftp"], &ca_path);
    assert!(ok, "{out}");
    // Without AUTH TLS nothing reaches the server.
    let mut s = within("connect", TcpStream::connect(gh.stream("ftp"))).await.expect("connect");
    assert!(read_until(&mut s, "\r\n").await.starts_with("220"));
    s.write_all(b"USER anonymous\r\n").await.expect("write");
    assert!(read_until(&mut s, "\r\n").await.starts_with("530"));
    expect_metrics(gh.admin, &["{stream=\"ftp\",outcome=\"closed\"}"]).await;
}
