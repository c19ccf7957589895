//! Resilience: circuit breakers, retries on statuses and with bodies, the retry budget,
//! traffic splitting, error pages, maintenance mode and slow requests, through the real
//! binary and in-process backends that fail on command.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::*;

/// A backend whose answer is switched at run time: `status` 200 answers
/// `{"backend": NAME, "body_len": N}`, any other status answers that status.
struct Flaky {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
}

impl Flaky {
    async fn start(name: &str, status: u16) -> Flaky {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (st, count) = (Arc::new(AtomicU16::new(status)), Arc::new(AtomicUsize::new(0)));
        let (s, c, name) = (st.clone(), count.clone(), name.to_string());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, c, name) = (s.clone(), c.clone(), name.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, c, name) = (s.clone(), c.clone(), name.clone());
                        async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            let len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                            let status = s.load(Ordering::SeqCst);
                            let body = format!("{{\"backend\":\"{name}\",\"body_len\":{len}}}");
                            let mut r = Response::new(Full::new(Bytes::from(body)));
                            *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
                            r.headers_mut().insert("x-backend", name.parse().expect("name"));
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Flaky { addr, status: st, requests: count }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The backend `url` of site `shop`, as `/api/backends` shows it.
async fn backend_json(gh: &Gatehouse, url: &str) -> serde_json::Value {
    let v = get(gh.admin, "localhost", "/api/backends").await.json();
    v["backends"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["url"] == url && b["site"] == "shop").cloned())
        .unwrap_or_default()
}

async fn post(addr: SocketAddr, host: &str, path: &str, body: Vec<u8>) -> Reply {
    let req = http::Request::post(path).header("host", host).body(Full::new(Bytes::from(body))).expect("request");
    send(addr, req).await
}

/// A breaker opens after `failures` failed requests, then answers 503 at once without
/// bothering the backend; after `open_for` one probe goes through, and its success closes
/// the breaker. The transitions are in the store, the metrics and the admin API, and the
/// state survives a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opens_fails_fast_and_closes_after_a_good_probe() {
    let app = Flaky::start("app", 500).await;
    let site = format!(
        "host: shop.test\nupstreams:\n  app:\n    backends: [{}]\n    circuit_breaker: {{failures: 3, open_for: 1s, probes: 1, successes: 1}}\nroutes:\n  - path: /\n    upstream: app\n",
        app.url()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    for _ in 0..3 {
        assert_eq!(get(gh.http, "shop.test", "/").await.status, 500, "the backend's own answer passes");
    }
    assert_eq!(app.count(), 3);
    // Open: 503 at once, the backend untouched.
    let started = Instant::now();
    let r = get(gh.http, "shop.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some_and(|s| s == "1"), "{:?}", r.headers);
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(app.count(), 3, "an open breaker sends nothing");
    assert_eq!(backend_json(&gh, &app.url()).await["breaker"], "open");
    let metrics = get(gh.admin, "localhost", "/metrics").await.text();
    assert!(
        metrics.contains(&format!(
            "gatehouse_backend_breaker_state{{site=\"shop\",route=\"shop#0\",backend=\"{}\"}} 1",
            app.url()
        )),
        "{metrics}"
    );

    // A reload keeps the breaker's state (an unrelated site added).
    let other = format!("host: other.test\nbackend: {}\n", app.url());
    std::fs::write(gh.dir.path().join("sites/other.yaml"), other).expect("write");
    assert_eq!(admin_reload(&gh).await.status, 200);
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 503, "still open after the reload");

    // The backend recovers; after open_for the probe succeeds and the breaker closes.
    app.set(200);
    assert!(
        wait_until_async(NET_TIMEOUT, || async { get(gh.http, "shop.test", "/").await.status == 200 }).await,
        "{}",
        gh.log()
    );
    assert_eq!(backend_json(&gh, &app.url()).await["breaker"], "closed");
    let kinds = || async {
        let events = backend_json(&gh, &app.url()).await["events"].clone();
        events.as_array().map(|l| l.iter().filter_map(|e| e["kind"].as_str().map(String::from)).collect::<Vec<_>>())
    };
    assert!(
        wait_until_async(NET_TIMEOUT, || async {
            kinds().await == Some(vec!["breaker_closed".into(), "breaker_half_open".into(), "breaker_open".into()])
        })
        .await,
        "{:?}",
        kinds().await
    );
    assert!(gh.log().contains("circuit breaker open"), "{}", gh.log());
}

/// With two backends, an open breaker on one sends every request to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_moves_traffic_to_the_other_backend() {
    let (bad, good) = (Flaky::start("bad", 503).await, Flaky::start("good", 200).await);
    let site = format!(
        "host: shop.test\nupstreams:\n  app:\n    backends: [{}, {}]\n    circuit_breaker: {{failures: 2, open_for: 60s}}\nroutes:\n  - path: /\n    upstream: app\n",
        bad.url(),
        good.url()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    for _ in 0..4 {
        get(gh.http, "shop.test", "/").await;
    }
    assert_eq!(bad.count(), 2, "opened after 2 failures");
    for _ in 0..10 {
        let r = get(gh.http, "shop.test", "/").await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("good")));
    }
    assert_eq!(bad.count(), 2);
}

/// `retries.statuses` retries an answer that says "try again" on the other backend; a
/// POST only when `methods` names it, with its body replayed, and never with a body over
/// `max_body`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_cover_statuses_and_replay_small_bodies_of_configured_methods() {
    let (bad, good) = (Flaky::start("bad", 503).await, Flaky::start("good", 200).await);
    let site = |methods: &str| {
        format!(
            "host: shop.test\nupstreams:\n  app:\n    backends: [{}, {}]\n    load_balancing: {{algorithm: round_robin}}\n    retries: {{attempts: 2, backoff: 1ms, budget: 100%, statuses: [503], max_body: 1KB{methods}}}\nroutes:\n  - path: /\n    upstream: app\n",
            bad.url(),
            good.url()
        )
    };
    let gh = Gatehouse::start("", &[("shop", &site(""))]);
    for _ in 0..6 {
        let r = get(gh.http, "shop.test", "/").await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("good")), "{}", r.text());
        assert!(r.header("x-retry-count").is_none());
    }
    let posts: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(post(gh.http, "shop.test", "/", b"order".to_vec()).await.status.as_u16());
        }
        v
    };
    assert!(posts.contains(&503), "a POST was retried without `methods`: {posts:?}");

    let gh = Gatehouse::start("", &[("shop", &site(", methods: [POST]"))]);
    for _ in 0..6 {
        let r = post(gh.http, "shop.test", "/", vec![b'x'; 700]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body_len"], 700, "the body was sent again in full");
    }
    let big: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(post(gh.http, "shop.test", "/", vec![b'x'; 4096]).await.status.as_u16());
        }
        v
    };
    assert!(big.contains(&503) && big.contains(&200), "a body over max_body is not retried: {big:?}");
}

/// The retry budget: with a budget of 0%, only the minimum of 3 retries per 10-second
/// window is allowed, however many requests fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_in_an_outage() {
    let (bad, good) = (Flaky::start("bad", 503).await, Flaky::start("good", 200).await);
    let site = format!(
        "host: shop.test\nupstreams:\n  app:\n    backends: [{}, {}]\n    load_balancing: {{algorithm: round_robin}}\n    retries: {{attempts: 3, backoff: 1ms, budget: 0%, statuses: [503]}}\nroutes:\n  - path: /\n    upstream: app\n",
        bad.url(),
        good.url()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    let mut failed = 0;
    for _ in 0..10 {
        if get(gh.http, "shop.test", "/").await.status == 503 {
            failed += 1;
        }
    }
    // 5 of the 10 went to the bad backend first; 3 were retried.
    assert_eq!((failed, bad.count()), (2, 5), "{}", gh.log());
}

/// `split`: weights hold within statistical bounds, a sticky cookie keeps a client on its
/// pool, a sticky header maps one value to one pool, and `when` overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splits_by_weight_sticks_and_obeys_the_override() {
    let (stable, canary) = (Flaky::start("stable", 200).await, Flaky::start("canary", 200).await);
    let site = |sticky: &str| {
        format!(
            "host: shop.test\nupstreams:\n  stable:\n    backends: [{}]\n  canary:\n    backends: [{}]\nroutes:\n  - path: /\n    split:\n      {sticky}\n      pools:\n        - {{upstream: stable, weight: 90}}\n        - {{upstream: canary, weight: 10, when: {{header: X-Canary, value: always}}}}\n",
            stable.url(),
            canary.url()
        )
    };
    let gh = Gatehouse::start("", &[("shop", &site("sticky: {cookie: pool}"))]);
    // No cookie: a weighted pick each time (binomial, n = 600, p = 0.1: mean 60, sd 7.3).
    let mut to_canary = 0;
    let mut cookies = std::collections::HashSet::new();
    for _ in 0..600 {
        let r = get(gh.http, "shop.test", "/").await;
        assert_eq!(r.status, 200);
        let pool = r.header("x-backend").expect("x-backend").to_string();
        to_canary += usize::from(pool == "canary");
        let cookie = r.header("set-cookie").expect("a new client gets its pool").to_string();
        assert!(cookie.starts_with(&format!("pool={pool};")) && cookie.contains("HttpOnly"), "{cookie}");
        cookies.insert(cookie);
    }
    assert!((25..=95).contains(&to_canary), "canary got {to_canary} of 600 at weight 10%");
    assert_eq!(cookies.len(), 2);
    // The cookie keeps the pool, and no new cookie is set.
    for pool in ["canary", "stable"] {
        for _ in 0..20 {
            let r = get_with(gh.http, "shop.test", "/", &[("cookie", &format!("a=1; pool={pool}"))]).await;
            assert_eq!((r.header("x-backend"), r.header("set-cookie")), (Some(pool), None));
        }
    }
    // The override wins over the cookie.
    for _ in 0..10 {
        let r = get_with(gh.http, "shop.test", "/", &[("cookie", "pool=stable"), ("x-canary", "always")]).await;
        assert_eq!(r.header("x-backend"), Some("canary"));
    }
    // A sticky header: one value, one pool, every time; values spread by weight.
    let gh = Gatehouse::start("", &[("shop", &site("sticky: {header: X-User}"))]);
    let mut canaries = 0;
    for user in 0..200 {
        let user = format!("user-{user}");
        let first =
            get_with(gh.http, "shop.test", "/", &[("x-user", &user)]).await.header("x-backend").map(String::from);
        for _ in 0..2 {
            let again = get_with(gh.http, "shop.test", "/", &[("x-user", &user)]).await;
            assert_eq!(again.header("x-backend"), first.as_deref(), "{user}");
        }
        canaries += usize::from(first.as_deref() == Some("canary"));
    }
    assert!((4..=40).contains(&canaries), "{canaries} of 200 users on the canary at 10%");
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    assert_eq!(routes["routes"][0]["split"][1]["weight"], 10, "{routes}");
}

/// Error pages: the site's page for a status, with its fields filled and escaped; JSON for
/// a client that asks for it; never the backend's address or error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_pages_fill_the_template_and_json_clients_get_json() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("502.html"),
        "<h1>{{status}} {{reason}}</h1><p>{{message}}</p><code>{{request_id}}</code><i>{{time}}</i>",
    )
    .expect("write");
    std::fs::write(dir.path().join("404.html"), "<h1>Nothing at this address ({{status}})</h1>").expect("write");
    let site = format!(
        "host: shop.test\nerror_pages:\n  502: {0}/502.html\n  404: {0}/404.html\nroutes:\n  - path: /app\n    backend: http://{dead}\n",
        dir.path().display()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    let r = get(gh.http, "shop.test", "/app").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let id = r.header("x-request-id").expect("request id").to_string();
    let body = r.text();
    assert!(body.starts_with("<h1>502 Bad Gateway</h1>") && body.contains(&format!("<code>{id}</code>")), "{body}");
    assert!(body.contains("GMT</i>"), "{body}");
    assert!(!body.contains(&dead.to_string()) && !body.contains("refused"), "backend internals: {body}");
    // The site's 404 page for a path no route serves; another host gets the plain answer.
    let r = get(gh.http, "shop.test", "/nothing").await;
    assert_eq!((r.status.as_u16(), r.text()), (404, "<h1>Nothing at this address (404)</h1>".to_string()));
    assert_eq!(get(gh.http, "other.test", "/").await.text(), "404 Not Found\n");
    // JSON for JSON clients, with the same request id as the header.
    let r = get_with(gh.http, "shop.test", "/app", &[("accept", "application/json")]).await;
    assert_eq!((r.status.as_u16(), r.header("content-type")), (502, Some("application/json")));
    let v = r.json();
    assert_eq!(v["error"]["status"], 502);
    assert_eq!(v["error"]["request_id"].as_str(), r.header("x-request-id"));
    assert!(!r.text().contains(&dead.to_string()), "{}", r.text());

    // A page that cannot be read is a configuration error, located.
    let bad = tempfile::tempdir().expect("tempdir");
    write_config(
        bad.path(),
        "",
        &[("s", "host: s.test\nerror_pages:\n  503: missing.html\n  700: x.html\nbackend: http://127.0.0.1:1\n")],
    );
    let (code, out) = check(bad.path());
    assert!(code == 1 && out.contains("error_pages.503") && out.contains("error_pages.700"), "{out}");
}

/// Maintenance: a scheduled window answers 503 with the page and Retry-After until its end,
/// except for allowed clients; the admin API switches a site on and back (and the switch
/// holds across a reload); with every backend down the maintenance page is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_windows_switches_and_bypass() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("m.html"), "<h1>Back soon</h1><p>{{message}}</p>").expect("write");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let rfc = |t: u64| {
        let out =
            std::process::Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"]).output();
        String::from_utf8_lossy(&out.expect("date").stdout).trim().to_string()
    };
    let shop = format!(
        "host: shop.test\nbackend: {}\nmaintenance:\n  page: {}/m.html\n  allow: [10.0.0.0/8]\n  windows:\n    - {{start: \"{}\", end: \"{}\"}}\n",
        app.url(),
        dir.path().display(),
        rfc(now - 60),
        rfc(now + 3600)
    );
    let blog = format!("host: blog.test\nbackend: {}\n", app.url());
    let gh = Gatehouse::start("trusted_proxies: [127.0.0.1]\n", &[("shop", &shop), ("blog", &blog)]);
    let r = get_with(gh.http, "shop.test", "/", &[("x-forwarded-for", "192.0.2.7")]).await;
    assert_eq!(r.status, 503);
    assert!(r.text().starts_with("<h1>Back soon</h1>"), "{}", r.text());
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("retry-after");
    assert!((3500..=3600).contains(&retry), "until the window ends: {retry}");
    let r = get_with(gh.http, "shop.test", "/", &[("x-forwarded-for", "10.1.2.3")]).await;
    assert_eq!(r.status, 200, "an allowed client passes");
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 200);

    // The API switches the blog on, with a message; JSON clients get JSON.
    let switch = |body: &'static str| admin_call(gh.admin, http::Method::POST, "/api/maintenance", body);
    let r = switch(r#"{"site": "blog", "enabled": true, "message": "Upgrading <db>", "for": "10m"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["active"], true);
    let r = get(gh.http, "blog.test", "/").await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("Upgrading &lt;db&gt;"), "{}", r.text());
    let r = get_with(gh.http, "blog.test", "/", &[("accept", "application/json")]).await;
    assert_eq!(r.json()["error"]["message"], "Upgrading <db>");
    assert_eq!(admin_reload(&gh).await.status, 200);
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 503, "the switch holds across a reload");
    assert_eq!(switch(r#"{"site": "blog", "enabled": "auto"}"#).await.status, 200);
    assert_eq!(get(gh.http, "blog.test", "/").await.status, 200);
    // Bad calls say what is wrong.
    assert_eq!(switch(r#"{"site": "nope", "enabled": true}"#).await.status, 404);
    assert_eq!(switch(r#"{"site": "blog", "enabled": "yes"}"#).await.status, 400);
    assert_eq!(switch(r#"{"site": "blog", "enabled": true, "until": "2001-01-01T00:00:00Z"}"#).await.status, 400);
    let list = get(gh.admin, "localhost", "/api/maintenance").await.json();
    assert_eq!(list["sites"].as_array().map(Vec::len), Some(2), "{list}");
}

/// With every backend of a site out of rotation, the site's maintenance page answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_down_shows_the_maintenance_page() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("m.html"), "<h1>Back soon</h1>").expect("write");
    let site = format!(
        "host: shop.test\nmaintenance: {{page: {}/m.html}}\nupstreams:\n  app:\n    backends: [http://{dead}]\n    health_check: {{type: tcp, interval: 100ms, timeout: 100ms, unhealthy_after: 1}}\nroutes:\n  - path: /\n    upstream: app\n",
        dir.path().display()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    assert!(
        wait_until_async(NET_TIMEOUT, || async { get(gh.http, "shop.test", "/").await.status == 503 }).await,
        "{}",
        gh.log()
    );
    let r = get(gh.http, "shop.test", "/").await;
    assert_eq!((r.text(), r.header("retry-after")), ("<h1>Back soon</h1>".to_string(), Some("5")));
}

/// `slow_request`: a request over the warning threshold is logged with its request id and
/// counted by level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_logged_and_counted() {
    let app = Backend::start("app").await;
    let site = format!(
        "host: shop.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      slow_request: {{warning: 150ms, critical: 10s}}\n",
        app.url()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    assert_eq!(get(gh.http, "shop.test", "/fast").await.status, 200);
    let r = get(gh.http, "shop.test", "/sleep/300").await;
    let id = r.header("x-request-id").expect("id").to_string();
    assert!(wait_until(NET_TIMEOUT, || gh.log().contains("slow request")).await, "{}", gh.log());
    let line = gh.log().lines().find(|l| l.contains("slow request")).unwrap_or_default().to_string();
    assert!(line.contains(&id) && line.contains("warning"), "{line}");
    let metrics = get(gh.admin, "localhost", "/metrics").await.text();
    assert!(
        metrics.contains("gatehouse_slow_requests_total{site=\"shop\",route=\"shop#0\",level=\"warning\"} 1"),
        "{metrics}"
    );
    assert_eq!(gh.log().matches("slow request").count(), 1, "the fast request is not slow");
}

/// Failover after connection failures stops after 5 backends: an upstream whose many
/// instances are all gone does not turn one request into a connection attempt (and a log
/// line) per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_tries_at_most_five_backends() {
    let dead: Vec<String> = (0..8)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        })
        .collect();
    let site = format!("host: shop.test\nbackends: [{}]\n", dead.join(", "));
    let gh = Gatehouse::start("", &[("shop", &site)]);
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 502);
    assert!(wait_until(NET_TIMEOUT, || gh.log().contains("request failed")).await, "{}", gh.log());
    assert_eq!(gh.log().matches("backend connection failed").count(), 5, "{}", gh.log());
}

/// A retry after a read timeout has a read timeout of its own: the second backend gets the
/// whole `timeouts.read` again, not what the first one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_read_timeout_gets_a_fresh_deadline() {
    // Accepts, reads, never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_addr = hang.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = hang.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while tokio::io::AsyncReadExt::read(&mut s, &mut buf).await.is_ok_and(|n| n > 0) {}
            });
        }
    });
    let good = Flaky::start("good", 200).await;
    let site = format!(
        "host: shop.test\nupstreams:\n  app:\n    backends: [http://{hang_addr}, {}]\n    load_balancing: {{algorithm: round_robin}}\n    retries: {{attempts: 2, backoff: 1ms}}\nroutes:\n  - path: /\n    upstream: app\n    options: {{timeouts: {{read: 300ms}}}}\n",
        good.url()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    for _ in 0..4 {
        let r = get(gh.http, "shop.test", "/").await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("good")), "{}", gh.log());
    }
    // The good backend was never blamed for the hanging one's timeouts.
    let v = get(gh.admin, "localhost", "/api/backends").await.json();
    let good_entry = v["backends"].as_array().and_then(|l| l.iter().find(|b| b["url"] == good.url()).cloned());
    assert_eq!(good_entry.map(|b| b["failures"].clone()), Some(serde_json::json!(0)), "{v}");
}
