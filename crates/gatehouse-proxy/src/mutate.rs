//! Seeded random damage to valid protocol messages, for the parsers' robustness tests:
//! whatever bytes arrive, a parser answers with a value or an error and never panics
//! (release builds abort on panic, so one panic would take the whole proxy down).

/// Pieces that steer a parser into its rarer paths: framing fields, separators, huge
/// numbers, bytes outside ASCII.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b" ",
    b"\t",
    b",",
    b";",
    b"0",
    b"+1",
    b"-1",
    b"ffffffffffffffffffff",
    b"99999999999999999999999",
    b"\x00",
    b"\xff",
    b"\x80",
    b"Content-Length: ",
    b"Content-Length: 0\r\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: ",
    b"Connection: close\r\n",
    b"Connection: ",
    b"keep-alive",
    b"close",
    b"chunked",
    b"Upgrade: x\r\n",
    b"Expect: 100-continue\r\n",
    b"X-Request-ID: a\r\n",
    b"HTTP/1.0",
    b"HTTP/1.1 100 Continue\r\n\r\n",
];

/// `count` damaged copies of the messages in `valid` (round robin), the same for one
/// `seed`. Each copy gets one to four edits: a byte replaced, a token inserted, a range
/// deleted or repeated, or the tail cut.
pub fn damaged(seed: u64, valid: &[&[u8]], count: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|i| {
            let mut m = valid[i % valid.len()].to_vec();
            for _ in 0..rng.usize(1..=4) {
                edit(&mut rng, &mut m);
            }
            m
        })
        .collect()
}

fn edit(rng: &mut fastrand::Rng, m: &mut Vec<u8>) {
    let at = rng.usize(..=m.len());
    match rng.u8(..5) {
        0 if at < m.len() => {
            m[at] = if rng.bool() { rng.u8(..) } else { TOKENS[rng.usize(..TOKENS.len())][0] };
        }
        1 | 0 => {
            let t = TOKENS[rng.usize(..TOKENS.len())];
            m.splice(at..at, t.iter().copied());
        }
        2 => {
            let end = (at + rng.usize(1..16)).min(m.len());
            m.drain(at..end);
        }
        3 => {
            let end = (at + rng.usize(1..32)).min(m.len());
            let piece = m[at..end].to_vec();
            m.splice(at..at, piece);
        }
        _ => m.truncate(at),
    }
}
