//! Test harness: runs the real `gatehouse` binary on port 0 against in-process backends.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A running gatehouse process in its own temporary directory.
pub struct Gatehouse {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    /// Present when the configuration has `listen.https`.
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
}

impl Gatehouse {
    /// Starts gatehouse with `main_extra` appended to a main file that listens on port 0,
    /// and `sites` written to `sites/<name>.yaml`.
    pub fn start(main_extra: &str, sites: &[(&str, &str)]) -> Gatehouse {
        Self::start_in(configured(main_extra, sites))
    }

    pub fn start_in(dir: tempfile::TempDir) -> Gatehouse {
        Self::launch(dir, Command::new(BIN))
    }

    /// Like `start`, but the process sees `hosts` as its `/etc/hosts` (bind-mounted in a
    /// private mount namespace), so a test controls what backend host names resolve to,
    /// and rewriting that file (in place) changes the answers. Its `/etc/resolv.conf` is
    /// empty, so a name missing from `hosts` fails at once on loopback instead of asking
    /// the machine's DNS server. `None` where mount namespaces are not available (not
    /// root); CI runs as root and insists.
    pub fn start_with_hosts(main_extra: &str, sites: &[(&str, &str)], hosts: &Path) -> Option<Gatehouse> {
        let probe = Command::new("unshare").args(["--mount", "--propagation", "private", "true"]).status();
        if !probe.is_ok_and(|s| s.success()) {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root: mount namespaces must work there");
            eprintln!("skipped: no mount namespaces here (unshare --mount needs root)");
            return None;
        }
        let mut cmd = Command::new("unshare");
        // sh: $0 is the hosts file, "$@" the gatehouse command line (exec keeps the pid).
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && mount --bind /dev/null /etc/resolv.conf && exec \"$@\"",
        ])
        .arg(hosts)
        .arg(BIN);
        Some(Self::launch(configured(main_extra, sites), cmd))
    }

    /// Runs `cmd run --config <dir>/gatehouse.yaml` and waits for its startup line.
    fn launch(dir: tempfile::TempDir, mut cmd: Command) -> Gatehouse {
        let mut child = cmd
            .args(["run", "--config"])
            .arg(dir.path().join("gatehouse.yaml"))
            .env_remove("GATEHOUSE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
            .spawn()
            .expect("spawn gatehouse");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                panic!("gatehouse did not start; stderr:\n{log}");
            }
        };
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        let (http, admin) = (addr("http="), addr("admin="));
        let https = line.split_whitespace().find_map(|w| w.strip_prefix("https=")).and_then(|a| a.parse().ok());
        Gatehouse { child: Some(child), dir, http, https, admin }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill").success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temporary directory holding a configuration (`write_config`).
fn configured(main_extra: &str, sites: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), main_extra, sites);
    dir
}

pub fn write_config(dir: &Path, main_extra: &str, sites: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("sites")).expect("sites dir");
    let main = format!(
        "workers: 2\nlisten: {{http: 127.0.0.1:0}}\nadmin: {{listen: 127.0.0.1:0}}\nsites_dir: sites\nstorage: {{path: data/gatehouse.db}}\nlog: {{level: warn, format: json}}\nshutdown_timeout: 10s\n{main_extra}"
    );
    std::fs::write(dir.join("gatehouse.yaml"), main).expect("main file");
    for (name, text) in sites {
        std::fs::write(dir.join("sites").join(format!("{name}.yaml")), text).expect("site file");
    }
}

/// Runs `gatehouse check` on a directory and returns (exit code, stdout+stderr).
pub fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.join("gatehouse.yaml"))
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .expect("run check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

// ---------------------------------------------------------------------------------------
// Backends

/// What a backend saw.
#[derive(Default)]
pub struct Seen {
    pub requests: AtomicUsize,
}

/// An HTTP/1.1 + h2c backend answering with a JSON echo of the request, with a few special
/// paths: `/sleep/<ms>` waits before answering, `/stream/<n>/<ms>` sends n chunks with a
/// pause, `/bytes/<n>` sends n bytes.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Seen>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind backend")
    }

    /// A backend on a given address (`None` when it is taken).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Option<Backend> {
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let (n, s) = (name.to_string(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { break };
                let (n, s) = (n.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| echo(n.clone(), s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Some(Backend { addr, name: name.to_string(), seen })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn echo(name: String, seen: Arc<Seen>, req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["sleep", ms] => tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await,
        ["stream", n, ms] => {
            let (n, ms): (usize, u64) = (n.parse().unwrap_or(1), ms.parse().unwrap_or(0));
            let stream = futures_util::stream::unfold(0, move |i| async move {
                if i >= n {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Some((Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(format!("chunk{i}\n")))), i + 1))
            });
            return Ok(Response::new(http_body_util::StreamBody::new(stream).boxed()));
        }
        ["bytes", n] => {
            let n: usize = n.parse().unwrap_or(0);
            return Ok(Response::new(full(vec![b'x'; n])));
        }
        _ => {}
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    // Repeated headers are joined with ", " so tests can see every value.
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .keys()
        .map(|k| {
            let values: Vec<String> =
                req.headers().get_all(k).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
            (k.as_str().to_string(), json!(values.join(", ")))
        })
        .collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let out = json!({"backend": name, "method": method, "uri": uri, "version": version, "headers": headers, "body_len": body.len()});
    let mut resp = Response::new(full(out.to_string()));
    resp.headers_mut().insert("content-type", "application/json".parse().expect("static"));
    resp.headers_mut().insert("x-backend", name.parse().expect("name"));
    resp.headers_mut().insert("connection", "x-hop".parse().expect("static"));
    resp.headers_mut().insert("x-hop", "must-not-reach-client".parse().expect("static"));
    // The proxy's request id replaces the backend's; repeated fields all pass.
    resp.headers_mut().insert("x-request-id", "from-backend".parse().expect("static"));
    resp.headers_mut().append("set-cookie", "a=1".parse().expect("static"));
    resp.headers_mut().append("set-cookie", "b=2".parse().expect("static"));
    Ok(resp)
}

// ---------------------------------------------------------------------------------------
// Clients

/// A response as the tests look at it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

/// GET `path` with the given Host header.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    get_with(addr, host, path, &[]).await
}

pub async fn get_with(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::new())).expect("request")).await
}

/// Writes raw bytes and reads until the server closes or `limit` passes.
pub fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `raw` from async tests, off the runtime's threads.
pub async fn raw_async(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || raw(addr, &bytes, limit)).await.expect("join")
}

pub fn site(host: &str, body: &str) -> String {
    format!("host: {host}\n{body}")
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

// ---------------------------------------------------------------------------------------
// TLS

/// Valid from yesterday for 300 days: current, and shorter than the 366 days Mozilla's
/// configuration check allows.
fn short_validity(params: &mut rcgen::CertificateParams) {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0)
            as i64;
    let date = |d: i64| {
        let (y, m, day) = civil_from_days(d);
        rcgen::date_time_ymd(y, m, day)
    };
    params.not_before = date(days - 1);
    params.not_after = date(days + 300);
}

/// Days since 1970-01-01 to a (year, month, day) date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// A throwaway certificate authority for HTTPS tests.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// An issued certificate: PEM for files, DER to recognise it on the wire.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Gatehouse Test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        short_validity(&mut params);
        let key = rcgen::KeyPair::generate().expect("key");
        TestCa { issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("ca") }
    }

    pub fn issue(&self, names: &[&str]) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        // What public CAs issue: a leaf valid for well under a year.
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        // Server and client auth, as public CAs long issued; the client EKU lets the same
        // helper issue certificates for mutual TLS.
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        short_validity(&mut params);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// The CA certificate in PEM, for external tools.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client that trusts only this CA, offering `alpn`.
    pub fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        // Every connection does a full handshake, so tests see the certificate served now
        // (a resumed session reports the certificate of the session it resumes).
        cfg.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

/// A TLS connection's outcome: which certificate the server sent and the negotiated ALPN.
pub struct TlsConn {
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    pub peer_der: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

pub async fn tls_connect(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    sni: &str,
) -> Result<TlsConn, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let stream = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (_, session) = stream.get_ref();
    let peer_der = session.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).unwrap_or_default();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    Ok(TlsConn { stream, peer_der, alpn })
}

/// One HTTP/1.1 request over an established TLS connection.
pub async fn send_on<IO>(io: IO, req: Request<Full<Bytes>>) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.expect("handshake");
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

pub fn get_req(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", host).body(Full::new(Bytes::new())).expect("request")
}

/// Accepts any server certificate: only for tests of self-signed fallbacks.
#[derive(Debug)]
pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn accept_any_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

// ---------------------------------------------------------------------------------------
// ACME: Debian's pebble and pebble-challtestsrv

/// `N` distinct free loopback ports. All are held open until every one is picked, so two
/// picks can never return the same port; they are released on return, so another process
/// could still take one: only for servers that must know each other's ports up front, and
/// their starters retry when a bind is lost (see [`Pebble::start`]).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    std::array::from_fn(|i| held[i].local_addr().expect("addr").port())
}

/// Pebble (ACME server) with pebble-challtestsrv as its DNS: every name resolves to
/// 127.0.0.1 and TXT records can be set through `mgmt`.
pub struct Pebble {
    children: Vec<Child>,
    pub directory: String,
    /// The CA of pebble's own HTTPS listener, for `tls.acme.ca_root`.
    pub ca_pem: String,
    pub challtest_mgmt: u16,
    pub dir: tempfile::TempDir,
}

impl Pebble {
    /// `http_port` / `tls_port`: where pebble's validator connects (gatehouse's listeners).
    /// Pebble's own four ports are picked here; when one of them was taken between the pick
    /// and the bind (other tests run in parallel), both servers start again on new ports.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = loop {
                let ports = free_ports::<4>();
                if !ports.iter().any(|p| *p == http_port || *p == tls_port) {
                    break ports;
                }
            };
            match Pebble::try_start(http_port, tls_port, ports) {
                Ok(p) => return p,
                Err(p) if attempt < 3 && p.log().contains("address already in use") => drop(p),
                Err(p) => panic!("pebble did not start: {}", p.log()),
            }
        }
    }

    fn try_start(http_port: u16, tls_port: u16, [acme, mgmt, dns, ct_mgmt]: [u16; 4]) -> Result<Pebble, Pebble> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        let cert = ca.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), &cert.cert_pem).expect("write");
        std::fs::write(dir.path().join("key.pem"), &cert.key_pem).expect("write");
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).expect("write");
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log");
        let challtest = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-management", &format!("127.0.0.1:{ct_mgmt}")])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt-get install pebble)");
        let pebble = Command::new("pebble")
            .args(["-config"])
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (apt-get install pebble)");
        let mut p = Pebble {
            children: vec![challtest, pebble],
            directory: format!("https://127.0.0.1:{acme}/dir"),
            ca_pem: ca.pem(),
            challtest_mgmt: ct_mgmt,
            dir,
        };
        // Pebble's management port too: a lost bind there makes pebble exit while its ACME
        // port may already have answered once.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        for port in [acme, mgmt, ct_mgmt] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if p.exited() || std::time::Instant::now() > deadline {
                    p.stop();
                    return Err(p);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // A port answering can also be another process that took it; pebble or
        // challtestsrv then exits shortly after (and the DNS port, UDP too, is not probed
        // at all): give them a moment to fail.
        std::thread::sleep(Duration::from_millis(300));
        if p.exited() {
            p.stop();
            return Err(p);
        }
        Ok(p)
    }

    /// Pebble or challtestsrv has exited.
    fn exited(&mut self) -> bool {
        self.children.iter_mut().any(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn log(&self) -> String {
        ["pebble.log", "pebble.err", "challtestsrv.log", "challtestsrv.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}
