//! Header rules: hop-by-hop stripping, forwarding headers, trusted proxies, request ids,
//! add/set/remove and the security presets.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_hop_by_hop() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("h", &format!("host: h.test\nbackend: {}\n", b.url()))]);
    let r = get_with(
        gh.http,
        "h.test:8443",
        "/",
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "client-id-1"),
            ("x-normal", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    let h = &seen["headers"];
    for gone in ["x-secret", "keep-alive", "proxy-connection", "connection"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(h["x-normal"], "kept");
    // Untrusted client: its forwarding claims are replaced by what the socket says.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "h.test:8443");
    assert_eq!(h["host"], "h.test:8443");
    // The client's request id is kept and returned.
    assert_eq!(h["x-request-id"], "client-id-1");
    let ids: Vec<_> = r.headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids, ["client-id-1"], "the backend's own id is replaced");
    // Hop-by-hop headers from the backend's response are stripped too; the rest pass,
    // repeated ones included.
    assert!(r.header("x-hop").is_none());
    assert!(r.header("connection").is_none_or(|c| !c.contains("x-hop")));
    assert_eq!(r.header("x-backend"), Some("b"));
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);

    // Without one, a request id is generated, sent to the backend and returned.
    let r = get(gh.http, "h.test", "/").await;
    let id = r.header("x-request-id").expect("generated id").to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(r.json()["headers"]["x-request-id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_extend_the_chain() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]\n",
        &[("h", &format!("host: h.test\nbackend: {}\n", b.url()))],
    );
    let r = get_with(
        gh.http,
        "h.test",
        "/",
        &[("x-forwarded-for", "203.0.113.7, 10.1.2.3"), ("x-forwarded-proto", "https")],
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.1.2.3, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "203.0.113.7");
    assert_eq!(h["x-forwarded-proto"], "https");

    // Several X-Forwarded-For lines from a trusted peer are kept in order, then extended.
    let r =
        get_with(gh.http, "h.test", "/", &[("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "10.0.0.9")]).await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.0.0.9, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "198.51.100.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_and_presets() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: h.test
backend: {}
options:
  headers:
    preset: security-strict
    request:
      set: {{X-Env: prod}}
      add: {{X-Tag: t1}}
      remove: [X-Drop]
    response:
      set: {{X-Frame-Options: SAMEORIGIN}}
      remove: [Content-Security-Policy, X-Backend]
      add: {{X-Served-By: gatehouse}}
",
        b.url()
    );
    let gh = Gatehouse::start("", &[("h", &site)]);
    let r = get_with(gh.http, "h.test", "/", &[("x-env", "dev"), ("x-drop", "1"), ("x-tag", "t0")]).await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-env"], "prod");
    assert!(h.get("x-drop").is_none());
    // `add` appends to what the client sent.
    assert_eq!(h["x-tag"], "t0, t1");
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert!(r.header("content-security-policy").is_none());
    assert!(r.header("x-backend").is_none());
    assert_eq!(r.header("x-served-by"), Some("gatehouse"));
    assert_eq!(r.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("permissions-policy"), Some("camera=(), microphone=(), geolocation=(), payment=(), usb=()"));
    assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"));
    // Each preset field once.
    for name in ["strict-transport-security", "x-frame-options", "permissions-policy"] {
        assert_eq!(r.headers.get_all(name).iter().count(), 1, "{name}");
    }
}

/// The preset documented for every site of the quickstart: exactly its four fields, with
/// their values, on proxied, static and redirect answers (replacing what a backend sent),
/// and not on Gatehouse's own error answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_basic_preset_on_real_responses() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("public")).expect("mkdir");
    std::fs::write(dir.path().join("public/page.html"), "<p>page</p>").expect("write");
    write_config(
        dir.path(),
        "defaults:\n  headers: {preset: security-basic}\n",
        &[(
            "s",
            &format!(
                "host: s.test\nroutes:\n  - path: /api\n    backend: {}\n  - path: /old\n    redirect: {{to: /new}}\n  - path: /\n    static: public\n",
                b.url()
            ),
        )],
    );
    let gh = Gatehouse::start_in(dir);
    let preset = [
        ("strict-transport-security", "max-age=31536000"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
    ];
    let not_in_basic = ["permissions-policy", "content-security-policy", "cross-origin-opener-policy"];
    let proxied = get_with(gh.http, "s.test", "/api", &[("x-reply-header", "X-Frame-Options: DENY")]).await;
    let static_file = get(gh.http, "s.test", "/page.html").await;
    let static_404 = get(gh.http, "s.test", "/missing.html").await;
    let redirect = get(gh.http, "s.test", "/old").await;
    assert_eq!(
        (proxied.status.as_u16(), static_file.status.as_u16(), static_404.status.as_u16(), redirect.status.as_u16()),
        (200, 200, 404, 302)
    );
    for (what, r) in
        [("proxied", &proxied), ("static", &static_file), ("static 404", &static_404), ("redirect", &redirect)]
    {
        for (name, value) in preset {
            let values: Vec<_> = r.headers.get_all(name).iter().collect();
            assert_eq!(values, [value], "{what}: {name}");
        }
        for name in not_in_basic {
            assert!(r.header(name).is_none(), "{what}: {name}");
        }
    }
    // Gatehouse's own error answers (here: no site for the host) carry none of them.
    let own = get(gh.http, "nowhere.test", "/").await;
    assert_eq!(own.status, 404);
    for (name, _) in preset {
        assert!(own.header(name).is_none(), "{name} on a generated error");
    }
}
