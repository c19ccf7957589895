//! Response heads from a backend: parsed with httparse, framing and keep-alive read off the
//! raw fields, hop-by-hop fields (and those `Connection` lists) left out; the passing fields
//! become a `HeaderMap` of slices, or lines copied as they stand (`Verbatim`).

use super::*;

/// Parses a buffered response head (skipping 1xx answers). Header values become slices of
/// the head's bytes rather than copies; framing and keep-alive are read off the raw fields.
/// With `verbatim`, the fields are written there as lines and the map stays empty.
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    fields: &mut Vec<(HeaderName, std::ops::Range<usize>)>,
    head_only: bool,
    verbatim: Option<&mut Vec<u8>>,
) -> io::Result<Option<Head>> {
    loop {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len =
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(io::Error::other(format!("invalid response from backend: {e}"))),
            };
        let status = StatusCode::from_u16(parsed.code.unwrap_or(502)).map_err(io::Error::other)?;
        if status.is_informational() {
            // 100 Continue and friends: not forwarded; the final answer follows.
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(io::Error::other("backend switched protocols without being asked"));
            }
            buf.advance(len);
            continue;
        }
        let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
        let base = buf.as_ptr() as usize;
        let mut facts = Facts::default();
        // Hop-by-hop fields stop here (RFC 9110 §7.6.1), so the response needs no
        // stripping pass later; the ones `Connection` lists are removed below.
        let mut connection = None;
        let mut connection_fields = 0u32;
        let mut lines = verbatim;
        if let Some(l) = lines.as_deref_mut() {
            l.clear();
        }
        let mut copier = LineCopier::default();
        fields.clear();
        for h in parsed.headers.iter() {
            let name = h.name.as_bytes();
            let kind = FieldKind::of(name);
            facts.see(kind, h.value)?;
            let start = h.value.as_ptr() as usize - base;
            let range = start..start + h.value.len();
            if kind == FieldKind::Connection {
                connection_fields += 1;
                connection = connection.or(Some(range));
                continue;
            }
            if kind.is_hop_by_hop() {
                continue;
            }
            match lines.as_deref_mut() {
                Some(l) if kind != FieldKind::RequestId => {
                    let at = name.as_ptr() as usize - base;
                    copier.field(buf, l, at, range.end);
                }
                Some(_) => {}
                None => fields.push((HeaderName::from_bytes(name).map_err(io::Error::other)?, range)),
            }
        }
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        *resp.version_mut() = version;
        let framing = facts.framing(status, head_only);
        // Conflicting framing is an error where a body follows; where none does (HEAD,
        // 204, 304) the head passes, but the connection is not trusted with another request.
        let conflict = facts.conflict(version);
        if let (Some(why), false) = (conflict, matches!(framing, Framing::Empty)) {
            return Err(io::Error::other(why));
        }
        let keep_alive = conflict.is_none() && facts.keeps_alive(version) && !matches!(framing, Framing::UntilClose);
        // Several `Connection` fields (rare) count as one list (RFC 9110 §5.3); found by
        // fuzz/ (response_head): only the last one's names used to be removed.
        let joined: Option<Vec<u8>> = (connection_fields > 1).then(|| {
            let values: Vec<&[u8]> = parsed
                .headers
                .iter()
                .filter(|h| FieldKind::of(h.name.as_bytes()) == FieldKind::Connection)
                .map(|h| h.value)
                .collect();
            values.join(&b","[..])
        });
        // Names the `Connection` fields list (usually none: `keep-alive` or `close`).
        let listed = match &joined {
            Some(all) => Some(all.as_slice()),
            None => connection.clone().map(|r| &buf[r]),
        }
        .filter(|c| hdr::connection_listed(c).next().is_some());
        if let Some(l) = lines {
            copier.flush(buf, l);
            if let Some(c) = listed {
                l.clear();
                for h in parsed.headers.iter() {
                    let kind = FieldKind::of(h.name.as_bytes());
                    let named = hdr::connection_listed(c).any(|t| t.eq_ignore_ascii_case(h.name.as_bytes()));
                    if !kind.is_hop_by_hop() && kind != FieldKind::RequestId && !named {
                        crate::http::wire::put_field(l, h.name.as_bytes(), h.value);
                    }
                }
            }
            buf.advance(len);
            // Room for what the proxy adds (the request ID).
            *resp.headers_mut() = hdr::maps::take(2);
            let kept = Verbatim { length: facts.length, date: facts.date };
            return Ok(Some((resp, framing, keep_alive, Some(kept))));
        }
        let listed = listed.is_some();
        let head = buf.split_to(len).freeze();
        let mut map = hdr::maps::take(fields.len() + 4);
        for (name, range) in fields.drain(..) {
            map.append(name, HeaderValue::from_maybe_shared(head.slice(range)).map_err(io::Error::other)?);
        }
        if let (true, Some(range)) = (listed, connection) {
            hdr::remove_connection_listed(&mut map, joined.as_deref().unwrap_or(&head[range]));
        }
        *resp.headers_mut() = map;
        return Ok(Some((resp, framing, keep_alive, None)));
    }
}

/// Copies the fields that pass into `Verbatim` lines as they stand in the head: a run of
/// fields whose lines follow each other exactly (`name: value\r\n`, no trailing white
/// space) goes out in one copy instead of four per field.
#[derive(Default)]
pub(super) struct LineCopier {
    /// The run so far: from its first field's name to its last field's value.
    run: Option<std::ops::Range<usize>>,
}

impl LineCopier {
    /// Adds the field whose name starts at `at` and whose value ends at `end` (offsets
    /// into `head`).
    fn field(&mut self, head: &[u8], lines: &mut Vec<u8>, at: usize, end: usize) {
        match &mut self.run {
            Some(run) if run.end + 2 == at && head[run.end..at] == *b"\r\n" => run.end = end,
            _ => {
                self.flush(head, lines);
                self.run = Some(at..end);
            }
        }
    }

    fn flush(&mut self, head: &[u8], lines: &mut Vec<u8>) {
        if let Some(run) = self.run.take() {
            lines.extend_from_slice(&head[run]);
            lines.extend_from_slice(b"\r\n");
        }
    }
}

/// What a response head says about its framing and the connection.
#[derive(Default)]
pub(super) struct Facts {
    length: Option<u64>,
    /// `Transfer-Encoding` fields seen, and whether each said exactly `chunked`.
    te_fields: u8,
    te_chunked: bool,
    close: bool,
    keep_alive: bool,
    date: bool,
}

impl Facts {
    fn see(&mut self, kind: FieldKind, value: &[u8]) -> io::Result<()> {
        if kind == FieldKind::ContentLength {
            // 1*DIGIT (RFC 9110 §8.6): `u64::from_str` would also take a `+`, and `str::trim`
            // Unicode spaces, so a length the client cannot read the same way would pass on.
            let digits = value.trim_ascii();
            let n = std::str::from_utf8(digits)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| io::Error::other("invalid Content-Length from backend"))?;
            if self.length.is_some_and(|l| l != n) {
                return Err(io::Error::other("several Content-Length headers from backend"));
            }
            self.length = Some(n);
        } else if kind == FieldKind::TransferEncoding {
            self.te_fields = self.te_fields.saturating_add(1);
            self.te_chunked = value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if kind == FieldKind::Date {
            self.date = true;
        } else if kind == FieldKind::Connection {
            for t in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }

    /// Why the framing fields cannot be trusted, if they cannot. A `Transfer-Encoding` is
    /// accepted only as a single `chunked` on HTTP/1.1 without a `Content-Length`: the
    /// proxy decodes chunked and frames the body anew, so any other coding would reach the
    /// client undeclared, and a length beside it is how responses get split (RFC 9112 §6.3
    /// calls it an error).
    fn conflict(&self, version: Version) -> Option<&'static str> {
        if self.te_fields == 0 {
            None
        } else if self.length.is_some() {
            Some("both Content-Length and Transfer-Encoding from backend")
        } else if self.te_fields > 1 || !self.te_chunked {
            Some("Transfer-Encoding from backend other than chunked")
        } else if version != Version::HTTP_11 {
            Some("Transfer-Encoding in an HTTP/1.0 response from backend")
        } else {
            None
        }
    }

    /// How the body is framed, for heads without a `conflict` (or without a body).
    fn framing(&self, status: StatusCode, head_only: bool) -> Framing {
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Framing::Empty;
        }
        match (self.te_fields > 0, self.length) {
            (true, _) => Framing::Chunked(Chunk::Size),
            (false, None) => Framing::UntilClose,
            (false, Some(0)) => Framing::Empty,
            (false, Some(n)) => Framing::Length(n),
        }
    }

    fn keeps_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep_alive)
    }
}
