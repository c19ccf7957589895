//! Access policies through the real binary: CORS preflights answered at the proxy and
//! CORS fields on answers, IP allow/deny on the client address `trusted_proxies` vouches
//! for (v4 and v6), User-Agent and Referer rules, and CSRF checks for unsafe methods.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::harness::*;

fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path).header("host", "app.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_and_answers_carry_the_fields() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: app.test\nroutes:\n  - path: /api\n    methods: [GET, PUT, DELETE]\n    backend: {}\n    options:\n      cors:\n        origins: ['https://app.example.com', 'https://*.example.org']\n        methods: [GET, PUT]\n        headers: [Authorization]\n        expose_headers: [X-Request-Id]\n        credentials: true\n        max_age: 10m\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("app", &site)]);
    let pre = |origin: &'static str, method: &'static str, headers: &'static str| {
        req(
            "OPTIONS",
            "/api/items",
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", headers),
            ],
        )
    };
    // The route takes no OPTIONS: the preflight still reaches its CORS policy.
    let r = send(gh.http, pre("https://app.example.com", "PUT", "authorization, content-type")).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(r.header("access-control-allow-headers"), Some("authorization, content-type"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(send(gh.http, pre("https://shop.example.org", "GET", "")).await.status, 204, "subdomain pattern");
    for (origin, method, headers) in [
        ("https://evil.test", "PUT", ""),
        ("https://app.example.com", "DELETE", ""),
        ("https://app.example.com", "PUT", "x-secret"),
    ] {
        assert_eq!(send(gh.http, pre(origin, method, headers)).await.status, 403, "{origin} {method} {headers}");
    }
    assert_eq!(b.count(), 0, "preflights never reach the backend");
    let r = send(gh.http, req("GET", "/api/items", &[("origin", "https://app.example.com")])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-expose-headers"), Some("x-request-id"), "header names are case-insensitive");
    assert!(r.header("vary").is_some_and(|v| v.contains("Origin")), "{:?}", r.headers);
    let r = send(gh.http, req("GET", "/api/items", &[("origin", "https://evil.test")])).await;
    assert_eq!(
        (r.status.as_u16(), r.header("access-control-allow-origin")),
        (200, None),
        "served, but not readable cross-origin"
    );
    let r = send(
        gh.http,
        req(
            "OPTIONS",
            "/api/items",
            &[("origin", "https://app.example.com"), ("access-control-request-method", "PATCH")],
        ),
    )
    .await;
    assert_eq!(r.status, 405, "no route takes PATCH");
    let metrics = metrics_with(gh.admin, &["kind=\"cors_refused\",rule=\"preflight\"} 3"]).await;
    assert!(metrics.contains("kind=\"cors_refused\",rule=\"preflight\"} 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_rules_use_the_vouched_client_address_and_agent_rules_read_their_fields() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: app.test\nroutes:\n  - path: /admin\n    backend: {0}\n    options:\n      ip:\n        allow: [10.0.0.0/8, '2001:db8::/32']\n        deny: [10.9.0.0/16]\n  - path: /bots\n    backend: {0}\n    options:\n      user_agent: {{deny: ['curl/*', '~(?i)python-requests'], empty: deny}}\n  - path: /embed\n    backend: {0}\n    options:\n      referer: {{allow: ['*.example.com', example.com]}}\n  - path: /\n    backend: {0}\n",
        b.url()
    );
    let gh = Gatehouse::start("trusted_proxies: [127.0.0.1]\n", &[("app", &site)]);
    let from = |ip: &'static str| req("GET", "/admin", &[("x-forwarded-for", ip)]);
    assert_eq!(send(gh.http, from("10.1.2.3")).await.status, 200);
    assert_eq!(send(gh.http, from("2001:db8::7")).await.status, 200, "IPv6 range");
    assert_eq!(send(gh.http, from("10.9.1.1")).await.status, 403, "deny wins");
    assert_eq!(send(gh.http, from("192.0.2.1")).await.status, 403, "not in the allow list");
    let ua = |v: &'static str| req("GET", "/bots", &[("user-agent", v)]);
    assert_eq!(send(gh.http, ua("curl/8.5.0")).await.status, 403);
    assert_eq!(send(gh.http, ua("Python-Requests/2.32")).await.status, 403);
    assert_eq!(send(gh.http, ua("Mozilla/5.0 (X11; Linux x86_64)")).await.status, 200);
    assert_eq!(send(gh.http, req("GET", "/bots", &[])).await.status, 403, "no User-Agent");
    let referer = |v: &'static str| req("GET", "/embed/w", &[("referer", v)]);
    assert_eq!(send(gh.http, referer("https://blog.example.com/post")).await.status, 200);
    assert_eq!(send(gh.http, referer("https://example.com/")).await.status, 200);
    assert_eq!(send(gh.http, referer("https://example.com.evil.test/")).await.status, 403);
    let metrics = metrics_with(gh.admin, &["kind=\"ip_denied\"", "kind=\"user_agent_denied\""]).await;
    assert!(metrics.contains("kind=\"ip_denied\""), "{metrics}");
    assert!(metrics.contains("kind=\"user_agent_denied\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_needs_a_matching_origin_and_the_double_submit_token() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: app.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      csrf:\n        origins: ['https://admin.example.com']\n        token: {{cookie: csrf, header: X-CSRF-Token}}\n        exempt: [/hooks/]\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("app", &site)]);
    // The request's own origin: its scheme and Host as sent.
    let own = "http://app.test".to_string();
    let ok_token = [("cookie", "csrf=t0k3n"), ("x-csrf-token", "t0k3n")];
    let post = |headers: Vec<(&str, &str)>| req("POST", "/save", &headers);
    assert_eq!(send(gh.http, req("GET", "/page", &[])).await.status, 200, "safe methods pass");
    assert_eq!(send(gh.http, post(vec![ok_token[0], ok_token[1]])).await.status, 403, "no Origin or Referer");
    assert_eq!(send(gh.http, post(vec![("origin", &own), ok_token[0], ok_token[1]])).await.status, 200);
    assert_eq!(
        send(gh.http, post(vec![("origin", "https://admin.example.com"), ok_token[0], ok_token[1]])).await.status,
        200
    );
    assert_eq!(send(gh.http, post(vec![("origin", "https://evil.test"), ok_token[0], ok_token[1]])).await.status, 403);
    assert_eq!(send(gh.http, post(vec![("origin", "null"), ok_token[0], ok_token[1]])).await.status, 403);
    assert_eq!(
        send(gh.http, post(vec![("origin", &own), ("cookie", "csrf=t0k3n"), ("x-csrf-token", "other")])).await.status,
        403,
        "token mismatch"
    );
    let referer = format!("{own}/form");
    assert_eq!(
        send(gh.http, post(vec![("referer", &referer), ok_token[0], ok_token[1]])).await.status,
        200,
        "Referer without Origin"
    );
    assert_eq!(send(gh.http, req("POST", "/hooks/github", &[])).await.status, 200, "exempt path");
}

/// A dual-stack listener (`[::]`) sees IPv4 clients as `::ffff:a.b.c.d`; the proxy treats
/// them as the IPv4 addresses they are: allow lists written in IPv4 match, and the backend
/// is told the IPv4 address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_clients_of_a_dual_stack_listener_are_ipv4() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: app.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      ip:\n        allow: [127.0.0.0/8]\n",
        b.url()
    );
    let gh = Gatehouse::start("listen: {http: \"[::]:0\"}\n", &[("app", &site)]);
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], gh.http.port()));
    let r = get(v4, "app.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "127.0.0.1");
}
