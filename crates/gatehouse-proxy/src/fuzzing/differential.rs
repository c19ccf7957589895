//! The differential fuzz target: the own HTTP/1.1 loop's request-head parser against
//! hyper's HTTP/1 server, which serves the connections the loop hands over (see `super`).

use super::*;

/// What a server made of a request head.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

#[derive(Debug)]
enum Ours {
    Incomplete,
    Refused(StatusCode),
    /// Complete, and handed to hyper: hyper's verdict is the one that counts.
    HandOff,
    Served(Box<Seen>),
}

#[derive(Debug)]
enum Hyper {
    /// No request and no error answer (nothing sent, or a head cut off by the end).
    Incomplete,
    Refused(String),
    Accepted(Seen),
}

fn ours(data: &[u8]) -> Ours {
    let mut spare = Vec::new();
    match server::parse(data, &mut spare) {
        Ok(None) => Ours::Incomplete,
        Err(status) => Ours::Refused(status),
        Ok(Some(head)) if head.hand_off => Ours::HandOff,
        Ok(Some(head)) => {
            let raw = Bytes::copy_from_slice(&data[..head.len]);
            match head.into_request(&raw, &mut spare) {
                Ok((req, _)) => Ours::Served(Box::new(Seen {
                    method: req.method().clone(),
                    uri: req.uri().clone(),
                    version: req.version(),
                    headers: req.headers().clone(),
                })),
                Err(status) => Ours::Refused(status),
            }
        }
    }
}

thread_local! {
    static RUNTIME: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread().build().ok();
}

/// Runs `data` through hyper's HTTP/1 server over an in-memory pipe (the client sends the
/// bytes and closes its side) and records the first request hyper hands to its service.
fn hyper_verdict(data: &[u8]) -> Hyper {
    use hyper::body::Incoming;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let seen: Rc<RefCell<Option<Seen>>> = Rc::default();
    let record = seen.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut first = record.borrow_mut();
        if first.is_none() {
            *first = Some(Seen {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
            });
        }
        async { Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<Bytes>::new())) }
    });
    let run = async {
        let (mut client, server) = tokio::io::duplex(data.len() + 64 * 1024);
        let conn = hyper::server::conn::http1::Builder::new()
            .max_headers(MAX_HEADERS)
            .header_read_timeout(None)
            .serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let send = async {
            // The pipe holds all of it: the write never waits for the server.
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let (result, answer) = tokio::join!(conn, send);
        (result, answer)
    };
    let (result, answer) = RUNTIME.with(|rt| rt.as_ref().map(|rt| rt.block_on(run))).expect("tokio runtime");
    if let Some(seen) = seen.borrow_mut().take() {
        return Hyper::Accepted(seen);
    }
    match result {
        Err(e) if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() => {
            // An HTTP/2 preface is refused by closing (the real loop hands it to hyper's
            // HTTP/2 server before parsing it).
            let answered = answer.starts_with(b"HTTP/1.1 4") || e.is_parse_version_h2();
            assert!(answered, "hyper refused without an answer: {}", show(&answer));
            Hyper::Refused(e.to_string())
        }
        _ => Hyper::Incomplete,
    }
}

/// Why refusing a head hyper accepts is intended, if it is. The list of the deliberate
/// differences (everything else we refuse, hyper refuses too):
///
/// - `Content-Length` and `Transfer-Encoding` together: hyper lets chunked win and drops
///   the length; we answer 400 (RFC 9112 §6.1 allows either; one smuggling vector less).
/// - Several `Transfer-Encoding` fields: hyper only looks at the last one; we take one
///   field with a single `chunked` (400).
/// - A coding before `chunked` (`gzip, chunked`): hyper decodes the chunked and passes
///   the rest on as it is; we answer 501, as nginx does.
/// - Our own size limits (414 for a long target, 431 for a long field name): hyper's are
///   larger (a 64 KiB target, a 64 KiB name).
///
/// Refused by both, so not differences: obs-fold (httparse), several different
/// `Content-Length` values, a `Transfer-Encoding` not ending in `chunked`, HTTP/1.0 with
/// `Transfer-Encoding`, a target `Uri` refuses, more than `MAX_HEADERS` fields (hyper is
/// given the same limit here; its own default is 100).
fn intended_refusal(data: &[u8], status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::URI_TOO_LONG => return Some("target longer than our limit"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => return Some("field name longer than our limit"),
        _ => {}
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    req.parse(data).ok()?;
    let named = |n: &'static str| req.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(n));
    let te: Vec<&[u8]> = named("transfer-encoding").map(|h| h.value).collect();
    if !te.is_empty() && named("content-length").next().is_some() {
        return Some("Content-Length with Transfer-Encoding");
    }
    if te.len() > 1 {
        return Some("several Transfer-Encoding fields");
    }
    if status == StatusCode::NOT_IMPLEMENTED && te.iter().any(|v| v.contains(&b',')) {
        return Some("a coding before chunked");
    }
    None
}

/// Our request-head verdict against hyper 1's HTTP/1 server on the same bytes.
///
/// - Incomplete for us exactly when incomplete for hyper.
/// - What we serve ourselves, hyper accepts too, with the same method, target, version
///   and fields (hyper keeps one of several equal `Content-Length` fields; so do we here).
///   This is the direction that matters: a head we serve never reaches hyper, so any
///   difference there is a request the two halves of the proxy would read differently.
/// - What we refuse and hyper accepts is one of the intended differences
///   (`intended_refusal`).
/// - Handed-off heads: hyper's verdict is final, nothing to compare.
pub fn request_differential(data: &[u8]) {
    let ours = ours(data);
    let theirs = hyper_verdict(data);
    match (&ours, &theirs) {
        (Ours::Incomplete, Hyper::Incomplete) => {}
        (Ours::Incomplete, _) | (_, Hyper::Incomplete) => {
            panic!("only one side sees an incomplete head in {}: ours {ours:?}, hyper {theirs:?}", show(data))
        }
        (Ours::HandOff, _) | (Ours::Refused(_), Hyper::Refused(_)) => {}
        (Ours::Refused(status), Hyper::Accepted(_)) => {
            assert!(
                intended_refusal(data, *status).is_some(),
                "we refuse ({status}) what hyper accepts, not an intended difference: {}: hyper {theirs:?}",
                show(data)
            );
        }
        (Ours::Served(_), Hyper::Refused(why)) => {
            panic!("we serve what hyper refuses ({why}): {}", show(data))
        }
        (Ours::Served(mine), Hyper::Accepted(hyper)) => {
            let mut mine = Seen::clone(mine);
            let lengths: Vec<HeaderValue> =
                mine.headers.get_all(http::header::CONTENT_LENGTH).iter().cloned().collect();
            if let Some(first) = lengths.first() {
                mine.headers.insert(http::header::CONTENT_LENGTH, first.clone());
            }
            assert_eq!(&mine, hyper, "we and hyper read {} differently", show(data));
            // HeaderMap equality ignores the order of names: compare it too.
            assert_eq!(map_list(&mine.headers), map_list(&hyper.headers), "{}", show(data));
        }
    }
}
