//! Request rows on their way to the writer thread. A worker encodes a row into a `Batch`
//! (length-prefixed fields in one growing buffer), so handing a request to the database
//! costs no allocation and nothing freed on another thread; the writer reads the rows back
//! as borrowed views.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One proxied request as it is stored, borrowing its strings. The client address arrives
/// whole and is masked (and hashed with the database's key) by the writer, off the request
/// path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow<'a> {
    /// Microseconds since the Unix epoch, when the request head was complete.
    pub time_us: i64,
    pub site: Option<&'a str>,
    pub route: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub method: Option<&'a str>,
    pub host: &'a str,
    /// Path and query as the client sent them; secrets are redacted before storing.
    pub path: &'a str,
    pub status: u16,
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client: IpAddr,
    /// How `client` is stored.
    pub mask: crate::MaskIp,
    pub user_agent: Option<&'a str>,
    /// ISO country code, when GeoIP knows the client.
    pub country: Option<&'a str>,
    pub request_id: Option<&'a str>,
    /// W3C trace id and Gatehouse's span id, when the request had a trace.
    pub trace: Option<([u8; 16], [u8; 8])>,
    pub retries: u32,
    pub error: Option<RowError<'a>>,
}

/// Why a request failed: `side` is `client`, `backend` or `gatehouse`, `kind` a short
/// stable name, `reason` the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowError<'a> {
    pub side: &'a str,
    pub kind: &'a str,
    pub reason: &'a str,
}

/// Encoded rows, appended by a worker and read back by the writer.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    rows: usize,
}

/// Length marking an absent string.
const NONE: u32 = u32::MAX;
/// Longest string kept whole; longer ones are cut at a character boundary.
const MAX_FIELD: usize = 8 * 1024;
/// Longest user agent and host kept: clients choose these freely, and each distinct one
/// becomes a stored string (real ones are well under this).
const MAX_NAME: usize = 512;

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes the encoded rows take.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Empties the batch, keeping its buffer for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.rows = 0;
    }

    pub fn push(&mut self, r: &RequestRow<'_>) {
        let b = &mut self.buf;
        b.extend_from_slice(&r.time_us.to_le_bytes());
        b.extend_from_slice(&r.status.to_le_bytes());
        b.extend_from_slice(&r.retries.to_le_bytes());
        b.extend_from_slice(&r.duration_us.to_le_bytes());
        b.extend_from_slice(&r.bytes_in.to_le_bytes());
        b.extend_from_slice(&r.bytes_out.to_le_bytes());
        b.push(match r.mask {
            crate::MaskIp::LastOctet => 0,
            crate::MaskIp::Off => 1,
            crate::MaskIp::Hash => 2,
        });
        match r.trace {
            Some((t, s)) => {
                b.push(1);
                b.extend_from_slice(&t);
                b.extend_from_slice(&s);
            }
            None => b.push(0),
        }
        match r.client {
            IpAddr::V4(v4) => {
                b.push(4);
                b.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                b.push(6);
                b.extend_from_slice(&v6.octets());
            }
        }
        let (side, kind, reason) = match &r.error {
            Some(e) => (Some(e.side), Some(e.kind), Some(e.reason)),
            None => (None, None, None),
        };
        for (s, max) in [
            (r.site, MAX_FIELD),
            (r.route, MAX_FIELD),
            (r.backend, MAX_FIELD),
            (r.method, MAX_NAME),
            (Some(r.host), MAX_NAME),
            (Some(r.path), MAX_FIELD),
            (r.user_agent, MAX_NAME),
            (r.country, MAX_NAME),
            (r.request_id, MAX_NAME),
            (side, MAX_NAME),
            (kind, MAX_NAME),
            (reason, MAX_FIELD),
        ] {
            put_str(b, s, max);
        }
        self.rows += 1;
    }

    /// The rows, in the order they were pushed.
    pub fn iter(&self) -> Rows<'_> {
        Rows { rest: &self.buf }
    }
}

fn put_str(b: &mut Vec<u8>, s: Option<&str>, max: usize) {
    match s {
        None => b.extend_from_slice(&NONE.to_le_bytes()),
        Some(s) => {
            let s = cut(s, max);
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads rows back from a `Batch`.
pub struct Rows<'a> {
    rest: &'a [u8],
}

impl<'a> Rows<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn string(&mut self) -> Option<Option<&'a str>> {
        let len = u32::from_le_bytes(self.array()?);
        if len == NONE {
            return Some(None);
        }
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes).ok().map(Some)
    }

    fn row(&mut self) -> Option<RequestRow<'a>> {
        let time_us = i64::from_le_bytes(self.array()?);
        let status = u16::from_le_bytes(self.array()?);
        let retries = u32::from_le_bytes(self.array()?);
        let duration_us = u64::from_le_bytes(self.array()?);
        let bytes_in = u64::from_le_bytes(self.array()?);
        let bytes_out = u64::from_le_bytes(self.array()?);
        let mask = match self.array::<1>()? {
            [0] => crate::MaskIp::LastOctet,
            [1] => crate::MaskIp::Off,
            [2] => crate::MaskIp::Hash,
            _ => return None,
        };
        let trace = match self.array::<1>()? {
            [1] => Some((self.array::<16>()?, self.array::<8>()?)),
            [0] => None,
            _ => return None,
        };
        let client = match self.array::<1>()? {
            [4] => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            [6] => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return None,
        };
        let site = self.string()?;
        let route = self.string()?;
        let backend = self.string()?;
        let method = self.string()?;
        let host = self.string()??;
        let path = self.string()?.unwrap_or_default();
        let user_agent = self.string()?;
        let country = self.string()?;
        let request_id = self.string()?;
        let (side, kind, reason) = (self.string()?, self.string()?, self.string()?);
        let error = match (side, kind, reason) {
            (Some(side), Some(kind), Some(reason)) => Some(RowError { side, kind, reason }),
            _ => None,
        };
        Some(RequestRow {
            time_us,
            site,
            route,
            backend,
            method,
            host,
            path,
            status,
            duration_us,
            bytes_in,
            bytes_out,
            client,
            mask,
            user_agent,
            country,
            request_id,
            trace,
            retries,
            error,
        })
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = RequestRow<'a>;

    fn next(&mut self) -> Option<RequestRow<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let row = self.row();
        if row.is_none() {
            // Only this module writes batches, so this cannot happen; stop rather than
            // read garbage.
            self.rest = &[];
        }
        row
    }
}
