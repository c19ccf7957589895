//! The guard in front of admin requests that change something (POST, PUT, PATCH, DELETE):
//! the `Host` must be an allowed admin host, and a browser's cross-origin request is
//! refused. A page on another site cannot reach these endpoints through the user's browser,
//! neither directly (Origin, Sec-Fetch-Site) nor by pointing its own name at 127.0.0.1 (DNS
//! rebinding: the browser then sends that name as `Host`).
//!
//! Decides only whether a request may go on; the bearer token is checked after it, by
//! `require_token`. Reading endpoints (GET, HEAD) pass untouched.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_config::AllowedHost;
use serde_json::json;

use crate::Admin;

/// The hosts a changing request may name in `Host` and `Origin`.
#[derive(Debug, Clone)]
pub struct Allowed(Vec<AllowedHost>);

impl Allowed {
    /// `admin.allowed_hosts` when configured; otherwise the loopback names and the admin
    /// listen address (any port: a proxy or port forward may change it).
    pub fn new(configured: Option<&[AllowedHost]>, listen: SocketAddr) -> Self {
        if let Some(list) = configured {
            return Allowed(list.to_vec());
        }
        let any_port = |name: String| AllowedHost::Host { name, port: None };
        let mut list: Vec<AllowedHost> = vec![
            any_port("localhost".into()),
            any_port(Ipv4Addr::LOCALHOST.to_string()),
            any_port(Ipv6Addr::LOCALHOST.to_string()),
        ];
        // 0.0.0.0 is no name a client sends; such setups list their names in allowed_hosts.
        if !listen.ip().is_unspecified() {
            let own = any_port(listen.ip().to_string());
            if !list.contains(&own) {
                list.push(own);
            }
        }
        Allowed(list)
    }

    /// Whether `authority` (`host[:port]`, as in `Host`) names an allowed host.
    fn admits(&self, authority: &str) -> bool {
        match AllowedHost::parse(authority) {
            Some(AllowedHost::Host { name, port }) => self.0.iter().any(|a| a.admits(&name, port)),
            _ => false,
        }
    }

    /// Like `admits`, but only by a listed name: `*` admits any `Host`, never any page's
    /// `Origin`.
    fn names(&self, authority: &str) -> bool {
        match AllowedHost::parse(authority) {
            Some(AllowedHost::Host { name, port }) => {
                self.0.iter().any(|a| !matches!(a, AllowedHost::Any) && a.admits(&name, port))
            }
            _ => false,
        }
    }
}

/// Why a request to the API is refused, if it is: every request must name an admin host
/// (a rebound name must not read the routes, files and certificates either); a request
/// that changes something must also not come from another origin's page.
fn refusal(allowed: &Allowed, headers: &HeaderMap, uri_authority: Option<&str>, changes: bool) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or(uri_authority);
    match host {
        None => return Some("a request that changes something needs a Host header".into()),
        Some(h) if !allowed.admits(h) => {
            return Some(format!("Host {h:?} is not an admin host (see admin.allowed_hosts)"));
        }
        Some(_) => {}
    }
    if !changes {
        return None;
    }
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        return Some("cross-site requests may not change anything (Sec-Fetch-Site: cross-site)".into());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("");
        // `scheme://host[:port]`; `null` (sandboxed frames, file: pages) has no host.
        let authority = text.split_once("://").map(|(_, rest)| rest).filter(|a| !a.contains('/'));
        // The page's own origin is the admin listener (the same authority as `Host`), or a
        // host the list names.
        let same = |a: &str| host.is_some_and(|h| h.eq_ignore_ascii_case(a));
        if !authority.is_some_and(|a| same(a) || allowed.names(a)) {
            return Some(format!("Origin {text:?} is not an admin host (see admin.allowed_hosts)"));
        }
    }
    None
}

/// Middleware: refuses changing requests with 403 and a JSON reason.
pub(crate) async fn guard(State(admin): State<Admin>, req: Request, next: Next) -> Response {
    // Probes (`/health`, `/live`, `/ready`) answer whatever name a load balancer uses.
    let api = req.uri().path().starts_with("/api/");
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if (api || changes)
        && let Some(why) =
            refusal(&admin.allowed_hosts, req.headers(), req.uri().authority().map(|a| a.as_str()), changes)
    {
        tracing::warn!(method = %req.method(), path = %req.uri().path(), reason = %why, "admin request refused");
        return (StatusCode::FORBIDDEN, Json(json!({"error": why}))).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn loopback_names_and_the_listen_address_by_default() {
        let a = Allowed::new(None, "10.0.0.5:9180".parse().expect("addr"));
        for host in ["localhost", "localhost:9180", "127.0.0.1:1", "[::1]:9180", "[::1]", "10.0.0.5:9180", "LOCALHOST"]
        {
            assert_eq!(refusal(&a, &headers(&[("host", host)]), None, true), None, "{host}");
        }
        for host in ["evil.test", "evil.test:9180", "127.0.0.2", "localhost.evil.test", "10.0.0.6", "*", ""] {
            assert!(refusal(&a, &headers(&[("host", host)]), None, true).is_some(), "{host}");
        }
        assert!(refusal(&a, &headers(&[]), None, true).is_some(), "no Host");
        assert_eq!(refusal(&a, &headers(&[]), Some("127.0.0.1:80"), true), None, "absolute-form URI");
    }

    #[test]
    fn configured_hosts_replace_the_defaults() {
        let list = [AllowedHost::Host { name: "admin.example.net".into(), port: Some(443) }];
        let a = Allowed::new(Some(&list), "127.0.0.1:9180".parse().expect("addr"));
        assert_eq!(refusal(&a, &headers(&[("host", "admin.example.net:443")]), None, true), None);
        assert!(refusal(&a, &headers(&[("host", "admin.example.net")]), None, true).is_some(), "port differs");
        assert!(refusal(&a, &headers(&[("host", "localhost")]), None, true).is_some());
        let any = Allowed::new(Some(&[AllowedHost::Any]), "127.0.0.1:9180".parse().expect("addr"));
        assert_eq!(refusal(&any, &headers(&[("host", "whatever.test")]), None, true), None);
        // `*` takes any Host, but a page of another origin still cannot change anything.
        let from =
            |origin: &'static str| refusal(&any, &headers(&[("host", "admin.test"), ("origin", origin)]), None, true);
        assert_eq!(from("https://admin.test"), None, "same origin");
        assert!(from("https://evil.test").is_some(), "another origin");
        // Reading needs an admin Host too (DNS rebinding), but no Origin check.
        let a = Allowed::new(None, "127.0.0.1:9180".parse().expect("addr"));
        assert!(refusal(&a, &headers(&[("host", "rebound.evil.test")]), None, false).is_some());
        assert_eq!(refusal(&a, &headers(&[("host", "localhost"), ("origin", "https://evil.test")]), None, false), None);
    }

    #[test]
    fn cross_origin_browser_requests_are_refused() {
        let a = Allowed::new(None, "127.0.0.1:9180".parse().expect("addr"));
        let ok = |extra: &[(&'static str, &'static str)]| {
            let mut all = vec![("host", "127.0.0.1:9180")];
            all.extend_from_slice(extra);
            refusal(&a, &headers(&all), None, true)
        };
        assert_eq!(ok(&[("origin", "http://127.0.0.1:9180")]), None);
        assert_eq!(ok(&[("origin", "http://localhost:3000"), ("sec-fetch-site", "same-site")]), None);
        assert_eq!(ok(&[("sec-fetch-site", "none")]), None);
        assert!(ok(&[("origin", "https://evil.test")]).is_some());
        assert!(ok(&[("origin", "null")]).is_some());
        assert!(ok(&[("origin", "http://127.0.0.1:9180/path")]).is_some());
        assert!(ok(&[("sec-fetch-site", "cross-site")]).is_some());
        assert!(ok(&[("sec-fetch-site", "Cross-Site")]).is_some());
    }
}
