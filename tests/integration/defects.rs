//! Regression tests for defects found by probing the release binary from outside: values a
//! configuration file can hold that once crashed or hung the process, descriptor exhaustion
//! through the admin port, port sharing, HTTP/2 PINGs with keep-alive off, and request
//! shapes that were passed on where nginx and the RFCs refuse them (request trailers, h2c
//! upgrades, transfer codings, authority and asterisk forms, oversized parts, byte ranges).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;

/// How many times `needle` occurs in the process's log.
fn log_count(gh: &Gatehouse, needle: &str) -> usize {
    gh.log().matches(needle).count()
}

/// Sends SIGHUP and waits until the log shows one more rejected reload than before.
async fn rejected_reload(gh: &Gatehouse) {
    let before = log_count(gh, "reload rejected");
    gh.signal("HUP");
    let seen = wait_until(Duration::from_secs(15), || log_count(gh, "reload rejected") > before).await;
    assert!(seen, "no rejected reload in the log:\n{}", gh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_past_any_clock_are_refused_by_check_run_and_reload() {
    let b = Backend::start("b").await;
    let site = format!("host: a.test\nbackend: {}\n", b.url());
    let gh = Gatehouse::start("", &[("a", &site)]);
    assert_eq!(get(gh.http, "a.test", "/").await.status, 200);
    // Each of these once panicked: in `check`, at startup, on SIGHUP (killing the running
    // server), or on the first request ("overflow when adding duration to instant").
    for extra in [
        "server: {keepalive_timeout: 213503982334602d}\n",
        "server: {header_read_timeout: 18446744073709551615s}\n",
        "server: {send_timeout: 213503982334600d}\n",
        "defaults: {timeouts: {read: 213503982334600d}}\n",
        "shutdown_timeout: 213503982334600d\n",
        "dns_refresh: 99999999999999999999999h\n",
    ] {
        write_config(gh.dir.path(), extra, &[("a", &site)]);
        if extra.starts_with("shutdown_timeout") {
            // The harness sets one already: replace it instead of adding a second key.
            let main = gh.dir.path().join("gatehouse.yaml");
            let text = std::fs::read_to_string(&main).expect("main").replacen("shutdown_timeout: 10s\n", "", 1);
            std::fs::write(&main, text).expect("main");
        }
        let (code, out) = check(gh.dir.path());
        assert_eq!(code, 1, "{extra}: {out}");
        assert!(out.contains("is too long: at most 365d"), "{extra}: {out}");
        rejected_reload(&gh).await;
        assert_eq!(get(gh.http, "a.test", "/").await.status, 200, "{extra}: the old configuration serves");
        // `run` refuses it too, with the same message and an ordinary exit.
        let out = output_within(
            Command::new(BIN).args(["run", "--config"]).arg(gh.dir.path().join("gatehouse.yaml")),
            Duration::from_secs(20),
        )
        .expect("gatehouse run");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {text}");
        assert!(text.contains("is too long"), "{text}");
    }
    assert!(!gh.log().contains("panicked"), "{}", gh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_a_device_in_the_sites_directory_is_refused_without_hanging() {
    let b = Backend::start("b").await;
    let site = format!("host: a.test\nbackend: {}\n", b.url());
    let mut gh = Gatehouse::start("", &[("a", &site)]);
    let sites = gh.dir.path().join("sites");

    let fifo = sites.join("pipe.yaml");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let (code, out) = check(gh.dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pipe.yaml") && out.contains("a FIFO, not a regular file"), "{out}");
    // A reload meets the same FIFO; the server goes on serving and still obeys SIGTERM.
    rejected_reload(&gh).await;
    assert_eq!(get(gh.http, "a.test", "/").await.status, 200);
    std::fs::remove_file(&fifo).expect("remove fifo");

    std::os::unix::fs::symlink("/dev/zero", sites.join("zero.yaml")).expect("symlink");
    let (code, out) = check(gh.dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("zero.yaml") && out.contains("a device or socket, not a regular file"), "{out}");
    std::fs::remove_file(sites.join("zero.yaml")).expect("remove link");

    std::fs::write(sites.join("big.yaml"), format!("host: big.test\n{}", "# padding\n".repeat(120_000)))
        .expect("big file");
    let (code, out) = check(gh.dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("big.yaml") && out.contains("larger than 1024 KiB"), "{out}");

    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    rejected_reload(&gh).await;
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(Duration::from_secs(15)), Some(0), "SIGTERM after a refused reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_are_capped_and_idle_ones_closed() {
    let b = Backend::start("b").await;
    let site = format!("host: a.test\nbackend: {}\n", b.url());
    let gh = Gatehouse::start("server: {header_read_timeout: 1s}\n", &[("a", &site)]);
    let pid = gh.child.as_ref().expect("running").id().to_string();
    // 256 descriptors, as in the probe that found it: 300 idle admin connections used to
    // leave the proxy listeners failing with EMFILE.
    let limited = Command::new("prlimit").args(["--pid", &pid, "--nofile=256:256"]).status();
    assert!(limited.is_ok_and(|s| s.success()), "prlimit (util-linux) is needed: apt-get install util-linux");

    let admin = gh.admin;
    let held = tokio::task::spawn_blocking(move || {
        (0..300)
            .map(|_| {
                let s = TcpStream::connect_timeout(&admin, NET_TIMEOUT).expect("connect to admin");
                s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("connect task");
    // The proxy still accepts and serves while they are open.
    assert_eq!(get(gh.http, "a.test", "/").await.status, 200, "{}", gh.log());
    // Every one of them is closed by the server: those over the cap at once, the others
    // when the header-read time (1 s here) runs out without a request.
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut open: Vec<TcpStream> = held;
        while !open.is_empty() && std::time::Instant::now() < deadline {
            open.retain_mut(|s| {
                let mut byte = [0u8; 1];
                match s.read(&mut byte) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(e) => matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                }
            });
        }
        open.len()
    })
    .await
    .expect("read task");
    assert_eq!(closed, 0, "admin connections still open after 20 s");
    // The admin API answers again.
    let r = get(gh.admin, "127.0.0.1", "/health").await;
    assert_eq!((r.status.as_u16(), r.json()["status"].as_str()), (200, Some("ok")));
    assert!(gh.log().contains("admin connection limit per client reached"), "{}", gh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_refused_like_nginx_does() {
    let b = Backend::start("b").await;
    let site = format!("host: a.test\nbackend: {}\n", b.url());
    let gh = Gatehouse::start("", &[("a", &site)]);
    let port = gh.http.port();

    // A second Gatehouse on the same address (SO_REUSEPORT used to let it in silently,
    // taking half the connections).
    let second = tempfile::tempdir().expect("tempdir");
    write_config(second.path(), &format!("listen: {{http: 127.0.0.1:{port}}}\n"), &[("a", &site)]);
    let out = output_within(
        Command::new(BIN).args(["run", "--config"]).arg(second.path().join("gatehouse.yaml")),
        Duration::from_secs(20),
    )
    .expect("second gatehouse");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("already in use").count(), 1, "said once: {text}");
    assert!(text.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{text}");
    // Every request still reaches the first one.
    for _ in 0..20 {
        assert_eq!(get(gh.http, "a.test", "/").await.status, 200);
    }

    // Two listeners of one configuration on one port.
    write_config(second.path(), &format!("listen: {{http: 127.0.0.1:{port}, https: 127.0.0.1:{port}}}\n"), &[]);
    let (code, out) = check(second.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("listen.https: 127.0.0.1:{port} is also listen.http")), "{out}");
}

/// Reads HTTP/2 frames from `s` until GOAWAY, the connection's end or `limit`; returns the
/// frame types seen.
fn h2_frames(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = std::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut types = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            types.push(buf[3]);
            buf.drain(..9 + len);
        }
        if types.contains(&7) {
            return types;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return types;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return types,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads and discards until the peer closes (true) or `limit` passes (false).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const PING: u8 = 6;
const GOAWAY: u8 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_zero_is_connection_close_and_goaway_without_pings() {
    let b = Backend::start("b").await;
    let site = format!("host: a.test\nbackend: {}\n", b.url());
    let gh = Gatehouse::start("server: {keepalive_timeout: 0, header_read_timeout: 2s}\n", &[("a", &site)]);
    let addr = gh.http;
    tokio::task::spawn_blocking(move || {
        // HTTP/1.1: answered with `Connection: close`, then closed (raw() returns at the close).
        let out = raw(addr, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", Duration::from_secs(10));
        assert!(out.starts_with("HTTP/1.1 200") && out.to_ascii_lowercase().contains("connection: close"), "{out}");
        // HTTP/2 with nothing to do: no PING storm (2,327 in 3 s before), and GOAWAY.
        let mut s = TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.write_all(PREFACE).expect("preface");
        let types = h2_frames(&mut s, Duration::from_secs(10));
        let goaway = types.iter().position(|t| *t == GOAWAY);
        assert!(goaway.is_some(), "no GOAWAY on an idle HTTP/2 connection: {types:?}");
        // (A PING right after GOAWAY is part of hyper's graceful close, not keep-alive.)
        assert!(!types[..goaway.unwrap_or(0)].contains(&PING), "{types:?}");
        // A client that never answers that PING does not keep the connection open.
        assert!(closed_within(&mut s, Duration::from_secs(10)), "connection still open after GOAWAY");
    })
    .await
    .expect("client");
    // An idle HTTP/2 connection with keep-alive on also ends, after the idle time...
    let gh = Gatehouse::start("server: {keepalive_timeout: 1s, header_read_timeout: 1s}\n", &[("a", &site)]);
    let addr = gh.http;
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.write_all(PREFACE).expect("preface");
        let types = h2_frames(&mut s, Duration::from_secs(10));
        let goaway = types.iter().position(|t| *t == GOAWAY);
        assert!(goaway.is_some(), "{types:?}");
        let before = &types[..goaway.unwrap_or(0)];
        assert!(!before.contains(&PING), "PINGs are off unless server.h2_ping_interval is set: {types:?}");
    })
    .await
    .expect("client");

    // ... but a response still streaming is not idle: 8 chunks 800 ms apart outlast the
    // 1 s idle time and the 3 s grace after a GOAWAY, and arrive whole. (The first request
    // has 3 s, so a loaded machine cannot make this connection idle before it.)
    let gh = Gatehouse::start(
        "server: {keepalive_timeout: 1s, header_read_timeout: 3s, send_timeout: 1s}\n",
        &[("a", &site)],
    );
    let addr = gh.http;
    let exchange = async {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut tx, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        let req = http::Request::get("http://a.test/stream/8/800")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = tx.send_request(req).await.expect("response");
        resp.into_body().collect().await.expect("whole body").to_bytes()
    };
    let body = tokio::time::timeout(NET_TIMEOUT, exchange).await.expect("within the timeout");
    assert_eq!(&body[..], (0..8).map(|i| format!("chunk{i}\n")).collect::<String>().as_bytes());

    // A client that asks for a body and never grants flow-control window holds nothing
    // past send_timeout (1 s here): the connection is closed. (Waiting between the chunks
    // above was the backend's doing, not a stall.)
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        // Preface, then SETTINGS with INITIAL_WINDOW_SIZE (4) = 0.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00")
            .expect("preface");
        // HEADERS (END_STREAM | END_HEADERS) on stream 1: GET http://a.test/bytes/100000, in
        // HPACK: indexed :method GET and :scheme http, literal :path and :authority.
        let mut block = vec![0x82, 0x86, 0x04, 13];
        block.extend_from_slice(b"/bytes/100000");
        block.extend_from_slice(&[0x01, 6]);
        block.extend_from_slice(b"a.test");
        let mut frame = vec![0, 0, block.len() as u8, 0x01, 0x05, 0, 0, 0, 1];
        frame.extend_from_slice(&block);
        s.write_all(&frame).expect("headers");
        assert!(closed_within(&mut s, Duration::from_secs(15)), "a client granting no window kept its connection");
    })
    .await
    .expect("client");
}

/// A raw HTTP/1.1 backend that records every request exactly as it arrived (head, body and
/// trailers). It answers 101 to an `Upgrade: h2c` it receives, as a backend that speaks h2c
/// would, so a test can tell whether the upgrade got through.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || {
                    let _ = serve_recorded(stream, &record);
                });
            }
        });
        Recorder { addr, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

fn serve_recorded(stream: TcpStream, record: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(NET_TIMEOUT))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let mut text = String::new();
        let mut line = String::new();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            text.push_str(&line);
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            if line == "\r\n" {
                break;
            }
        }
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                text.push_str(&line);
                let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        line.clear();
                        if r.read_line(&mut line)? == 0 || line == "\r\n" {
                            text.push_str(&line);
                            break;
                        }
                        text.push_str(&line);
                    }
                    break;
                }
                let mut data = vec![0u8; size + 2];
                r.read_exact(&mut data)?;
                text.push_str(&String::from_utf8_lossy(&data));
            }
        } else if length > 0 {
            let mut data = vec![0u8; length];
            r.read_exact(&mut data)?;
            text.push_str(&String::from_utf8_lossy(&data));
        }
        let h2c = text.to_ascii_lowercase().contains("upgrade: h2c");
        record.lock().expect("lock").push(text);
        if h2c {
            w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")?;
            return Ok(());
        }
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nrecorded")?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_and_h2c_upgrades_never_reach_the_backend() {
    let rec = Recorder::start();
    let gh = Gatehouse::start("", &[("a", &format!("host: a.test\nbackend: http://{}\n", rec.addr))]);
    let addr = gh.http;
    let ask = move |req: &'static str| raw_until(addr, req.as_bytes(), Duration::from_secs(5), Some("recorded"));

    // Trailers that would forge forwarding and routing fields after the proxy set them.
    let out = tokio::task::spawn_blocking(move || {
        ask("POST /t HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nHost: evil.test\r\nX-Checksum: 1\r\n\r\n")
    })
    .await
    .expect("client");
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("recorded"), "{out}");
    let sent = rec.requests().pop().expect("recorded");
    assert!(sent.contains("hello"), "{sent}");
    for forged in ["6.6.6.6", "evil.test", "X-Checksum"] {
        assert!(!sent.contains(forged), "{forged} reached the backend:\n{sent}");
    }

    // h2c in every spelling: served as the plain HTTP/1.1 request it also is.
    for (req, upgrade_left) in [
        (
            "GET /h HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
            None,
        ),
        (
            "GET /h HTTP/1.1\r\nHost: a.test\r\nUpgrade: H2C\r\nConnection: upgrade, http2-settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
            None,
        ),
        (
            "GET /h HTTP/1.1\r\nHost: a.test\r\nUpgrade: foo/2, h2c\r\nConnection: Upgrade\r\n\r\n",
            Some("upgrade: foo/2"),
        ),
        (
            "GET /h HTTP/1.0\r\nHost: a.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
            None,
        ),
        ("GET /h HTTP/1.1\r\nHost: a.test\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", None),
    ] {
        let before = rec.requests().len();
        let out = tokio::task::spawn_blocking(move || ask(req)).await.expect("client");
        assert!(out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"), "{req:?} -> {out}");
        let sent = rec.requests();
        assert_eq!(sent.len(), before + 1, "{req:?}");
        let head = sent[before].to_ascii_lowercase();
        assert!(!head.contains("h2c") && !head.contains("http2-settings"), "{req:?} sent:\n{head}");
        match upgrade_left {
            None => assert!(!head.contains("upgrade"), "{head}"),
            Some(u) => assert!(head.contains(u), "{head}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_shapes_nginx_refuses_are_refused() {
    let rec = Recorder::start();
    let gh = Gatehouse::start("", &[("a", &format!("host: a.test\nbackend: http://{}\n", rec.addr))]);
    let addr = gh.http;
    let port = rec.addr.port();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a.test\r\n\r\n", "u".repeat(70_000));
    let longer_uri = format!("GET /{} HTTP/1.1\r\nHost: a.test\r\n\r\n", "u".repeat(200_000));
    let long_name = format!("GET / HTTP/1.1\r\nHost: a.test\r\n{}: 1\r\n\r\n", "n".repeat(100_000));
    // The second request of each pair goes through hyper: the first one's body handed the
    // connection over.
    let via_hyper =
        |second: &str| format!("POST /first HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi{second}");
    let cases: Vec<(String, &str)> = vec![
        ("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".into(), "HTTP/1.1 501"),
        (
            via_hyper("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            "HTTP/1.1 501",
        ),
        (format!("GET 127.0.0.1:{port} HTTP/1.1\r\nHost: a.test\r\n\r\n"), "HTTP/1.1 400"),
        (via_hyper(&format!("GET 127.0.0.1:{port} HTTP/1.1\r\nHost: a.test\r\n\r\n")), "HTTP/1.1 400"),
        ("GET * HTTP/1.1\r\nHost: a.test\r\n\r\n".into(), "HTTP/1.1 400"),
        (long_uri, "HTTP/1.1 414"),
        (longer_uri, "HTTP/1.1 414"),
        (long_name, "HTTP/1.1 431"),
    ];
    for (req, want) in cases {
        let before = rec.requests().len();
        let out = tokio::task::spawn_blocking(move || raw(addr, req.as_bytes(), Duration::from_secs(5)))
            .await
            .expect("client");
        // A hyper-served pair has the first answer (200) in front.
        let last = out.rfind("HTTP/1.1 ").map_or(out.as_str(), |i| &out[i..]);
        assert!(last.starts_with(want), "want {want}, got {}", &out[..out.len().min(300)]);
        let sent = rec.requests();
        assert!(sent[before..].iter().all(|r| r.starts_with("POST /first")), "reached the backend: {:?}", sent.last());
    }

    // OPTIONS * is a question about the server: answered here, not sent on as `/*`.
    let out = tokio::task::spawn_blocking(move || {
        raw(addr, b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", Duration::from_secs(5))
    })
    .await
    .expect("client");
    let lower = out.to_ascii_lowercase();
    assert!(out.starts_with("HTTP/1.1 200") && lower.contains("\r\nallow: get, head, post"), "{out}");
    assert!(!rec.requests().iter().any(|r| r.starts_with("OPTIONS")), "{:?}", rec.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_ranges_past_u64_and_file_paths_with_a_slash() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("file.bin"), b"0123456789").expect("file");
    let site = format!("host: s.test\nstatic: {}\n", dir.path().display());
    let gh = Gatehouse::start("", &[("s", &site)]);
    let r = get_with(gh.http, "s.test", "/file.bin", &[("range", "bytes=0-99999999999999999999999")]).await;
    assert_eq!(r.status, 206, "clamped, as RFC 9110 §14.1.2 asks");
    assert_eq!((r.header("content-range"), r.text().as_str()), (Some("bytes 0-9/10"), "0123456789"));
    let r = get_with(gh.http, "s.test", "/file.bin", &[("range", "bytes=99999999999999999999999-")]).await;
    assert_eq!((r.status.as_u16(), r.header("content-range")), (416, Some("bytes */10")));
    assert_eq!(get(gh.http, "s.test", "/file.bin/").await.status, 404);
    assert_eq!(get(gh.http, "s.test", "/file.bin").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_directories_pair_dotted_and_mkcert_names_and_say_what_they_skip() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    let dotted = ca.issue(&["shop.example.test"]);
    std::fs::write(certs.join("shop.example.test.crt"), &dotted.cert_pem).expect("crt");
    std::fs::write(certs.join("shop.example.test.key"), &dotted.key_pem).expect("key");
    let wild = ca.issue(&["*.w.example.test"]);
    std::fs::write(certs.join("_wildcard.w.example.test.pem"), &wild.cert_pem).expect("pem");
    std::fs::write(certs.join("_wildcard.w.example.test-key.pem"), &wild.key_pem).expect("key");
    std::fs::write(certs.join("lonely.example.test.crt"), &dotted.cert_pem).expect("crt");
    std::fs::write(certs.join("orphan.example.test.key"), &dotted.key_pem).expect("key");
    // mkcert's own CA pair sits in the same kind of directory; it is no server certificate.
    let (ca_cert, ca_key) = ca.pair();
    std::fs::write(certs.join("rootCA.pem"), ca_cert).expect("ca");
    std::fs::write(certs.join("rootCA-key.pem"), ca_key).expect("ca key");

    let sites = [("shop", "host: shop.example.test\nstatic: .\n"), ("w", "host: a.w.example.test\nstatic: .\n")];
    write_config(dir.path(), &format!("{HTTPS}tls: {{cert_dir: {}}}\n", certs.display()), &sites);
    let (code, out) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lonely.example.test.crt: no key next to it (looked for lonely.example.test.key and lonely.example.test-key.pem)"), "{out}");
    assert!(out.contains("orphan.example.test.key: a key with no certificate of the same name"), "{out}");
    assert!(out.contains("rootCA.pem: a CA certificate (basicConstraints CA:TRUE), not a server certificate"), "{out}");
    assert!(!out.contains("no certificate covers"), "{out}");

    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https");
    let connector = ca.connector(&[b"http/1.1"]);
    let shop = tls_connect(https, &connector, "shop.example.test").await.expect("dotted name pairs");
    assert_eq!(shop.peer_der, dotted.der);
    let w = tls_connect(https, &connector, "a.w.example.test").await.expect("mkcert name pairs");
    assert_eq!(w.peer_der, wild.der);
    assert!(gh.log().contains("lonely.example.test.crt"), "the startup log names the unpaired file:\n{}", gh.log());
}
