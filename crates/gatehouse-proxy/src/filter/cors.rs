//! A route's CORS policy (`options.cors`).
//!
//! Preflights (OPTIONS with `Origin` and `Access-Control-Request-Method`) are answered
//! here, 204 or 403, and never reach the backend. Other requests always go on; the response
//! filter gives the answer to an allowed origin its `Access-Control-Allow-Origin` (and
//! `-Allow-Credentials`, `-Expose-Headers`) and adds `Origin` to `Vary`. The route's policy
//! is the proxy's: a backend's own CORS fields are replaced, or removed for an origin the
//! policy does not allow, so the two can never disagree.
//!
//! Must not refuse a request that is not a preflight: CORS is enforced by the browser not
//! letting the page read the answer, and a non-browser client is not bound by it at all
//! (cross-site writes are `csrf`'s business). The response filter reads the request's
//! `Origin` from `Ctx::origin`, since it does not see the request.

use std::sync::Arc;

use gatehouse_config::{Cors as Config, Origin};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use super::{RequestFilter, ResponseFilter, Verdict, shown};
use crate::body::{Inbound, Outgoing};
use crate::pipeline::Ctx;

/// Request headers a page may send cross-origin without the server's leave (the Fetch
/// standard's CORS-safelisted names). A browser still lists them in a preflight when their
/// value is not a safelisted one (`Content-Type: application/json`); they are allowed
/// whatever `headers` says.
const SAFELISTED: [&str; 5] = ["accept", "accept-language", "content-language", "content-type", "range"];

pub struct Cors {
    config: Arc<Config>,
    /// `Access-Control-Allow-Methods`, `-Expose-Headers` and `-Max-Age`, formatted once.
    methods: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    /// Any origin without credentials: the answer is `*` for every request, so it does
    /// not vary by `Origin`.
    star: bool,
}

/// What a request is, as far as preflights go.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    /// Not a preflight: it goes on.
    No,
    /// An allowed preflight, answered 204 with these fields.
    Allow(HeaderMap),
    /// A refused one, with the reason for the request log.
    Refuse(String),
}

impl Cors {
    pub fn new(config: Arc<Config>) -> Self {
        let list = |names: Vec<&str>| HeaderValue::from_str(&names.join(", ")).ok();
        let methods = list(config.methods.iter().map(Method::as_str).collect())
            .unwrap_or_else(|| HeaderValue::from_static("GET, HEAD, POST"));
        let expose = if config.expose_headers.is_empty() {
            None
        } else {
            list(config.expose_headers.iter().map(HeaderName::as_str).collect())
        };
        let max_age = config.max_age.map(|d| HeaderValue::from(d.as_secs()));
        let star = config.any_origin() && !config.credentials;
        Cors { config, methods, expose, max_age, star }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, when the policy
    /// lets its page read the answer: `*`, or the origin as the browser sent it (a browser
    /// compares the two byte for byte).
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.star {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = origin?;
        let parsed = Origin::parse(origin.to_str().ok()?)?;
        self.config.allows(&parsed).then(|| origin.clone())
    }

    fn header_allowed(&self, name: &str) -> bool {
        SAFELISTED.iter().any(|s| s.eq_ignore_ascii_case(name))
            || self.config.headers.iter().any(|h| h.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether a request is a preflight, and if so its answer.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Preflight {
        if *method != Method::OPTIONS {
            return Preflight::No;
        }
        let (Some(origin), Some(wanted)) =
            (headers.get(header::ORIGIN), headers.get(header::ACCESS_CONTROL_REQUEST_METHOD))
        else {
            return Preflight::No;
        };
        let Some(allow_origin) = self.allow_origin(Some(origin)) else {
            return Preflight::Refuse(format!("origin {} is not allowed", shown_value(origin)));
        };
        // Methods are case-sensitive tokens; browsers upper-case the standard ones.
        if !self.config.methods.iter().any(|m| m.as_str().as_bytes() == wanted.as_bytes()) {
            return Preflight::Refuse(format!("method {} is not allowed", shown_value(wanted)));
        }
        let mut granted: Vec<String> = Vec::new();
        for v in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let Ok(text) = v.to_str() else {
                return Preflight::Refuse("unreadable Access-Control-Request-Headers".into());
            };
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !self.header_allowed(name) {
                    return Preflight::Refuse(format!("request header {} is not allowed", shown(name)));
                }
                granted.push(name.to_ascii_lowercase());
            }
        }
        let mut h = HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        // Only what was asked for: the full list would tell any page what the backend takes.
        if !granted.is_empty()
            && let Ok(v) = HeaderValue::from_str(&granted.join(", "))
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(v) = &self.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        if self.config.credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        h.insert(
            header::VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        );
        Preflight::Allow(h)
    }

    /// Sets a response's CORS fields for a request from `origin` (see the module header).
    pub fn decorate(&self, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        match self.allow_origin(origin) {
            Some(v) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                if self.config.credentials {
                    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
                } else {
                    h.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
                }
                match &self.expose {
                    Some(e) => h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()),
                    None => h.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS),
                };
            }
            None => {
                h.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
                h.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
                h.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
            }
        }
        // The answer differs by Origin (with or without the field), so a shared cache must
        // keep one per origin, also for requests that sent none.
        if !self.star {
            vary_on_origin(h);
        }
    }
}

/// Adds `Origin` to `Vary`, in the existing field when there is one, unless it (or `*`) is
/// there already.
fn vary_on_origin(h: &mut HeaderMap) {
    let mut parts: Vec<String> = Vec::new();
    for v in h.get_all(header::VARY) {
        let text = String::from_utf8_lossy(v.as_bytes());
        if text.split(',').map(str::trim).any(|t| t == "*" || t.eq_ignore_ascii_case("origin")) {
            return;
        }
        parts.push(text.trim().to_string());
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return;
    }
    parts.push("Origin".to_string());
    match HeaderValue::from_str(&parts.join(", ")) {
        Ok(v) => {
            h.insert(header::VARY, v);
        }
        Err(_) => {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// A header value for a log line, cut short.
fn shown_value(v: &HeaderValue) -> String {
    shown(&String::from_utf8_lossy(v.as_bytes()))
}

impl RequestFilter for Cors {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, _path: &str) -> Verdict {
        match self.preflight(req.method(), req.headers()) {
            Preflight::No => Verdict::Continue,
            Preflight::Allow(fields) => {
                let mut r = Response::new(Outgoing::Empty);
                *r.status_mut() = StatusCode::NO_CONTENT;
                *r.headers_mut() = fields;
                Verdict::Respond(r)
            }
            Preflight::Refuse(reason) => {
                let message = "The cross-origin request is not allowed by this site's CORS policy.";
                super::forbid(cx, req.headers(), ("cors_refused", "preflight"), reason, message)
            }
        }
    }
}

impl ResponseFilter for Cors {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn response(&self, cx: &Ctx<'_>, resp: &mut Response<Outgoing>) {
        self.decorate(cx.origin, resp.headers_mut());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gatehouse_config::OriginPattern;

    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        let origins = origins.iter().map(|o| OriginPattern::parse(o).expect("origin")).collect();
        Cors::new(Arc::new(Config {
            origins,
            methods: vec![Method::GET, Method::HEAD, Method::POST, Method::PUT],
            headers: vec![HeaderName::from_static("authorization")],
            expose_headers: vec![HeaderName::from_static("x-request-id")],
            credentials,
            max_age: Some(Duration::from_secs(600)),
        }))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
        h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn an_allowed_preflight_is_answered_with_only_what_it_asked() {
        let c = cors(&["https://app.example.com", "https://*.example.com"], true);
        let req = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "Authorization, content-type"),
        ]);
        let Preflight::Allow(h) = c.preflight(&Method::OPTIONS, &req) else { panic!("not allowed") };
        assert_eq!(get(&h, "access-control-allow-origin"), "https://app.example.com");
        assert_eq!(get(&h, "access-control-allow-methods"), "GET, HEAD, POST, PUT");
        assert_eq!(get(&h, "access-control-allow-headers"), "authorization, content-type");
        assert_eq!(get(&h, "access-control-max-age"), "600");
        assert_eq!(get(&h, "access-control-allow-credentials"), "true");
        assert!(get(&h, "vary").starts_with("Origin, Access-Control-Request-Method"));
        let sub = headers(&[("origin", "https://x.example.com"), ("access-control-request-method", "GET")]);
        assert!(matches!(c.preflight(&Method::OPTIONS, &sub), Preflight::Allow(_)));
    }

    #[test]
    fn preflights_outside_the_policy_are_refused() {
        let c = cors(&["https://app.example.com"], false);
        let refused = |h: HeaderMap| matches!(c.preflight(&Method::OPTIONS, &h), Preflight::Refuse(_));
        assert!(refused(headers(&[("origin", "https://evil.test"), ("access-control-request-method", "GET")])));
        assert!(refused(headers(&[("origin", "null"), ("access-control-request-method", "GET")])));
        assert!(refused(headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "DELETE")
        ])));
        assert!(refused(headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-secret"),
        ])));
        // Not preflights: no request method, or not OPTIONS.
        let plain = headers(&[("origin", "https://evil.test")]);
        assert_eq!(c.preflight(&Method::OPTIONS, &plain), Preflight::No);
        let post = headers(&[("origin", "https://evil.test"), ("access-control-request-method", "GET")]);
        assert_eq!(c.preflight(&Method::POST, &post), Preflight::No);
    }

    #[test]
    fn responses_get_fields_only_for_allowed_origins() {
        let c = cors(&["https://app.example.com"], true);
        let mut h = headers(&[("vary", "Accept-Encoding"), ("access-control-allow-origin", "*")]);
        c.decorate(Some(&HeaderValue::from_static("https://app.example.com")), &mut h);
        assert_eq!(get(&h, "access-control-allow-origin"), "https://app.example.com");
        assert_eq!(get(&h, "access-control-allow-credentials"), "true");
        assert_eq!(get(&h, "access-control-expose-headers"), "x-request-id");
        assert_eq!(get(&h, "vary"), "Accept-Encoding, Origin");
        // Twice (a preflight's answer also passes the response filter): no second Origin.
        c.decorate(Some(&HeaderValue::from_static("https://app.example.com")), &mut h);
        assert_eq!(h.get_all("vary").iter().count(), 1);
        assert_eq!(get(&h, "vary"), "Accept-Encoding, Origin");

        let mut h = headers(&[("access-control-allow-origin", "*")]);
        c.decorate(Some(&HeaderValue::from_static("https://evil.test")), &mut h);
        assert!(h.get("access-control-allow-origin").is_none(), "the backend's field is removed");
        assert_eq!(get(&h, "vary"), "Origin");
    }

    #[test]
    fn any_origin_without_credentials_is_a_star() {
        let c = cors(&["*"], false);
        let mut h = HeaderMap::new();
        c.decorate(Some(&HeaderValue::from_static("https://whoever.test")), &mut h);
        assert_eq!(get(&h, "access-control-allow-origin"), "*");
        assert!(h.get("access-control-allow-credentials").is_none());
        assert!(h.get("vary").is_none(), "the same for every origin");
    }
}
