//! WebSocket upgrade pass-through, gRPC-style h2c streaming with trailers, HTTP/2 from
//! clients, and unix-socket backends.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// A WebSocket backend that echoes text and binary messages.
async fn ws_echo_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    backend
}

/// A WebSocket handshake with `host` through the proxy at `addr`.
async fn ws_connect(
    addr: std::net::SocketAddr,
    host: &str,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let stream = within("connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let req = http::Request::get(format!("ws://{host}/socket"))
        .header("host", host)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", tokio_tungstenite::tungstenite::handshake::client::generate_key())
        .body(())
        .expect("request");
    within("websocket handshake", tokio_tungstenite::client_async(req, stream)).await
}

/// The proxy-manager's `websocket` key: `max_connections` tunnels at once per site (503
/// beyond), each closed at `max_duration`; `enabled: false` passes no upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_limits_per_site() {
    let backend = ws_echo_backend().await;
    let gh = Gatehouse::start(
        "",
        &[
            (
                "ws",
                &format!(
                    "host: ws.test
websocket: {{max_connections: 1, max_duration: 1s}}
backend: http://{backend}
"
                ),
            ),
            (
                "off",
                &format!(
                    "host: off.test
websocket: {{enabled: false}}
backend: http://{backend}
"
                ),
            ),
        ],
    );
    let (mut first, resp) = ws_connect(gh.http, "ws.test").await.expect("first tunnel");
    assert_eq!(resp.status(), 101);
    match ws_connect(gh.http, "ws.test").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a second tunnel over max_connections: {:?}", other.map(|(_, r)| r.status())),
    }
    // max_duration ends the first tunnel; its slot is free again.
    let ended = within("tunnel end", async {
        loop {
            match first.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
            }
        }
    });
    ended.await;
    let (_second, resp) = ws_connect(gh.http, "ws.test").await.expect("a tunnel after the first ended");
    assert_eq!(resp.status(), 101);
    // No upgrade where WebSocket is off: the backend gets a plain request.
    assert!(ws_connect(gh.http, "off.test").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let backend = ws_echo_backend().await;
    let gh = Gatehouse::start(
        "",
        &[("ws", &format!("host: ws.test\nroutes:\n  - path: /socket\n    backend: http://{backend}\n"))],
    );
    let stream = within("connect", tokio::net::TcpStream::connect(gh.http)).await.expect("connect");
    let req = http::Request::get("ws://ws.test/socket".to_string())
        .header("host", "ws.test")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", tokio_tungstenite::tungstenite::handshake::client::generate_key())
        .body(())
        .expect("request");
    let (mut ws, resp) = within("websocket handshake", tokio_tungstenite::client_async(req, stream))
        .await
        .expect("websocket handshake through proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        within("send", ws.send(Message::text(format!("hello {i}")))).await.expect("send");
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("message")
            .expect("ok");
        assert_eq!(back.into_text().expect("text").as_str(), format!("hello {i}"));
    }
    within("send", ws.send(Message::binary(vec![0u8, 1, 2, 255]))).await.expect("send");
    let back = within("echo", ws.next()).await.expect("message").expect("ok");
    assert_eq!(back.into_data().as_ref(), &[0u8, 1, 2, 255]);
    within("close", ws.close(None)).await.expect("close");
}

/// An h2c backend in the style of a gRPC server: streams the request body back in several
/// frames, then sends `grpc-status` trailers.
async fn grpc_like_backend(bind: &str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let te = req.headers().get("te").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
                    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(8);
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let mut n = 0;
                        while let Some(Ok(frame)) = body.frame().await {
                            // An empty DATA frame may carry END_STREAM; it is not a message.
                            if let Ok(data) =
                                frame.into_data().map_err(drop).and_then(|d| if d.is_empty() { Err(()) } else { Ok(d) })
                            {
                                n += 1;
                                let _ = tx
                                    .send(Ok(Frame::data(Bytes::from(format!(
                                        "echo:{}",
                                        String::from_utf8_lossy(&data)
                                    )))))
                                    .await;
                            }
                        }
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().expect("static"));
                        trailers.insert("grpc-message", format!("frames={n}").parse().expect("msg"));
                        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                    });
                    let body = StreamBody::new(tokio_stream_from(rx));
                    let mut resp = Response::new(body);
                    resp.headers_mut().insert("content-type", "application/grpc".parse().expect("static"));
                    resp.headers_mut()
                        .insert("x-te-seen", te.parse().unwrap_or_else(|_| "bad".parse().expect("static")));
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_style_h2c_streaming_keeps_trailers() {
    let backend = grpc_like_backend("127.0.0.1:0").await;
    let gh = Gatehouse::start("", &[("grpc", &format!("host: grpc.test\nbackend: h2c://{backend}\n"))]);

    // Client speaks HTTP/2 with prior knowledge to the proxy, streaming its request body.
    let stream = within("connect", tokio::net::TcpStream::connect(gh.http)).await.expect("connect");
    let (mut tx, conn) =
        within("h2 handshake", hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let req = Request::post("http://grpc.test/pkg.Service/Stream")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(tokio_stream_from(body_rx)))
        .expect("request");
    let resp_fut = tokio::spawn(async move { tx.send_request(req).await });
    // Interleave: send a message, the backend echoes it before the request has ended.
    body_tx.send(Ok(Frame::data(Bytes::from("one")))).await.expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp_fut)
        .await
        .expect("headers in time")
        .expect("join")
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-te-seen"], "trailers");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first frame streamed before request end")
        .expect("frame")
        .expect("ok");
    assert_eq!(first.into_data().expect("data"), "echo:one");
    body_tx.send(Ok(Frame::data(Bytes::from("two")))).await.expect("send");
    drop(body_tx);
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = within("body frame", body.frame()).await {
        let frame = frame.expect("frame");
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    assert_eq!(String::from_utf8_lossy(&data), "echo:two");
    let trailers = trailers.expect("trailers reached the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "frames=2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_reach_http1_backends() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("h", &format!("host: h2.test\nbackend: {}\n", b.url()))]);
    let stream = within("connect", tokio::net::TcpStream::connect(gh.http)).await.expect("connect");
    let (mut tx, conn) =
        within("h2 handshake", hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for i in 0..3 {
        let req =
            Request::get(format!("http://h2.test/item/{i}")).body(http_body_util::Empty::<Bytes>::new()).expect("req");
        let resp = within("response", tx.send_request(req)).await.expect("response");
        assert_eq!(resp.status(), 200);
        let body = within("body", resp.into_body().collect()).await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["uri"], format!("/item/{i}"));
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["headers"]["host"], "h2.test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("app.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind unix");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from(format!(
                        "unix says {}",
                        req.uri().path()
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    let gh = Gatehouse::start("", &[("u", &format!("host: u.test\nbackend: unix:{}\n", sock.display()))]);
    for _ in 0..3 {
        let r = get(gh.http, "u.test", "/hello").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "unix says /hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_backend_on_ipv6_loopback() {
    // Every machine this runs on (developers', CI) has ::1; where it is missing this fails.
    assert!(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "no IPv6 loopback (::1) on this machine: enable IPv6 on lo (sysctl net.ipv6.conf.lo.disable_ipv6=0)"
    );
    let backend = grpc_like_backend("[::1]:0").await;
    let gh = Gatehouse::start("", &[("grpc", &format!("host: grpc6.test\nbackend: h2c://[::1]:{}\n", backend.port()))]);
    let req = http::Request::post("/pkg.Service/Unary")
        .header("host", "grpc6.test")
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(Bytes::from("ping")))
        .expect("request");
    let r = send(gh.http, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "echo:ping");
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    assert_eq!(routes["routes"][0]["backends"][0]["url"], format!("h2c://[::1]:{}", backend.port()));
}

/// The scripted backend's answers by path (first match); anything else gets
/// `hello there` with a length.
const SCRIPTED: &[(&str, &[u8])] = &[
    ("/drop", b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nfresh connection"),
    ("/continue", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"),
    (
        "/chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
    ),
    // Framings that must not reach a client as they are.
    ("/both", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello!\r\n0\r\n\r\n"),
    ("/gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("/badchunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"),
    ("/overlong", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world"),
];

/// A hand-written HTTP/1.1 backend answering with framings a library server rarely
/// produces; counts its connections so keep-alive reuse is visible.
async fn scripted_backend() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let first = head.lines().next().unwrap_or("").to_string();
                    let reply: &[u8] = if first.contains("/drop") && served > 0 {
                        // Closes a reused connection without answering, like a backend
                        // whose idle timeout fires just as the proxy reuses the connection.
                        return;
                    } else if first.contains("/close") {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end").await;
                        return;
                    } else if first.starts_with("HEAD /len") {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"
                    } else {
                        SCRIPTED
                            .iter()
                            .find(|(path, _)| first.contains(path))
                            .map_or(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello there", |(_, reply)| reply)
                    };
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                    served += 1;
                }
            });
        }
    });
    (addr, conns)
}

/// Gatehouse with one worker (so every request uses the same per-worker pool) in front of
/// `addr` as `s.test`.
fn one_worker_in_front_of(addr: std::net::SocketAddr) -> Gatehouse {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "", &[("s", &format!("host: s.test\nbackend: http://{addr}\n"))]);
    let main =
        std::fs::read_to_string(dir.path().join("gatehouse.yaml")).expect("read").replace("workers: 2", "workers: 1");
    std::fs::write(dir.path().join("gatehouse.yaml"), main).expect("write");
    Gatehouse::start_in(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_backend_framings_and_connection_reuse() {
    let (addr, conns) = scripted_backend().await;
    let gh = one_worker_in_front_of(addr);

    for _ in 0..5 {
        assert_eq!(get(gh.http, "s.test", "/len").await.text(), "hello there");
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1, "keep-alive connection not reused");
    let head =
        Request::head("/len").header("host", "s.test").body(http_body_util::Full::new(Bytes::new())).expect("req");
    let r = send(gh.http, head).await;
    assert_eq!((r.status.as_u16(), r.header("content-length"), r.body.len()), (200, Some("11"), 0));
    // The backend's `100 Continue` is not passed on: on the wire, the client's first
    // (and only) status line is the final 200 (a library client would hide a 1xx).
    let out = raw_async(
        gh.http,
        b"GET /continue HTTP/1.1\r\nHost: s.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\ndone"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert_eq!(get(gh.http, "s.test", "/chunked").await.text(), "hello world");
    // All of the above shared one backend connection.
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A close-delimited body is read to the end, and that connection is not reused.
    assert_eq!(get(gh.http, "s.test", "/close").await.text(), "until the end");
    assert_eq!(get(gh.http, "s.test", "/len").await.text(), "hello there");
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Backend responses whose framing cannot be passed on safely get 502 while nothing has
/// been sent, and never let bytes through where the client would read them as the next
/// response; the proxy goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_backend_framing_is_502_and_never_splits_responses() {
    let (addr, conns) = scripted_backend().await;
    let gh = one_worker_in_front_of(addr);
    // A bad head is the backend's fault only: 502, and the client's connection serves
    // the next (pipelined) request. A body that breaks before its first byte went out
    // also gets 502, and that connection closes.
    for (path, answers) in [("/both", 2), ("/gzip", 2), ("/badchunk", 1)] {
        let out = raw_async(
            gh.http,
            format!(
                "GET {path} HTTP/1.1\r\nHost: s.test\r\n\r\nGET /len HTTP/1.1\r\nHost: s.test\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 502"), "{path}: {out}");
        assert!(out.contains("x-request-id: "), "{path}: {out}");
        assert!(!out.contains("hello!") && !out.contains("hello\r\n"), "{path}: backend bytes passed: {out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), answers, "{path}: {out}");
        if answers == 2 {
            assert!(out.ends_with("hello there"), "{path}: {out}");
        }
    }
    // Five bytes declared, eleven sent: the client gets the five, and the rest never
    // reaches anyone as a response (the backend connection is not reused with it).
    let before = conns.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(gh.http, "s.test", "/overlong").await.text(), "hello");
    assert_eq!(get(gh.http, "s.test", "/len").await.text(), "hello there");
    assert!(conns.load(std::sync::atomic::Ordering::SeqCst) > before);
}

/// A pooled connection the backend closes as it is reused: an idempotent request is sent
/// again on a new connection and succeeds; a POST is not replayed and gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_pooled_connection_is_retried_for_idempotent_requests() {
    let (addr, conns) = scripted_backend().await;
    let gh = one_worker_in_front_of(addr);
    let count = || conns.load(std::sync::atomic::Ordering::SeqCst);

    assert_eq!(get(gh.http, "s.test", "/len").await.text(), "hello there");
    assert_eq!(count(), 1);
    // Reuses connection 1, which the backend drops; the retry opens connection 2.
    let r = get(gh.http, "s.test", "/drop").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "fresh connection"));
    assert_eq!(count(), 2);
    // Connection 2 is pooled now; a POST on it is dropped and must not be sent twice.
    let post =
        Request::post("/drop").header("host", "s.test").body(http_body_util::Full::new(Bytes::new())).expect("req");
    assert_eq!(send(gh.http, post).await.status.as_u16(), 502);
    assert_eq!(count(), 2, "a POST was replayed");
}

/// The HTTP/1.1 server's own connection handling: pipelined requests answered in order,
/// a request with a body handing the connection to hyper mid-way, HTTP/1.0 keep-alive
/// rules, chunked versus close-delimited bodies, HEAD, and the idle keep-alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connection_handling() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "server: {keepalive_timeout: 1s}\n",
        &[("p", &site("p.test", &format!("backend: {}\n", b.url())))],
    );
    let limit = Duration::from_secs(5);

    // Four requests in one write; the third has a body, so hyper serves it and the fourth.
    let out = raw_async(
        gh.http,
        b"GET /a HTTP/1.1\r\nHost: p.test\r\n\r\nGET /b HTTP/1.1\r\nHost: p.test\r\n\r\n\
          POST /c HTTP/1.1\r\nHost: p.test\r\nContent-Length: 5\r\n\r\nhello\
          GET /d HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n",
        limit,
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 4, "{out}");
    let order: Vec<usize> = ["\"uri\":\"/a\"", "\"uri\":\"/b\"", "\"uri\":\"/c\"", "\"uri\":\"/d\""]
        .iter()
        .map(|p| out.find(p).unwrap_or_else(|| panic!("{p} missing: {out}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "answers out of order: {out}");
    assert!(out.contains("\"body_len\":5"), "{out}");
    assert!(!out.contains("must-not-reach-client"), "{out}");

    // HTTP/1.0: closed after the answer unless the client asks for keep-alive.
    let started = std::time::Instant::now();
    let out = raw_async(gh.http, b"GET /x HTTP/1.0\r\nHost: p.test\r\n\r\n", limit).await;
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.contains("connection: close"), "{out}");
    assert!(started.elapsed() < Duration::from_millis(900), "HTTP/1.0 connection left open");
    let out = raw_async(gh.http, b"GET /x HTTP/1.0\r\nHost: p.test\r\nConnection: keep-alive\r\n\r\n", limit).await;
    assert!(out.contains("connection: keep-alive"), "{out}");

    // A body of unknown length: chunked for HTTP/1.1, read to the close for HTTP/1.0.
    let out = raw_async(gh.http, b"GET /stream/3/5 HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n", limit).await;
    assert!(out.contains("transfer-encoding: chunked") && out.ends_with("0\r\n\r\n"), "{out}");
    assert!(out.contains("chunk0\n") && out.contains("chunk2\n"), "{out}");
    let out = raw_async(gh.http, b"GET /stream/3/5 HTTP/1.0\r\nHost: p.test\r\n\r\n", limit).await;
    assert!(!out.contains("transfer-encoding") && out.ends_with("chunk0\nchunk1\nchunk2\n"), "{out}");

    // HEAD: the length of what GET would send, and no body.
    let out =
        raw_async(gh.http, b"HEAD /nowhere HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n", limit).await;
    assert!(out.starts_with("HTTP/1.1 404") && out.contains("content-length: 14\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "HEAD answered with a body: {out}");

    // The idle keep-alive timeout (1s) closes a connection that sent nothing more.
    let started = std::time::Instant::now();
    let out = raw_async(gh.http, b"GET /x HTTP/1.1\r\nHost: p.test\r\n\r\n", limit).await;
    let waited = started.elapsed();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(4), "closed after {waited:?}");
}

/// A client that sends `Expect: 100-continue` gets `100 Continue` from the proxy before it
/// sends its body, then the final answer; the body reaches the backend whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("p", &site("p.test", &format!("backend: {}\n", b.url())))]);
    let addr = gh.http;
    let (interim, rest) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"POST /up HTTP/1.1\r\nHost: p.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            .expect("write head");
        // Nothing more is sent until the interim answer has arrived.
        let mut interim = Vec::new();
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => interim.push(byte[0]),
                other => panic!("no interim answer before the body: {other:?} after {:?}", String::from_utf8_lossy(&interim)),
            }
        }
        s.write_all(b"hello").expect("write body");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (String::from_utf8_lossy(&interim).into_owned(), String::from_utf8_lossy(&rest).into_owned())
    })
    .await
    .expect("join");
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.contains("\"body_len\":5"), "{rest}");
    assert_eq!(b.count(), 1);
}

/// Three requests to `p.test` at once, each held 300 ms by the backend (so each needs a
/// backend connection of its own); all must succeed.
async fn three_at_once(addr: std::net::SocketAddr) {
    let reqs: Vec<_> =
        (0..3).map(|_| tokio::spawn(async move { get(addr, "p.test", "/sleep/300").await.status })).collect();
    for r in reqs {
        assert_eq!(r.await.expect("join"), 200);
    }
}

/// `pool.max_idle_per_host`: of several connections opened for concurrent requests, only
/// that many stay pooled for later ones (one worker, so one pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pool_keeps_at_most_max_idle_per_host() {
    for (max_idle, want) in [(1usize, 5usize), (0, 6), (64, 3)] {
        let b = Backend::start("b").await;
        let site = format!("host: p.test\nbackend: {}\noptions:\n  pool: {{max_idle_per_host: {max_idle}}}\n", b.url());
        let gh = Gatehouse::start_edited("", &[("p", &site)], |main| main.replace("workers: 2", "workers: 1"));
        for round in 1..=2 {
            // Three at once: each needs a connection of its own.
            three_at_once(gh.http).await;
            if round == 1 {
                assert_eq!(b.connections(), 3, "max_idle_per_host {max_idle}");
            }
        }
        // The second round reused what the pool kept: min(max_idle, 3) connections.
        assert_eq!(b.connections(), want, "max_idle_per_host {max_idle}");
    }
}

/// Established TCP connections (IPv4, from /proc/net/tcp) whose remote end is `port`:
/// Gatehouse's connections to a backend listening there.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // f[2] = remote "ADDR:PORT" in hex, f[3] = state ("01" = established).
            f.len() > 3
                && f[3] == "01"
                && f[2].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
        })
        .count()
}

/// Idle pooled backend connections are closed in the background once idle for
/// `timeouts.idle`, not kept until a later request finds them stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_backend_connections_close_after_the_idle_timeout() {
    let b = Backend::start("b").await;
    let site = format!("host: p.test\nbackend: {}\noptions:\n  timeouts: {{idle: 1s}}\n", b.url());
    let gh = Gatehouse::start("", &[("p", &site)]);
    three_at_once(gh.http).await;
    let port = b.addr.port();
    assert!(connections_to(port) >= 1, "no pooled backend connection after the requests");
    // The pruner looks every 15 s; 1 s of idle time is long past by its next look.
    assert!(
        wait_until(Duration::from_secs(20), || connections_to(port) == 0).await,
        "{} idle backend connections still open",
        connections_to(port)
    );
}
