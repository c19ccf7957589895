//! Edge security, first step: rate limits (per client and global, GCRA) with the IETF
//! RateLimit fields, bans from violations on every site, the bans API, bans across a
//! restart, and a spoofed `X-Forwarded-For` that changes nothing.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_limits_answer_429_with_ratelimit_fields_and_ignore_spoofed_forwarding() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: shop.test\nroutes:\n  - path: /auth\n    backend: {0}\n    options:\n      rate_limit: {{per_ip: 5/min, burst: 0}}\n  - path: /\n    backend: {0}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    for i in 0..5 {
        // A forwarded address from an untrusted peer is not the client: same quota.
        let r = get_with(gh.http, "shop.test", "/auth", &[("x-forwarded-for", &format!("198.51.100.{i}"))]).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    let r = get(gh.http, "shop.test", "/auth").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("12"), "one request every 60 s / 5");
    assert_eq!(r.header("ratelimit-policy"), Some("per_client;q=5;w=60"));
    assert_eq!(r.header("ratelimit"), Some("per_client;r=0;t=12"));
    // Other routes are not limited.
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    // Counted by kind, never by address.
    let metrics =
        metrics_with(gh.admin, &["gatehouse_request_errors_total{side=\"client\",kind=\"rate_limited\"} 1"]).await;
    assert!(metrics.contains("gatehouse_request_errors_total{side=\"client\",kind=\"rate_limited\"} 1"), "{metrics}");
    assert!(!metrics.contains("127.0.0.1\""), "an address in the metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_forwarded_clients_each_have_their_quota_and_a_global_limit_caps_them_all() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: shop.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      rate_limit: {{per_ip: 2/min, global: 5/min}}\n",
        b.url()
    );
    let gh = Gatehouse::start("trusted_proxies: [127.0.0.1]\n", &[("shop", &site)]);
    let addr = gh.http;
    let from =
        move |ip: &'static str| async move { get_with(addr, "shop.test", "/", &[("x-forwarded-for", ip)]).await };
    assert_eq!((from("10.0.0.1").await.status.as_u16(), from("10.0.0.1").await.status.as_u16()), (200, 200));
    assert_eq!(from("10.0.0.1").await.status, 429, "10.0.0.1's own quota");
    assert_eq!((from("10.0.0.2").await.status.as_u16(), from("10.0.0.2").await.status.as_u16()), (200, 200));
    let r = from("10.0.0.3").await;
    assert_eq!(r.status, 200, "the fifth request of the route");
    let r = from("10.0.0.4").await;
    assert_eq!((r.status.as_u16(), r.header("ratelimit-policy")), (429, Some("global;q=5;w=60")));
}

/// `ban_after` violations ban the address on every site; the bans API lists, lifts and
/// adds bans; bans survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_ban_an_address_everywhere_until_lifted_and_bans_survive_a_restart() {
    let b = Backend::start("b").await;
    let shop = format!(
        "host: shop.test\nroutes:\n  - path: /auth\n    backend: {0}\n    options:\n      rate_limit: {{per_ip: 2/min, ban_after: 3, ban_for: 1h}}\n  - path: /\n    backend: {0}\n",
        b.url()
    );
    let blog = format!("host: blog.test\nbackend: {}\n", b.url());
    let hooks = crate::webhooks::Receiver::start(0).await;
    let main = format!("webhooks:\n  - url: {}\n    events: [ban_created]\n    throttle: 0s\n", hooks.url("/hook"));
    let mut gh = Gatehouse::start(&main, &[("shop", &shop), ("blog", &blog)]);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(get(gh.http, "shop.test", "/auth").await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 429, 429, 429, 403], "the third 429 bans");
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 403, "a ban covers every site");
    let list = get(gh.admin, "localhost", "/api/bans").await.json();
    assert_eq!(list["bans"][0]["ip"], "127.0.0.1", "{list}");
    assert!(list["bans"][0]["reason"].as_str().is_some_and(|r| r.contains("3 rate-limit violations")), "{list}");
    let metrics = metrics_with(gh.admin, &["gatehouse_bans 1"]).await;
    assert!(metrics.contains("gatehouse_bans 1"), "{metrics}");
    // The ban_created webhook, about the address.
    let banned = || hooks.on("/hook").iter().any(|e| e["event"] == "ban_created" && e["subject"] == "127.0.0.1");
    assert!(wait_until(NET_TIMEOUT, banned).await, "{:?}", hooks.on("/hook"));

    // Lifted, then banned again through the API.
    assert_eq!(admin_call(gh.admin, http::Method::DELETE, "/api/bans/127.0.0.1", "").await.status, 200);
    assert_eq!(admin_call(gh.admin, http::Method::DELETE, "/api/bans/127.0.0.1", "").await.status, 404);
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 200);
    let r =
        admin_call(gh.admin, http::Method::POST, "/api/bans", r#"{"ip": "127.0.0.1", "for": "10m", "reason": "test"}"#)
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 403);
    for (body, why) in [(r#"{"ip": "nope"}"#, "ip"), (r#"{"ip": "10.0.0.1", "for": "forever"}"#, "for"), ("[", "JSON")]
    {
        let r = admin_call(gh.admin, http::Method::POST, "/api/bans", body).await;
        assert!(r.status == 400 && r.text().contains(why), "{body}: {}", r.text());
    }

    // A restart keeps the ban.
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(NET_TIMEOUT), Some(0), "{}", gh.log());
    let dir = std::mem::replace(&mut gh.dir, tempfile::tempdir().expect("tempdir"));
    let gh = Gatehouse::start_in(dir);
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 403, "{}", gh.log());
    assert_eq!(admin_call(gh.admin, http::Method::DELETE, "/api/bans/127.0.0.1", "").await.status, 200);
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_settings_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        "",
        &[(
            "s",
            "host: s.test\nbackend: http://127.0.0.1:1\noptions:\n  rate_limit: {per_ip: 5/fortnight, global: 0/s, ban_for: 1h}\n",
        )],
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    for want in ["rate_limit.per_ip", "rate_limit.global", "rate_limit.ban_for"] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
}

/// With `server.close_banned`, a banned address's connections are closed at accept,
/// before anything is read or answered (before TLS); lifted, it is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_banned_closes_connections_at_accept() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "server: {close_banned: true}\n",
        &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))],
    );
    let ask = b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    assert!(raw_async(gh.http, ask, NET_TIMEOUT).await.starts_with("HTTP/1.1 200"));
    let r =
        admin_call(gh.admin, http::Method::POST, "/api/bans", r#"{"ip": "127.0.0.1", "for": "1h", "reason": "test"}"#)
            .await;
    assert!(r.status.is_success(), "{}", r.text());
    let addr = gh.http;
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&addr, NET_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(NET_TIMEOUT)).expect("timeout");
        // The write may already fail: the connection is closed at once.
        let _ = s.write_all(ask);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
    .await
    .expect("join");
    assert!(answer.is_empty(), "closed unanswered, got {}", String::from_utf8_lossy(&answer));
    assert_eq!(b.count(), 1);
    let r = admin_call(gh.admin, http::Method::DELETE, "/api/bans/127.0.0.1", "").await;
    assert!(r.status.is_success(), "{}", r.text());
    assert!(raw_async(gh.http, ask, NET_TIMEOUT).await.starts_with("HTTP/1.1 200"));
}
