//! Timeouts and limits, each with its status code, and the HTTP/1.1 framing rejections.

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
    assert!(!out.contains("200 OK"), "{out}");
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
