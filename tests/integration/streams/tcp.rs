//! Plain TCP streams: half-close, bulk data both ways, failover, limits, allow/deny,
//! timeouts, the PROXY protocol both ways, metrics and records.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{echo, expect_metrics, read_until, recorder};
use crate::harness::{Gatehouse, NET_TIMEOUT, wait_until_async, within};

fn stream(name: &str, backends: &str, extra: &str) -> String {
    format!("streams:\n  - name: {name}\n    listen: 127.0.0.1:0\n    backends: [{backends}]\n{extra}")
}

#[tokio::test]
async fn half_close_and_bulk_data_go_through_both_ways() {
    let backend = echo().await;
    let gh = Gatehouse::start(&stream("raw", &backend.to_string(), ""), &[]);
    let addr = gh.stream("raw");

    // The client's end of file reaches the backend (which then closes its side), and the
    // backend's answer still reaches the half-closed client.
    let mut s = within("connect", TcpStream::connect(addr)).await.expect("connect");
    s.write_all(b"hello before the half-close").await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    within("echo after half-close", s.read_to_end(&mut back)).await.expect("read");
    assert_eq!(back, b"hello before the half-close");

    // 16 MB each way at once: the buffers are bounded, so this only passes if both
    // directions keep moving (backpressure, not buffering).
    let data: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let s = within("connect", TcpStream::connect(addr)).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.expect("write bulk");
        w.shutdown().await.expect("half-close");
    });
    let mut got = Vec::with_capacity(data.len());
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got)).await.expect("bulk in time").expect("read");
    writer.await.expect("writer");
    assert!(got == data, "echoed {} of {} bytes, equal: {}", got.len(), data.len(), got == data);

    let text = expect_metrics(gh.admin, &["gatehouse_stream_bytes_total{stream=\"raw\",direction=\"in\"}"]).await;
    let bytes_in: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_stream_bytes_total{stream=\"raw\",direction=\"in\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("bytes in");
    assert!(bytes_in >= data.len() as u64, "{bytes_in}");
    assert!(text.contains("gatehouse_stream_connections_total{stream=\"raw\",outcome=\"closed\"} 2"), "{text}");
    // The admin API lists the stream with the same counters.
    let api = crate::harness::get(gh.admin, "localhost", "/api/streams").await.json();
    let raw = &api["streams"][0];
    assert_eq!(raw["name"], "raw", "{api}");
    assert_eq!(raw["listen"], addr.to_string(), "{api}");
    assert_eq!(raw["protocol"], "generic", "{api}");
    assert_eq!(raw["counters"]["ended"]["closed"], 2, "{api}");
    assert!(raw["counters"]["bytes_in"].as_u64().is_some_and(|n| n >= data.len() as u64), "{api}");
    assert_eq!(raw["backends"][0]["url"], format!("http://{backend}"), "{api}");
}

#[tokio::test]
async fn a_dead_backend_is_skipped_and_the_client_never_notices() {
    let live = echo().await;
    // A port nobody listens on: bind, note, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let gh = Gatehouse::start(&stream("fo", &format!("{dead}, {live}"), ""), &[]);
    for i in 0..6 {
        let mut s = within("connect", TcpStream::connect(gh.stream("fo"))).await.expect("connect");
        let msg = format!("try {i}");
        s.write_all(msg.as_bytes()).await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut back = String::new();
        within("echo", s.read_to_string(&mut back)).await.expect("read");
        assert_eq!(back, msg, "attempt {i}");
    }
    let text = expect_metrics(gh.admin, &["gatehouse_backend_failures_total{site=\"stream:fo\""]).await;
    assert!(
        text.contains(&format!(
            "gatehouse_backend_failures_total{{site=\"stream:fo\",route=\"fo\",backend=\"http://{dead}\"}}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn deny_lists_and_per_address_limits_close_before_the_backend_is_asked() {
    let (backend, mut seen) = recorder().await;
    let config = format!(
        "{}{}",
        stream("denied", &backend.to_string(), "    deny: [127.0.0.0/8]\n"),
        stream("limited", &backend.to_string(), "    max_connections_per_ip: 1\n").replace("streams:\n", "")
    );
    let gh = Gatehouse::start(&config, &[]);

    let mut s = within("connect", TcpStream::connect(gh.stream("denied"))).await.expect("connect");
    let _ = s.write_all(b"let me in\r\n\r\n").await;
    let mut buf = Vec::new();
    let read = within("closed", s.read_to_end(&mut buf)).await;
    assert!(read.is_err() || buf.is_empty(), "a denied client got {buf:?}");

    let mut first = within("connect", TcpStream::connect(gh.stream("limited"))).await.expect("connect");
    first.write_all(b"first\r\n\r\n").await.expect("write");
    assert!(read_until(&mut first, "ok").await.contains("ok"));
    let mut second = within("connect", TcpStream::connect(gh.stream("limited"))).await.expect("connect");
    let _ = second.write_all(b"second\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = within("second closed", second.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "the second connection from one address got {buf:?}");
    // Only the first connection reached the backend.
    assert_eq!(seen.recv().await.expect("first seen"), b"first\r\n\r\n");
    assert!(seen.try_recv().is_err(), "a refused connection reached the backend");
    drop(first);
    // The place is free again once the first one ends.
    let addr = gh.stream("limited");
    let freed = wait_until_async(NET_TIMEOUT, || async move {
        let Ok(mut s) = TcpStream::connect(addr).await else { return false };
        s.write_all(b"third\r\n\r\n").await.is_ok() && read_until(&mut s, "ok").await.contains("ok")
    })
    .await;
    assert!(freed, "the place of a closed connection was not given back");
    let text = expect_metrics(gh.admin, &["{stream=\"denied\",outcome=\"denied\"} 1"]).await;
    // The retries above may have met the limit too while the first connection closed.
    assert!(text.contains("gatehouse_stream_connections_total{stream=\"denied\",outcome=\"denied\"} 1"), "{text}");
    assert!(!text.contains("gatehouse_stream_connections_total{stream=\"limited\",outcome=\"limited\"} 0"), "{text}");
}

#[tokio::test]
async fn idle_connections_and_long_ones_are_closed() {
    let backend = echo().await;
    let config = format!(
        "{}{}",
        stream("idle", &backend.to_string(), "    idle_timeout: 300ms\n"),
        stream("short", &backend.to_string(), "    max_duration: 600ms\n    idle_timeout: 10s\n")
            .replace("streams:\n", "")
    );
    let gh = Gatehouse::start(&config, &[]);
    let mut s = within("connect", TcpStream::connect(gh.stream("idle"))).await.expect("connect");
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    within("idle close", s.read_to_end(&mut buf)).await.ok();
    assert!(started.elapsed() >= Duration::from_millis(250), "closed after {:?}", started.elapsed());

    // Busy, but past its maximum duration.
    let mut s = within("connect", TcpStream::connect(gh.stream("short"))).await.expect("connect");
    let started = std::time::Instant::now();
    let closed = async {
        let mut buf = [0; 64];
        loop {
            if s.write_all(b"ping").await.is_err() {
                return;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    within("max_duration close", closed).await;
    assert!(started.elapsed() >= Duration::from_millis(500), "closed after {:?}", started.elapsed());
    expect_metrics(
        gh.admin,
        &["{stream=\"idle\",outcome=\"idle_timeout\"} 1", "{stream=\"short\",outcome=\"max_duration\"} 1"],
    )
    .await;
}

#[tokio::test]
async fn the_proxy_header_is_taken_from_balancers_and_sent_to_backends() {
    let (backend, mut seen) = recorder().await;
    let config = format!(
        "{}{}",
        stream("v1", &backend.to_string(), "    proxy_protocol: {accept_from: [127.0.0.1], send: v1}\n"),
        stream("v2", &backend.to_string(), "    proxy_protocol: {send: v2}\n").replace("streams:\n", "")
    );
    let gh = Gatehouse::start(&config, &[]);

    // A balancer in front says the client is 203.0.113.9; the backend hears the same.
    let mut s = within("connect", TcpStream::connect(gh.stream("v1"))).await.expect("connect");
    s.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 5432\r\nhello").await.expect("write");
    assert!(read_until(&mut s, "ok").await.contains("ok"));
    let first = String::from_utf8(seen.recv().await.expect("seen")).expect("text");
    let port = gh.stream("v1").port();
    assert!(first.starts_with(&format!("PROXY TCP4 203.0.113.9 127.0.0.1 40000 {port}\r\n")), "{first:?}");
    // From the trusted source, a connection without the header is refused.
    let mut s = within("connect", TcpStream::connect(gh.stream("v1"))).await.expect("connect");
    s.write_all(b"no header here\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = within("refused", s.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "{buf:?}");

    // Version 2: binary, with the real client address (loopback here).
    let mut s = within("connect", TcpStream::connect(gh.stream("v2"))).await.expect("connect");
    let local = s.local_addr().expect("local");
    s.write_all(b"x").await.expect("write");
    assert!(read_until(&mut s, "ok").await.contains("ok"));
    let header = seen.recv().await.expect("seen");
    assert!(header.starts_with(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c"), "{header:?}");
    assert_eq!(&header[16..20], &[127, 0, 0, 1]);
    assert_eq!(&header[24..26], &local.port().to_be_bytes());
    expect_metrics(gh.admin, &["{stream=\"v1\",outcome=\"proxy_header\"} 1"]).await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_open_connections_finish() {
    let backend = echo().await;
    let mut gh = Gatehouse::start(&stream("drain", &backend.to_string(), ""), &[]);
    let addr = gh.stream("drain");
    let mut open = within("connect", TcpStream::connect(addr)).await.expect("connect");
    open.write_all(b"before\n").await.expect("write");
    assert_eq!(read_until(&mut open, "before").await, "before\n");
    gh.signal("TERM");
    let refused =
        crate::harness::wait_until_async(NET_TIMEOUT, || async move { TcpStream::connect(addr).await.is_err() }).await;
    assert!(refused, "the stream still accepts after SIGTERM");
    // The connection opened before goes on.
    open.write_all(b"during shutdown\n").await.expect("write");
    assert_eq!(read_until(&mut open, "during shutdown").await, "during shutdown\n");
    open.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    within("end", open.read_to_end(&mut rest)).await.expect("read");
    // With its last connection gone, the process ends well before the 10 s shutdown timeout.
    let started = std::time::Instant::now();
    assert_eq!(gh.wait_exit(Duration::from_secs(9)), Some(0), "{}", gh.log());
    assert!(started.elapsed() < Duration::from_secs(9));
}

#[tokio::test]
async fn health_checks_take_a_dead_backend_out_before_any_client_meets_it() {
    let live = echo().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let extra = "    health_check: {interval: 100ms, timeout: 1s, unhealthy_after: 1}\n";
    let gh = Gatehouse::start(&stream("hc", &format!("{dead}, {live}"), extra), &[]);
    let down = format!("gatehouse_backend_up{{site=\"stream:hc\",route=\"hc\",backend=\"http://{dead}\"}} 0");
    let text = expect_metrics(gh.admin, &[&down]).await;
    assert!(text.contains(&down), "{text}");
    let failures = |text: &str| {
        let key =
            format!("gatehouse_backend_failures_total{{site=\"stream:hc\",route=\"hc\",backend=\"http://{dead}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(key.as_str())).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    let before = failures(&text);
    for _ in 0..6 {
        let mut s = within("connect", TcpStream::connect(gh.stream("hc"))).await.expect("connect");
        s.write_all(b"x").await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        within("echo", s.read_to_end(&mut back)).await.expect("read");
        assert_eq!(back, b"x");
    }
    let after = failures(&expect_metrics(gh.admin, &["{stream=\"hc\",outcome=\"closed\"} 6"]).await);
    assert_eq!(before, after, "connections were still sent to the backend checks took out");
}
