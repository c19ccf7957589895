use super::*;

fn decode(input: &[u8]) -> io::Result<Vec<u8>> {
    let mut buf = BytesMut::from(input);
    let mut state = Framing::Chunked(Chunk::Size);
    let mut out = Vec::new();
    loop {
        let Framing::Chunked(s) = state else { return Ok(out) };
        let (next, data) = chunk_step(&mut buf, s)?;
        match data {
            None if !matches!(next, Framing::Empty) => return Err(io::Error::other("incomplete")),
            Some(d) => out.extend_from_slice(&d),
            None => {}
        }
        state = next;
    }
}

#[test]
fn chunked_bodies_decode() {
    assert_eq!(decode(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n").expect("valid"), b"hello world");
    assert_eq!(decode(b"0\r\nx-trailer: 1\r\n\r\n").expect("valid"), b"");
    assert_eq!(decode(b"00005 ;a=b\r\nhello\r\n0\r\n\r\n").expect("valid"), b"hello");
    assert!(decode(b"zz\r\n").is_err());
    assert!(decode(b"2\r\nabXX").is_err());
    // Sizes are hex digits only: no sign, no leading space, nothing but an extension
    // after them, and no more than a u64 holds.
    for bad in ["+5", " 5", "5 x", "5x", "-0", "", "1_0", "10000000000000000"] {
        assert!(decode(format!("{bad}\r\nhello\r\n0\r\n\r\n").as_bytes()).is_err(), "{bad:?}");
    }
    assert_eq!(chunk_size(b"ffffffffffffffff\r\n"), Some(u64::MAX));
    // Found by fuzz/ (chunked): a size line too long to buffer is refused even when it
    // arrives whole, so the verdict does not depend on the reads.
    let long = format!("{}1\r\nx\r\n0\r\n\r\n", "0".repeat(4100));
    assert!(decode(long.as_bytes()).is_err());
}

/// Decodes `input` handed over in random pieces, as reads from a socket would: the body
/// and how many bytes of `input` it took.
fn decode_in_pieces(input: &[u8], rng: &mut fastrand::Rng) -> io::Result<(Vec<u8>, usize)> {
    let (mut buf, mut fed) = (BytesMut::new(), 0);
    let mut state = Framing::Chunked(Chunk::Size);
    let mut out = Vec::new();
    while let Framing::Chunked(s) = state {
        let (next, data) = chunk_step(&mut buf, s)?;
        match data {
            Some(d) => out.extend_from_slice(&d),
            None if matches!(next, Framing::Empty) => {}
            None if fed == input.len() => return Err(io::Error::other("incomplete")),
            None => {
                let n = rng.usize(1..=(input.len() - fed).min(40));
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
        state = next;
    }
    Ok((out, fed - buf.len()))
}

#[test]
fn chunked_decoding_ignores_read_boundaries_and_survives_damage() {
    let mut rng = fastrand::Rng::with_seed(0xc4a7);
    let mut samples = Vec::new();
    for _ in 0..500 {
        let body: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
        let mut enc = Vec::new();
        for piece in body.chunks(rng.usize(1..64)) {
            let size = if rng.bool() { format!("{:x}", piece.len()) } else { format!("{:X}", piece.len()) };
            enc.extend_from_slice(size.as_bytes());
            if rng.u8(..4) == 0 {
                enc.extend_from_slice(b";ext=\"v\"");
            }
            enc.extend_from_slice(b"\r\n");
            enc.extend_from_slice(piece);
            enc.extend_from_slice(b"\r\n");
        }
        enc.extend_from_slice(if rng.bool() { b"0\r\n\r\n" } else { b"0\r\nX-T: 1\r\n\r\n" });
        assert_eq!(decode_in_pieces(&enc, &mut rng).expect("valid encoding"), (body, enc.len()));
        samples.push(enc);
    }
    // Damaged encodings: a body, an error or "incomplete", and never a panic.
    let valid: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
    let mut failed = 0;
    for raw in crate::mutate::damaged(0xc4a8, &valid, 20_000) {
        failed += usize::from(decode_in_pieces(&raw, &mut rng).is_err());
    }
    assert!(failed > 1000, "damage should break many encodings, broke {failed}");
}

fn head(raw: &str, head_only: bool) -> io::Result<(Response<()>, Framing, bool)> {
    let mut buf = BytesMut::from(raw.as_bytes());
    parse_head(&mut buf, &mut Vec::new(), head_only, None).map(|h| {
        let (resp, framing, keep_alive, _) = h.expect("complete head");
        (resp, framing, keep_alive)
    })
}

#[test]
fn framing_rules() {
    let ok = |raw: &str| head(raw, false).expect("valid");
    assert!(matches!(ok("HTTP/1.1 200 OK\r\n\r\n").1, Framing::UntilClose));
    assert!(matches!(ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").1, Framing::Length(5)));
    assert!(matches!(head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).expect("valid").1, Framing::Empty));
    assert!(matches!(ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").1, Framing::Empty));
    let chunked = ok("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert!(matches!(chunked.1, Framing::Chunked(_)));
    assert!(!chunked.0.headers().contains_key("transfer-encoding"));
    // Codings the proxy would pass on undeclared, a length beside chunked (response
    // splitting), and chunked where HTTP/1.0 has no chunked: all refused.
    for bad in [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(head(bad, false).is_err(), "{bad:?}");
        // Without a body (HEAD) the head passes, and the connection is not reused.
        let (_, framing, keep_alive) = head(bad, true).expect("bodiless");
        assert!(matches!(framing, Framing::Empty) && !keep_alive, "{bad:?}");
    }
    let listed = ok("HTTP/1.1 200 OK\r\nConnection: x-a, close\r\nX-A: 1\r\nX-B: 2\r\nKeep-Alive: 5\r\n\r\n");
    assert_eq!(listed.0.headers().keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-b"]);
    assert!(!ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n").2);
    assert!(!ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").2);
    assert!(ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n").2);
    assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).is_err());
    assert!(head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    // Found by fuzz/ (response_head): a sign, or Unicode white space, is not a length.
    assert!(head("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false).is_err());
    assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 5\u{a0}\r\n\r\n", false).is_err());
}

#[test]
fn every_connection_field_names_hop_by_hop_fields() {
    // Found by fuzz/ (response_head): with two Connection fields only the last one's
    // names were removed. Both modes, since they build the fields differently.
    let raw = "HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\nConnection: x-b, keep-alive\r\nX-B: 2\r\nX-C: 3\r\nContent-Length: 0\r\n\r\n";
    let (resp, _, _) = head(raw, false).expect("valid");
    let mut names: Vec<&str> = resp.headers().keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(names, ["content-length", "x-c"]);
    let mut lines = Vec::new();
    let mut buf = BytesMut::from(raw.as_bytes());
    parse_head(&mut buf, &mut Vec::new(), false, Some(&mut lines)).expect("valid").expect("complete");
    assert_eq!(String::from_utf8_lossy(&lines), "X-C: 3\r\nContent-Length: 0\r\n");
}

/// Field lines as (lower-case name, value) pairs, through httparse.
fn fields_of(lines: &[u8]) -> Vec<(String, Vec<u8>)> {
    let block = [lines, b"\r\n"].concat();
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(&block, &mut slots) {
        Ok(httparse::Status::Complete((n, fields))) if n == block.len() => {
            fields.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect()
        }
        other => panic!("verbatim lines do not parse back ({other:?}): {:?}", String::from_utf8_lossy(lines)),
    }
}

#[test]
fn damaged_response_heads_never_panic_and_both_modes_agree() {
    let valid: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 08:00:00 GMT\r\nContent-Type: text/plain\r\n\
          Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-a, close\r\nX-A: 1\r\nX-Request-ID: b\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nVary: x\r\nSet-Cookie: b=2\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 7\r\n\r\n",
    ];
    let mut complete = 0;
    for (i, raw) in crate::mutate::damaged(0x9a7e, valid, 20_000).into_iter().enumerate() {
        let head_only = i % 5 == 0;
        let (mut a, mut b) = (BytesMut::from(&raw[..]), BytesMut::from(&raw[..]));
        let mut lines = Vec::new();
        let map = parse_head(&mut a, &mut Vec::new(), head_only, None);
        let verbatim = parse_head(&mut b, &mut Vec::new(), head_only, Some(&mut lines));
        match (map, verbatim) {
            (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
            (Ok(Some((m, m_framing, m_alive, _))), Ok(Some((v, v_framing, v_alive, kept)))) => {
                complete += 1;
                let raw = String::from_utf8_lossy(&raw);
                assert_eq!((m.status(), m.version(), m_alive), (v.status(), v.version(), v_alive), "{raw:?}");
                assert_eq!(format!("{m_framing:?}"), format!("{v_framing:?}"), "{raw:?}");
                assert_eq!(a, b, "the body stays in the buffer either way: {raw:?}");
                // The same fields, in the same order per name; X-Request-ID is the
                // proxy's own in verbatim mode.
                let mut from_map: Vec<(String, Vec<u8>)> = m
                    .headers()
                    .iter()
                    .filter(|(n, _)| *n != "x-request-id")
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect();
                let mut from_lines = fields_of(&lines);
                from_map.sort_by(|x, y| x.0.cmp(&y.0));
                from_lines.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(from_map, from_lines, "{raw:?}");
                let length = m.headers().get("content-length").and_then(|v| v.to_str().ok()?.trim().parse().ok());
                assert_eq!(kept.expect("verbatim").length, length, "{raw:?}");
            }
            (m, v) => panic!(
                "the modes disagree on {:?}: map {:?}, verbatim {:?}",
                String::from_utf8_lossy(&raw),
                m.map(|h| h.is_some()),
                v.map(|h| h.is_some())
            ),
        }
    }
    assert!(complete > 1000, "too few damaged heads stayed complete ({complete}) to compare the modes");
}

#[test]
fn verbatim_fields_keep_case_and_drop_hop_by_hop() {
    let raw = "HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: x-a, keep-alive\r\nX-A: 1\r\nKeep-Alive: 5\r\n\
               Date: Sun, 22 Nov 2026 08:00:00 GMT\r\nContent-Length: 3\r\nset-cookie: a=1\r\nX-Request-Id: b\r\nSet-Cookie: b=2\r\n\r\nabc";
    let mut buf = BytesMut::from(raw.as_bytes());
    let mut lines = b"stale".to_vec();
    let (resp, framing, keep_alive, kept) =
        parse_head(&mut buf, &mut Vec::new(), false, Some(&mut lines)).expect("valid").expect("complete");
    let kept = kept.expect("verbatim");
    assert_eq!(
        std::str::from_utf8(&lines).expect("ascii"),
        "Server: nginx\r\nDate: Sun, 22 Nov 2026 08:00:00 GMT\r\nContent-Length: 3\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n"
    );
    assert!(resp.headers().is_empty());
    assert_eq!((kept.length, kept.date), (Some(3), true));
    assert!(matches!(framing, Framing::Length(3)) && keep_alive);
    assert_eq!(&buf[..], b"abc", "the body stays in the buffer");
}

#[test]
fn verbatim_runs_break_at_dropped_fields_and_trailing_space() {
    // Spacing inside a line is kept as sent; trailing white space and dropped fields
    // end a run, and every line still ends in CRLF.
    let raw = "HTTP/1.1 200 OK\r\nA:1\r\nB:  2 \r\nC: 3\r\nTE: x\r\nD: 4\r\nE:\r\nContent-Length: 0\r\n\r\n";
    let mut buf = BytesMut::from(raw.as_bytes());
    let mut lines = Vec::new();
    parse_head(&mut buf, &mut Vec::new(), false, Some(&mut lines)).expect("valid").expect("complete");
    assert_eq!(
        std::str::from_utf8(&lines).expect("ascii"),
        "A:1\r\nB:  2\r\nC: 3\r\nD: 4\r\nE:\r\nContent-Length: 0\r\n"
    );
    assert!(buf.is_empty());
}
