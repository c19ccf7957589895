//! Load balancing: each algorithm's own signature (the exact smooth weighted order, least
//! connections following in-flight requests, a consistent-hash ring that moves only a
//! share of the keys, random that is not a rotation), hashing on client IP and cookie,
//! named upstreams shared by routes, connection failover and counters across reloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::*;

async fn backends(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Backend::start(&format!("b{i}")).await);
    }
    v
}

/// The backend that answered each of `n` requests, in order.
async fn sequence(gh: &Gatehouse, n: usize, headers: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = get_with(gh.http, "lb.test", "/", headers).await;
        assert_eq!(r.status, 200, "{}", r.text());
        out.push(r.json()["backend"].as_str().expect("name").to_string());
    }
    out
}

fn count(seq: &[String]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for s in seq {
        *out.entry(s.clone()).or_default() += 1;
    }
    out
}

async fn tally(gh: &Gatehouse, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    count(&sequence(gh, n, headers).await)
}

fn site_with(bs: &[Backend], weights: &[u32], algo: &str, extra: &str) -> String {
    let list: Vec<String> = bs.iter().zip(weights).map(|(b, w)| format!("    - '{} weight={w}'", b.url())).collect();
    format!("host: lb.test\nbackends:\n{}\noptions:\n  load_balancing: {{algorithm: {algo}{extra}}}\n", list.join("\n"))
}

/// The admin API's view of the first route of site `site`: (in-flight, requests) per backend.
async fn backend_counters(gh: &Gatehouse, site: &str) -> Vec<(u64, u64)> {
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    let route = routes["routes"].as_array().expect("routes").iter().find(|r| r["site"] == site).expect("route").clone();
    route["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| (b["active"].as_u64().expect("active"), b["requests"].as_u64().expect("requests")))
        .collect()
}

/// Rewrites a site file, sends SIGHUP and waits until the admin API shows `backends`
/// backends for that site's first route.
async fn reload_site(gh: &Gatehouse, site: &str, text: &str, backends: usize) {
    std::fs::write(gh.dir.path().join(format!("sites/{site}.yaml")), text).expect("write");
    gh.signal("HUP");
    let done =
        wait_until_async(Duration::from_secs(10), || async { backend_counters(gh, site).await.len() == backends })
            .await;
    assert!(done, "reload did not take effect: {}", gh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_a_rotation() {
    let bs = backends(3).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[1, 1, 1], "round_robin", ""))]);
    let seq = sequence(&gh, 30, &[]).await;
    // Each request takes the next backend in list order, starting with the first.
    let want: Vec<String> = (0..30).map(|i| format!("b{}", i % 3)).collect();
    assert_eq!(seq, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_follows_the_nginx_order() {
    let bs = backends(2).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[3, 1], "weighted_round_robin", ""))]);
    // Weights 3:1 give the smooth order a a b a (not a a a b), cycle after cycle.
    let seq = sequence(&gh, 40, &[]).await;
    let want: Vec<String> = (0..40).map(|i| if i % 4 == 2 { "b1" } else { "b0" }.to_string()).collect();
    assert_eq!(seq, want);
    drop(gh);

    // The documented example: weights 5, 1, 1 give a a b a c a a.
    let bs = backends(3).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[5, 1, 1], "weighted", ""))]);
    let seq = sequence(&gh, 21, &[]).await;
    let cycle = ["b0", "b0", "b1", "b0", "b2", "b0", "b0"];
    let want: Vec<String> = (0..21).map(|i| cycle[i % 7].to_string()).collect();
    assert_eq!(seq, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_follows_weights_without_a_pattern() {
    let bs = backends(2).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[3, 1], "random", ""))]);
    let n = 400;
    let seq = sequence(&gh, n, &[]).await;
    let b0 = seq.iter().filter(|s| *s == "b0").count();
    // Expected 300 (p = 3/4); one standard deviation is sqrt(400 * 3/4 * 1/4) = 8.7, so
    // 255..=345 is more than 5 of them either way (a false failure about once in 3 million
    // runs).
    assert!((255..=345).contains(&b0), "b0 answered {b0} of {n}: {seq:?}");
    // Not a rotation of any short period: a (weighted) round robin repeats itself.
    for period in 1..=8 {
        assert!((0..n - period).any(|i| seq[i] != seq[i + period]), "the sequence repeats every {period}: {seq:?}");
    }
    // Runs of b1 (weight 1) of length two or more happen (about 1 in 16 places); a smooth
    // weighted order never puts b1 twice in a row.
    assert!(seq.windows(2).any(|w| w[0] == "b1" && w[1] == "b1"), "{seq:?}");
}

/// Which backend each of `keys` lands on (hash key: header X-User), checking each key
/// twice lands on the same backend.
async fn owners(gh: &Gatehouse, keys: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for k in keys {
        let seq = sequence(gh, 2, &[("x-user", k)]).await;
        assert_eq!(seq[0], seq[1], "key {k} moved between two requests");
        out.push(seq[0].clone());
    }
    out
}

fn backends_yaml(bs: &[&Backend], algo: &str) -> String {
    let list: Vec<String> = bs.iter().map(|b| format!("    - '{}'", b.url())).collect();
    format!("host: lb.test\nbackends:\n{}\noptions:\n  load_balancing: {algo}\n", list.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_moves_only_a_share_of_the_keys() {
    let bs = backends(4).await;
    let algo = "{algorithm: consistent_hash, hash_key: 'header:X-User'}";
    let three = backends_yaml(&[&bs[0], &bs[1], &bs[2]], algo);
    let gh = Gatehouse::start("", &[("lb", &three)]);
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let before = owners(&gh, &keys).await;
    let used: std::collections::HashSet<_> = before.iter().collect();
    assert_eq!(used.len(), 3, "200 keys should use every backend: {:?}", count(&before));

    // A fourth backend: keys that move, move to it, and only about a quarter move
    // (hash-mod-N would move three quarters).
    reload_site(&gh, "lb", &backends_yaml(&[&bs[0], &bs[1], &bs[2], &bs[3]], algo), 4).await;
    let after = owners(&gh, &keys).await;
    let moved: Vec<usize> = (0..keys.len()).filter(|&i| before[i] != after[i]).collect();
    assert!(moved.iter().all(|&i| after[i] == "b3"), "keys moved between old backends: {:?}", count(&after));
    assert!((20..=90).contains(&moved.len()), "{} of 200 keys moved; about 50 expected", moved.len());

    // Removing a backend moves only that backend's keys.
    reload_site(&gh, "lb", &backends_yaml(&[&bs[0], &bs[2], &bs[3]], algo), 3).await;
    let removed = owners(&gh, &keys).await;
    for i in 0..keys.len() {
        if after[i] != "b1" {
            assert_eq!(removed[i], after[i], "{} moved from {} though its backend stayed", keys[i], after[i]);
        }
    }
    assert!(removed.iter().all(|o| o != "b1"));
}

/// A request from a given loopback source address (127.0.0.x), so the client IP differs
/// without any forwarding header.
async fn get_from(source: [u8; 4], addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((source, 0))).expect("bind source address");
    let stream =
        tokio::time::timeout(NET_TIMEOUT, socket.connect(addr)).await.expect("connect in time").expect("connect");
    let mut req = http::Request::get("/").header("host", "lb.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send_on(stream, req.body(http_body_util::Full::new(bytes::Bytes::new())).expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_client_ip() {
    let bs = backends(3).await;
    // 127.0.0.1 is a trusted proxy: its X-Forwarded-For names the client.
    let gh = Gatehouse::start(
        "trusted_proxies: [127.0.0.1/32]\n",
        &[("lb", &site_with(&bs, &[1, 1, 1], "consistent_hash", ", hash_key: client_ip"))],
    );
    let mut owner = Vec::new();
    for i in 0..30 {
        let ip = format!("203.0.113.{i}");
        // Other headers vary; the client address alone decides.
        let a = get_with(gh.http, "lb.test", "/", &[("x-forwarded-for", &ip), ("x-user", "one")]).await;
        let b =
            get_with(gh.http, "lb.test", "/", &[("x-forwarded-for", &format!("{ip}, 127.0.0.1")), ("x-user", "two")])
                .await;
        assert_eq!(a.json()["backend"], b.json()["backend"], "client {ip} moved");
        owner.push(a.json()["backend"].as_str().expect("name").to_string());
    }
    assert_eq!(count(&owner).len(), 3, "30 clients should use every backend: {owner:?}");

    // Without forwarding headers, the peer address itself: 127.0.0.2 … 127.0.0.21 are
    // untrusted peers, whose X-Forwarded-For claims are ignored.
    let mut owner = Vec::new();
    for i in 2..22u8 {
        let a = get_from([127, 0, 0, i], gh.http, &[]).await;
        let b = get_from([127, 0, 0, i], gh.http, &[("x-forwarded-for", "198.51.100.1")]).await;
        assert_eq!(a.json()["backend"], b.json()["backend"], "peer 127.0.0.{i} moved");
        owner.push(a.json()["backend"].as_str().expect("name").to_string());
    }
    assert!(count(&owner).len() >= 2, "20 peers all hashed to one backend: {owner:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_a_cookie() {
    let bs = backends(3).await;
    let gh = Gatehouse::start(
        "trusted_proxies: [127.0.0.1/32]\n",
        &[("lb", &site_with(&bs, &[1, 1, 1], "consistent_hash", ", hash_key: 'cookie:session'"))],
    );
    let mut owner = Vec::new();
    for i in 0..30 {
        let jar = format!("theme=dark; session=s{i}");
        let other_jar = format!("session=s{i}; theme=light");
        // Different client addresses, same session: same backend.
        let a = get_with(gh.http, "lb.test", "/", &[("cookie", &jar), ("x-forwarded-for", "203.0.113.1")]).await;
        let b = get_with(gh.http, "lb.test", "/", &[("cookie", &other_jar), ("x-forwarded-for", "203.0.113.2")]).await;
        assert_eq!(a.json()["backend"], b.json()["backend"], "session s{i} moved");
        owner.push(a.json()["backend"].as_str().expect("name").to_string());
    }
    assert_eq!(count(&owner).len(), 3, "30 sessions should use every backend: {owner:?}");
    // Without the cookie, the client address decides: one client, one backend.
    let t = tally(&gh, 10, &[("cookie", "theme=dark"), ("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(t.len(), 1, "{t:?}");
}

/// A backend that holds `/hold` requests until released, and counts them.
struct Holding {
    addr: SocketAddr,
    held: Arc<AtomicUsize>,
}

async fn holding_backend(name: &'static str, release: tokio::sync::watch::Receiver<bool>) -> Holding {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = Arc::new(AtomicUsize::new(0));
    let counter = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (counter, release) = (counter.clone(), release.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (counter, mut release) = (counter.clone(), release.clone());
                    async move {
                        if req.uri().path() == "/hold" {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let _ = release.wait_for(|r| *r).await;
                        }
                        let body = serde_json::json!({"backend": name}).to_string();
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Holding { addr, held }
}

/// Waits until the proxy counts exactly `n` requests in flight on site `lb` (a finished
/// request is counted down once its response has gone out, a moment after the client has
/// it).
async fn settled(gh: &Gatehouse, n: u64) {
    let ok = wait_until_async(Duration::from_secs(10), || async {
        backend_counters(gh, "lb").await.iter().map(|c| c.0).sum::<u64>() == n
    })
    .await;
    assert!(ok, "the proxy never showed {n} requests in flight: {:?}", backend_counters(gh, "lb").await);
}

/// Waits until the backends hold `n` requests between them: the proxy counts a request in
/// flight as soon as it has a connection, a moment before the backend has read it.
async fn holding(a: &Holding, b: &Holding, n: usize) {
    let total = || a.held.load(Ordering::SeqCst) + b.held.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || total() == n).await,
        "the backends hold {} requests, not {n}",
        total()
    );
}

/// Starts a `/hold` request in the background.
fn hold(gh: &Gatehouse) -> tokio::task::JoinHandle<Reply> {
    let addr = gh.http;
    tokio::spawn(async move { get(addr, "lb.test", "/hold").await })
}

async fn quick(gh: &Gatehouse) -> String {
    get(gh.http, "lb.test", "/").await.json()["backend"].as_str().expect("name").to_string()
}

fn least_conn_site(a: &Holding, wa: u32, b: &Holding, wb: u32) -> String {
    format!(
        "host: lb.test\nbackends: ['http://{} weight={wa}', 'http://{} weight={wb}']\noptions:\n  load_balancing: {{algorithm: least_conn}}\n",
        a.addr, b.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_follows_requests_in_flight() {
    let (release, rx) = tokio::sync::watch::channel(false);
    let a = holding_backend("a", rx.clone()).await;
    let b = holding_backend("b", rx).await;
    let gh = Gatehouse::start("", &[("lb", &least_conn_site(&a, 1, &b, 1))]);
    let mut holds = Vec::new();

    // One request held on one backend: every other request goes to the idle one
    // (round robin would alternate, random would pick the busy one half of the time).
    holds.push(hold(&gh));
    settled(&gh, 1).await;
    holding(&a, &b, 1).await;
    let idle = if a.held.load(Ordering::SeqCst) == 1 { "b" } else { "a" };
    for _ in 0..8 {
        assert_eq!(quick(&gh).await, idle, "a request went to the busy backend");
        settled(&gh, 1).await;
    }
    // A second hold goes to the idle backend too, evening them out.
    holds.push(hold(&gh));
    settled(&gh, 2).await;
    holding(&a, &b, 2).await;
    assert_eq!((a.held.load(Ordering::SeqCst), b.held.load(Ordering::SeqCst)), (1, 1));
    release.send(true).expect("release");
    for h in holds {
        assert_eq!(h.await.expect("join").status, 200);
    }
    settled(&gh, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_divides_by_weight() {
    let (release, rx) = tokio::sync::watch::channel(false);
    let a = holding_backend("a", rx.clone()).await;
    let b = holding_backend("b", rx).await;
    let gh = Gatehouse::start("", &[("lb", &least_conn_site(&a, 3, &b, 1))]);
    let held = || (a.held.load(Ordering::SeqCst), b.held.load(Ordering::SeqCst));
    let mut holds = Vec::new();
    // With a weighing 3 and b 1, four holds end 3:1 whatever the first pick.
    for n in 1..=4 {
        holds.push(hold(&gh));
        settled(&gh, n).await;
    }
    holding(&a, &b, 4).await;
    assert_eq!(held(), (3, 1));
    // 3/3 against 1/1 is a tie; the fifth goes either way, and then each quick request
    // goes to the other one: (4, 1) makes b the lower (1/1 < 4/3), (3, 2) makes a (3/3 < 2/1).
    holds.push(hold(&gh));
    settled(&gh, 5).await;
    holding(&a, &b, 5).await;
    let lower = match held() {
        (4, 1) => "b",
        (3, 2) => "a",
        other => panic!("five holds ended {other:?}"),
    };
    for _ in 0..6 {
        assert_eq!(quick(&gh).await, lower, "held {:?} with weights 3:1", held());
        settled(&gh, 5).await;
    }
    release.send(true).expect("release");
    for h in holds {
        assert_eq!(h.await.expect("join").status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_upstream_is_shared_by_its_routes() {
    let bs = backends(3).await;
    let list: Vec<String> = bs.iter().map(|b| format!("'{}'", b.url())).collect();
    let site = format!(
        "host: lb.test\nupstreams:\n  api:\n    backends: [{}]\nroutes:\n  - path: /a\n    upstream: api\n  - path: /b\n    upstream: api\n",
        list.join(", ")
    );
    let gh = Gatehouse::start("", &[("lb", &site)]);
    // Alternating routes continue one rotation: one balancer for both.
    let mut seq = Vec::new();
    for i in 0..12 {
        let path = if i % 2 == 0 { "/a" } else { "/b" };
        seq.push(get(gh.http, "lb.test", path).await.json()["backend"].as_str().expect("name").to_string());
    }
    let want: Vec<String> = (0..12).map(|i| format!("b{}", i % 3)).collect();
    assert_eq!(seq, want);
    // Both routes show the same counters: the requests of both.
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    let lists: Vec<Vec<u64>> = routes["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| {
            r["backends"].as_array().expect("backends").iter().map(|b| b["requests"].as_u64().expect("n")).collect()
        })
        .collect();
    assert_eq!(lists, vec![vec![4, 4, 4], vec![4, 4, 4]], "{routes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_fails_over_then_502() {
    let good = Backend::start("good").await;
    // A port that refuses connections: bound but never listening, and held for the whole
    // test, so no other test can start listening on it meanwhile.
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let dead = held.local_addr().expect("addr");
    let gh = Gatehouse::start(
        "",
        &[
            ("lb", &format!("host: lb.test\nbackends: ['http://{dead}', '{}']\n", good.url())),
            ("down", &format!("host: down.test\nbackend: 'http://{dead}'\n")),
        ],
    );
    for _ in 0..4 {
        let r = get(gh.http, "lb.test", "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["backend"], "good");
    }
    let r = get(gh.http, "down.test", "/").await;
    assert_eq!(r.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancer_state_and_counters_survive_reload() {
    let bs = backends(3).await;
    let mut gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[5, 1, 1], "weighted_round_robin", ""))]);
    // Half-way through a 7-request cycle...
    let first = sequence(&gh, 3, &[]).await;
    // ...reload with an unrelated site added: the group is unchanged, so the cycle continues.
    let other = Backend::start("other").await;
    std::fs::write(gh.dir.path().join("sites/other.yaml"), format!("host: other.test\nbackend: {}\n", other.url()))
        .expect("write");
    gh.signal("HUP");
    let reloaded =
        wait_until_async(Duration::from_secs(10), || async { get(gh.http, "other.test", "/").await.status == 200 })
            .await;
    assert!(reloaded, "reload did not take effect: {}", gh.log());
    let second = sequence(&gh, 4, &[]).await;
    assert_eq!([first, second].concat(), ["b0", "b0", "b1", "b0", "b2", "b0", "b0"]);
    // The admin API's request counters kept counting across the reload.
    settled(&gh, 0).await;
    assert_eq!(backend_counters(&gh, "lb").await, vec![(0, 5), (0, 1), (0, 1)]);
    // A broken file is rejected and the running configuration keeps serving.
    std::fs::write(gh.dir.path().join("sites/broken.yaml"), "host: broken.test\nbakend: x\n").expect("write");
    gh.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || gh.log().contains("reload rejected")).await,
        "no rejection logged: {}",
        gh.log()
    );
    assert_eq!(get(gh.http, "other.test", "/").await.status, 200);
    assert_eq!(get(gh.http, "broken.test", "/").await.status, 404);
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Two backends on one port, on 127.0.0.1 and 127.0.0.2, so one host name can stand for
/// either or both.
async fn backend_pair() -> (Backend, Backend) {
    for _ in 0..20 {
        let a = Backend::start("a").await;
        let other = SocketAddr::from(([127, 0, 0, 2], a.addr.port()));
        if let Some(b) = Backend::start_on("b", other).await {
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

/// Sends `n` requests and counts which backend answered each.
async fn counts(gh: &Gatehouse, n: usize) -> (usize, usize) {
    let t = tally(gh, n, &[]).await;
    (t.get("a").copied().unwrap_or(0), t.get("b").copied().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_rotate_over_their_addresses_and_follow_dns_changes() {
    let (a, b) = backend_pair().await;
    let hosts_dir = tempfile::tempdir().expect("tempdir");
    let hosts = hosts_dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 svc.test\n127.0.0.2 svc.test\n").expect("hosts");
    let site = format!("host: lb.test\nbackend: http://svc.test:{}\n", a.addr.port());
    let gh = Gatehouse::start_with_hosts("dns_refresh: 1s\n", &[("lb", &site)], &hosts);

    // Both addresses of the name take turns.
    let (on_a, on_b) = counts(&gh, 20).await;
    assert_eq!((on_a, on_b), (10, 10), "requests should alternate between the two addresses");

    // The name moves to one address (a container replaced): after the next refresh every
    // request goes there. The file is rewritten in place, so the bind mount sees it.
    std::fs::write(&hosts, "127.0.0.2 svc.test\n").expect("hosts");
    let moved = wait_until_async(Duration::from_secs(10), || async { counts(&gh, 6).await == (0, 6) }).await;
    assert!(moved, "the new address was not picked up; log:\n{}", gh.log());
    let a_before = a.count();

    // A name that stops resolving keeps its last addresses: requests still succeed.
    std::fs::write(&hosts, "127.0.0.1 other.test\n").expect("hosts");
    let logged = wait_until(Duration::from_secs(10), || gh.log().contains("keeping old addresses")).await;
    assert!(logged, "no failed re-resolution logged; log:\n{}", gh.log());
    assert_eq!(counts(&gh, 6).await, (0, 6));
    assert_eq!(a.count(), a_before, "nothing goes back to the address the name left");
    assert!(b.count() >= 16, "b answered {}", b.count());
}
