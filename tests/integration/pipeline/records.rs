//! Access records: the status and bytes the client actually got, early rejects, every field.

use super::*;

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
    let (_backend, gh) = logged_app().await;
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
    let (_backend, gh) = logged_app().await;
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
    let (backend, gh) = logged_app().await;
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
            // Masked as in the database (`logging.mask_ip_method: last_octet`).
            ("client", "127.0.0.0".into()),
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

/// `logging.mask_ip_method: hash`: the access line and the database show the same daily
/// token, never the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_clients_show_the_same_token_in_the_line_and_the_database() {
    let backend = Backend::start("app").await;
    let gh = Gatehouse::start_edited(
        "logging: {mask_ip_method: hash}\n",
        &[("p", &site("p.test", &format!("backend: {}\n", backend.url())))],
        info_log,
    );
    assert_eq!(get(gh.http, "p.test", "/hashed").await.status, 200);
    let rec = record_for(&gh, "/hashed").await;
    let token = rec["client"].as_str().expect("client").to_string();
    assert!(token.starts_with("h:") && token.len() == 18, "{rec}");
    let stored = wait_until_async(NET_TIMEOUT, || async {
        get(gh.admin, "localhost", "/api/logs?path_prefix=%2Fhashed").await.json()["requests"][0]["client"]
            == token.as_str()
    })
    .await;
    assert!(stored, "{}", get(gh.admin, "localhost", "/api/logs").await.text());
}
