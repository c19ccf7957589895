//! The request pipeline as clients see it: a client's broken request body is the client's
//! fault (400, never 502, never counted against the backend), access records carry the
//! status and bytes the client actually got and the side that failed, and the per-route
//! filters (HTTPS redirect, route redirect, response header rules) and 405 answers behave
//! the same over HTTP/1.1, HTTP/2 and HTTP/3; the admin API lists backend failures and each
//! route's filter chain. The tests sit by responsibility in `faults.rs`, `records.rs` and
//! `filters.rs`; the helpers they share are here.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::harness::*;

mod faults;
mod filters;
mod records;

// ---------------------------------------------------------------------------------------
// Helpers

/// The harness's main file logs at `warn`; access records need `info`.
fn info_log(main: String) -> String {
    let out = main.replace("log: {level: warn, format: json}", "log: {level: info, format: json}");
    assert_ne!(out, main, "the harness's log line changed: {main}");
    out
}

fn start_logged(sites: &[(&str, &str)]) -> Gatehouse {
    Gatehouse::start_edited("", sites, info_log)
}

/// The access records logged so far (JSON lines with `"target":"access"`).
fn records(gh: &Gatehouse) -> Vec<Value> {
    gh.log().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["target"] == "access").collect()
}

/// Waits (10 s at most) for the first access record `pick` accepts.
async fn record_where(gh: &Gatehouse, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = records(gh).into_iter().find(|r| pick(r));
        found.is_some()
    })
    .await;
    found.unwrap_or_else(|| panic!("no access record for {what}; log:\n{}", gh.log()))
}

/// The access record of the (only) request for `path`.
async fn record_for(gh: &Gatehouse, path: &str) -> Value {
    record_where(gh, path, |r| r["path"] == path).await
}

/// The entry of `/api/routes` for `site`'s route on `path`.
async fn route_entry(gh: &Gatehouse, site: &str, path: &str) -> Value {
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    routes["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["site"] == site && r["path"] == path).cloned())
        .unwrap_or_else(|| panic!("no route {site} {path} in {routes}"))
}

/// The `failures` of the first backend of `site`'s route on `path`.
async fn failures(gh: &Gatehouse, site: &str, path: &str) -> u64 {
    let r = route_entry(gh, site, path).await;
    r["backends"][0]["failures"].as_u64().unwrap_or_else(|| panic!("no backends[0].failures in {r}"))
}

/// What a raw HTTP/1.1 exchange got back.
struct RawReply {
    bytes: Vec<u8>,
    /// The server closed the connection (end of stream or reset) before the time limit.
    closed: bool,
}

impl RawReply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The bytes after the first response head.
    fn body(&self) -> &[u8] {
        let end = self.bytes.windows(4).position(|w| w == b"\r\n\r\n").map_or(self.bytes.len(), |i| i + 4);
        &self.bytes[end..]
    }
}

/// Writes `bytes` (a write error, as when the server closes first, is tolerated), then
/// half-closes the write side if `half_close`, and reads until the server closes or
/// `limit` passes. Runs off the runtime's threads.
async fn raw_exchange(addr: SocketAddr, bytes: Vec<u8>, half_close: bool, limit: Duration) -> RawReply {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.set_write_timeout(Some(NET_TIMEOUT)).expect("timeout");
        let _ = s.write_all(&bytes);
        if half_close {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let deadline = std::time::Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let closed = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break false;
            }
            s.set_read_timeout(Some(left)).expect("timeout");
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    break false;
                }
                Err(_) => break true,
            }
        };
        RawReply { bytes: out, closed }
    })
    .await
    .expect("join")
}

type Body = BoxBody<Bytes, std::io::Error>;

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

/// An HTTP/2 client on `io` (h2c with prior knowledge, or TLS with ALPN h2); its
/// connection task is returned so a test can drop the connection.
async fn h2_client<IO>(io: IO) -> (hyper::client::conn::http2::SendRequest<Body>, tokio::task::JoinHandle<()>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) =
        within("h2 handshake", hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)))
            .await
            .expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (tx, task)
}

async fn h2c(addr: SocketAddr) -> (hyper::client::conn::http2::SendRequest<Body>, tokio::task::JoinHandle<()>) {
    let stream = within("connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    h2_client(stream).await
}

/// One request over an HTTP/2 connection, its body read to the end.
async fn h2_send(tx: &mut hyper::client::conn::http2::SendRequest<Body>, req: Request<Body>) -> Reply {
    let what = format!("{} {} over HTTP/2", req.method(), req.uri());
    within(&what, async {
        let resp = tx.send_request(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap_or_else(|e| panic!("{what}: body: {e}")).to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    })
    .await
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A closed port: connecting to it is refused.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn assert_record(r: &Value, want: &[(&str, Value)]) {
    for (field, value) in want {
        assert_eq!(&r[*field], value, "access record field {field}: {r}");
    }
}

/// A logged Gatehouse with one site, `p.test`, proxying to a fresh backend `app`.
async fn logged_app() -> (Backend, Gatehouse) {
    let backend = Backend::start("app").await;
    let gh = start_logged(&[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    (backend, gh)
}
