//! Whose fault: a client's broken or abandoned request body is the client's (400, never
//! 502, never counted against the backend) over HTTP/1.1, HTTP/2 and HTTP/3; Gatehouse's
//! own faults are found when the configuration is built.

use super::filters::filters_setup;
use super::*;

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
    let (backend, gh) = logged_app().await;
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
    let (backend, gh) = logged_app().await;
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
    // The backend has the request head and the body's first 5 bytes (so Gatehouse has
    // counted them) before the client gives up.
    let reached = wait_until(Duration::from_secs(10), || backend.count() > 0 && backend.body_bytes() >= 5).await;
    assert!(reached, "{case}: the request and its first bytes never reached the backend: {}", gh.log());
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

/// Over HTTP/3: a client that sends DATA and then resets its request stream, after the
/// backend already has the request, is not the backend's fault. (The HTTPS and HTTP/3
/// setup of the filter tests.)
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
