//! The request pipeline as clients see it: a client's broken request body is the client's
//! fault (400, never 502, never counted against the backend), access records carry the
//! status and bytes the client actually got and the side that failed, and the per-route
//! filters (HTTPS redirect, route redirect, response header rules) and 405 answers behave
//! the same over HTTP/1.1, HTTP/2 and HTTP/3; the admin API lists backend failures and each
//! route's filter chain.

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

/// A hand-written backend that answers every request (after reading its head and a
/// `Content-Length` body) with `Content-Length: 100000`, then sends only 1000 bytes and
/// closes: a response body that fails midway.
/// With `release`, it closes only once notified (after the client has its 1000 bytes).
async fn cut_off_backend(release: Option<Arc<tokio::sync::Notify>>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let release = release.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let end = loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + length {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let mut reply =
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n".to_vec();
                reply.extend_from_slice(&[b'x'; 1000]);
                let _ = s.write_all(&reply).await;
                let _ = s.flush().await;
                if let Some(r) = release {
                    r.notified().await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// What a raw HTTP/2 client saw of stream 1 on the wire.
#[derive(Debug, Default)]
struct H2Wire {
    /// `:status` of the response HEADERS (when HPACK-indexed, as hyper sends 200).
    status: Option<u16>,
    /// DATA payload bytes received on stream 1.
    data: u64,
    /// Stream 1 ended with END_STREAM.
    ended: bool,
    /// The RST_STREAM error code, if the stream was reset.
    reset: Option<u32>,
    /// Frame types in order of arrival.
    frames: Vec<u8>,
}

/// Sends `GET http://authority/path` as stream 1 with prior knowledge, on a connection of
/// its own, and reads frames until stream 1 ends, is reset, the connection ends, or
/// `NET_TIMEOUT` passes. No HTTP/2 library in between: what is counted is what arrived.
async fn h2_raw_get(addr: SocketAddr, authority: &'static str, path: &'static str) -> H2Wire {
    h2_raw_get_releasing(addr, authority, path, None).await
}

/// `h2_raw_get`, notifying `release` once the given number of DATA bytes has arrived.
async fn h2_raw_get_releasing(
    addr: SocketAddr,
    authority: &'static str,
    path: &'static str,
    release: Option<(u64, Arc<tokio::sync::Notify>)>,
) -> H2Wire {
    tokio::task::spawn_blocking(move || {
        let mut release = release;
        let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.set_write_timeout(Some(NET_TIMEOUT)).expect("timeout");
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").expect("preface");
        // HEADERS (END_STREAM | END_HEADERS): indexed :method GET, :scheme http; literal
        // :path and :authority (without indexing, plain strings).
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, authority.len() as u8]);
        block.extend_from_slice(authority.as_bytes());
        let mut frame = vec![0, 0, block.len() as u8, 0x01, 0x05, 0, 0, 0, 1];
        frame.extend_from_slice(&block);
        s.write_all(&frame).expect("headers");
        let deadline = std::time::Instant::now() + NET_TIMEOUT;
        let mut wire = H2Wire::default();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while buf.len() >= 9 {
                let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                wire.frames.push(kind);
                if stream != 1 {
                    continue;
                }
                match kind {
                    0 => {
                        let pad = if flags & 0x08 != 0 { 1 + usize::from(payload[0]) } else { 0 };
                        wire.data += (payload.len() - pad) as u64;
                        wire.ended |= flags & 0x01 != 0;
                    }
                    1 => {
                        let mut block = &payload[..];
                        if flags & 0x08 != 0 {
                            block = &block[1..];
                        }
                        if flags & 0x20 != 0 {
                            block = &block[5..];
                        }
                        wire.status = match block.first() {
                            Some(0x88) => Some(200),
                            Some(0x89) => Some(204),
                            Some(0x8a) => Some(206),
                            Some(0x8b) => Some(304),
                            Some(0x8c) => Some(400),
                            Some(0x8d) => Some(404),
                            Some(0x8e) => Some(500),
                            _ => Some(0),
                        };
                        wire.ended |= flags & 0x01 != 0;
                    }
                    3 => wire.reset = Some(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])),
                    _ => {}
                }
            }
            if let Some((n, r)) = &release
                && wire.data >= *n
            {
                r.notify_one();
                release = None;
            }
            if wire.ended || wire.reset.is_some() || wire.frames.contains(&7) {
                return wire;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return wire;
            }
            s.set_read_timeout(Some(left)).expect("timeout");
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return wire,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("join")
}

/// Sends `req` and reads until the response body has `body` bytes, then notifies
/// `release` and reads on until the server closes (or `NET_TIMEOUT` passes).
async fn raw_releasing(addr: SocketAddr, req: &[u8], body: usize, release: &tokio::sync::Notify) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within("a response read in two parts", async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(req).await.expect("write");
        let mut reply = RawReply { bytes: Vec::new(), closed: false };
        let mut released = false;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if !released && reply.body().len() >= body && reply.bytes.windows(4).any(|w| w == b"\r\n\r\n") {
                release.notify_one();
                released = true;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    reply.closed = true;
                    return reply;
                }
                Ok(n) => reply.bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
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

// ---------------------------------------------------------------------------------------
// 1. A client's broken request body is the client's fault.

/// Each of these chunked bodies is malformed or oversized by the client. The proxy has
/// already passed the request head on to a healthy backend when it finds out; the answer
/// must still be 400 (the client's fault), the connection closed, the backend not blamed.
const BROKEN_CHUNKED: &[(&str, &str)] = &[
    ("size-overflow", "chunk size fffffffffffffffff (past u64)"),
    ("bare-lf", "chunk lines ended by a bare LF"),
    ("huge-extension", "a 100 KB chunk extension"),
    ("many-trailers", "1,000 trailer fields"),
];

fn broken_chunked_request(case: &str) -> Vec<u8> {
    let mut r = format!("POST /up/{case} HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    match case {
        "size-overflow" => r.extend_from_slice(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        "bare-lf" => r.extend_from_slice(b"5\nhello\n0\n\n"),
        "huge-extension" => {
            r.extend_from_slice(b"5;ext=");
            r.extend_from_slice(&vec![b'a'; 100_000]);
            r.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        }
        "many-trailers" => {
            r.extend_from_slice(b"5\r\nhello\r\n0\r\n");
            for i in 0..1000 {
                r.extend_from_slice(format!("x-trailer-{i}: v\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
        }
        other => panic!("unknown case {other}"),
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_request_bodies_are_the_clients_fault_over_http1() {
    let backend = Backend::start("app").await;
    let dead = closed_port();
    let gh = start_logged(&[
        ("p", &site("p.test", &format!("backend: {}\n", backend.url()))),
        ("dead", &site("dead.test", &format!("backend: http://{dead}\n"))),
    ]);
    // A well-formed chunked body goes through.
    let ok = raw_exchange(
        gh.http,
        b"POST /up/fine HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
        false,
        Duration::from_secs(10),
    )
    .await;
    assert!(ok.text().starts_with("HTTP/1.1 200 ") && ok.text().contains("\"body_len\":5"), "{}", ok.text());

    for (case, what) in BROKEN_CHUNKED {
        let reply = raw_exchange(gh.http, broken_chunked_request(case), false, Duration::from_secs(10)).await;
        let text = reply.text();
        assert!(
            text.starts_with("HTTP/1.1 400 "),
            "{what}: the answer must be 400 (the client's fault), got: {text:?}"
        );
        assert!(reply.closed, "{what}: the connection was left open after the 400: {text:?}");
        let path = format!("/up/{case}");
        let rec = record_for(&gh, &path).await;
        assert_record(
            &rec,
            &[
                ("status", 400.into()),
                ("error_side", "client".into()),
                ("error", "client_body".into()),
                ("method", "POST".into()),
                ("site", "p".into()),
            ],
        );
        assert_eq!(failures(&gh, "p", "/").await, 0, "{what}: counted against the backend; record: {rec}");
        // The same backend still serves.
        let r = get(gh.http, "p.test", &format!("/after/{case}")).await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("app")), "{what}: {}", r.text());
    }
    assert_eq!(failures(&gh, "p", "/").await, 0);

    // Contrast: a backend that refuses connections is the backend's fault, and counted.
    let r = get(gh.http, "dead.test", "/refused").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(failures(&gh, "dead", "/").await >= 1, "{}", route_entry(&gh, "dead", "/").await);
    let rec = record_for(&gh, "/refused").await;
    assert_record(&rec, &[("status", 502.into()), ("error_side", "backend".into()), ("error", "connect".into())]);
    assert_eq!(failures(&gh, "p", "/").await, 0);
}

/// A request body cut short (the client half-closes, or closes, after 10 of 100 bytes):
/// the client's fault, never the backend's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_cut_short_is_the_clients_fault() {
    let backend = Backend::start("app").await;
    let gh = start_logged(&[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    let reply = raw_exchange(
        gh.http,
        b"POST /up/short HTTP/1.1\r\nHost: p.test\r\nContent-Length: 100\r\n\r\n0123456789".to_vec(),
        true,
        Duration::from_secs(10),
    )
    .await;
    assert!(!reply.text().starts_with("HTTP/1.1 502"), "a client's short body answered 502: {:?}", reply.text());
    let rec = record_for(&gh, "/up/short").await;
    assert_record(&rec, &[("error_side", "client".into()), ("error", "client_body".into()), ("bytes_in", 10.into())]);
    assert_ne!(rec["status"], 502, "{rec}");
    assert_eq!(failures(&gh, "p", "/").await, 0, "{rec}");

    // The same, but the client closes its connection for good once the backend has the
    // request head.
    let before = backend.count();
    let addr = gh.http;
    let socket = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.write_all(b"POST /up/dropped HTTP/1.1\r\nHost: p.test\r\nContent-Length: 100\r\n\r\n0123456789")
            .expect("write");
        s
    })
    .await
    .expect("join");
    let reached = wait_until(Duration::from_secs(10), || backend.count() > before).await;
    assert!(reached, "the request never reached the backend: {}", gh.log());
    drop(socket);
    let rec = record_for(&gh, "/up/dropped").await;
    assert_record(&rec, &[("error_side", "client".into()), ("bytes_in", 10.into())]);
    assert_ne!(rec["status"], 502, "{rec}");
    assert_eq!(failures(&gh, "p", "/").await, 0, "{rec}");
    assert_eq!(get(gh.http, "p.test", "/after").await.status, 200);
}

/// Over HTTP/2 (h2c): a client that sends DATA and then gives up (`reset`: its body fails,
/// so hyper's client resets the stream with RST_STREAM; `dropped`: its TCP connection is
/// closed), after the backend already has the request head. The backend must not be
/// blamed, and the request must get its record, with the client's side.
async fn http2_client_gives_up(case: &str) {
    let backend = Backend::start("app").await;
    let gh = start_logged(&[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    let stream = within("connect", tokio::net::TcpStream::connect(gh.http)).await.expect("connect");
    // hyper's HTTP/2 client runs the connection in a task of its own that lives as long as a
    // stream does, so ending the socket is the way to drop the connection.
    let socket = stream.into_std().expect("std stream");
    let kill = socket.try_clone().expect("clone socket");
    let (mut tx, _conn) = h2_client(tokio::net::TcpStream::from_std(socket).expect("tokio stream")).await;
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let req = Request::post(format!("http://p.test/h2/{case}"))
        .body(StreamBody::new(tokio_stream_from(body_rx)).boxed())
        .expect("request");
    let answer = tokio::spawn(async move { tx.send_request(req).await.map(|r| r.status().as_u16()) });
    body_tx.send(Ok(Frame::data(Bytes::from_static(b"hello")))).await.expect("send");
    // The backend has the request head (and is reading its body) before the client gives up.
    let reached = wait_until(Duration::from_secs(10), || backend.count() > 0).await;
    assert!(reached, "{case}: the request never reached the backend: {}", gh.log());
    if case == "reset" {
        body_tx.send(Err(std::io::Error::other("client gives up"))).await.expect("send");
    } else {
        kill.shutdown(std::net::Shutdown::Both).expect("shut the connection down");
    }
    let path = format!("/h2/{case}");
    let logged = wait_until(Duration::from_secs(10), || records(&gh).iter().any(|r| r["path"] == path)).await;
    assert_eq!(failures(&gh, "p", "/").await, 0, "{case}: the backend was blamed; log:\n{}", gh.log());
    assert!(logged, "{case}: no access record for {path} within 10 s; log:\n{}", gh.log());
    let rec = record_for(&gh, &path).await;
    // The client gave up on the stream, so it may never hear an answer; if it does, it is
    // not a 502.
    if answer.is_finished() {
        let answered = answer.await.expect("join");
        assert!(!matches!(answered, Ok(502)), "{case}: answered 502");
    } else {
        answer.abort();
    }
    assert_record(&rec, &[("error_side", "client".into()), ("version", "HTTP/2.0".into()), ("bytes_in", 5.into())]);
    assert_ne!(rec["status"], 502, "{case}: {rec}");
    assert_eq!(failures(&gh, "p", "/").await, 0, "{case}: the backend was blamed; record: {rec}");
    assert_eq!(get(gh.http, "p.test", "/after").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_resets_its_request_stream_is_not_the_backends_fault() {
    http2_client_gives_up("reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_drops_its_connection_mid_body_is_not_the_backends_fault() {
    http2_client_gives_up("dropped").await;
}

// ---------------------------------------------------------------------------------------
// 2. Access records: what the client saw.

/// The record of a response cut off after 1000 of 100000 bytes: the status the client saw
/// (200), the bytes it got (1000), the backend's fault.
fn assert_cut_record(r: &Value) {
    assert_record(
        r,
        &[
            ("status", 200.into()),
            ("bytes_out", 1000.into()),
            ("error_side", "backend".into()),
            ("error", "response_body".into()),
            ("site", "c".into()),
        ],
    )
}

fn cut_site(cut: SocketAddr) -> Gatehouse {
    start_logged(&[("c", &site("c.test", &format!("backend: http://{cut}\n")))])
}

/// Checks a raw HTTP/1.1 client's view of a cut-off response against its record: first
/// that the record tells what the client got, then that the client got the head and the
/// 1000 bytes the backend sent.
async fn check_cut_over_http1(gh: &Gatehouse, path: &str, reply: RawReply) {
    let rec = record_for(gh, path).await;
    let text = reply.text();
    let status_seen = text.strip_prefix("HTTP/1.1 ").and_then(|t| t.get(..3)).and_then(|s| s.parse::<u64>().ok());
    let got = if status_seen.is_some() { reply.body().len() } else { 0 };
    assert_eq!(
        (rec["status"].as_u64(), rec["bytes_out"].as_u64()),
        (Some(status_seen.unwrap_or(0)), Some(got as u64)),
        "the record does not say what the client got (status line {status_seen:?}, {got} body bytes; \
         0 = no status line); the client read {} bytes: {:?}; record: {rec}",
        reply.bytes.len(),
        text.get(..text.len().min(300)),
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{path}: {text:?}; record: {rec}");
    assert!(reply.closed, "{path}: the connection stayed open after a cut-off body");
    assert_eq!(got, 1000, "{path}: body bytes the client got; record: {rec}");
    assert_cut_record(&rec);
}

/// HTTP/1.1, a bodiless request: Gatehouse's own loop writes the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_midway_is_recorded_as_the_client_saw_it_http1_own_loop() {
    let gh = cut_site(cut_off_backend(None).await);
    let reply = raw_exchange(
        gh.http,
        b"GET /cut/own-loop HTTP/1.1\r\nHost: c.test\r\n\r\n".to_vec(),
        false,
        Duration::from_secs(10),
    )
    .await;
    check_cut_over_http1(&gh, "/cut/own-loop", reply).await;
}

/// HTTP/1.1 with a request body: the connection is handed to hyper's HTTP/1 server, which
/// writes the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_midway_is_recorded_as_the_client_saw_it_http1_hyper() {
    let gh = cut_site(cut_off_backend(None).await);
    let reply = raw_exchange(
        gh.http,
        b"POST /cut/hyper-h1 HTTP/1.1\r\nHost: c.test\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
        false,
        Duration::from_secs(10),
    )
    .await;
    check_cut_over_http1(&gh, "/cut/hyper-h1", reply).await;
    assert_eq!(record_for(&gh, "/cut/hyper-h1").await["bytes_in"], 2);
}

/// HTTP/2 (h2c, prior knowledge): hyper's HTTP/2 server writes the response. Read with a
/// raw frame reader: a library client may hide a response head once its stream is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_midway_is_recorded_as_the_client_saw_it_http2() {
    let gh = cut_site(cut_off_backend(None).await);
    let wire = h2_raw_get(gh.http, "c.test", "/cut/h2").await;
    let rec = record_for(&gh, "/cut/h2").await;
    assert_eq!(
        (rec["status"].as_u64(), rec["bytes_out"].as_u64()),
        (Some(u64::from(wire.status.unwrap_or(0))), Some(wire.data)),
        "the record does not say what the client got on the wire ({wire:?}; status 0 = no HEADERS); record: {rec}"
    );
    assert_eq!((wire.status, wire.data), (Some(200), 1000), "{wire:?}; record: {rec}");
    assert!(!wire.ended && wire.reset.is_some(), "a cut-off body must not end cleanly: {wire:?}");
    assert_cut_record(&rec);
    assert_eq!(rec["version"], "HTTP/2.0", "{rec}");
}

/// The same cut, but the backend closes only after the client has the 1000 bytes: then
/// they have certainly been written, over every protocol, and the record must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_after_the_client_got_its_bytes_is_recorded_as_such() {
    let release = Arc::new(tokio::sync::Notify::new());
    let gh = cut_site(cut_off_backend(Some(release.clone())).await);

    for (path, req) in [
        ("/late-cut/own-loop", b"GET /late-cut/own-loop HTTP/1.1\r\nHost: c.test\r\n\r\n".to_vec()),
        (
            "/late-cut/hyper-h1",
            b"POST /late-cut/hyper-h1 HTTP/1.1\r\nHost: c.test\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
        ),
    ] {
        let reply = raw_releasing(gh.http, &req, 1000, &release).await;
        check_cut_over_http1(&gh, path, reply).await;
    }

    let wire = h2_raw_get_releasing(gh.http, "c.test", "/late-cut/h2", Some((1000, release.clone()))).await;
    let rec = record_for(&gh, "/late-cut/h2").await;
    assert_eq!((wire.status, wire.data), (Some(200), 1000), "{wire:?}; record: {rec}");
    assert!(!wire.ended, "a cut-off body must not end cleanly: {wire:?}");
    assert_cut_record(&rec);
}

/// Requests refused before they are routed still get a record with their status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_rejects_are_recorded_with_their_status() {
    let backend = Backend::start("app").await;
    let gh = start_logged(&[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    let count = |gh: &Gatehouse, status: u64| records(gh).iter().filter(|r| r["status"] == status).count();

    // A space in a field name: refused by the own HTTP/1.1 loop before any routing.
    let reply = raw_exchange(
        gh.http,
        b"GET /bad-name HTTP/1.1\r\nHost: p.test\r\nBad Name: x\r\n\r\n".to_vec(),
        false,
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.text().starts_with("HTTP/1.1 400 "), "{:?}", reply.text());
    let rec = record_where(&gh, "the 400 for a space in a field name", |r| r["status"] == 400).await;
    assert_record(&rec, &[("error_side", "client".into()), ("error", "bad_request_head".into())]);

    // A 70 KB field: over the route's 64 KiB limit.
    let mut big = b"GET /big-70k HTTP/1.1\r\nHost: p.test\r\nX-Big: ".to_vec();
    big.extend_from_slice(&vec![b'a'; 70_000]);
    big.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let reply = raw_exchange(gh.http, big, false, Duration::from_secs(10)).await;
    assert!(reply.text().starts_with("HTTP/1.1 431 "), "{:?}", reply.text());
    let rec = record_where(&gh, "the 431 for a 70 KB field", |r| r["status"] == 431).await;
    assert_eq!(rec["error_side"], "client", "{rec}");

    // A 200 KB head: past the server's read buffer, refused before it is parsed.
    let before = count(&gh, 431);
    let mut huge = b"GET /big-200k HTTP/1.1\r\nHost: p.test\r\nX-Big: ".to_vec();
    huge.extend_from_slice(&vec![b'a'; 200_000]);
    huge.extend_from_slice(b"\r\n\r\n");
    let reply = raw_exchange(gh.http, huge, false, Duration::from_secs(10)).await;
    assert!(reply.text().starts_with("HTTP/1.1 431 "), "{:?}", reply.text());
    assert!(
        wait_until(Duration::from_secs(10), || count(&gh, 431) > before).await,
        "no record for the 431 of a 200 KB head: {}",
        gh.log()
    );

    // After a request with a body the connection is hyper's; hyper refuses the malformed
    // head that follows on its own, and that is recorded too.
    let before = count(&gh, 400);
    let reply = raw_exchange(
        gh.http,
        b"POST /first HTTP/1.1\r\nHost: p.test\r\nContent-Length: 2\r\n\r\nhiGET /second HTTP/1.1\r\nHost: p.test\r\nBad Name: x\r\n\r\n"
            .to_vec(),
        false,
        Duration::from_secs(10),
    )
    .await;
    let text = reply.text();
    assert!(text.starts_with("HTTP/1.1 200 ") && text.contains("}HTTP/1.1 400 "), "{text:?}");
    assert_eq!(record_for(&gh, "/first").await["status"], 200);
    assert!(
        wait_until(Duration::from_secs(10), || count(&gh, 400) > before).await,
        "no record for hyper's own 400: {}",
        gh.log()
    );
}

/// As the access log's documentation has it (configuration.md, Access log): `method`,
/// `host`, `path` and `version` are `-` for a request refused before its head could be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_record_says_dash_for_the_request_it_could_not_read() {
    let backend = Backend::start("app").await;
    let gh = start_logged(&[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    let reply = raw_exchange(
        gh.http,
        b"GET /bad-name HTTP/1.1\r\nHost: p.test\r\nBad Name: x\r\n\r\n".to_vec(),
        false,
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.text().starts_with("HTTP/1.1 400 "), "{:?}", reply.text());
    let rec = record_where(&gh, "the 400 for a space in a field name", |r| r["status"] == 400).await;
    assert_record(&rec, &[("method", "-".into()), ("host", "-".into()), ("path", "-".into()), ("version", "-".into())]);
}

/// One request, one record, with the fields the access log promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_record_has_every_field() {
    let backend = Backend::start("app").await;
    let gh = start_logged(&[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    let req = Request::post("/fields?q=1")
        .header("host", "p.test")
        .body(http_body_util::Full::new(Bytes::from_static(b"12345")))
        .expect("request");
    let r = send(gh.http, req).await;
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").expect("request id").to_string();
    let rec = record_for(&gh, "/fields").await;
    assert_record(
        &rec,
        &[
            ("client", "127.0.0.1".into()),
            ("method", "POST".into()),
            ("host", "p.test".into()),
            ("version", "HTTP/1.1".into()),
            ("status", 200.into()),
            ("bytes_in", 5.into()),
            ("bytes_out", (r.body.len() as u64).into()),
            ("site", "p".into()),
            ("route", "p#0".into()),
            ("upstream", backend.url().into()),
            ("retries", 0.into()),
            ("error_side", "-".into()),
            ("error", "-".into()),
            ("request_id", id.into()),
        ],
    );
    assert!(rec["duration_us"].is_u64(), "{rec}");
    assert_eq!(rec["reason"], "-", "{rec}");
    assert_eq!(records(&gh).iter().filter(|r| r["path"] == "/fields").count(), 1, "one record per request");
}

// ---------------------------------------------------------------------------------------
// 3. Filters over HTTP/1.1, HTTP/2 and HTTP/3; 4. the admin API lists them.

struct Filters {
    gh: Gatehouse,
    ca: TestCa,
    https: SocketAddr,
}

/// f.test (HTTPS redirect on; preset and response rules for the whole site): a redirect
/// route, a GET-only route and a proxied route. n.test: no HTTPS redirect; a redirect, a
/// route with its own response rule and a plain one. HTTPS with HTTP/3.
async fn filters_setup(backend: &Backend) -> Filters {
    let ca = TestCa::new();
    let cert = ca.issue(&["f.test", "n.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "f.crt", &cert.cert_pem);
    write(d, "f.key", &cert.key_pem);
    let url = backend.url();
    let f = format!(
        "host: f.test\n\
         options:\n  headers:\n    preset: security-basic\n    response:\n      set: {{X-Filtered: \"yes\"}}\n      remove: [X-Backend]\n\
         routes:\n\
         \x20 - path: /old\n    redirect: {{to: \"https://elsewhere.test{{uri}}\", code: 301}}\n\
         \x20 - path: /only-get\n    methods: [GET]\n    backend: {url}\n\
         \x20 - path: /app\n    backend: {url}\n"
    );
    let n = format!(
        "host: n.test\nhttps_redirect: false\n\
         routes:\n\
         \x20 - path: /go\n    redirect: {{to: /x, code: 302}}\n\
         \x20 - path: /h\n    backend: {url}\n    options: {{headers: {{response: {{set: {{X-A: \"1\"}}}}}}}}\n\
         \x20 - path: /\n    backend: {url}\n"
    );
    write_config(d, &format!("{HTTPS}http3: true\ntls: {{cert: f.crt, key: f.key}}\n"), &[("f", &f), ("n", &n)]);
    let main = std::fs::read_to_string(d.join("gatehouse.yaml")).expect("main");
    std::fs::write(d.join("gatehouse.yaml"), info_log(main)).expect("main");
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https listener");
    Filters { gh, ca, https }
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    H1,
    H2,
    H3,
}

/// One request to the HTTPS port over `proto`; `body` makes it carry a 5-byte body.
async fn over(s: &Filters, proto: Proto, method: &str, host: &str, path: &str, body: bool) -> Reply {
    let payload: Option<&'static str> = body.then_some("hello");
    match proto {
        Proto::H1 => {
            let conn = tls_connect(s.https, &s.ca.connector(&[b"http/1.1"]), host).await.expect("tls");
            let mut b = Request::builder().method(method).uri(path).header("host", host);
            if body {
                b = b.header("content-length", "5");
            }
            let req = b.body(http_body_util::Full::new(Bytes::from(payload.unwrap_or("")))).expect("request");
            send_on(conn.stream, req).await
        }
        Proto::H2 => {
            let conn = tls_connect(s.https, &s.ca.connector(&[b"h2"]), host).await.expect("tls");
            assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]), "ALPN h2 not negotiated");
            let (mut tx, _conn) = h2_client(conn.stream).await;
            let body = match payload {
                Some(p) => http_body_util::Full::new(Bytes::from(p)).map_err(|never| match never {}).boxed(),
                None => empty(),
            };
            let req = Request::builder().method(method).uri(format!("https://{host}{path}")).body(body).expect("req");
            h2_send(&mut tx, req).await
        }
        Proto::H3 => {
            let mut b = Request::builder().method(method).uri(format!("https://{host}{path}"));
            if body {
                b = b.header("content-length", "5");
            }
            let (resp, data) = h3_request(&s.ca, s.https, host, b.body(()).expect("request"), payload).await;
            let (parts, ()) = resp.into_parts();
            Reply { status: parts.status, headers: parts.headers, body: Bytes::from(data) }
        }
    }
}

const PRESET: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=31536000"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_behave_the_same_over_http1_http2_and_http3() {
    let backend = Backend::start("app").await;
    let s = filters_setup(&backend).await;

    for proto in [Proto::H1, Proto::H2, Proto::H3] {
        // A proxied response gets the preset and the site's response rules; HTTPS itself
        // is not redirected.
        let r = over(&s, proto, "GET", "f.test", "/app/x?q=1", false).await;
        assert_eq!(r.status, 200, "{proto:?}: {}", r.text());
        assert_eq!(r.json()["uri"], "/app/x?q=1", "{proto:?}");
        for (name, value) in PRESET {
            assert_eq!(r.header(name), Some(*value), "{proto:?}: {name} on a proxied response");
        }
        assert_eq!(r.header("x-filtered"), Some("yes"), "{proto:?}: response set rule");
        assert_eq!(r.header("x-backend"), None, "{proto:?}: response remove rule");
        assert!(r.header("x-request-id").is_some_and(|v| v.len() == 32), "{proto:?}");

        // The route's redirect, with {uri}; response rules apply to redirects too.
        let r = over(&s, proto, "GET", "f.test", "/old/page?a=b", false).await;
        assert_eq!(r.status, 301, "{proto:?}: {}", r.text());
        assert_eq!(r.header("location"), Some("https://elsewhere.test/old/page?a=b"), "{proto:?}");
        assert_eq!(r.header("x-filtered"), Some("yes"), "{proto:?}: response rules on a redirect");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{proto:?}: preset on a redirect");
        let r = over(&s, proto, "GET", "n.test", "/go", false).await;
        assert_eq!((r.status.as_u16(), r.header("location")), (302, Some("/x")), "{proto:?}");

        // A method the route does not take: 405 with Allow; Gatehouse's own error answer
        // gets no response rules.
        let r = over(&s, proto, "POST", "f.test", "/only-get", true).await;
        assert_eq!(r.status, 405, "{proto:?}: {}", r.text());
        assert_eq!(r.header("allow"), Some("GET"), "{proto:?}");
        assert_eq!(r.header("x-filtered"), None, "{proto:?}: response rules on a 405 error answer");
        let r = over(&s, proto, "GET", "f.test", "/only-get", false).await;
        assert_eq!(r.status, 200, "{proto:?}: {}", r.text());

        // A route's own rule, on a site without preset.
        let r = over(&s, proto, "GET", "n.test", "/h", false).await;
        assert_eq!((r.status.as_u16(), r.header("x-a")), (200, Some("1")), "{proto:?}");
        assert_eq!(r.header("x-backend"), Some("app"), "{proto:?}");
        let r = over(&s, proto, "GET", "n.test", "/plain", false).await;
        assert_eq!((r.status.as_u16(), r.header("x-a"), r.header("x-filtered")), (200, None, None), "{proto:?}");
    }

    // Plain HTTP to a site with HTTPS redirect: 308 to the HTTPS port, same path and
    // query, before the route's own redirect; over the own HTTP/1.1 loop (GET), hyper's
    // HTTP/1 (a request with a body) and HTTP/2 (h2c).
    let port = s.https.port();
    let to = |pq: &str| format!("https://f.test:{port}{pq}");
    let r = get(s.gh.http, "f.test", "/app/x?q=1").await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/app/x?q=1").as_str())), "own loop");
    let r = get(s.gh.http, "f.test", "/old/page").await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/old/page").as_str())), "before redirect");
    let post = Request::post("/app/upload?z=9")
        .header("host", "f.test")
        .body(http_body_util::Full::new(Bytes::from_static(b"hello")))
        .expect("request");
    let r = send(s.gh.http, post).await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/app/upload?z=9").as_str())), "hyper h1");
    let (mut tx, _conn) = h2c(s.gh.http).await;
    let r = h2_send(&mut tx, Request::get("http://f.test/app/h2?q=2").body(empty()).expect("request")).await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/app/h2?q=2").as_str())), "h2c");
    // A site with `https_redirect: false` is served over plain HTTP.
    let r = get(s.gh.http, "n.test", "/h").await;
    assert_eq!((r.status.as_u16(), r.header("x-a")), (200, Some("1")));
    let r = get(s.gh.http, "n.test", "/go").await;
    assert_eq!((r.status.as_u16(), r.header("location")), (302, Some("/x")));
    // None of this touched a backend's failure count.
    for path in ["/only-get", "/app"] {
        assert_eq!(failures(&s.gh, "f", path).await, 0, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_each_routes_filters_and_backend_failures() {
    let backend = Backend::start("app").await;
    let s = filters_setup(&backend).await;
    for (site, path, want) in [
        ("f", "/old", vec!["https_redirect", "redirect", "response_headers"]),
        ("f", "/only-get", vec!["https_redirect", "response_headers"]),
        ("f", "/app", vec!["https_redirect", "response_headers"]),
        ("n", "/go", vec!["redirect"]),
        ("n", "/h", vec!["response_headers"]),
        ("n", "/", vec![]),
    ] {
        let r = route_entry(&s.gh, site, path).await;
        assert_eq!(r["filters"], serde_json::json!(want), "{site} {path}: {r}");
        if r["action"] == "proxy" {
            assert_eq!(r["backends"][0]["failures"], 0, "{r}");
        }
    }
    // Without an HTTPS listener no route has an HTTPS redirect.
    let gh = Gatehouse::start("", &[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    let r = route_entry(&gh, "p", "/").await;
    assert_eq!(r["filters"], serde_json::json!([]), "{r}");
    assert_eq!(r["backends"][0]["failures"], 0, "{r}");
}

/// Over HTTP/3: a client that sends DATA and then resets its request stream, after the
/// backend already has the request, is not the backend's fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http3_client_that_resets_its_request_body_is_not_the_backends_fault() {
    let backend = Backend::start("app").await;
    let s = filters_setup(&backend).await;
    let H3Client { endpoint: _endpoint, mut sender } =
        within("HTTP/3 connection", h3_connect(&s.ca, s.https, "f.test")).await;
    let req = Request::post("https://f.test/app/h3-reset").body(()).expect("request");
    let mut stream = within("HTTP/3 request", sender.send_request(req)).await.expect("send request");
    within("HTTP/3 body", stream.send_data(Bytes::from_static(b"hello"))).await.expect("send body");
    let reached = wait_until(Duration::from_secs(10), || backend.count() > 0).await;
    assert!(reached, "the request never reached the backend: {}", s.gh.log());
    // RESET_STREAM on the request's sending side.
    stream.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
    let logged =
        wait_until(Duration::from_secs(10), || records(&s.gh).iter().any(|r| r["path"] == "/app/h3-reset")).await;
    assert_eq!(failures(&s.gh, "f", "/app").await, 0, "the backend was blamed; log:\n{}", s.gh.log());
    assert!(logged, "no access record for /app/h3-reset; log:\n{}", s.gh.log());
    let rec = record_for(&s.gh, "/app/h3-reset").await;
    assert_record(&rec, &[("error_side", "client".into()), ("version", "HTTP/3.0".into())]);
    assert_ne!(rec["status"], 502, "{rec}");
    // The backend still serves, over HTTP/3 too.
    let (resp, _) =
        h3_request(&s.ca, s.https, "f.test", Request::get("https://f.test/app/after").body(()).expect("req"), None)
            .await;
    assert_eq!(resp.status(), 200);
}

/// Gatehouse's own faults are found when the configuration is built, not as 502s at request
/// time: a CA file for `https://` backends that holds no certificate is refused by `check`,
/// by `run`, and by a reload (422 naming the site file), while the old configuration serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_tls_client_that_cannot_be_built_is_refused_when_the_configuration_is_built() {
    let backend = Backend::start("app").await;
    let broken = "host: t.test\nbackend: https://127.0.0.1:9\noptions: {upstream_tls: {ca: not-a-ca.pem}}\n";
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "", &[("t", broken)]);
    std::fs::write(dir.path().join("sites/not-a-ca.pem"), "this is no certificate\n").expect("write");
    std::fs::write(dir.path().join("not-a-ca.pem"), "this is no certificate\n").expect("write");

    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "check accepted an unusable TLS client:\n{out}");
    assert!(out.contains("t.yaml") && out.contains("upstream_tls") && out.contains("no usable CA"), "{out}");
    match Gatehouse::try_start_in(dir) {
        Ok(_) => panic!("run started with an unusable TLS client"),
        Err(failed) => assert!(failed.log.contains("no usable CA"), "{}", failed.log),
    }

    // A reload to the same configuration is refused; the running one keeps serving.
    let gh = Gatehouse::start("", &[("t", &site("t.test", &format!("backend: {}\n", backend.url())))]);
    std::fs::write(gh.dir.path().join("sites/not-a-ca.pem"), "this is no certificate\n").expect("write");
    std::fs::write(gh.dir.path().join("not-a-ca.pem"), "this is no certificate\n").expect("write");
    std::fs::write(gh.dir.path().join("sites/t.yaml"), broken).expect("write");
    let reply = admin_reload(&gh).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let errors = reply.json()["errors"].clone();
    assert!(
        errors.as_array().is_some_and(|e| e.iter().any(|e| e["file"].as_str().is_some_and(|f| f.ends_with("t.yaml"))
            && e["field"].as_str().is_some_and(|f| f.contains("upstream_tls")))),
        "{errors}"
    );
    assert_eq!(get(gh.http, "t.test", "/").await.status, 200, "the old configuration stopped serving");
}
