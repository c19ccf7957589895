//! A route's CSRF protection (`options.csrf`), for applications that authenticate by cookie.
//!
//! A state-changing request (any method but GET, HEAD, OPTIONS and TRACE) must show that it
//! comes from one of the site's own pages: its `Origin` (or, without one, its `Referer`)
//! must be the request's own origin — the scheme the client used (the connection's, or a
//! trusted proxy's `X-Forwarded-Proto`), the host and port it addressed — or one of
//! `origins`. `Origin: null` and a request with neither field are refused. With `token`,
//! the named header must also repeat the named cookie (the double-submit check), compared
//! in constant time. Paths under `exempt` are not checked. Refusals are 403 with the
//! request id.
//!
//! Must not change the request, and must not be the only defence of an API that other
//! servers call (they send no Origin): such paths belong in `exempt`, behind `auth`.

use std::sync::Arc;

use gatehouse_config::{Csrf as Config, CsrfToken, Origin};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request};

use super::{Decision, RequestFilter, Verdict, shown};
use crate::body::Inbound;
use crate::pipeline::Ctx;

pub struct Csrf {
    config: Arc<Config>,
}

/// Methods that must not change anything (RFC 9110 §9.2.1), so a forged one does no harm.
fn is_safe(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD || *m == Method::OPTIONS || *m == Method::TRACE
}

impl Csrf {
    pub fn new(config: Arc<Config>) -> Self {
        Csrf { config }
    }

    /// Whether a request is checked at all: cheap, so the own origin is only worked out for
    /// the requests that need it.
    pub fn checks(&self, method: &Method, path: &str) -> bool {
        !is_safe(method) && !self.config.exempt.iter().any(|p| crate::route::under(path, p))
    }

    /// The decision for a request whose own origin is `own` (`None` when the request names
    /// no usable host: then only `origins` are trusted).
    pub fn decide(&self, method: &Method, headers: &HeaderMap, own: Option<&Origin>, path: &str) -> Decision {
        if !self.checks(method, path) {
            return Decision::Pass;
        }
        if let Some(reason) = self.origin_problem(headers, own) {
            return Decision::Refuse { rule: "origin", reason };
        }
        if let Some(t) = &self.config.token
            && let Some(reason) = token_problem(t, headers)
        {
            return Decision::Refuse { rule: "token", reason };
        }
        Decision::Pass
    }

    fn origin_problem(&self, headers: &HeaderMap, own: Option<&Origin>) -> Option<String> {
        // Origin when sent: it is what browsers send for this very purpose, and a Referer
        // may be cut or hidden by the page's referrer policy.
        let (what, value) = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
            (Some(o), _) => ("Origin", o),
            (None, Some(r)) => ("Referer", r),
            (None, None) => {
                let reason = "neither Origin nor Referer was sent (a state-changing request must show its page)";
                return Some(reason.into());
            }
        };
        let Ok(text) = value.to_str().map(str::trim) else {
            return Some(format!("unreadable {what}"));
        };
        if what == "Origin" && text.eq_ignore_ascii_case("null") {
            // Sandboxed frames, `data:` pages and some redirects: any site can produce one.
            return Some("Origin: null (an opaque origin) is not trusted".into());
        }
        let parsed = if what == "Origin" { Origin::parse(text) } else { Origin::of_url(text) };
        let Some(from) = parsed else {
            return Some(format!("{what} {:?} is not a URL with an origin", shown(text)));
        };
        if own == Some(&from) || self.config.origins.iter().any(|p| p.matches(&from)) {
            return None;
        }
        let own = own.map_or_else(|| "unknown".to_string(), Origin::to_string);
        Some(format!("{what} {from} is neither this site's origin ({own}) nor a trusted one"))
    }
}

/// Why the double-submit check fails, if it does.
fn token_problem(t: &CsrfToken, headers: &HeaderMap) -> Option<String> {
    let sent = headers.get(&t.header).map(HeaderValue::as_bytes).filter(|v| !v.is_empty());
    let kept = cookie(headers, &t.cookie).filter(|v| !v.is_empty());
    match (sent, kept) {
        (None, _) => Some(format!("no {} header", t.header)),
        (_, None) => Some(format!("no {} cookie", t.cookie)),
        (Some(a), Some(b)) if same(a, b) => None,
        _ => Some(format!("the {} header does not match the {} cookie", t.header, t.cookie)),
    }
}

/// The first cookie called `name`, across every `Cookie` field (HTTP/2 sends one per
/// cookie).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    for v in headers.get_all(header::COOKIE) {
        for pair in v.as_bytes().split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else { continue };
            let (k, rest) = pair.split_at(eq);
            if k.trim_ascii() == name.as_bytes() {
                return rest.get(1..).map(<[u8]>::trim_ascii);
            }
        }
    }
    None
}

/// Equal bytes, taking the same time wherever they differ: the token is a secret, and a
/// comparison that stops early tells an attacker how much of a guess was right. (The
/// length may show; tokens are fixed-length.)
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The request's own origin: the scheme the client used and the authority it addressed
/// (the request target's, else `Host`, else the routing host), port as sent. The scheme
/// is the connection's, or, behind a trusted proxy that terminates TLS, its
/// `X-Forwarded-Proto` (the same trust `http::header` gives that field).
fn own_origin(cx: &Ctx<'_>, headers: &HeaderMap) -> Option<Origin> {
    let forwarded_https = || {
        cx.peer_trusted
            && headers
                .get(&crate::http::header::X_FORWARDED_PROTO)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    };
    let scheme = if cx.conn.tls.is_some() || forwarded_https() { "https" } else { "http" };
    let authority = match cx.uri.authority() {
        Some(a) => a.as_str(),
        None => cx.host_header.and_then(|h| h.to_str().ok()).unwrap_or(cx.host),
    };
    Origin::parse(&format!("{scheme}://{authority}"))
}

impl RequestFilter for Csrf {
    fn name(&self) -> &'static str {
        "csrf"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        if !self.checks(req.method(), path) {
            return Verdict::Continue;
        }
        let own = own_origin(cx, req.headers());
        let message = "The request does not come from this site's pages (CSRF protection).";
        self.decide(req.method(), req.headers(), own.as_ref(), path).verdict(cx, req.headers(), "csrf_refused", message)
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_config::OriginPattern;
    use http::HeaderName;

    use super::*;

    fn csrf(token: bool, exempt: &[&str]) -> Csrf {
        Csrf::new(Arc::new(Config {
            origins: vec![OriginPattern::parse("https://app.example.com").expect("origin")],
            token: token
                .then(|| CsrfToken { cookie: "csrf_token".into(), header: HeaderName::from_static("x-csrf-token") }),
            exempt: exempt.iter().map(|s| s.to_string()).collect(),
        }))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn rule(c: &Csrf, m: Method, pairs: &[(&'static str, &'static str)], path: &str) -> Option<&'static str> {
        let own = Origin::parse("https://shop.example.com").expect("own");
        match c.decide(&m, &headers(pairs), Some(&own), path) {
            Decision::Pass => None,
            Decision::Refuse { rule, .. } => Some(rule),
        }
    }

    #[test]
    fn unsafe_methods_need_a_trusted_origin() {
        let c = csrf(false, &["/api/webhooks/"]);
        assert_eq!(rule(&c, Method::GET, &[], "/"), None, "safe methods are not checked");
        assert_eq!(rule(&c, Method::POST, &[("origin", "https://shop.example.com")], "/"), None);
        assert_eq!(rule(&c, Method::POST, &[("origin", "https://shop.example.com:443")], "/"), None);
        assert_eq!(rule(&c, Method::DELETE, &[("origin", "https://app.example.com")], "/"), None);
        assert_eq!(rule(&c, Method::POST, &[("origin", "https://evil.test")], "/"), Some("origin"));
        assert_eq!(rule(&c, Method::POST, &[("origin", "http://shop.example.com")], "/"), Some("origin"));
        assert_eq!(rule(&c, Method::POST, &[("origin", "https://shop.example.com:8443")], "/"), Some("origin"));
        assert_eq!(rule(&c, Method::POST, &[("origin", "null")], "/"), Some("origin"));
        assert_eq!(rule(&c, Method::POST, &[], "/"), Some("origin"), "neither header");
        // Without Origin, the Referer's origin counts; with Origin, only Origin does.
        assert_eq!(rule(&c, Method::PUT, &[("referer", "https://shop.example.com/cart?x=1")], "/"), None);
        assert_eq!(rule(&c, Method::PUT, &[("referer", "https://evil.test/shop.example.com")], "/"), Some("origin"));
        let both = [("origin", "https://evil.test"), ("referer", "https://shop.example.com/")];
        assert_eq!(rule(&c, Method::POST, &both, "/"), Some("origin"));
        assert_eq!(rule(&c, Method::POST, &[], "/api/webhooks/stripe"), None, "exempt");
        assert_eq!(rule(&c, Method::POST, &[], "/api/webhook"), Some("origin"));
    }

    #[test]
    fn the_token_header_must_repeat_the_cookie() {
        let c = csrf(true, &[]);
        let from = ("origin", "https://shop.example.com");
        let ok = [from, ("cookie", "a=1; csrf_token=s3cr3t; b=2"), ("x-csrf-token", "s3cr3t")];
        assert_eq!(rule(&c, Method::POST, &ok, "/"), None);
        let split = [from, ("cookie", "a=1"), ("cookie", "csrf_token=s3cr3t"), ("x-csrf-token", "s3cr3t")];
        assert_eq!(rule(&c, Method::POST, &split, "/"), None, "cookies over several fields");
        let wrong = [from, ("cookie", "csrf_token=s3cr3t"), ("x-csrf-token", "s3cr3u")];
        assert_eq!(rule(&c, Method::POST, &wrong, "/"), Some("token"));
        let no_header = [from, ("cookie", "csrf_token=s3cr3t")];
        assert_eq!(rule(&c, Method::POST, &no_header, "/"), Some("token"));
        let empty = [from, ("cookie", "csrf_token="), ("x-csrf-token", "")];
        assert_eq!(rule(&c, Method::POST, &empty, "/"), Some("token"));
        let other_cookie = [from, ("cookie", "xcsrf_token=s3cr3t"), ("x-csrf-token", "s3cr3t")];
        assert_eq!(rule(&c, Method::POST, &other_cookie, "/"), Some("token"));
        // The origin check comes first.
        let forged = [("origin", "https://evil.test"), ("cookie", "csrf_token=t"), ("x-csrf-token", "t")];
        assert_eq!(rule(&c, Method::POST, &forged, "/"), Some("origin"));
    }

    #[test]
    fn comparison_and_cookie_parsing() {
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"abcd"));
        let h = headers(&[("cookie", " a = 1 ;b=2;; c")]);
        assert_eq!(cookie(&h, "a"), Some(&b"1"[..]));
        assert_eq!(cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&h, "c"), None);
    }
}
