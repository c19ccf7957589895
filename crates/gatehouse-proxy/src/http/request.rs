//! Early checks on a request head, before and just after routing: the routing host, framing
//! (`Transfer-Encoding`), Host fields, unusual request targets, the connection's
//! certificate, and the route's size limits. Each failure is a client-side `ProxyError`.
//! Looks at the head only; must not read the body or touch a backend.

use std::borrow::Cow;

use gatehouse_config::RouteOptions;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::Body as _;

use crate::body::{Inbound, Outgoing};
use crate::conn::ConnInfo;
use crate::error::ProxyError;
use crate::pipeline::Ctx;

/// The checks every request passes before anything else looks at it.
pub(crate) fn check(cx: &Ctx<'_>, req: &Request<Inbound>) -> Result<(), ProxyError> {
    let h = req.headers();
    if req.version() <= Version::HTTP_11 && h.contains_key(header::TRANSFER_ENCODING) {
        check_transfer_encoding(req, cx.conn)?;
    }
    if req.version() == Version::HTTP_11 && cx.host_header.is_none() && req.uri().authority().is_none() {
        return Err(ProxyError::BadRequest("missing Host header"));
    }
    if !cx.host_fields_ok {
        return Err(ProxyError::BadRequest("several Host fields or an invalid host"));
    }
    // RFC 9110 §15.5.20: a request for a host that this connection's certificate does not
    // serve belongs on another connection.
    if let Some(t) = &cx.conn.tls
        && let Some(sni) = &t.sni
        && sni != cx.host
        && !t.resolver.same_certificate(cx.host, sni)
    {
        return Err(ProxyError::Misdirected);
    }
    Ok(())
}

/// Authority form outside CONNECT, or asterisk form (see `answer_unusual_target`).
#[inline]
pub(crate) fn unusual_target(req: &Request<Inbound>) -> bool {
    let uri = req.uri();
    // (The raw target's first byte: `uri.path()` would search it for a `?`.)
    (uri.scheme().is_none() && uri.authority().is_some() && req.method() != http::Method::CONNECT)
        || uri.path_and_query().is_some_and(|pq| pq.as_str().starts_with('*'))
}

/// The routing host: from the URI authority (HTTP/2, HTTP/3, absolute-form) or else the
/// Host field; lower-case, without port, brackets or a trailing dot. `None` when the value
/// is not a host with an optional port (see `host_part`), so that the proxy can never route
/// on one host while the backend reads another.
pub(crate) fn host<'a>(uri: &'a Uri, host_header: Option<&'a HeaderValue>) -> Option<Cow<'a, str>> {
    let value = match uri.authority() {
        Some(a) => a.as_str(),
        None => match host_header {
            Some(h) => h.to_str().ok()?,
            None => "",
        },
    };
    let host = host_part(value)?.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// The host of a Host value or URI authority, checked against RFC 3986 §3.2.2-3 (as RFC
/// 9110 §7.2 asks): a name or IPv4 address, or an IP literal in brackets, then at most a
/// `:` and digits. No user information (`evil.test@app.test`), no second colon, nothing
/// after a bracket but the port. An empty value is an empty host.
pub(crate) fn host_part(v: &str) -> Option<&str> {
    let (host, rest) = match v.strip_prefix('[') {
        Some(literal) => {
            let (inside, rest) = literal.split_once(']')?;
            let ip_chars = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
            (!inside.is_empty() && inside.bytes().all(ip_chars)).then_some((inside, rest))?
        }
        None => {
            let (host, rest) = v.split_at(v.find(':').unwrap_or(v.len()));
            let name_chars = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            host.bytes().all(name_chars).then_some((host, rest))?
        }
    };
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Some(host),
        Some(port) if port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) => Some(host),
        _ => None,
    }
}

/// The framing checks for a request with `Transfer-Encoding` (rare, and kept out of line).
#[cold]
fn check_transfer_encoding(req: &Request<Inbound>, conn: &ConnInfo) -> Result<(), ProxyError> {
    let h = req.headers();
    // RFC 9112 §6.1: a message with both is a smuggling attempt until proven otherwise.
    // (hyper drops Content-Length when Transfer-Encoding is present; the raw-byte scanner
    // saw both then.)
    if h.contains_key(header::CONTENT_LENGTH) || (req.version() == Version::HTTP_11 && conn.framing.take_conflict()) {
        return Err(ProxyError::BadRequest("both Content-Length and Transfer-Encoding"));
    }
    // hyper frames `gzip, chunked` as chunked and would let the gzip coding vanish.
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter().flat_map(|v| v.as_bytes().split(|b| *b == b','));
    if !codings.all(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked")) {
        return Err(ProxyError::NotImplemented("a transfer coding other than chunked"));
    }
    Ok(())
}

/// Authority form (`GET host:port`) belongs to CONNECT alone (RFC 9112 §3.2.3), which
/// routing answers with 405. Asterisk form is a question about the server as a whole (RFC
/// 9110 §9.3.7), answered here: no backend has a resource called `*`.
#[cold]
pub(crate) fn answer_unusual_target(req: &Request<Inbound>) -> Result<Response<Outgoing>, ProxyError> {
    let method = req.method();
    if req.uri().path() != "*" {
        return Err(ProxyError::BadRequest("authority-form target on a method other than CONNECT"));
    }
    if method != http::Method::OPTIONS {
        return Err(ProxyError::BadRequest("asterisk-form target on a method other than OPTIONS"));
    }
    let mut r = Response::new(Outgoing::Empty);
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(r)
}

pub(crate) fn check_limits(req: &Request<Inbound>, opts: &RouteOptions) -> Result<(), ProxyError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > opts.max_uri_length {
        return Err(ProxyError::UriTooLong);
    }
    let h = req.headers();
    if h.len() > opts.max_request_header_count {
        return Err(ProxyError::HeadersTooLarge);
    }
    let size: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if size as u64 > opts.max_request_headers {
        return Err(ProxyError::HeadersTooLarge);
    }
    // A request whose body is known to be empty has nothing to measure (and its
    // Content-Length is not even looked up).
    if let Some(max) = opts.max_request_body
        && !req.body().is_end_stream()
        && let Some(len) = super::header::content_length(h)
        // Also answers `Expect: 100-continue` before the client sends the body.
        && len > max
    {
        return Err(ProxyError::BodyTooLarge(max));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(authority: Option<&str>, host: Option<&'static str>) -> Option<String> {
        let uri: Uri = match authority {
            Some(a) => format!("http://{a}/").parse().expect("uri"),
            None => Uri::from_static("/"),
        };
        let field = host.map(HeaderValue::from_static);
        super::host(&uri, field.as_ref()).map(Cow::into_owned)
    }

    #[test]
    fn hosts_route_by_name_only_and_odd_shapes_are_refused() {
        for (host, want) in [
            ("App.Test", "app.test"),
            ("app.test.:8443", "app.test"),
            ("app.test:", "app.test"),
            ("[::1]:8080", "::1"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("192.0.2.7:80", "192.0.2.7"),
            ("", ""),
        ] {
            assert_eq!(routed(None, Some(host)).as_deref(), Some(want), "{host:?}");
        }
        for bad in
            ["a.test:b.test", "a.test:80:81", "[a.test", "a.test]", "[::1]x", "[]", "a b", "a/b", "a@b", "a:123456"]
        {
            assert_eq!(routed(None, Some(bad)), None, "{bad:?}");
        }
        // The URI's authority wins over the field, user information included.
        assert_eq!(routed(Some("shop.test:8080"), Some("other.test")).as_deref(), Some("shop.test"));
        assert_eq!(routed(Some("evil.test@shop.test"), Some("shop.test")), None);
        // No host anywhere (HTTP/1.0): an empty routing host.
        assert_eq!(routed(None, None).as_deref(), Some(""));
    }
}
