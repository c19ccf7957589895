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

/// A gatehouse that exited (or said nothing for 20 s) instead of starting.
pub struct NotStarted {
    pub dir: tempfile::TempDir,
    /// Its stderr.
    pub log: String,
}

impl NotStarted {
    /// It could not bind a listener because the address was taken.
    pub fn port_taken(&self) -> bool {
        self.log.contains("cannot listen on") && self.log.contains("in use")
    }
}

impl Gatehouse {
    /// Starts gatehouse with `main_extra` appended to a main file that listens on port 0,
    /// and `sites` written to `sites/<name>.yaml`.
    pub fn start(main_extra: &str, sites: &[(&str, &str)]) -> Gatehouse {
        Self::start_in(configured(main_extra, sites))
    }

    /// Like `start`, with the main file passed through `edit` (to change a line
    /// `write_config` writes, such as `workers: 2`).
    pub fn start_edited(main_extra: &str, sites: &[(&str, &str)], edit: impl Fn(String) -> String) -> Gatehouse {
        let dir = configured(main_extra, sites);
        let main = std::fs::read_to_string(dir.path().join("gatehouse.yaml")).expect("read main file");
        std::fs::write(dir.path().join("gatehouse.yaml"), edit(main)).expect("write main file");
        Self::start_in(dir)
    }

    pub fn start_in(dir: tempfile::TempDir) -> Gatehouse {
        Self::launch(dir, Command::new(BIN)).unwrap_or_else(|f| panic!("gatehouse did not start; stderr:\n{}", f.log))
    }

    /// Like `start_in`, but hands the directory back when gatehouse did not start, for
    /// callers that retry (a fixed port lost to another process: see [`lease_ports`]).
    pub fn try_start_in(dir: tempfile::TempDir) -> Result<Gatehouse, NotStarted> {
        Self::launch(dir, Command::new(BIN))
    }

    /// Like `start`, but the process sees `hosts` as its `/etc/hosts` (bind-mounted in a
    /// private mount namespace), so a test controls what backend host names resolve to,
    /// and rewriting that file (in place) changes the answers. Its `/etc/resolv.conf` is
    /// empty, so a name missing from `hosts` fails at once on loopback instead of asking
    /// the machine's DNS server. Needs `unshare` (util-linux) and root, as CI and the
    /// development machines have; the test fails, naming that, where they are missing.
    pub fn start_with_hosts(main_extra: &str, sites: &[(&str, &str)], hosts: &Path) -> Gatehouse {
        let probe = output_within(
            Command::new("unshare").args(["--mount", "--propagation", "private", "true"]),
            Duration::from_secs(10),
        );
        assert!(
            probe.as_ref().is_ok_and(|o| o.status.success()),
            "this test needs mount namespaces: run the tests as root with `unshare` installed \
             (apt-get install util-linux), as .ci/run does; probe: {probe:?}"
        );
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
        Self::launch(configured(main_extra, sites), cmd)
            .unwrap_or_else(|f| panic!("gatehouse did not start; stderr:\n{}", f.log))
    }

    /// Runs `cmd run --config <dir>/gatehouse.yaml` and waits (20 s at most) for its
    /// startup line.
    fn launch(dir: tempfile::TempDir, mut cmd: Command) -> Result<Gatehouse, NotStarted> {
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
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                return Err(NotStarted { dir, log });
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
        Ok(Gatehouse { child: Some(child), dir, http, https, admin })
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
    // `main_extra` may bring its own `listen:` (e.g. `HTTPS`); then it replaces the default.
    let listen =
        if main_extra.lines().any(|l| l.starts_with("listen:")) { "" } else { "listen: {http: 127.0.0.1:0}\n" };
    let main = format!(
        "workers: 2\n{listen}admin: {{listen: 127.0.0.1:0}}\nsites_dir: sites\nstorage: {{path: data/gatehouse.db}}\nlog: {{level: warn, format: json}}\nshutdown_timeout: 10s\n{main_extra}"
    );
    std::fs::write(dir.join("gatehouse.yaml"), main).expect("main file");
    for (name, text) in sites {
        std::fs::write(dir.join("sites").join(format!("{name}.yaml")), text).expect("site file");
    }
}

/// A `listen:` line for `write_config`'s `main_extra`: HTTP and HTTPS, both on port 0.
pub const HTTPS: &str = "listen: {http: 127.0.0.1:0, https: 127.0.0.1:0}\n";

/// Runs `gatehouse check` on a directory and returns (exit code, stdout+stderr).
pub fn check(dir: &Path) -> (i32, String) {
    let out = output_within(
        Command::new(BIN).args(["check", "--config"]).arg(dir.join("gatehouse.yaml")).env_remove("GATEHOUSE_CONFIG"),
        Duration::from_secs(30),
    )
    .expect("gatehouse check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `Command::output` with a time limit: a process still running after `limit` is killed
/// and reported as an error, so a hung child cannot hang the test run.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::io::Result<std::process::Output> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = pipe(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{cmd:?} still running after {limit:?}; killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// How long any single network exchange of a test may take before the test fails: far
/// above what loopback needs, far below CI's limit.
pub const NET_TIMEOUT: Duration = Duration::from_secs(15);

/// Polls `cond` (every 20 ms) until it holds or `limit` has passed; true if it held.
/// Tests wait on conditions with this instead of sleeping.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut`, failing the test with `what` if it takes longer than `NET_TIMEOUT`: for
/// network calls the helpers above do not cover.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(NET_TIMEOUT, fut).await.unwrap_or_else(|_| panic!("{what}: no result within {NET_TIMEOUT:?}"))
}

/// `wait_until` for conditions that need to await (a request).
pub async fn wait_until_async<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if tokio::time::timeout_at(deadline, cond()).await.unwrap_or(false) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wait_until` for tests without a runtime.
pub fn wait_until_blocking(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Backends

/// What a backend saw.
#[derive(Default)]
pub struct Seen {
    pub requests: AtomicUsize,
    /// Connections accepted.
    pub connections: AtomicUsize,
}

/// An HTTP/1.1 + h2c backend answering with a JSON echo of the request, with a few special
/// paths: `/sleep/<ms>` waits before answering, `/stream/<n>/<ms>` sends n chunks with a
/// pause, `/bytes/<n>` sends n bytes, `/chunked-bytes/<n>` sends n bytes in 16 KiB chunks
/// without a length. Each request field `x-reply-header: NAME: VALUE` adds that field to
/// the echo's response.
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
                s.connections.fetch_add(1, Ordering::SeqCst);
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

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
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
        ["chunked-bytes", n] => {
            let n: usize = n.parse().unwrap_or(0);
            let stream = futures_util::stream::unfold(0usize, move |sent| async move {
                (sent < n).then(|| {
                    let len = (n - sent).min(16 * 1024);
                    (Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![b'x'; len]))), sent + len)
                })
            });
            return Ok(Response::new(http_body_util::StreamBody::new(stream).boxed()));
        }
        _ => {}
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let reply_headers: Vec<(String, String)> = req
        .headers()
        .get_all("x-reply-header")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
        .collect();
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
    for (name, value) in reply_headers {
        if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name), http::HeaderValue::try_from(value)) {
            resp.headers_mut().append(n, v);
        }
    }
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

/// One request on a fresh HTTP/1.1 connection; the whole exchange within `NET_TIMEOUT`.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let what = format!("{} {} to {addr}", req.method(), req.uri());
    let exchange = async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        send_on(stream, req).await
    };
    tokio::time::timeout(NET_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no complete response within {NET_TIMEOUT:?}"))
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

/// Writes raw bytes and reads until the server closes or `limit` (in all) passes.
pub fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    raw_until(addr, bytes, limit, None)
}

/// `raw`, also stopping as soon as what was read contains `marker` (for answers on a
/// connection the server keeps open).
pub fn raw_until(addr: SocketAddr, bytes: &[u8], limit: Duration, marker: Option<&str>) -> String {
    let mut s = TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
    s.set_write_timeout(Some(NET_TIMEOUT)).expect("timeout");
    s.write_all(bytes).expect("write");
    let deadline = std::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !marker.is_some_and(|m| String::from_utf8_lossy(&out).contains(m)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
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

    /// The CA's certificate and private key in PEM, as mkcert or cfssl leave them on disk.
    pub fn pair(&self) -> (String, String) {
        (self.issuer.pem(), self.issuer.key().serialize_pem())
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
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        connector.connect(name, tcp).await.map_err(|e| e.to_string())
    };
    let stream = tokio::time::timeout(NET_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("no TLS handshake with {addr} within {NET_TIMEOUT:?}"))??;
    let (_, session) = stream.get_ref();
    let peer_der = session.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).unwrap_or_default();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    Ok(TlsConn { stream, peer_der, alpn })
}

/// One HTTP/1.1 request over an established connection (TLS or not), within `NET_TIMEOUT`.
pub async fn send_on<IO>(io: IO, req: Request<Full<Bytes>>) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let what = format!("{} {}", req.method(), req.uri());
    let exchange = async move {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.expect("handshake");
        tokio::spawn(conn);
        let resp = tx.send_request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(NET_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no complete response within {NET_TIMEOUT:?}"))
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

/// A loopback port this test process has to itself until the lease is dropped, for
/// servers that must know each other's ports before they start (pebble and the gatehouse
/// whose listeners it validates). Leased ports lie below the ephemeral range, so no
/// `bind(…:0)` and no outgoing connection of another test can be given one, and each lease
/// holds an exclusive lock (`$TMPDIR/gatehouse-test-ports/PORT.lock`) that every other
/// test process honours, so two tests never lease the same port. Only a process outside
/// the test suite could still take one: starters retry the whole start then.
pub struct PortLease {
    pub port: u16,
    _lock: std::fs::File,
}

/// Ports that services on developer machines commonly hold; never leased.
const RESERVED_PORTS: [u16; 6] = [5432, 3306, 6379, 5672, 1883, 4222];

/// `N` distinct leased ports, each free on 127.0.0.1 for TCP and UDP when leased.
pub fn lease_ports<const N: usize>() -> [PortLease; N] {
    let dir = std::env::temp_dir().join("gatehouse-test-ports");
    std::fs::create_dir_all(&dir).expect("port lock directory");
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32)
            | 1;
    let mut leases: Vec<PortLease> = Vec::new();
    for _ in 0..2000 {
        if leases.len() == N {
            break;
        }
        // xorshift64: no dependency needed for picking a port.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = 20_000 + (seed % 12_000) as u16;
        if RESERVED_PORTS.contains(&port) || leases.iter().any(|l| l.port == port) {
            continue;
        }
        let Ok(lock) =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            leases.push(PortLease { port, _lock: lock });
        }
    }
    leases.try_into().unwrap_or_else(|l: Vec<PortLease>| panic!("only {} of {N} ports could be leased", l.len()))
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

/// Lifetime of the certificates the test pebble issues: 45 days, so a `renew_before`
/// within the 365-day limit of durations can force a renewal, and fresh certificates are
/// not within the 30-day expiry warning.
pub const PEBBLE_CERT_DAYS: u64 = 45;

impl Pebble {
    /// `http_port` / `tls_port`: where pebble's validator connects (gatehouse's listeners,
    /// or a refusing port to rule a challenge type out). Pebble's own four ports are
    /// leased here (see [`PortLease`]); if one was taken anyway by a process outside the
    /// test suite, both servers start again on new ports.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let leases = lease_ports::<4>();
            let ports = leases.each_ref().map(|l| l.port);
            // Released just before pebble binds them: pebble's sockets hold them from then on.
            drop(leases);
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
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": PEBBLE_CERT_DAYS * 86_400
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
        // Ready when each of its servers answers as itself: the ACME directory over TLS
        // with pebble's certificate, challtestsrv's DNS with a DNS answer, and the two
        // management ports (pebble's too: a lost bind there makes pebble exit while its
        // ACME port may already have answered once).
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let probe =
            |port: u16| TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), NET_TIMEOUT).is_ok();
        let ready = wait_until_blocking(Duration::from_secs(15), || {
            p.exited() || (probe(mgmt) && probe(ct_mgmt) && dns_answers(dns) && directory_answers(acme, &ca).is_ok())
        });
        if !ready || p.exited() || std::time::Instant::now() > deadline {
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

/// challtestsrv's DNS server answers a query for an A record on `port` (UDP).
fn dns_answers(port: u16) -> bool {
    let Ok(sock) = std::net::UdpSocket::bind("127.0.0.1:0") else { return false };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    // Header: id 0x4748, recursion desired, one question; then "probe.test." A IN.
    let mut q = vec![0x47, 0x48, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["probe", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if sock.send_to(&q, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(sock.recv(&mut buf), Ok(n) if n >= 12 && buf[..2] == [0x47, 0x48] && buf[2] & 0x80 != 0)
}

/// Fetches pebble's ACME directory over TLS (trusting only `ca`) and checks it is one.
fn directory_answers(port: u16, ca: &TestCa) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name.to_owned()).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), NET_TIMEOUT)
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(format!("GET /dir HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    if text.starts_with("HTTP/1.1 200") && text.contains("newAccount") { Ok(()) } else { Err(text.into_owned()) }
}
