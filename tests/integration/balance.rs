//! Load-balancing distributions, connection failover and counters across reloads.

use std::collections::HashMap;

use crate::harness::*;

async fn backends(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Backend::start(&format!("b{i}")).await);
    }
    v
}

async fn tally(gh: &Gatehouse, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let r = get_with(gh.http, "lb.test", "/", headers).await;
        assert_eq!(r.status, 200, "{}", r.text());
        *out.entry(r.json()["backend"].as_str().expect("name").to_string()).or_default() += 1;
    }
    out
}

fn site_with(bs: &[Backend], weights: &[u32], algo: &str, extra: &str) -> String {
    let list: Vec<String> = bs.iter().zip(weights).map(|(b, w)| format!("    - '{} weight={w}'", b.url())).collect();
    format!("host: lb.test\nbackends:\n{}\noptions:\n  load_balancing: {{algorithm: {algo}{extra}}}\n", list.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even() {
    let bs = backends(3).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[1, 1, 1], "round_robin", ""))]);
    let t = tally(&gh, 30, &[]).await;
    for b in &bs {
        assert_eq!(t.get(&b.name), Some(&10), "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_follows_weights() {
    let bs = backends(3).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[5, 1, 1], "weighted_round_robin", ""))]);
    let t = tally(&gh, 70, &[]).await;
    assert_eq!(t.get("b0"), Some(&50), "{t:?}");
    assert_eq!(t.get("b1"), Some(&10), "{t:?}");
    assert_eq!(t.get("b2"), Some(&10), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reaches_every_backend_by_weight() {
    let bs = backends(2).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[3, 1], "random", ""))]);
    let t = tally(&gh, 200, &[]).await;
    let (b0, b1) = (t.get("b0").copied().unwrap_or(0), t.get("b1").copied().unwrap_or(0));
    assert_eq!(b0 + b1, 200);
    // Expected 150/50; the bounds are > 6 standard deviations wide.
    assert!((110..=190).contains(&b0), "{t:?}");
    assert!(b1 >= 10, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_keys_on_one_backend() {
    let bs = backends(3).await;
    let gh =
        Gatehouse::start("", &[("lb", &site_with(&bs, &[1, 1, 1], "consistent_hash", ", hash_key: 'header:X-User'"))]);
    let mut owners = HashMap::new();
    for user in 0..30 {
        let u = format!("user-{user}");
        let t = tally(&gh, 4, &[("x-user", &u)]).await;
        assert_eq!(t.len(), 1, "user {u} spread over {t:?}");
        owners.insert(u, t.into_keys().next().expect("one"));
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert_eq!(distinct.len(), 3, "30 keys should use every backend: {owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_the_busy_backend() {
    let bs = backends(2).await;
    let gh = Gatehouse::start("", &[("lb", &site_with(&bs, &[1, 1], "least_conn", ""))]);
    // Hold 4 slow requests; least_conn spreads them 2/2 (each goes to the idler backend).
    let mut slow = Vec::new();
    for _ in 0..4 {
        let addr = gh.http;
        slow.push(tokio::spawn(async move { get(addr, "lb.test", "/sleep/1500").await }));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((bs[0].count(), bs[1].count()), (2, 2));
    // Make backend b0 busier: two more slow requests both go... to the least loaded each time.
    let addr = gh.http;
    let extra = tokio::spawn(async move { get(addr, "lb.test", "/sleep/1500").await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let busy_first = if bs[0].count() == 3 { 0 } else { 1 };
    // Now the next quick request must go to the other backend.
    let r = get(gh.http, "lb.test", "/").await;
    assert_eq!(r.json()["backend"], format!("b{}", 1 - busy_first));
    for s in slow {
        assert_eq!(s.await.expect("join").status, 200);
    }
    assert_eq!(extra.await.expect("join").status, 200);
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
    let first = tally(&gh, 3, &[]).await;
    // ...reload with an unrelated site added: the group is unchanged, so the cycle continues.
    let other = Backend::start("other").await;
    std::fs::write(gh.dir.path().join("sites/other.yaml"), format!("host: other.test\nbackend: {}\n", other.url()))
        .expect("write");
    gh.signal("HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if get(gh.http, "other.test", "/").await.status == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "reload did not take effect: {}", gh.log());
    let second = tally(&gh, 4, &[]).await;
    let total = |name: &str| first.get(name).copied().unwrap_or(0) + second.get(name).copied().unwrap_or(0);
    assert_eq!((total("b0"), total("b1"), total("b2")), (5, 1, 1), "{first:?} then {second:?}");
    // The admin API's request counters kept counting across the reload.
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    let lb = routes["routes"].as_array().expect("routes").iter().find(|r| r["site"] == "lb").expect("lb route").clone();
    let counted: u64 =
        lb["backends"].as_array().expect("backends").iter().map(|b| b["requests"].as_u64().expect("n")).sum();
    assert_eq!(counted, 7);
    // A broken file is rejected and the running configuration keeps serving.
    std::fs::write(gh.dir.path().join("sites/broken.yaml"), "host: broken.test\nbakend: x\n").expect("write");
    gh.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(get(gh.http, "other.test", "/").await.status, 200);
    assert!(gh.log().contains("reload rejected"), "{}", gh.log());
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(std::time::Duration::from_secs(10)), Some(0));
}

/// Two backends on one port, on 127.0.0.1 and 127.0.0.2, so one host name can stand for
/// either or both.
async fn backend_pair() -> (Backend, Backend) {
    for _ in 0..20 {
        let a = Backend::start("a").await;
        let other = std::net::SocketAddr::from(([127, 0, 0, 2], a.addr.port()));
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
    let Some(gh) = Gatehouse::start_with_hosts("dns_refresh: 1s\n", &[("lb", &site)], &hosts) else {
        return;
    };

    // Both addresses of the name take turns.
    let (on_a, on_b) = counts(&gh, 20).await;
    assert_eq!((on_a, on_b), (10, 10), "requests should alternate between the two addresses");

    // The name moves to one address (a container replaced): after the next refresh every
    // request goes there. The file is rewritten in place, so the bind mount sees it.
    std::fs::write(&hosts, "127.0.0.2 svc.test\n").expect("hosts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if counts(&gh, 6).await == (0, 6) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new address was not picked up; log:\n{}", gh.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let a_before = a.count();

    // A name that stops resolving keeps its last addresses: requests still succeed.
    std::fs::write(&hosts, "127.0.0.1 other.test\n").expect("hosts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gh.log().contains("keeping old addresses") {
        assert!(std::time::Instant::now() < deadline, "no failed re-resolution logged; log:\n{}", gh.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(counts(&gh, 6).await, (0, 6));
    assert_eq!(a.count(), a_before, "nothing goes back to the address the name left");
    assert!(b.count() >= 16, "b answered {}", b.count());
}
