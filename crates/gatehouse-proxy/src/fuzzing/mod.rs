//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo fuzz, libFuzzer), one
//! plain function per hand-written parser that reads untrusted bytes (see
//! docs/architecture.md, "Parsers and untrusted bytes", and fuzz/README.md).
//!
//! Each function takes arbitrary bytes and checks properties of the parser's answer, not
//! only that it does not panic: a property that does not hold panics, which is how
//! libFuzzer learns of a finding. Where a property needs several read boundaries, they are
//! derived from the input itself, so a finding replays exactly.
//!
//! Only built for `fuzz/` (feature `fuzzing`) and for the test that replays the committed
//! seed corpus (`fuzz/corpus/<target>/`). Nothing here runs in a server, and it must not
//! grow anything a server needs.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, ReadBuf};

use crate::http::framing::{Flags, Inspected};
use crate::http::request::{host as request_host, host_part};
use crate::http::server::{self, MAX_HEADERS};
use crate::upstream::h1::{self, Chunk, Framing};

mod differential;
pub use differential::request_differential;

/// A fuzz target: its name and its function.
pub type Target = (&'static str, fn(&[u8]));

/// The fuzz targets: name (= `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`) and
/// function.
pub const TARGETS: &[Target] = &[
    ("request_head", request_head),
    ("request_differential", request_differential),
    ("response_head", response_head),
    ("chunked", chunked),
    ("scanner", scanner),
    ("host", host),
    ("proxy_header", proxy_header),
];

/// A small deterministic generator seeded from the input, for read boundaries.
fn rng_for(data: &[u8]) -> fastrand::Rng {
    // FNV-1a: any function of the bytes will do, as long as it is the same every run.
    let seed = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    fastrand::Rng::with_seed(seed)
}

/// Where to cut a message of `len` bytes to check that its prefixes are incomplete: every
/// point for short messages, otherwise both ends (where the framing lives) and a spread
/// in between.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let (head, tail) = if len <= 192 { (len, 0) } else { (64, 64) };
    let step = (len / 64).max(1);
    (0..head).chain((head..len.saturating_sub(tail)).step_by(step)).chain(len.saturating_sub(tail).max(head)..len)
}

/// Lower-case name and value of each field, in order.
fn field_list<'a>(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<(String, Vec<u8>)> {
    fields.map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec())).collect()
}

/// Fields grouped by name in first-appearance order, each name's values in order: the
/// order a `HeaderMap` keeps.
fn grouped(list: &[(String, Vec<u8>)]) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut out: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for (name, value) in list {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value.clone()),
            None => out.push((name.clone(), vec![value.clone()])),
        }
    }
    out
}

fn map_list(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect()
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT` (optional white space around it is the
/// field syntax's). No sign, no other white space, no list.
fn strict_length(value: &[u8]) -> Option<u64> {
    let digits = ows_trim(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// A field value without the optional white space (SP, HTAB) around it.
fn ows_trim(value: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &value[start..end]
}

fn show(data: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(data))
}

// ---------------------------------------------------------------------------------------
// Request heads (http/server.rs)

/// The own HTTP/1.1 loop's request-head parser (`server::parse` + `Head::into_request`).
///
/// - Its verdict matches httparse's (incomplete / error / complete at the same length):
///   what httparse refuses is 400 (431 for too many fields); a well-formed head is only
///   refused with 400 (framing), 414 or 431 (own limits) or 501 (a coding before chunked).
/// - Every prefix of a complete head is incomplete, and the head alone (without what
///   follows it) parses to the same head.
/// - Anything that could frame a body, switch protocols or expect a 100 is handed to
///   hyper: any `Transfer-Encoding`, `Upgrade` or `Expect` field, a `Content-Length` that
///   is not a plain zero. A hand-off always has one of those reasons.
/// - A head served here becomes a request with the same method, target, version and
///   fields (names and values, in order); when that fails, it is for a reason (a target
///   `Uri` refuses, a value `HeaderValue` refuses), and with 400.
pub fn request_head(data: &[u8]) {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut oracle = httparse::Request::new(&mut slots);
    let expected = oracle.parse(data);
    let mut spare = Vec::new();
    let head = match (server::parse(data, &mut spare), expected) {
        (Ok(None), Ok(httparse::Status::Partial)) => return,
        (Err(status), Err(httparse::Error::TooManyHeaders)) => {
            assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{}", show(data));
            return;
        }
        (Err(status), Err(_)) => {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}", show(data));
            return;
        }
        (Err(status), Ok(httparse::Status::Complete(_))) => {
            // Refusals of well-formed heads: framing (400), a coding before chunked (501),
            // the own limits on target (414) and field-name length (431).
            let known = [400, 414, 431, 501];
            assert!(known.contains(&status.as_u16()), "{status} for {}", show(data));
            return;
        }
        (Ok(Some(head)), Ok(httparse::Status::Complete(len))) if head.len == len => head,
        (ours, theirs) => {
            panic!("verdicts differ on {}: ours {:?}, httparse {theirs:?}", show(data), ours.map(|h| h.map(|h| h.len)))
        }
    };
    let len = head.len;
    assert!(len > 0 && len <= data.len());
    for cut in cuts(len) {
        let prefix = server::parse(&data[..cut], &mut Vec::new());
        assert!(matches!(prefix, Ok(None)), "{cut} of {len} bytes of {} are not incomplete", show(data));
    }
    let alone = server::parse(&data[..len], &mut Vec::new());
    let same = |h: &server::Head| {
        (h.len, &h.method, h.path, h.version, h.fields.len(), h.hand_off)
            == (head.len, &head.method, head.path, head.version, head.fields.len(), head.hand_off)
    };
    assert!(matches!(&alone, Ok(Some(h)) if same(h)), "the bytes after the head changed it: {}", show(data));

    let fields = field_list(oracle.headers.iter().map(|h| (h.name, h.value)));
    assert_eq!(head.fields.len(), fields.len());
    assert_eq!(Some(&data[head.path.0..head.path.1]), oracle.path.map(str::as_bytes));
    let reasons = fields
        .iter()
        .filter(|(n, v)| match n.as_str() {
            "transfer-encoding" | "upgrade" | "expect" => true,
            "content-length" => strict_length(v) != Some(0),
            _ => false,
        })
        .count();
    assert_eq!(head.hand_off, reasons > 0, "hand-off verdict wrong for {}", show(data));
    if head.hand_off {
        return;
    }

    let raw = Bytes::copy_from_slice(&data[..len]);
    let (method, path, version) = (head.method.clone(), head.path, head.version);
    match head.into_request(&raw, &mut spare) {
        Ok((req, _)) => {
            assert!(spare.is_empty());
            assert_eq!((req.method(), req.version()), (&method, version));
            assert_eq!(Some(req.uri()), Uri::try_from(&data[path.0..path.1]).ok().as_ref());
            assert_eq!(grouped(&map_list(req.headers())), grouped(&fields), "fields differ for {}", show(data));
        }
        Err(status) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let bad_uri = Uri::try_from(&data[path.0..path.1]).is_err();
            let bad_value = fields.iter().any(|(_, v)| HeaderValue::from_bytes(v).is_err());
            assert!(bad_uri || bad_value, "refused without a reason: {}", show(data));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Response heads (upstream/h1.rs)

/// The inline client's response-head parser, in both modes (fields in a header map, and
/// fields kept as verbatim lines), with and without a HEAD request.
///
/// - The two modes agree: the same verdict, status, version, framing and keep-alive, the
///   same bytes left in the buffer, and the same fields (the lines parse back to the map's
///   fields; `X-Request-ID` is the proxy's own in verbatim mode).
/// - Every prefix of a complete head (1xx answers included) is incomplete.
/// - No hop-by-hop field, and no field a `Connection` field names, is passed on.
/// - The framing follows from the fields: a length only from `Content-Length` fields that
///   all say that length as plain digits (so the client reads the body the way the proxy
///   framed it), chunked only from one `Transfer-Encoding: chunked` on HTTP/1.1 without a
///   length, no body for HEAD, 204 and 304; a body read until close never keeps the
///   connection.
pub fn response_head(data: &[u8]) {
    for head_only in [false, true] {
        response_head_once(data, head_only);
    }
}

fn response_head_once(data: &[u8], head_only: bool) {
    let (mut a, mut b) = (BytesMut::from(data), BytesMut::from(data));
    let mut lines = b"stale".to_vec();
    let map = h1::parse_head(&mut a, &mut Vec::new(), head_only, None);
    let verbatim = h1::parse_head(&mut b, &mut Vec::new(), head_only, Some(&mut lines));
    let ((m, m_framing, m_alive, _), (v, v_framing, v_alive, kept)) = match (map, verbatim) {
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => return,
        (Ok(Some(m)), Ok(Some(v))) => (m, v),
        (m, v) => panic!(
            "the modes disagree on {}: map {:?}, verbatim {:?}",
            show(data),
            m.map(|h| h.is_some()),
            v.map(|h| h.is_some())
        ),
    };
    let kept = kept.expect("verbatim mode keeps lines");
    assert_eq!((m.status(), m.version(), m_alive), (v.status(), v.version(), v_alive), "{}", show(data));
    assert_eq!(format!("{m_framing:?}"), format!("{v_framing:?}"), "{}", show(data));
    assert_eq!(a, b, "the body stays in the buffer either way: {}", show(data));
    assert!(v.headers().is_empty());
    assert!(!m.status().is_informational());

    let consumed = data.len() - a.len();
    for cut in cuts(consumed) {
        let mut prefix = BytesMut::from(&data[..cut]);
        let r = h1::parse_head(&mut prefix, &mut Vec::new(), head_only, None);
        assert!(matches!(r, Ok(None)), "{cut} of {consumed} bytes are not incomplete: {}", show(data));
    }

    // The last head in the bytes (after any 1xx), as httparse reads it.
    let mut start = 0;
    let (raw_fields, version) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(n)) = resp.parse(&data[start..]) else {
            panic!("httparse does not find the head in {}", show(data));
        };
        if resp.code.is_some_and(|c| (100..200).contains(&c)) {
            start += n;
            continue;
        }
        assert_eq!(start + n, consumed, "{}", show(data));
        break (field_list(resp.headers.iter().map(|h| (h.name, h.value))), resp.version);
    };

    let from_map: Vec<(String, Vec<u8>)> =
        map_list(m.headers()).into_iter().filter(|(n, _)| n != "x-request-id").collect();
    let from_lines = fields_of(&lines);
    let mut sorted = (from_map.clone(), from_lines.clone());
    sorted.0.sort_by(|x, y| x.0.cmp(&y.0));
    sorted.1.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(sorted.0, sorted.1, "the modes pass on different fields: {}", show(data));
    assert!(from_lines.iter().all(|(n, _)| n != "x-request-id"));

    // Every `Connection` field counts (several are one list, RFC 9110 §5.3). Seed:
    // `fuzz/corpus/response_head/connection-two-fields` (once only the last one counted).
    let listed: Vec<String> = raw_fields
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| v.split(|b| *b == b',').map(|t| String::from_utf8_lossy(ows_trim(t)).to_ascii_lowercase()))
        // Connection options, not field names.
        .filter(|t| t != "close" && t != "keep-alive")
        .collect();
    for (name, _) in &from_map {
        let hop = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];
        assert!(!hop.contains(&name.as_str()), "hop-by-hop field {name} passed on: {}", show(data));
        assert!(!listed.contains(name), "field {name} named by Connection passed on: {}", show(data));
    }

    let lengths: Vec<&Vec<u8>> = raw_fields.iter().filter(|(n, _)| n == "content-length").map(|(_, v)| v).collect();
    let te: Vec<&Vec<u8>> = raw_fields.iter().filter(|(n, _)| n == "transfer-encoding").map(|(_, v)| v).collect();
    let length = lengths.first().map(|v| strict_length(v));
    let single_chunked = te.len() == 1 && ows_trim(te[0]).eq_ignore_ascii_case(b"chunked");
    if let Some(first) = length {
        // Whatever framing the proxy uses, the lengths it passes on say one plain number.
        assert!(first.is_some(), "Content-Length that is not 1*DIGIT accepted: {}", show(data));
        assert!(lengths.iter().all(|v| strict_length(v) == first), "{}", show(data));
        assert_eq!(kept.length, first, "{}", show(data));
    }
    let bodiless = head_only || m.status() == StatusCode::NO_CONTENT || m.status() == StatusCode::NOT_MODIFIED;
    match m_framing {
        Framing::Empty => assert!(bodiless || length == Some(Some(0)), "{}", show(data)),
        Framing::Length(n) => {
            assert!(!bodiless && te.is_empty() && n > 0, "{}", show(data));
            assert_eq!(length, Some(Some(n)), "{}", show(data));
        }
        Framing::Chunked(_) => {
            assert!(!bodiless && lengths.is_empty() && version == Some(1), "{}", show(data));
            assert!(single_chunked, "{}", show(data));
        }
        Framing::UntilClose => {
            assert!(!bodiless && lengths.is_empty() && te.is_empty() && !m_alive, "{}", show(data));
        }
    }
    if !te.is_empty() && (!lengths.is_empty() || !single_chunked || version != Some(1)) {
        // Framing fields the proxy cannot trust: an error where a body follows, and never
        // another request on this connection where none does.
        assert!(!m_alive && matches!(m_framing, Framing::Empty), "{}", show(data));
    }
}

/// Field lines (`name: value\r\n`) as (lower-case name, value) pairs, through httparse.
fn fields_of(lines: &[u8]) -> Vec<(String, Vec<u8>)> {
    let block = [lines, b"\r\n"].concat();
    let mut slots = [httparse::EMPTY_HEADER; 128];
    match httparse::parse_headers(&block, &mut slots) {
        Ok(httparse::Status::Complete((n, fields))) if n == block.len() => {
            field_list(fields.iter().map(|h| (h.name, h.value)))
        }
        other => panic!("verbatim lines do not parse back ({other:?}): {}", show(lines)),
    }
}

// ---------------------------------------------------------------------------------------
// Chunked bodies (upstream/h1.rs)

#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// The body and how many input bytes the encoding took.
    Body(Vec<u8>, usize),
    Invalid,
    /// The input ended inside the encoding.
    Incomplete,
}

/// Drives `chunk_step` the way the response body does: steps while it makes progress,
/// and hands it the next piece of input (its length from `next_piece`) when it needs more.
fn decode(input: &[u8], mut next_piece: impl FnMut(usize) -> usize) -> Decoded {
    let (mut buf, mut fed) = (BytesMut::new(), 0);
    let mut state = Framing::Chunked(Chunk::Size);
    let mut out = Vec::new();
    while let Framing::Chunked(s) = state {
        let Ok((next, data)) = h1::chunk_step(&mut buf, s) else { return Decoded::Invalid };
        match data {
            Some(d) => out.extend_from_slice(&d),
            None if matches!(next, Framing::Empty) => {}
            None if fed == input.len() => return Decoded::Incomplete,
            None => {
                let left = input.len() - fed;
                let n = next_piece(left).clamp(1, left);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
        state = next;
    }
    assert!(matches!(state, Framing::Empty), "the decoder ended in {state:?}");
    Decoded::Body(out, fed - buf.len())
}

/// The chunked decoder (`h1::chunk_step`).
///
/// - Its result (body and bytes taken, invalid, or incomplete) does not depend on where
///   reads split the input: all at once, one byte at a time, and pieces of
///   sizes drawn from the input give the same answer.
/// - A decoded body is never longer than the input, and re-encoding it as one chunk
///   decodes back to it.
pub fn chunked(data: &[u8]) {
    let whole = decode(data, |left| left);
    // One byte at a time reaches every buffered length a limit could be checked at.
    assert_eq!(decode(data, |_| 1), whole, "byte by byte: {}", show(data));
    let mut rng = rng_for(data);
    let most = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    let pieces = decode(data, |left| rng.usize(1..=left.min(most)));
    assert_eq!(pieces, whole, "in pieces of up to {most}: {}", show(data));
    if let Decoded::Body(body, used) = &whole {
        assert!(*used <= data.len() && body.len() <= *used);
        if !body.is_empty() {
            let mut again = format!("{:x}\r\n", body.len()).into_bytes();
            again.extend_from_slice(body);
            again.extend_from_slice(b"\r\n0\r\n\r\n");
            assert_eq!(decode(&again, |left| left), Decoded::Body(body.clone(), again.len()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The smuggling scanner (http/framing.rs)

/// A socket that hands out `data` in pieces of the given sizes, then end of stream.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let size = self.sizes.pop().unwrap_or(usize::MAX);
        let n = size.clamp(1, buf.remaining()).min(self.data.len());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Reads `data` through `Inspected`, the first `replay` bytes as the HTTP/1.1 loop's
/// replayed bytes and the rest from a socket in pieces, into read buffers of `window`
/// bytes: what came out, and how many conflicts the scanner counted.
fn scan(data: &[u8], replay: usize, sizes: Vec<usize>, window: usize) -> (Vec<u8>, u32) {
    let flags = Arc::new(Flags::default());
    let socket = Pieces { data: &data[replay..], sizes };
    let mut io = Inspected::new(socket, Bytes::copy_from_slice(&data[..replay]), Some(flags.clone()));
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut room = vec![0u8; window.max(1)];
    loop {
        let mut buf = ReadBuf::new(&mut room);
        match Pin::new(&mut io).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            other => panic!("in-memory read failed: {other:?}"),
        }
    }
    let mut conflicts = 0;
    while flags.take_conflict() {
        conflicts += 1;
    }
    (out, conflicts)
}

/// Header blocks (runs of lines ended by an empty line) with both a line starting
/// `Content-Length:` and one starting `Transfer-Encoding:`, read over whole lines.
fn conflicts_in(data: &[u8]) -> u32 {
    let complete = data.iter().filter(|b| **b == b'\n').count();
    let starts = |line: &[u8], p: &[u8]| line.len() >= p.len() && line[..p.len()].eq_ignore_ascii_case(p);
    let (mut n, mut cl, mut te) = (0, false, false);
    for line in data.split(|b| *b == b'\n').take(complete) {
        if line.is_empty() || line == b"\r" {
            n += u32::from(cl && te);
            (cl, te) = (false, false);
        } else if starts(line, b"content-length:") {
            cl = true;
        } else if starts(line, b"transfer-encoding:") {
            te = true;
        }
    }
    n
}

/// The raw-byte smuggling scanner, through the reader wrapper hyper reads from
/// (`framing::Inspected`).
///
/// - The bytes come out unchanged, whatever the split between replayed and read bytes.
/// - The verdict (how many header blocks had both framing fields) is the same as a scan
///   over whole lines, whether everything comes in one read, in pieces of sizes drawn
///   from the input, or one byte at a time.
pub fn scanner(data: &[u8]) {
    let expected = conflicts_in(data);
    let whole = scan(data, 0, Vec::new(), data.len());
    assert_eq!(whole, (data.to_vec(), expected), "in one read: {}", show(data));
    let mut rng = rng_for(data);
    let replay = rng.usize(0..=data.len());
    let sizes: Vec<usize> = (0..64).map(|_| rng.usize(1..=32)).collect();
    let window = rng.usize(1..=64);
    assert_eq!(scan(data, replay, sizes, window), (data.to_vec(), expected), "in pieces: {}", show(data));
    if data.len() <= 1024 {
        assert_eq!(scan(data, 0, Vec::new(), 1), (data.to_vec(), expected), "byte by byte: {}", show(data));
    }
}

// ---------------------------------------------------------------------------------------
// Host and authority (http/proxy.rs)

/// Port part as it stood after the host, for re-parsing.
fn after_host<'a>(v: &'a str, host: &str) -> &'a str {
    let end = host.as_ptr() as usize - v.as_ptr() as usize + host.len();
    let rest = &v[end..];
    rest.strip_prefix(']').unwrap_or(rest)
}

/// A host as it would be written in a Host field.
fn written(host: &str) -> Cow<'_, str> {
    if host.contains(':') { Cow::Owned(format!("[{host}]")) } else { Cow::Borrowed(host) }
}

/// The routing-host parser (`host_part`, `request_host`), fed the input as a Host field
/// and, where it makes a valid URI, as an absolute-form authority.
///
/// - An accepted host is a piece of the input, holds no `@`, `/`, `\`, `?`, `#` or white
///   space, and parses again to itself, alone and with the port it came with.
/// - `request_host` agrees with `host_part`: lower case, no trailing dot, and from the
///   field and the URI authority alike. Where the `http` crate's URI parser reads the
///   same authority, it finds the same host (so a backend reading the URI sees the host
///   the proxy routed on).
pub fn host(data: &[u8]) {
    let Ok(v) = std::str::from_utf8(data) else {
        // Not a valid field value for routing either.
        if let Ok(field) = HeaderValue::from_bytes(data) {
            assert_eq!(request_host(&Uri::from_static("/"), Some(&field)), None, "{}", show(data));
        }
        return;
    };
    let accepted = host_part(v);
    if let Some(h) = accepted {
        let (start, end) = (h.as_ptr() as usize, h.as_ptr() as usize + h.len());
        let (v_start, v_end) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len());
        assert!(v_start <= start && end <= v_end, "not a piece of the input: {h:?} of {v:?}");
        assert!(
            !h.bytes().any(|b| b"@/\\?#".contains(&b) || b.is_ascii_whitespace() || b.is_ascii_control()),
            "{h:?} accepted from {v:?}"
        );
        let port = after_host(v, h);
        assert!(port.is_empty() || port.starts_with(':'), "{port:?} after {h:?} in {v:?}");
        for again in [written(h).into_owned(), format!("{}{port}", written(h))] {
            assert_eq!(host_part(&again), Some(h), "{again:?} (from {v:?}) parses differently");
        }
    }
    let slash = Uri::from_static("/");
    let routing = accepted.map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    if let Ok(field) = HeaderValue::from_str(v) {
        let got = request_host(&slash, Some(&field));
        assert_eq!(got.as_deref(), routing.as_deref(), "as a Host field: {v:?}");
        if let Some(r) = &got {
            assert!(!r.ends_with('.') && !r.bytes().any(|b| b.is_ascii_uppercase()), "{r:?}");
            let h = accepted.unwrap_or_default();
            let again = HeaderValue::from_str(&format!("{}{}", written(r), after_host(v, h))).ok();
            let reparsed = again.as_ref().and_then(|f| request_host(&slash, Some(f)));
            assert_eq!(reparsed.as_deref(), Some(r.as_ref()), "{v:?}");
        }
    }
    if let Ok(uri) = Uri::try_from(format!("http://{v}/"))
        && uri.authority().is_some_and(|a| a.as_str() == v)
    {
        let got = request_host(&uri, None);
        assert_eq!(got.as_deref(), routing.as_deref(), "as an authority: {v:?}");
        if let (Some(ours), Some(theirs)) = (&got, uri.host()) {
            let theirs = theirs.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(theirs);
            assert_eq!(ours.as_ref(), theirs.trim_end_matches('.').to_ascii_lowercase(), "{v:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// PROXY protocol headers (proxy_protocol.rs)

/// The PROXY protocol parser (`proxy_protocol::parse`).
///
/// - A complete header is a prefix of the input, and every shorter prefix of it is
///   incomplete (never an error, never another header); the header alone parses the same.
/// - What follows a header does not change it.
/// - A version 1 header is at most 107 bytes; any header at most 4 KB.
/// - An address is only ever taken from a header that names one (`LOCAL` / `UNKNOWN`
///   keep the peer's).
pub fn proxy_header(data: &[u8]) {
    use crate::proxy_protocol::parse;
    match parse(data) {
        Ok(Some(h)) => {
            assert!(h.len > 0 && h.len <= data.len() && h.len <= 4096, "{h:?} of {}", show(data));
            if data.starts_with(b"PROXY ") {
                assert!(h.len <= 107, "{h:?}: a version 1 line past 107 bytes");
                let line = &data[..h.len];
                assert!(line.ends_with(b"\r\n"), "{}", show(line));
                assert_eq!(h.source.is_none(), line.starts_with(b"PROXY UNKNOWN"), "{}", show(line));
            }
            let alone = parse(&data[..h.len]);
            assert_eq!(alone, Ok(Some(h.clone())), "the header alone parses differently: {}", show(data));
            for cut in cuts(h.len) {
                assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes of {}", show(data));
            }
        }
        Ok(None) => {
            // Incomplete: every prefix is incomplete too.
            for cut in cuts(data.len()) {
                assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes of {}", show(data));
            }
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
    }

    /// What CI runs of the fuzz targets: every committed seed, through its target's
    /// function (libFuzzer itself only runs in `fuzz/run.sh`).
    #[test]
    fn every_seed_of_every_target_passes() {
        for (name, target) in TARGETS {
            let dir = corpus().join(name);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("no corpus at {}: {e}", dir.display()));
            let mut seeds = 0;
            for entry in entries {
                let path = entry.expect("corpus entry").path();
                let data = std::fs::read(&path).expect("seed");
                let run = std::panic::catch_unwind(|| target(&data));
                assert!(run.is_ok(), "{name}: seed {} fails", path.display());
                seeds += 1;
            }
            assert!(seeds > 0, "the corpus of {name} is empty");
        }
    }

    #[test]
    fn every_corpus_is_a_target() {
        for entry in std::fs::read_dir(corpus()).expect("fuzz/corpus") {
            let name = entry.expect("entry").file_name();
            let name = name.to_string_lossy();
            assert!(TARGETS.iter().any(|(t, _)| *t == name), "fuzz/corpus/{name} has no target");
        }
    }

    #[test]
    fn cuts_cover_both_ends() {
        for len in [0, 1, 5, 192, 193, 1000, 4096] {
            let all: Vec<usize> = cuts(len).collect();
            assert!(all.iter().all(|c| *c < len));
            assert!(all.windows(2).all(|w| w[0] < w[1]), "{len}: {all:?}");
            if len > 0 {
                assert_eq!(all.first(), Some(&0));
                assert_eq!(all.last(), Some(&(len - 1)));
            }
        }
    }

    #[test]
    fn oracles_read_the_obvious_cases() {
        assert_eq!(strict_length(b" 42 "), Some(42));
        for bad in [&b"+1"[..], b"-0", b"", b"1,1", b"1 1", b"99999999999999999999"] {
            assert_eq!(strict_length(bad), None, "{bad:?}");
        }
        assert_eq!(conflicts_in(b"POST / HTTP/1.1\r\ncontent-length: 1\r\nTransfer-Encoding: x\r\n\r\n"), 1);
        assert_eq!(conflicts_in(b"POST / HTTP/1.1\r\ncontent-length: 1\r\nTransfer-Encoding: x\r\n"), 0);
    }
}
