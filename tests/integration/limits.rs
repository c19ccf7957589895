//! Timeouts and limits, each with its status code, and the HTTP/1.1 framing rejections.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::*;

fn limited_site(b: &Backend) -> String {
    format!(
        "host: lim.test
backend: {}
options:
  timeouts: {{connect: 1s, read: 700ms, write: 700ms}}
  limits: {{request_body: 1KB, request_headers: 2KB, request_header_count: 20, uri_length: 200, response_body: 10KB}}
",
        b.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_map_to_504_and_408() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("lim", &limited_site(&b))]);

    // Time to first byte.
    let r = get(gh.http, "lim.test", "/sleep/2000").await;
    assert_eq!(r.status, 504);
    assert_eq!(get(gh.http, "lim.test", "/sleep/100").await.status, 200);

    // Between response chunks: the stream is cut, so the client never sees the last chunk.
    let out = raw(gh.http, b"GET /stream/3/1500 HTTP/1.1\r\nHost: lim.test\r\n\r\n", Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}\n{}", gh.log());
    assert!(out.contains("chunk0") && !out.contains("chunk2"), "{out}");
    // ... while chunks within the limit flow.
    let r = get(gh.http, "lim.test", "/stream/3/200").await;
    assert_eq!(r.text(), "chunk0\nchunk1\nchunk2\n");

    // Client sends its body too slowly (write timeout): 408.
    let addr = gh.http;
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"POST / HTTP/1.1\r\nHost: lim.test\r\nContent-Length: 10\r\n\r\nabc").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("join");
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_closes_slowloris_connections() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("server: {header_read_timeout: 500ms}\n", &[("lim", &limited_site(&b))]);
    let addr = gh.http;
    let started = std::time::Instant::now();
    let out = raw_async(addr, b"GET / HTTP/1.1\r\nHost: lim.test\r\nX-Slow: 1", Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "connection stayed open {waited:?}");
    // Part of a head arrived: 408, then the connection closes (documented for
    // server.header_read_timeout), and nothing reaches the backend.
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(waited >= Duration::from_millis(400), "answered after {waited:?}, before the 500 ms timeout");
    assert_eq!(b.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_map_to_413_414_431_and_502() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("lim", &limited_site(&b))]);
    let addr = gh.http;

    // Declared body too large.
    let big = http::Request::post("/")
        .header("host", "lim.test")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![b'a'; 2000])))
        .expect("req");
    assert_eq!(send(addr, big).await.status, 413);

    // Expect: 100-continue is answered with 413 before any body is sent.
    let expect = b"POST / HTTP/1.1\r\nHost: lim.test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n";
    let out = raw_async(addr, expect, Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");

    // Chunked body that grows past the limit.
    let mut chunked = b"POST / HTTP/1.1\r\nHost: lim.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'z'; 512]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let out = raw_async(addr, &chunked, Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");

    // A body within the limit passes.
    let ok = http::Request::post("/")
        .header("host", "lim.test")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![b'a'; 900])))
        .expect("req");
    assert_eq!(send(addr, ok).await.json()["body_len"], 900);

    // URI too long.
    let long = format!("/{}", "a".repeat(300));
    assert_eq!(get(addr, "lim.test", &long).await.status, 414);

    // Too many headers, and too many header bytes.
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(get_with(addr, "lim.test", "/", &many_ref).await.status, 431);
    let fat = "v".repeat(3000);
    assert_eq!(get_with(addr, "lim.test", "/", &[("x-fat", &fat)]).await.status, 431);

    // Response larger than allowed: 502, and a log line says why.
    let r = get(addr, "lim.test", "/bytes/20000").await;
    assert_eq!(r.status, 502);
    assert!(gh.log().contains("upstream response larger than the limit"), "{}", gh.log());
    assert_eq!(get(addr, "lim.test", "/bytes/5000").await.body.len(), 5000);
}

/// Requests with ambiguous framing are refused with 400, the connection is closed and the
/// backend never sees them (no request smuggling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_rejected() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("f", &format!("host: f.test\nbackend: {}\n", b.url()))]);
    let addr = gh.http;
    let attacks: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: f.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: f.test\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: f.test\r\nContent-Length: 4\r\nContent-Length: 9\r\n\r\nabcd",
        b"GET / HTTP/1.1\r\nHost: f.test\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.test\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.test\r\nX-Ok: 1\r\nBad(name): x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        // Host confusion: routed on one host, read by the backend as another.
        b"GET / HTTP/1.1\r\nHost: f.test\r\nHost: evil.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: evil.test@f.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.test/../admin\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.test evil.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.test:evil.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [f.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.test]\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]evil.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.test:99999x\r\n\r\n",
        b"GET http://evil.test@f.test/ HTTP/1.1\r\nHost: f.test\r\n\r\n",
    ];
    for attack in attacks {
        let out = raw_async(addr, attack, Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{:?} -> {out}", String::from_utf8_lossy(attack));
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "connection must close after the 400: {out}");
    }
    assert_eq!(b.count(), 0, "the backend must see none of these");
    // The same connection handling still serves good requests.
    assert_eq!(get(addr, "f.test", "/").await.status, 200);
}

/// A response without `Content-Length` that grows past `limits.response_body` is cut off:
/// the head (200) has gone out, the chunked body never ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_over_the_limit_is_cut_off() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("lim", &limited_site(&b))]);
    let out = raw_async(
        gh.http,
        b"GET /chunked-bytes/50000 HTTP/1.1\r\nHost: lim.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("transfer-encoding: chunked"),
        "{}",
        &out[..out.len().min(300)]
    );
    assert!(!out.ends_with("0\r\n\r\n"), "the body was completed");
    let body = |out: &str| out.split_once("\r\n\r\n").map_or(0, |(_, b)| b.matches('x').count());
    let body_bytes = body(&out);
    assert!(body_bytes <= 10_000 + 16 * 1024, "{body_bytes} bytes passed a 10 KB limit");
    // Within the limit, the same kind of response passes whole.
    let out = raw_async(
        gh.http,
        b"GET /chunked-bytes/5000 HTTP/1.1\r\nHost: lim.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.ends_with("\r\n0\r\n\r\n") && body(&out) == 5000, "{}", &out[..out.len().min(300)]);
}

/// `server.send_timeout`: a client that stops reading a large response is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_timeout_drops_clients_that_stop_reading() {
    let b = Backend::start("b").await;
    let gh =
        Gatehouse::start("server: {send_timeout: 1s}\n", &[("s", &format!("host: s.test\nbackend: {}\n", b.url()))]);
    let total = 64 * 1024 * 1024;
    let mut s = std::net::TcpStream::connect_timeout(&gh.http, NET_TIMEOUT).expect("connect");
    std::io::Write::write_all(&mut s, format!("GET /bytes/{total} HTTP/1.1\r\nHost: s.test\r\n\r\n").as_bytes())
        .expect("write");
    // The client reads nothing. Once the socket buffers are full the proxy waits for it,
    // 1 s at most, then gives up: the request ends (no longer in flight).
    assert!(wait_until(Duration::from_secs(10), || b.count() == 1).await);
    let ended = wait_until_async(Duration::from_secs(15), || async {
        let routes = get(gh.admin, "localhost", "/api/routes").await.json();
        routes["routes"][0]["backends"][0]["active"] == 0
    })
    .await;
    assert!(ended, "the stalled response was still in flight after 15 s");
    // What the client can still read is less than the whole response, then the end.
    let got = tokio::task::spawn_blocking(move || {
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        loop {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
                Err(e) => return Err(format!("{e} after {got} bytes")),
            }
        }
    })
    .await
    .expect("join")
    .expect("the connection was closed");
    assert!(got < total, "the whole response arrived ({got} bytes)");
}

/// `pool.max_connections_per_host`: with the one slot taken for longer than
/// `timeouts.connect`, the next request gets 503; once the slot is free, requests pass.
/// One worker: an idle pooled connection holds its slot, and only its own worker's pool
/// can reuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_per_backend_is_503() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: cap.test\nbackend: {}\noptions:\n  pool: {{max_connections_per_host: 1}}\n  timeouts: {{connect: 300ms}}\n",
        b.url()
    );
    let gh = Gatehouse::start_edited("", &[("cap", &site)], |main| main.replace("workers: 2", "workers: 1"));
    let addr = gh.http;
    let slow = tokio::spawn(async move { get(addr, "cap.test", "/sleep/2000").await });
    assert!(wait_until(Duration::from_secs(10), || b.count() == 1).await);
    let started = std::time::Instant::now();
    let r = get(gh.http, "cap.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(250), "503 before the connect timeout: {:?}", started.elapsed());
    assert_eq!(b.count(), 1, "the capped request reached the backend");
    assert_eq!(slow.await.expect("join").status, 200);
    assert_eq!(get(gh.http, "cap.test", "/").await.status, 200);
    assert_eq!(b.connections(), 1, "the slot's connection is reused");
}

/// With two backends, a request that finds one backend's connection cap full goes to the
/// other one (nothing was sent, so failing over is safe), instead of answering 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_cap_fails_over_to_the_next_backend() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let site = format!(
        "host: cap.test\nbackends: [{}, {}]\noptions:\n  pool: {{max_connections_per_host: 1}}\n  timeouts: {{connect: 300ms}}\n",
        a.url(),
        b.url()
    );
    let gh = Gatehouse::start_edited("", &[("cap", &site)], |main| main.replace("workers: 2", "workers: 1"));
    let addr = gh.http;
    // Round robin: the first request takes backend a's one slot and holds it.
    let slow = tokio::spawn(async move { get(addr, "cap.test", "/sleep/2000").await });
    assert!(wait_until(Duration::from_secs(10), || a.count() == 1).await);
    // The next two: one is b's turn anyway; the other is a's turn, finds a full and fails
    // over to b. Neither is a 503.
    for _ in 0..2 {
        let r = get(gh.http, "cap.test", "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!((a.count(), b.count()), (1, 2), "the capped request did not move to backend b");
    assert_eq!(slow.await.expect("join").status, 200);
}

/// A loopback listener whose accept queue is full: connecting to it hangs (the kernel drops
/// the SYNs) instead of failing, like a backend that is down behind a firewall, without
/// any packet leaving the machine. Returns it with the connections that fill it.
fn unresponsive_backend() -> (tokio::net::TcpListener, Vec<std::net::TcpStream>, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => return (listener, held, addr),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_504() {
    let (_listener, _held, addr) = unresponsive_backend();
    let gh = Gatehouse::start(
        "",
        &[("slow", &format!("host: slow.test\nbackend: http://{addr}\noptions:\n  timeouts: {{connect: 500ms}}\n"))],
    );
    let started = std::time::Instant::now();
    let r = get(gh.http, "slow.test", "/").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "504 after {took:?}");
}

/// Opens `n` keep-alive connections to `addr`, each served one request.
async fn served_connections(addr: SocketAddr, host: &'static str, n: usize) -> Vec<std::net::TcpStream> {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        (0..n)
            .map(|_| {
                let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
                s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
                s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).expect("write");
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).expect("read");
                assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("join")
}

/// Sends `bytes` from 127.0.0.2 (another client than the tests' usual 127.0.0.1) and
/// reads until the server closes.
async fn from_another_address(to: SocketAddr, bytes: &[u8]) -> String {
    within("a connection from 127.0.0.2", async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
        let mut s = socket.connect(to).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        // A server that answers and closes at once may reset: what arrived counts.
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// `server.max_connections` counts the whole process (two workers here): at the limit no
/// further connection is accepted (it waits in the kernel's queue, unanswered, and is not
/// closed); when one of the others closes, the waiting one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_new_connections_until_one_ends() {
    let b = Backend::start("b").await;
    let gh =
        Gatehouse::start("server: {max_connections: 2}\n", &[("m", &format!("host: m.test\nbackend: {}\n", b.url()))]);
    let open = served_connections(gh.http, "m.test", 2).await;
    // A third: connected (the kernel queues it), sent its request, but not answered while
    // the two stay open.
    let addr = gh.http;
    let waiting = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: m.test\r\nConnection: close\r\n\r\n").expect("write");
        s.set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
        let mut buf = [0u8; 4096];
        let early = s.read(&mut buf);
        assert!(
            matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
            "a connection beyond the limit was answered or closed: {early:?}"
        );
        s
    })
    .await
    .expect("join");
    // One of the two closes: the waiting one is served.
    drop(open);
    let answered = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut s = waiting;
        s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .expect("join");
    assert!(answered.starts_with("HTTP/1.1 200"), "the waiting connection was not served: {answered:?}");
}

/// `server.max_connections_per_ip`: a connection beyond the limit from one address is
/// closed unanswered at once; the address's others, and other addresses, are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_ip_closes_the_excess_connection() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "server: {max_connections_per_ip: 2}\n",
        &[("m", &format!("host: m.test\nbackend: {}\n", b.url()))],
    );
    let open = served_connections(gh.http, "m.test", 2).await;
    let out = raw_async(gh.http, b"GET / HTTP/1.1\r\nHost: m.test\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(out, "", "a third connection from the same address was answered");
    // Another loopback address is another client.
    let other = from_another_address(gh.http, b"GET / HTTP/1.1\r\nHost: m.test\r\nConnection: close\r\n\r\n").await;
    assert!(other.starts_with("HTTP/1.1 200"), "another address was refused: {other:?}");
    drop(open);
    let served = wait_until_async(Duration::from_secs(10), || async {
        raw_async(gh.http, b"GET / HTTP/1.1\r\nHost: m.test\r\nConnection: close\r\n\r\n", Duration::from_secs(2))
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served, "no connection served after the others closed");
}

/// The soft open-file limit is raised to the hard one at start (as nginx's
/// `worker_rlimit_nofile`), and connections configured beyond what it allows are named in
/// a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start_under(
        &["prlimit", "--nofile=300:4096"],
        "server: {max_connections: 10000}\n",
        &[("a", &site("a.test", &format!("backend: {}\n", b.url())))],
    );
    let pid = gh.child.as_ref().expect("running").id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
    assert!(
        gh.log().contains("server.max_connections needs up to 20000 descriptors"),
        "no warning about the limit: {}",
        gh.log()
    );
    assert_eq!(get(gh.http, "a.test", "/").await.status, 200);
}

/// A PROXY protocol version 2 header for a TCP4 connection from `src`.
fn proxy_v2(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&80u16.to_be_bytes());
    out
}

/// `server.proxy_protocol`: connections from a listed load balancer start with a PROXY
/// header (version 1 or 2), whose address becomes the client's (the backend's
/// `X-Real-IP`); from a listed source a connection without one is closed unanswered; from
/// any other source the same bytes are only a malformed request (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_gives_the_client_address_from_listed_balancers_only() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "server: {proxy_protocol: [127.0.0.1/32]}\n",
        &[("p", &format!("host: p.test\nbackend: {}\n", b.url()))],
    );
    let request = b"GET / HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n";
    let v1 = [&b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n"[..], request].concat();
    let out = raw_async(gh.http, &v1, NET_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"x-real-ip\":\"203.0.113.7\""), "the backend did not see the client's address: {out}");
    let v2 = [proxy_v2([198, 51, 100, 9], 4444), request.to_vec()].concat();
    let out = raw_async(gh.http, &v2, NET_TIMEOUT).await;
    assert!(out.contains("\"x-real-ip\":\"198.51.100.9\""), "version 2: {out}");
    // Required from a listed source.
    assert_eq!(
        raw_async(gh.http, request, NET_TIMEOUT).await,
        "",
        "a listed source's connection without a header was served"
    );
    // Anyone else cannot claim an address: the header is just not HTTP.
    let other = from_another_address(gh.http, &v1).await;
    assert!(other.starts_with("HTTP/1.1 400"), "an unlisted source's PROXY header was believed: {other}");
}

/// Behind a load balancer, `server.max_connections_per_ip` counts the address in the PROXY
/// header, not the balancer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_limit_counts_the_proxy_protocol_address() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "server: {proxy_protocol: [127.0.0.1/32], max_connections_per_ip: 1}\n",
        &[("p", &format!("host: p.test\nbackend: {}\n", b.url()))],
    );
    let addr = gh.http;
    let open = |src: &'static str| async move {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
            s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
            s.write_all(
                format!("PROXY TCP4 {src} 192.0.2.1 5555 80\r\nGET / HTTP/1.1\r\nHost: p.test\r\n\r\n").as_bytes(),
            )
            .expect("write");
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            (s, String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .await
        .expect("join")
    };
    // Two clients behind the same balancer: both served, both kept open.
    let (_a, first) = open("203.0.113.7").await;
    let (_b, second) = open("203.0.113.8").await;
    assert!(first.starts_with("HTTP/1.1 200") && second.starts_with("HTTP/1.1 200"), "{first}\n{second}");
    // A second connection of the first client is one too many.
    let (_c, third) = open("203.0.113.7").await;
    assert_eq!(third, "", "a second connection from the same client address was served");
}

/// Reads one response with a `Content-Length` from `s`; returns its head.
fn read_response(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read a response");
        assert!(n > 0, "closed before a whole response: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text[..end].to_string();
            }
        }
    }
}

/// How long the server took to close `s`, counted from now; panics if it sent anything.
fn closed_after(s: &mut std::net::TcpStream) -> Duration {
    use std::io::Read;
    let started = std::time::Instant::now();
    s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
    let mut buf = [0u8; 1024];
    match s.read(&mut buf) {
        Ok(0) => started.elapsed(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => started.elapsed(),
        Ok(n) => panic!("sent on an idle connection: {}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("not closed within {NET_TIMEOUT:?}: {e}"),
    }
}

/// An idle keep-alive HTTP/1.1 connection lasts `keepalive_timeout`, not the shorter
/// `header_read_timeout`, whether the own loop serves it or hyper (after a request with a
/// body); a request head begun after the idle wait has `header_read_timeout` from its
/// first byte, on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_head_timers_are_separate_on_http1() {
    use std::io::Write;
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "server: {header_read_timeout: 1s, keepalive_timeout: 3s}\n",
        &[("m", &format!("host: m.test\nbackend: {}\n", b.url()))],
    );
    let addr = gh.http;
    let requests: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nHost: m.test\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: m.test\r\nContent-Length: 5\r\n\r\nhello",
    ];
    tokio::task::spawn_blocking(move || {
        for request in requests {
            let what = String::from_utf8_lossy(&request[..4]).into_owned();
            // Idle after a response: closed at the idle time.
            let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
            s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
            s.write_all(request).expect("write");
            assert!(read_response(&mut s).starts_with("HTTP/1.1 200"), "{what}");
            let idle = closed_after(&mut s);
            assert!(
                idle >= Duration::from_millis(2700) && idle < Duration::from_secs(8),
                "{what}: idle connection closed after {idle:?}, not at keepalive_timeout (3 s)"
            );
            // A head begun on a kept-alive connection: closed at the head time.
            let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
            s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
            s.write_all(request).expect("write");
            assert!(read_response(&mut s).starts_with("HTTP/1.1 200"), "{what}");
            s.write_all(b"GET / HTTP/1.1\r\nHost: m.test\r\n").expect("write");
            let started = std::time::Instant::now();
            use std::io::Read;
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            let head = started.elapsed();
            assert!(
                head >= Duration::from_millis(800) && head < Duration::from_millis(2500),
                "{what}: an unfinished head lasted {head:?}, not header_read_timeout (1 s)"
            );
            // The own loop answers 408; hyper's connection closes without an answer.
            let rest = String::from_utf8_lossy(&rest);
            assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 408"), "{what}: {rest}");
        }
    })
    .await
    .expect("client");
}

/// `server.request_body_min_rate`: a body arriving slower than the rate (after the grace
/// period) gets 408 and the connection is closed; the same body at a normal speed passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_slower_than_the_minimum_rate_get_408() {
    use std::io::{Read, Write};
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "server: {request_body_min_rate: 1KB/s}\n",
        &[("m", &format!("host: m.test\nbackend: {}\n", b.url()))],
    );
    let addr = gh.http;
    let (out, took) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.write_all(b"POST / HTTP/1.1\r\nHost: m.test\r\nContent-Length: 100000\r\n\r\n").expect("write");
        s.set_nonblocking(true).expect("nonblocking");
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        // 50 bytes every 100 ms (500 B/s), each pause well within timeouts.write, until
        // the server answers (or 20 s pass).
        while started.elapsed() < Duration::from_secs(20) {
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
            if !out.is_empty() {
                continue;
            }
            if s.write_all(&[b'x'; 50]).is_err() {
                continue;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
    })
    .await
    .expect("client");
    assert!(out.starts_with("HTTP/1.1 408"), "{out}\n{}", gh.log());
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(15), "cut off after {took:?}");
    // The same body at loopback speed is not affected.
    let req = http::Request::post("/")
        .header("host", "m.test")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 100_000])))
        .expect("request");
    let r = send(gh.http, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 100_000);
}

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Out of file descriptors (a hard limit of 64 here, far below what the clients open),
/// accept fails with EMFILE: the workers back off instead of spinning on it, the pending
/// connections wait in the kernel's queue, and they are served once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_workers_back_off_and_recover() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start_under(
        &["prlimit", "--nofile=64:64"],
        "",
        &[("m", &format!("host: m.test\nbackend: {}\n", b.url()))],
    );
    let pid = gh.child.as_ref().expect("running").id();
    let addr = gh.http;
    // More connections than descriptors: the last ones cannot be accepted.
    let held = tokio::task::spawn_blocking(move || {
        (0..80).map(|_| std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect")).collect::<Vec<_>>()
    })
    .await
    .expect("join");
    assert!(
        wait_until(NET_TIMEOUT, || gh.log().contains("accept failed")).await,
        "descriptors never ran out: {}",
        gh.log()
    );
    // Observed over one second: a worker spinning on accept would use all of it.
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks(pid) - before;
    assert!(used < 30, "{used} ticks of CPU in one second out of descriptors: the accept loop spins");
    // A request on one of the connections not yet accepted is answered once descriptors
    // are free again.
    let mut held = held;
    let waiting = held.pop().expect("a connection");
    drop(held);
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = waiting;
        s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: m.test\r\nConnection: close\r\n\r\n").expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .expect("join");
    assert!(out.starts_with("HTTP/1.1 200"), "not served after descriptors were freed: {out:?}\n{}", gh.log());
    assert_eq!(get(gh.http, "m.test", "/").await.status, 200);
}
