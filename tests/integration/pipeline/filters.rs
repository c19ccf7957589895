//! The per-route filters over HTTP/1.1, HTTP/2 and HTTP/3, and the admin API's view of them.

use super::*;

// ---------------------------------------------------------------------------------------
// 3. Filters over HTTP/1.1, HTTP/2 and HTTP/3; 4. the admin API lists them.

pub(super) struct Filters {
    pub(super) gh: Gatehouse,
    pub(super) ca: TestCa,
    pub(super) https: SocketAddr,
}

/// f.test (HTTPS redirect on; preset and response rules for the whole site): a redirect
/// route, a GET-only route and a proxied route. n.test: no HTTPS redirect; a redirect, a
/// route with its own response rule and a plain one. HTTPS with HTTP/3.
pub(super) async fn filters_setup(backend: &Backend) -> Filters {
    let ca = TestCa::new();
    let cert = ca.issue(&["f.test", "n.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "f.crt", &cert.cert_pem);
    write(d, "f.key", &cert.key_pem);
    let url = backend.url();
    let f = format!(
        "host: f.test\n\
         options:\n  headers:\n    preset: security-basic\n    response:\n      set: {{X-Filtered: \"yes\"}}\n      remove: [X-Backend]\n\
         routes:\n\
         \x20 - path: /old\n    redirect: {{to: \"https://elsewhere.test{{uri}}\", code: 301}}\n\
         \x20 - path: /only-get\n    methods: [GET]\n    backend: {url}\n\
         \x20 - path: /app\n    backend: {url}\n"
    );
    let n = format!(
        "host: n.test\nhttps_redirect: false\n\
         routes:\n\
         \x20 - path: /go\n    redirect: {{to: /x, code: 302}}\n\
         \x20 - path: /h\n    backend: {url}\n    options: {{headers: {{response: {{set: {{X-A: \"1\"}}}}}}}}\n\
         \x20 - path: /\n    backend: {url}\n"
    );
    write_config(d, &format!("{HTTPS}http3: true\ntls: {{cert: f.crt, key: f.key}}\n"), &[("f", &f), ("n", &n)]);
    let main = std::fs::read_to_string(d.join("gatehouse.yaml")).expect("main");
    std::fs::write(d.join("gatehouse.yaml"), info_log(main)).expect("main");
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https listener");
    Filters { gh, ca, https }
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    H1,
    H2,
    H3,
}

/// One request to the HTTPS port over `proto`; `body` makes it carry a 5-byte body.
async fn over(s: &Filters, proto: Proto, method: &str, host: &str, path: &str, body: bool) -> Reply {
    let payload: Option<&'static str> = body.then_some("hello");
    match proto {
        Proto::H1 => {
            let conn = tls_connect(s.https, &s.ca.connector(&[b"http/1.1"]), host).await.expect("tls");
            let mut b = Request::builder().method(method).uri(path).header("host", host);
            if body {
                b = b.header("content-length", "5");
            }
            let req = b.body(http_body_util::Full::new(Bytes::from(payload.unwrap_or("")))).expect("request");
            send_on(conn.stream, req).await
        }
        Proto::H2 => {
            let conn = tls_connect(s.https, &s.ca.connector(&[b"h2"]), host).await.expect("tls");
            assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]), "ALPN h2 not negotiated");
            let (mut tx, _conn) = h2_client(conn.stream).await;
            let body = match payload {
                Some(p) => http_body_util::Full::new(Bytes::from(p)).map_err(|never| match never {}).boxed(),
                None => empty(),
            };
            let req = Request::builder().method(method).uri(format!("https://{host}{path}")).body(body).expect("req");
            h2_send(&mut tx, req).await
        }
        Proto::H3 => {
            let mut b = Request::builder().method(method).uri(format!("https://{host}{path}"));
            if body {
                b = b.header("content-length", "5");
            }
            let (resp, data) = h3_request(&s.ca, s.https, host, b.body(()).expect("request"), payload).await;
            let (parts, ()) = resp.into_parts();
            Reply { status: parts.status, headers: parts.headers, body: Bytes::from(data) }
        }
    }
}

const PRESET: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=31536000"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_behave_the_same_over_http1_http2_and_http3() {
    let backend = Backend::start("app").await;
    let s = filters_setup(&backend).await;

    for proto in [Proto::H1, Proto::H2, Proto::H3] {
        // A proxied response gets the preset and the site's response rules; HTTPS itself
        // is not redirected.
        let r = over(&s, proto, "GET", "f.test", "/app/x?q=1", false).await;
        assert_eq!(r.status, 200, "{proto:?}: {}", r.text());
        assert_eq!(r.json()["uri"], "/app/x?q=1", "{proto:?}");
        for (name, value) in PRESET {
            assert_eq!(r.header(name), Some(*value), "{proto:?}: {name} on a proxied response");
        }
        assert_eq!(r.header("x-filtered"), Some("yes"), "{proto:?}: response set rule");
        assert_eq!(r.header("x-backend"), None, "{proto:?}: response remove rule");
        assert!(r.header("x-request-id").is_some_and(|v| v.len() == 32), "{proto:?}");

        // The route's redirect, with {uri}; response rules apply to redirects too.
        let r = over(&s, proto, "GET", "f.test", "/old/page?a=b", false).await;
        assert_eq!(r.status, 301, "{proto:?}: {}", r.text());
        assert_eq!(r.header("location"), Some("https://elsewhere.test/old/page?a=b"), "{proto:?}");
        assert_eq!(r.header("x-filtered"), Some("yes"), "{proto:?}: response rules on a redirect");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{proto:?}: preset on a redirect");
        let r = over(&s, proto, "GET", "n.test", "/go", false).await;
        assert_eq!((r.status.as_u16(), r.header("location")), (302, Some("/x")), "{proto:?}");

        // A method the route does not take: 405 with Allow; Gatehouse's own error answer
        // gets no response rules.
        let r = over(&s, proto, "POST", "f.test", "/only-get", true).await;
        assert_eq!(r.status, 405, "{proto:?}: {}", r.text());
        assert_eq!(r.header("allow"), Some("GET"), "{proto:?}");
        assert_eq!(r.header("x-filtered"), None, "{proto:?}: response rules on a 405 error answer");
        let r = over(&s, proto, "GET", "f.test", "/only-get", false).await;
        assert_eq!(r.status, 200, "{proto:?}: {}", r.text());

        // A route's own rule, on a site without preset.
        let r = over(&s, proto, "GET", "n.test", "/h", false).await;
        assert_eq!((r.status.as_u16(), r.header("x-a")), (200, Some("1")), "{proto:?}");
        assert_eq!(r.header("x-backend"), Some("app"), "{proto:?}");
        let r = over(&s, proto, "GET", "n.test", "/plain", false).await;
        assert_eq!((r.status.as_u16(), r.header("x-a"), r.header("x-filtered")), (200, None, None), "{proto:?}");
    }

    // Plain HTTP to a site with HTTPS redirect: 308 to the HTTPS port, same path and
    // query, before the route's own redirect; over the own HTTP/1.1 loop (GET), hyper's
    // HTTP/1 (a request with a body) and HTTP/2 (h2c).
    let port = s.https.port();
    let to = |pq: &str| format!("https://f.test:{port}{pq}");
    let r = get(s.gh.http, "f.test", "/app/x?q=1").await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/app/x?q=1").as_str())), "own loop");
    let r = get(s.gh.http, "f.test", "/old/page").await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/old/page").as_str())), "before redirect");
    let post = Request::post("/app/upload?z=9")
        .header("host", "f.test")
        .body(http_body_util::Full::new(Bytes::from_static(b"hello")))
        .expect("request");
    let r = send(s.gh.http, post).await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/app/upload?z=9").as_str())), "hyper h1");
    let (mut tx, _conn) = h2c(s.gh.http).await;
    let r = h2_send(&mut tx, Request::get("http://f.test/app/h2?q=2").body(empty()).expect("request")).await;
    assert_eq!((r.status.as_u16(), r.header("location")), (308, Some(to("/app/h2?q=2").as_str())), "h2c");
    // A site with `https_redirect: false` is served over plain HTTP.
    let r = get(s.gh.http, "n.test", "/h").await;
    assert_eq!((r.status.as_u16(), r.header("x-a")), (200, Some("1")));
    let r = get(s.gh.http, "n.test", "/go").await;
    assert_eq!((r.status.as_u16(), r.header("location")), (302, Some("/x")));
    // None of this touched a backend's failure count.
    for path in ["/only-get", "/app"] {
        assert_eq!(failures(&s.gh, "f", path).await, 0, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_each_routes_filters_and_backend_failures() {
    let backend = Backend::start("app").await;
    let s = filters_setup(&backend).await;
    for (site, path, want) in [
        // Every route carries `maintenance` (the admin API can switch any site).
        ("f", "/old", vec!["https_redirect", "maintenance", "redirect", "response_headers"]),
        ("f", "/only-get", vec!["https_redirect", "maintenance", "response_headers"]),
        ("f", "/app", vec!["https_redirect", "maintenance", "response_headers"]),
        ("n", "/go", vec!["maintenance", "redirect"]),
        ("n", "/h", vec!["maintenance", "response_headers"]),
        ("n", "/", vec!["maintenance"]),
    ] {
        let r = route_entry(&s.gh, site, path).await;
        assert_eq!(r["filters"], serde_json::json!(want), "{site} {path}: {r}");
        if r["action"] == "proxy" {
            assert_eq!(r["backends"][0]["failures"], 0, "{r}");
        }
    }
    // Without an HTTPS listener no route has an HTTPS redirect.
    let gh = Gatehouse::start("", &[("p", &site("p.test", &format!("backend: {}\n", backend.url())))]);
    let r = route_entry(&gh, "p", "/").await;
    assert_eq!(r["filters"], serde_json::json!(["maintenance"]), "{r}");
    assert_eq!(r["backends"][0]["failures"], 0, "{r}");
}
