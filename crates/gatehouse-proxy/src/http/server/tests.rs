use super::*;

fn head(raw: &str) -> Result<Option<Head>, StatusCode> {
    parse(raw.as_bytes(), &mut Vec::new())
}

#[test]
fn parses_bodiless_requests_here() {
    let h = head("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n").expect("valid").expect("complete");
    assert_eq!(h.method, Method::GET);
    assert!(h.keep_alive && h.trailers && !h.hand_off);
    let raw = Bytes::from_static(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n");
    let mut spare = Vec::new();
    let (req, _) = h.into_request(&raw, &mut spare).expect("request");
    assert!(spare.is_empty() && spare.capacity() >= 2);
    assert_eq!(req.uri().path(), "/a");
    assert_eq!(req.headers()["host"], "x");
    assert!(head("GET / HTTP/1.1\r\nHost: x\r\n").expect("valid").is_none());
    let h10 = head("GET / HTTP/1.0\r\n\r\n").expect("valid").expect("complete");
    assert!(!h10.keep_alive);
    let ka = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").expect("valid").expect("complete");
    assert!(ka.keep_alive);
    let close = head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").expect("valid").expect("complete");
    assert!(!close.keep_alive);
}

#[test]
fn bodies_and_upgrades_go_to_hyper() {
    for raw in [
        "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    ] {
        assert!(head(raw).expect("valid").expect("complete").hand_off, "{raw}");
    }
    let empty_post = head("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").expect("valid").expect("complete");
    assert!(!empty_post.hand_off);
}

#[test]
fn damaged_request_heads_never_panic_and_bodies_always_go_to_hyper() {
    let valid: &[&[u8]] = &[
        b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nTE: trailers\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ];
    // Until the last byte of the head, a head is incomplete, not an error.
    for raw in valid {
        let len = parse(raw, &mut Vec::new()).expect("valid").expect("complete").len;
        for cut in 0..len {
            assert!(matches!(parse(&raw[..cut], &mut Vec::new()), Ok(None)), "{cut} bytes of {raw:?}");
        }
    }
    let mut spare = Vec::new();
    let mut served_here = 0;
    for raw in crate::mutate::damaged(0x5e7e, valid, 20_000) {
        let Ok(Some(head)) = parse(&raw, &mut spare) else { continue };
        // Whatever might frame a body (or switch protocols) sends the request to hyper,
        // whose body handling this loop does not have.
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut oracle = httparse::Request::new(&mut slots);
        assert_eq!(oracle.parse(&raw).ok(), Some(httparse::Status::Complete(head.len)));
        let fields: Vec<(String, &[u8])> =
            oracle.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value)).collect();
        let body = fields.iter().any(|(n, v)| {
            n == "transfer-encoding" || (n == "content-length" && v.trim_ascii().iter().any(|b| *b != b'0'))
        });
        let other = fields.iter().any(|(n, _)| n == "upgrade" || n == "expect");
        if body || other {
            assert!(head.hand_off, "{:?}", String::from_utf8_lossy(&raw));
            continue;
        }
        served_here += 1;
        let count = fields.len();
        let raw = Bytes::from(raw.clone());
        if let Ok((req, _)) = head.into_request(&raw, &mut spare) {
            assert_eq!(req.headers().len(), count, "{raw:?}");
        }
    }
    assert!(served_here > 1000, "too few damaged heads stayed servable ({served_here})");
}

/// Writes `body` as a 200 declaring `length` bytes; the outcome and what the client got.
fn respond(body: Outgoing, length: &'static str) -> (io::Result<bool>, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    rt.block_on(async {
        let mut resp = Response::new(body);
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static(length));
        resp.headers_mut().insert(&super::super::header::X_REQUEST_ID, HeaderValue::from_static("rid-1"));
        let wants = Wants { head: false, version: Version::HTTP_11, keep_alive: true, trailers: false };
        let mut timer = Deadline::new(Instant::now() + Duration::from_secs(5));
        let (mut client, mut out) = (Vec::new(), Vec::new());
        let mut delivered = Delivered { status: resp.status(), bytes: 0, body_failed: None };
        let r = write_response(&mut client, &mut out, resp, &wants, true, &mut timer, &mut delivered).await;
        (r, String::from_utf8_lossy(&client).into_owned())
    })
}

#[test]
fn nothing_past_a_declared_length_is_written() {
    use http_body_util::BodyExt;
    // Too long from the first piece: nothing has gone out, so the client gets a 502.
    let (r, got) = respond(Outgoing::full("hello world"), "5");
    assert!(matches!(r, Ok(false)), "{r:?}");
    assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n") && got.contains("x-request-id: rid-1\r\n"), "{got}");
    assert!(!got.contains("hello"), "{got}");
    // Too long in a later piece: the head and the declared bytes went out, the rest
    // does not, and the connection is given up.
    let pieces = ["hello", " world"]
        .map(|p| Ok::<_, crate::body::BoxError>(http_body::Frame::data(Bytes::from_static(p.as_bytes()))));
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(pieces));
    let (r, got) = respond(Outgoing::Boxed(stream.boxed_unsync()), "5");
    assert!(r.is_err(), "{got}");
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("\r\n\r\nhello"), "{got:?}");
    // Exactly the declared length passes.
    let (r, got) = respond(Outgoing::full("hello"), "5");
    assert!(matches!(r, Ok(true)) && got.ends_with("\r\n\r\nhello"), "{got:?}");
}

#[test]
fn refuses_ambiguous_framing() {
    for raw in [
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n",
    ] {
        assert_eq!(head(raw).err(), Some(StatusCode::BAD_REQUEST), "{raw}");
    }
    for raw in [
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked , chunked\r\n\r\n",
    ] {
        assert_eq!(head(raw).err(), Some(StatusCode::NOT_IMPLEMENTED), "{raw}");
    }
    let twice = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(head(twice).err(), Some(StatusCode::BAD_REQUEST));
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    assert_eq!(head(&long_target).err(), Some(StatusCode::URI_TOO_LONG));
    let long_name = format!("GET / HTTP/1.1\r\n{}: 1\r\n\r\n", "a".repeat(100_000));
    assert_eq!(head(&long_name).err(), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    assert_eq!(too_large(b"GET /aaaa", 8), StatusCode::URI_TOO_LONG);
    assert_eq!(too_large(b"GET / HTTP/1.1\r\nX: aaaaaaaaaaa", 16), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let repeated = head("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
    assert!(repeated.expect("valid").expect("complete").hand_off);
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(MAX_HEADERS + 1));
    assert_eq!(head(&many).err(), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
}

/// A redirecting site (no backend needed) and the loop's settings for the tests below.
fn redirecting() -> (arc_swap::ArcSwap<RuntimeState>, ConnInfo, Settings) {
    let sites = [("a", "host: a.test\nredirect: {to: \"https://a.test{uri}\", code: 301}\n")];
    let config =
        gatehouse_config::load_from_str_for_tests("listen: {http: 127.0.0.1:0}\n", &sites, std::path::Path::new("/"))
            .expect("config");
    let state = RuntimeState::build(std::sync::Arc::new(config), None, None, None).expect("state");
    let info = ConnInfo {
        peer: "127.0.0.1:1".parse().expect("addr"),
        proto: "http",
        peer_value: HeaderValue::from_static("127.0.0.1"),
        framing: Default::default(),
        tls: None,
        challenges: None,
        own_http1: true,
        sink: None,
    };
    let cfg = Settings {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(5),
        send: Duration::from_secs(10),
        max_head: 16 * 1024,
    };
    (arc_swap::ArcSwap::from_pointee(state), info, cfg)
}

/// An idle connection's future holds the idle wait only: the request loop, the pipeline and
/// the buffers are allocated while requests come (what each of 10,000 idle keep-alive
/// connections costs; see bench/connections.sh).
#[test]
fn an_idle_connection_holds_only_a_small_future() {
    let (shared, info, cfg) = redirecting();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let (a, _b) = tokio::io::duplex(64);
    let serving = serve(a, &info, &shared, &cfg, rx);
    let size = std::mem::size_of_val(&serving);
    assert!(size <= 1024, "the connection future is {size} bytes");
}

/// A keep-alive connection that gives its request state back after `LINGER` without a
/// request still serves the next one, and is closed at the keep-alive deadline. (Paused
/// clock: the runtime moves time on when everything waits.)
#[tokio::test(start_paused = true)]
async fn a_connection_idle_past_linger_serves_the_next_request_and_closes_at_keep_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (shared, info, cfg) = redirecting();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let (server, mut client) = tokio::io::duplex(64 * 1024);
    let serving = serve(server, &info, &shared, &cfg, rx);
    let talking = async {
        let mut got = vec![0u8; 4096];
        for gap in [Duration::ZERO, LINGER * 2, Duration::from_secs(4)] {
            tokio::time::sleep(gap).await;
            client.write_all(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n").await.expect("write");
            let n = client.read(&mut got).await.expect("read");
            let text = String::from_utf8_lossy(&got[..n]).into_owned();
            assert!(text.starts_with("HTTP/1.1 301"), "after {gap:?} idle: {text}");
            assert!(text.contains("location: https://a.test/x"), "{text}");
        }
        // Past the keep-alive deadline (5 s after the last response) the server closes.
        let started = tokio::time::Instant::now();
        let n = client.read(&mut got).await.expect("read");
        assert_eq!(n, 0, "the connection stayed open");
        assert!(started.elapsed() >= Duration::from_secs(4), "closed after {:?}", started.elapsed());
    };
    let (outcome, ()) = tokio::join!(serving, talking);
    assert!(matches!(outcome, Outcome::Closed));
}
