//! Host and path routing, methods, priorities, normalisation, rewrites and redirects.

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
