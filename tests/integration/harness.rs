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
    /// `0.0.0.0:0` when it runs without an admin listener (`admin=off`).
    pub admin: SocketAddr,
    /// Present when the configuration has `registry.listen`.
    pub registry: Option<SocketAddr>,
    /// The streams' addresses, by name.
    pub streams: std::collections::HashMap<String, SocketAddr>,
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
        cmd.args(["run", "--config"]).arg(dir.path().join("gatehouse.yaml"));
        Self::spawn(dir, cmd)
    }

    /// Runs `cmd` as it is (a one-liner, say), its stderr in `<dir>/stderr.log`, and waits
    /// (20 s at most) for its startup line.
    pub fn spawn(dir: tempfile::TempDir, mut cmd: Command) -> Result<Gatehouse, NotStarted> {
        let mut child = cmd
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
        // `admin=off`: no admin listener; the address stays unspecified (nothing answers).
        let admin = match line.contains(" admin=off") {
            true => SocketAddr::from(([0, 0, 0, 0], 0)),
            false => addr("admin="),
        };
        let http = addr("http=");
        let https = line.split_whitespace().find_map(|w| w.strip_prefix("https=")).and_then(|a| a.parse().ok());
        let registry = line.split_whitespace().find_map(|w| w.strip_prefix("registry=")).and_then(|a| a.parse().ok());
        let streams = line
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("stream.")?.split_once('='))
            .filter_map(|(name, a)| Some((name.to_string(), a.parse().ok()?)))
            .collect();
        Ok(Gatehouse { child: Some(child), dir, http, https, admin, registry, streams })
    }

    /// Where stream `name` listens.
    pub fn stream(&self, name: &str) -> SocketAddr {
        *self.streams.get(name).unwrap_or_else(|| panic!("no stream {name} in the startup line: {:?}", self.streams))
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
    /// Request body bytes received so far, over all requests, counted as they arrive.
    pub body_bytes: AtomicUsize,
}

/// An HTTP/1.1 + h2c backend answering with a JSON echo of the request, with a few special
/// paths: `…/status/<code>` answers with that status, `/sleep/<ms>` waits before answering, `/stream/<n>/<ms>` sends n chunks with a
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

    pub fn body_bytes(&self) -> usize {
        self.seen.body_bytes.load(Ordering::SeqCst)
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
        [.., "status", code] => {
            let mut r = Response::new(full(format!("status {code}\n")));
            *r.status_mut() = code.parse().unwrap_or(StatusCode::OK);
            return Ok(r);
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
    // Read frame by frame, so a test can see body bytes arrive before the request ends.
    let mut body = req.into_body();
    let mut body_len = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            body_len = 0;
            break;
        };
        if let Some(data) = frame.data_ref() {
            body_len += data.len();
            seen.body_bytes.fetch_add(data.len(), Ordering::SeqCst);
        }
    }
    let out = json!({"backend": name, "method": method, "uri": uri, "version": version, "headers": headers, "body_len": body_len});
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

/// A Python that can import `module`: `$CI_PYTHON`, the virtual environment .ci/run
/// creates (`target/ci-venv`), or `python3`. Fails, naming the install step, when none can.
pub fn ci_python(module: &str, pip: &str) -> String {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv/bin/python");
    let candidates = [std::env::var("CI_PYTHON").ok(), Some(venv.display().to_string()), Some("python3".into())];
    for p in candidates.into_iter().flatten() {
        let ok = output_within(Command::new(&p).args(["-c", &format!("import {module}")]), NET_TIMEOUT)
            .is_ok_and(|o| o.status.success());
        if ok {
            return p;
        }
    }
    panic!(
        "no Python with {module} (tried $CI_PYTHON, target/ci-venv/bin/python, python3): run .ci/run, \
         or pip install {pip} (or set CI_PYTHON to a Python that has it)"
    );
}

/// `/metrics` once it holds every one of `wanted` (or the last scrape after
/// `NET_TIMEOUT`): a request's counts land when its record is emitted, which may be just
/// after the client has read its answer.
pub async fn metrics_with(admin: SocketAddr, wanted: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + NET_TIMEOUT;
    loop {
        let text = get(admin, "localhost", "/metrics").await.text();
        if wanted.iter().all(|w| text.contains(w)) || tokio::time::Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

mod pebble;
mod tls;
pub use pebble::*;
pub use tls::*;

// ---------------------------------------------------------------------------------------
// Admin API helpers for reload tests

/// A request with `method` to `path` on `addr` with the given Host and headers; the whole
/// exchange within `NET_TIMEOUT`.
pub async fn request_with(
    addr: SocketAddr,
    method: http::Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder().method(method).uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::new())).expect("request")).await
}

/// A JSON request with `method` to `path` on an admin (or registry) listener at `addr`,
/// as a local tool would send it.
pub async fn admin_call(addr: SocketAddr, method: http::Method, path: &str, body: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    send(addr, req).await
}

/// `POST /api/reload` on the admin listener, as a local tool would send it.
pub async fn admin_reload(gh: &Gatehouse) -> Reply {
    request_with(gh.admin, http::Method::POST, "localhost", "/api/reload", &[]).await
}

/// The running configuration's version, from `GET /api/config`.
pub async fn config_version(gh: &Gatehouse) -> u64 {
    get(gh.admin, "localhost", "/api/config").await.json()["version"].as_u64().expect("version")
}

impl Gatehouse {
    /// Like `start`, with the binary run through `prefix` (a command that execs its
    /// arguments, such as `prlimit --nofile=…`).
    pub fn start_under(prefix: &[&str], main_extra: &str, sites: &[(&str, &str)]) -> Gatehouse {
        let mut cmd = Command::new(prefix[0]);
        cmd.args(&prefix[1..]).arg(BIN);
        Self::launch(configured(main_extra, sites), cmd)
            .unwrap_or_else(|f| panic!("gatehouse did not start; stderr:\n{}", f.log))
    }
}
