//! Active health checks: a backend that fails its checks gets no traffic, comes back when
//! it passes again, and an upstream with every backend down answers 503 with Retry-After,
//! at once.

use crate::harness::*;

/// A loopback address nothing listens on (for now).
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

async fn health_of(gh: &Gatehouse, url: &str) -> String {
    let v = get(gh.admin, "localhost", "/api/backends").await.json();
    v["backends"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["url"] == url))
        .and_then(|b| b["health"].as_str())
        .unwrap_or("missing")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_take_a_backend_out_and_passed_ones_bring_it_back() {
    let a = Backend::start("a").await;
    let b_addr = free_addr();
    let b_url = format!("http://{b_addr}");
    let dead = free_addr();
    let check = "health_check: {path: /health, interval: 200ms, timeout: 200ms, unhealthy_after: 2, healthy_after: 2}";
    let hooks = crate::webhooks::Receiver::start(0).await;
    let gh = Gatehouse::start(
        &format!(
            "webhooks:\n  - url: {}\n    events: [backend_down, backend_recovered]\n    throttle: 0s\n",
            hooks.url("/hook")
        ),
        &[
            (
                "shop",
                &format!(
                    "host: shop.test\nupstreams:\n  app:\n    backends: [{}, {b_url}]\n    {check}\nroutes:\n  - path: /\n    upstream: app\n",
                    a.url()
                ),
            ),
            (
                "gone",
                &format!(
                    "host: gone.test\nupstreams:\n  app:\n    backends: [http://{dead}]\n    {check}\nroutes:\n  - path: /\n    upstream: app\n"
                ),
            ),
        ],
    );
    assert!(wait_until_async(NET_TIMEOUT, || async { health_of(&gh, &b_url).await == "down" }).await, "{}", gh.log());
    assert_eq!(health_of(&gh, &a.url()).await, "up");
    let metrics = get(gh.admin, "localhost", "/metrics").await.text();
    assert!(
        metrics.contains(&format!("backend=\"{b_url}\"}} 0")) && metrics.contains("gatehouse_backend_up"),
        "{metrics}"
    );
    // Every request goes to the healthy backend: no 502 from the dead one.
    for _ in 0..20 {
        let r = get(gh.http, "shop.test", "/x").await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("a")));
    }
    // Every backend down: 503 at once, with Retry-After, and the side in the record.
    let started = std::time::Instant::now();
    let r = get(gh.http, "gone.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());

    // The backend starts: two passed checks bring it back, and it gets its share.
    let Some(b) = Backend::start_on("b", b_addr).await else { panic!("{b_addr} was taken meanwhile") };
    assert!(wait_until_async(NET_TIMEOUT, || async { health_of(&gh, &b_url).await == "up" }).await, "{}", gh.log());
    let mut to_b = 0;
    for _ in 0..10 {
        if get(gh.http, "shop.test", "/y").await.header("x-backend") == Some("b") {
            to_b += 1;
        }
    }
    assert!(to_b >= 4, "b got {to_b} of 10 after coming back");
    assert!(b.count() >= 2 + 4, "checks and requests reached b: {}", b.count());
    assert!(gh.log().contains("backend down: taken out of rotation"), "{}", gh.log());
    // Webhooks: the dead backends went down (b and gone's), then b recovered.
    let events = || -> Vec<(String, String)> {
        hooks
            .on("/hook")
            .iter()
            .map(|e| (e["event"].as_str().unwrap_or("").to_string(), e["subject"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    assert!(
        wait_until(NET_TIMEOUT, || events().contains(&("backend_recovered".to_string(), b_url.clone()))).await,
        "{:?}",
        events()
    );
    assert!(events().contains(&("backend_down".to_string(), b_url.clone())), "{:?}", events());
    assert!(!events().iter().any(|(_, s)| *s == a.url()), "the healthy backend was announced: {:?}", events());
}

/// Passive checks: a backend that fails requests (here: refused connections, failed over
/// to the other backend) is ejected after `failures` of them and not tried again until its
/// ejection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_eject_a_backend_for_a_while() {
    let a = Backend::start("a").await;
    let dead = free_addr();
    let dead_url = format!("http://{dead}");
    let gh = Gatehouse::start(
        "",
        &[(
            "shop",
            &format!(
                "host: shop.test\nupstreams:\n  app:\n    backends: [{}, {dead_url}]\n    passive_check: {{failures: 3, ejection: 30s}}\nroutes:\n  - path: /\n    upstream: app\n",
                a.url()
            ),
        )],
    );
    let backend = |v: &serde_json::Value, url: &str| {
        v["backends"].as_array().and_then(|l| l.iter().find(|b| b["url"] == url).cloned()).unwrap_or_default()
    };
    for _ in 0..30 {
        let r = get(gh.http, "shop.test", "/").await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("a")), "failover hides the dead backend");
    }
    let v = get(gh.admin, "localhost", "/api/backends").await.json();
    let d = backend(&v, &dead_url);
    assert_eq!((d["health"].as_str(), d["failures"].as_u64()), (Some("ejected"), Some(3)), "{v}");
    assert!(gh.log().contains("backend ejected after failed requests"), "{}", gh.log());
    // A config error names the rule.
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        "",
        &[(
            "s",
            "host: s.test\nupstreams:\n  app:\n    backends: [http://127.0.0.1:1]\n    passive_check: {ejection: 1m, max_ejection: 10s}\nroutes:\n  - path: /\n    upstream: app\n",
        )],
    );
    let (code, out) = check(dir.path());
    assert!(code == 1 && out.contains("passive_check.max_ejection"), "{out}");
}

/// A backend that accepts and closes every connection at once: the request breaks before
/// any response head.
async fn slamming_backend() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    format!("http://{addr}")
}

/// `retries`: a GET whose attempt broke before a response head goes to the other backend;
/// a POST does not (not idempotent), and neither does anything without `retries`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_send_idempotent_requests_to_another_backend() {
    let good = Backend::start("good").await;
    let bad = slamming_backend().await;
    let site = |retries: &str| {
        format!(
            "host: shop.test\nupstreams:\n  app:\n    backends: [{bad}, {}]\n    load_balancing: {{algorithm: round_robin}}\n    {retries}\nroutes:\n  - path: /\n    upstream: app\n",
            good.url()
        )
    };
    let gh = Gatehouse::start("", &[("shop", &site("retries: {attempts: 2, backoff: 10ms}"))]);
    for _ in 0..6 {
        let r = get(gh.http, "shop.test", "/").await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("good")), "{}", r.text());
    }
    let mut failed_posts = 0;
    for _ in 0..6 {
        let post = http::Request::post("/")
            .header("host", "shop.test")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        if send(gh.http, post).await.status == 502 {
            failed_posts += 1;
        }
    }
    assert!(failed_posts >= 2, "a POST was retried: {failed_posts} of 6 failed");

    let gh = Gatehouse::start("", &[("shop", &site(""))]);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(get(gh.http, "shop.test", "/").await.status.as_u16());
        }
        v
    };
    assert!(statuses.contains(&502), "without retries the broken backend shows: {statuses:?}");
}
