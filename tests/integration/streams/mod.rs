//! Streams (L4): plain TCP behaviour, TLS termination, SNI routing and passthrough,
//! re-encryption, and the protocol-aware TLS of databases and mail, each against the real
//! client tools (psql, mariadb, redis-cli, openssl s_client) and, where this machine runs
//! one, the real server.

mod databases;
mod ftp;
mod ldap;
mod mail;
mod nats;
mod reload;
mod tcp;
mod tls;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::TestCa;
use crate::harness::{NET_TIMEOUT, output_within};

/// Fails, naming the package to install, when `tool` is not on the PATH.
pub fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(found, "this test needs `{tool}`: apt-get install {package} (as .ci/run does)");
}

/// Runs a command (at most 30 s) and returns (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = output_within(cmd, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `openssl s_client` to `addr` with `extra` (`-starttls smtp`, `-alpn postgresql`),
/// verifying against `ca`: true when the handshake verified, with its output.
pub fn s_client(addr: SocketAddr, extra: &[&str], ca: &std::path::Path) -> (bool, String) {
    need("openssl", "openssl");
    let (ok, out) = run(Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-verify_return_error"])
        .args(extra)
        .arg("-CAfile")
        .arg(ca));
    (ok && out.contains("Verify return code: 0 (ok)"), out)
}

/// A server process the test runs (an FTP, LDAP or SMTP server), killed when dropped,
/// with the directory it works in.
pub struct Daemon {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Daemon {
    /// Starts the command `make` builds for a leased port and its own directory, and waits
    /// until the port accepts connections.
    pub fn start(make: impl FnOnce(u16, &std::path::Path) -> Command) -> Daemon {
        let dir = tempfile::tempdir().expect("dir");
        let [lease] = crate::harness::lease_ports::<1>();
        let port = lease.port;
        drop(lease);
        let mut cmd = make(port, dir.path());
        let child = cmd.stdin(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let up = crate::harness::wait_until_blocking(NET_TIMEOUT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "{cmd:?} did not listen on {port}");
        Daemon { child, dir, port }
    }

    /// Stops it and returns what it printed on stdout (when that was piped).
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            use std::io::Read;
            let _ = o.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/metrics` once it holds every one of `wanted`; fails the test, showing the last
/// scrape, when it does not within `NET_TIMEOUT`.
pub async fn expect_metrics(admin: SocketAddr, wanted: &[&str]) -> String {
    let text = crate::harness::metrics_with(admin, wanted).await;
    for w in wanted {
        assert!(text.contains(w), "{w:?} not in /metrics:\n{text}");
    }
    text
}

/// A backend that echoes what it reads, passing the client's end of file back as its own.
pub async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A backend that hands the first bytes of each connection (up to a blank line or 200
/// bytes) to the test, then echoes.
pub async fn recorder() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 200];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(buf[..n].to_vec());
                let _ = s.write_all(b"ok\n").await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, rx)
}

/// A TLS backend with a certificate for `name` from `ca`: says `I am NAME` after the
/// handshake, then echoes.
pub async fn tls_backend(ca: &TestCa, name: &str) -> SocketAddr {
    let issued = ca.issue(&[name]);
    let chain = vec![rustls_pki_types::CertificateDer::from(issued.der.clone())];
    let key = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key")
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("cert");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let name = name.to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, name) = (acceptor.clone(), name.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else { return };
                let _ = tls.write_all(format!("I am {name}\n").as_bytes()).await;
                let mut buf = [0; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// Writes `files` (name, text) into the gatehouse directory of a configuration under test.
pub fn files(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write file");
    }
}

/// Reads until `marker` shows up (or the peer closes), within `NET_TIMEOUT`.
pub async fn read_until<S: tokio::io::AsyncRead + Unpin>(s: &mut S, marker: &str) -> String {
    let mut got = Vec::new();
    let reading = async {
        let mut buf = [0; 4096];
        while !String::from_utf8_lossy(&got).contains(marker) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(NET_TIMEOUT, reading).await;
    String::from_utf8_lossy(&got).into_owned()
}
