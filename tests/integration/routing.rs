//! Host and path routing, methods, priorities, normalisation, rewrites and redirects.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_matrix() {
    let (a, b, c, d, w, any) = tokio::join!(
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
        Backend::start("d"),
        Backend::start("wild"),
        Backend::start("any")
    );
    let app = format!(
        "hosts: [app.test, www.app.test]
routes:
  - path: /api
    backend: {a}
  - path: /api/admin
    backend: {b}
  - path: /exact
    match: exact
    backend: {c}
  - path: '^/items/[0-9]+$'
    match: regex
    backend: {d}
  - path: /write
    methods: [POST, PUT]
    backend: {a}
  - path: /prio
    backend: {a}
  - path: '^/prio'
    match: regex
    priority: 10
    backend: {b}
  - path: /strip
    strip_prefix: true
    backend: {a}
  - path: /v1
    rewrite: {{pattern: '^/v1/(.*)$', replace: '/api/v2/$1'}}
    backend: {a}
  - path: /old
    redirect: {{to: 'https://new.test{{uri}}', code: 308}}
  - path: /moved
    redirect: {{to: /new}}
  - path: /host
    strip_prefix: true
    redirect: {{to: 'https://{{host}}/h{{uri}}', code: 301}}
  - path: /svc/v2
    strip_prefix: /svc
    backend: {a}
",
        a = a.url(),
        b = b.url(),
        c = c.url(),
        d = d.url()
    );
    let gh = Gatehouse::start(
        "",
        &[
            ("app", &app),
            ("wild", &format!("host: '*.wild.test'\nbackend: {}\n", w.url())),
            ("default", &format!("host: '*'\nbackend: {}\n", any.url())),
        ],
    );
    let cases: &[(&str, &str, &str)] = &[
        ("app.test", "/api", "a"),
        ("APP.test:80", "/api/users", "a"),
        ("www.app.test", "/api/admin/x", "b"),
        ("app.test", "/exact", "c"),
        ("app.test", "/items/42", "d"),
        ("app.test", "/prio/x", "b"),
        ("x.wild.test", "/", "wild"),
        ("a.b.wild.test", "/deep", "wild"),
        ("wild.test", "/", "any"),
        ("unknown.test", "/", "any"),
        ("app.test", "/x/../api/y", "a"),
        ("app.test", "//api//y", "a"),
        ("app.test", "/%61pi/y", "a"),
    ];
    for (host, path, want) in cases {
        let r = get(gh.http, host, path).await;
        assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
        assert_eq!(r.json()["backend"], *want, "{host}{path}");
    }

    // Normalised path is what the backend receives.
    let r = get(gh.http, "app.test", "/x/../api/./y?q=1").await;
    assert_eq!(r.json()["uri"], "/api/y?q=1");

    // Prefixes end at segment boundaries, and a known host never falls through to the catch-all.
    assert_eq!(get(gh.http, "app.test", "/apiary").await.status, 404);

    // Exact does not match a longer path; regex anchors hold.
    assert_eq!(get(gh.http, "app.test", "/exact/more").await.status, 404);
    assert_eq!(get(gh.http, "app.test", "/items/abc").await.status, 404);

    // Methods: 405 with Allow.
    let r = get(gh.http, "app.test", "/write").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST, PUT"));
    let post = http::Request::post("/write")
        .header("host", "app.test")
        .body(http_body_util::Full::new(bytes::Bytes::from("hi")))
        .expect("req");
    let r = send(gh.http, post).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 2);

    // strip_prefix and rewrite.
    assert_eq!(get(gh.http, "app.test", "/strip/x/y?z").await.json()["uri"], "/x/y?z");
    assert_eq!(get(gh.http, "app.test", "/strip").await.json()["uri"], "/");
    assert_eq!(get(gh.http, "app.test", "/v1/users/7").await.json()["uri"], "/api/v2/users/7");

    // Redirects.
    let r = get(gh.http, "app.test", "/old/page?x=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://new.test/old/page?x=1"));
    let r = get(gh.http, "app.test", "/moved").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/new"));
    // {host}: the request's host, lower-case, without port; {uri} after strip_prefix.
    let r = get(gh.http, "WWW.App.Test:8080", "/host/a?q=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://www.app.test/h/a?q=1"));
    assert!(r.body.is_empty());

    // strip_prefix with a path: that prefix goes, on a segment boundary, whatever the
    // route's own path.
    assert_eq!(get(gh.http, "app.test", "/svc/v2/users?id=1").await.json()["uri"], "/v2/users?id=1");
    assert_eq!(get(gh.http, "app.test", "/svc/v2").await.json()["uri"], "/v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_without_catch_all_is_404() {
    let a = Backend::start("a").await;
    let gh = Gatehouse::start("", &[("app", &format!("host: app.test\nbackend: {}\n", a.url()))]);
    assert_eq!(get(gh.http, "other.test", "/").await.status, 404);
    assert_eq!(a.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_literal_hosts_route_with_or_without_brackets() {
    let (a, b) = tokio::join!(Backend::start("v6"), Backend::start("v4"));
    let gh = Gatehouse::start(
        "",
        &[
            ("v6", &format!("host: '[::1]'\nbackend: {}\n", a.url())),
            ("v4", &format!("host: 127.0.0.1\nbackend: {}\n", b.url())),
        ],
    );
    assert_eq!(get(gh.http, "[::1]:8080", "/").await.json()["backend"], "v6");
    assert_eq!(get(gh.http, "[::1]", "/").await.json()["backend"], "v6");
    assert_eq!(get(gh.http, "127.0.0.1:8080", "/").await.json()["backend"], "v4");
}

/// Where the host comes from when the Host field is not the whole story: absolute-form
/// requests (RFC 9112 §3.2.2), HTTP/1.0 without a Host, and CONNECT, which asks for a
/// tunnel a reverse proxy does not open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_http10_and_connect() {
    let (a, b, any) = tokio::join!(Backend::start("a"), Backend::start("b"), Backend::start("any"));
    let gh = Gatehouse::start(
        "",
        &[
            ("a", &format!("host: a.test\nbackend: {}\n", a.url())),
            ("b", &format!("host: b.test\nroutes:\n  - path: /\n    methods: [GET, POST]\n    backend: {}\n", b.url())),
            ("any", &format!("host: '*'\nbackend: {}\n", any.url())),
        ],
    );
    let ask = |request: &'static [u8]| raw_async(gh.http, request, Duration::from_secs(3));
    let body = |out: &str| -> serde_json::Value {
        let (_, json) = out.split_once("\r\n\r\n").expect("a response with a body");
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"))
    };

    // The URI's authority routes and replaces the Host field on the way out.
    let out = ask(b"GET http://a.test/x?y=1 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = body(&out);
    assert_eq!(seen["backend"], "a");
    assert_eq!(seen["uri"], "/x?y=1", "origin form towards the backend");
    assert_eq!(seen["headers"]["host"], "a.test");
    assert_eq!(seen["headers"]["x-forwarded-host"], "a.test");

    // HTTP/1.0 may leave the host out; the catch-all site answers, and the backend (spoken
    // to in HTTP/1.1) gets its own address as Host.
    let out = ask(b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = body(&out);
    assert_eq!(seen["backend"], "any");
    assert_eq!(seen["headers"]["host"], any.addr.to_string());
    assert!(seen["headers"].get("x-forwarded-host").is_none(), "{seen}");

    // CONNECT: 405 with the methods the route does take, and nothing reaches a backend.
    let out = ask(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("\r\nallow: delete, get, head, options, patch, post, put, trace\r\n"),
        "{out}"
    );
    let out = ask(b"CONNECT b.test:443 HTTP/1.1\r\nHost: b.test:443\r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 405") && out.to_ascii_lowercase().contains("\r\nallow: get, post\r\n"), "{out}");
    assert_eq!(a.count() + b.count(), 1, "only the absolute-form request reached a or b");
}
