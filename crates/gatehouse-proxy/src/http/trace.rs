//! W3C Trace Context (`traceparent`, `tracestate`). Gatehouse takes part in the trace: a
//! request keeps the client's trace id (or gets a new one when it sent none or a malformed
//! one), and the backend sees Gatehouse's own span as its parent. The ids go into the
//! access record, and to an OTLP collector when one is configured.

use http::{HeaderMap, HeaderName, HeaderValue};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// One request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: [u8; 16],
    /// The client's span (the parent of Gatehouse's), when it sent a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    /// Gatehouse's span for this request.
    pub span_id: [u8; 8],
    pub flags: u8,
}

fn hex_bytes<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            // Upper case is invalid in version 00.
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    loop {
        for b in out.iter_mut() {
            *b = fastrand::u8(..);
        }
        // All-zero ids are invalid.
        if out.iter().any(|b| *b != 0) {
            return out;
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

impl Trace {
    /// The client's trace continued, or a new one (sampled) when it sent no valid
    /// `traceparent` (exactly one field, version 00 or a later version's first four parts,
    /// non-zero ids, lower-case hex).
    pub fn continue_from(h: &HeaderMap) -> Trace {
        let mut fields = h.get_all(&TRACEPARENT).iter();
        let parsed = match (fields.next(), fields.next()) {
            (Some(v), None) => parse(v.as_bytes()),
            _ => None,
        };
        match parsed {
            Some((trace_id, parent, flags)) => Trace { trace_id, parent_id: Some(parent), span_id: random(), flags },
            None => Trace { trace_id: random(), parent_id: None, span_id: random(), flags: 1 },
        }
    }

    /// The client's trace was continued (its `tracestate`, if any, goes on with it).
    pub fn continued(&self) -> bool {
        self.parent_id.is_some()
    }

    /// `traceparent` for the backend: this trace, Gatehouse's span as the parent.
    pub fn header(&self) -> HeaderValue {
        let v = format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags);
        // Only hex digits and dashes.
        HeaderValue::from_str(&v)
            .unwrap_or(HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-00"))
    }
}

/// `version-traceid-parentid-flags` → (trace id, parent id, flags).
fn parse(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if v.len() < 55 {
        return None;
    }
    let version = hex_bytes::<1>(&v[..2])?[0];
    // Version ff is invalid; version 00 is exactly 55 bytes; later versions may append
    // fields after a dash.
    if version == 0xff || (version == 0 && v.len() != 55) || (version != 0 && v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = hex_bytes::<16>(&v[3..35])?;
    let parent = hex_bytes::<8>(&v[36..52])?;
    let flags = hex_bytes::<1>(&v[53..55])?[0];
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&TRACEPARENT, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let t = Trace::continue_from(&with(&["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]));
        assert_eq!(hex(&t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.map(|p| hex(&p)).as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(hex(&t.span_id), "00f067aa0ba902b7");
        let out = t.header();
        let out = out.to_str().expect("ascii");
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && out.ends_with("-01"), "{out}");
        // A later version's extra fields are ignored.
        let t = Trace::continue_from(&with(&["01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra"]));
        assert!(t.continued());
        assert_eq!(t.flags, 0);
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
        for bad in [
            &[][..],
            &["garbage"],
            &["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
            &["00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
            &["00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"],
            &["ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"],
            &[
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ],
        ] {
            let t = Trace::continue_from(&with(bad));
            assert!(!t.continued(), "{bad:?} was continued");
            assert_ne!(t.trace_id, [0; 16]);
            assert_eq!(t.flags, 1);
        }
    }
}
