//! Automatic certificates against Debian's Pebble: HTTP-01, TLS-ALPN-01 and DNS-01 issuance,
//! restart without re-issuance, renewal under load, and a CA outage with growing backoff.
//!
//! Pebble validates whichever challenge the client picks, so each issuance test leaves
//! pebble only one way to succeed: the validation ports of the other challenge types point
//! at a port that refuses connections.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

fn acme_config(dir: &Path, pebble: &Pebble, http: u16, https: u16, acme_extra: &str, backend: &Backend) {
    std::fs::write(dir.join("pebble-ca.pem"), &pebble.ca_pem).expect("write");
    write_config(
        dir,
        &format!(
            "listen: {{http: 127.0.0.1:{http}, https: 127.0.0.1:{https}}}\ntls:\n  acme:\n    email: admin@example.test\n    ca: {}\n    ca_root: pebble-ca.pem\n{acme_extra}",
            pebble.directory
        ),
        &[("shop", &format!("hosts: [shop.test, www.shop.test]\nbackend: {}\n", backend.url()))],
    );
    let main = std::fs::read_to_string(dir.join("gatehouse.yaml"))
        .expect("read")
        .replace("log: {level: warn, format: json}", "log: {level: info, format: json}");
    std::fs::write(dir.join("gatehouse.yaml"), main).expect("write");
}

/// Which of gatehouse's listeners pebble's validator can reach.
#[derive(Clone, Copy, PartialEq)]
enum Reach {
    /// HTTP-01 only: pebble's TLS-ALPN port refuses connections.
    HttpOnly,
    /// TLS-ALPN-01 only: pebble's HTTP port refuses connections.
    TlsOnly,
    /// Neither: only DNS-01 can succeed.
    Neither,
    Both,
}

/// Gatehouse with ACME against a fresh pebble, on leased fixed ports (pebble must know
/// them before either starts). The leases live as long as this, so restarts of gatehouse
/// on the same ports cannot collide with another test.
struct Acme {
    gh: Gatehouse,
    pebble: Pebble,
    http: u16,
    https: u16,
    _leases: [PortLease; 2],
    /// Bound, never listening: where the ruled-out challenge types are sent.
    _refusing: tokio::net::TcpSocket,
}

/// `hook`: a DNS hook script body; written next to the configuration (with MGMT replaced by
/// challtestsrv's management port) and named by SCRIPT in `challenge_yaml`.
fn start_acme(challenge_yaml: &str, hook: Option<&str>, reach: Reach, backend: &Backend) -> Acme {
    let refusing = tokio::net::TcpSocket::new_v4().expect("socket");
    refusing.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let dead = refusing.local_addr().expect("addr").port();
    for attempt in 1..=3 {
        let leases = lease_ports::<2>();
        let [http, https] = leases.each_ref().map(|l| l.port);
        let pebble_http = if matches!(reach, Reach::HttpOnly | Reach::Both) { http } else { dead };
        let pebble_tls = if matches!(reach, Reach::TlsOnly | Reach::Both) { https } else { dead };
        let pebble = Pebble::start(pebble_http, pebble_tls);
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("dns-hook.sh");
        if let Some(body) = hook {
            std::fs::write(&script, body.replace("MGMT", &pebble.challtest_mgmt.to_string())).expect("write hook");
        }
        let extra = challenge_yaml.replace("SCRIPT", &script.display().to_string());
        acme_config(dir.path(), &pebble, http, https, &extra, backend);
        match Gatehouse::try_start_in(dir) {
            Ok(gh) => return Acme { gh, pebble, http, https, _leases: leases, _refusing: refusing },
            // A process outside the test suite took a leased port: start over on new ones.
            Err(e) if e.port_taken() && attempt < 3 => continue,
            Err(e) => panic!("gatehouse did not start; stderr:\n{}", e.log),
        }
    }
    unreachable!("the last attempt panics")
}

impl Acme {
    /// Stops gatehouse gracefully and starts it again on the same directory and ports,
    /// after `edit` changed the main file. Retries while a port is still taken (leased
    /// ports can only be held by a process outside the test suite, or briefly by the old
    /// process's sockets). Returns the stopped process's log.
    fn restart(&mut self, edit: impl Fn(String) -> String) -> String {
        self.gh.signal("TERM");
        assert_eq!(self.gh.wait_exit(Duration::from_secs(10)), Some(0), "{}", self.gh.log());
        let old_log = self.gh.log();
        let mut dir = std::mem::replace(&mut self.gh.dir, tempfile::tempdir().expect("tempdir"));
        let main = std::fs::read_to_string(dir.path().join("gatehouse.yaml")).expect("read");
        std::fs::write(dir.path().join("gatehouse.yaml"), edit(main)).expect("write");
        let deadline = Instant::now() + Duration::from_secs(10);
        self.gh = loop {
            match Gatehouse::try_start_in(dir) {
                Ok(gh) => break gh,
                Err(e) if e.port_taken() && Instant::now() < deadline => dir = e.dir,
                Err(e) => panic!("gatehouse did not restart on ports {}/{}:\n{}", self.http, self.https, e.log),
            }
        };
        old_log
    }

    /// Waits until the site's ACME certificate is served; returns its DER.
    async fn wait_for_certificate(&self, limit: Duration) -> Vec<u8> {
        let (gh, https) = (&self.gh, self.gh.https.expect("https"));
        let issued = wait_until_async(limit, || async {
            // A failed order is a failure here: no need to wait for the retry.
            let log = gh.log();
            assert!(
                !log.contains("certificate request failed"),
                "certificate request failed:\n{log}\npebble:\n{}",
                self.pebble.log()
            );
            let inv = get(gh.admin, "localhost", "/api/certs").await.json();
            inv["certificates"].as_array().expect("list").iter().any(|c| {
                c["names"].as_array().is_some_and(|n| n.iter().any(|n| n == "shop.test"))
                    && c["issuer"].as_str().is_some_and(|i| i.contains("Pebble"))
            })
        })
        .await;
        assert!(issued, "no certificate in time.\ngatehouse:\n{}\npebble:\n{}", gh.log(), self.pebble.log());
        let conn = tls_connect(https, &accept_any_connector(), "www.shop.test").await.expect("handshake");
        conn.peer_der
    }
}

/// Issues with one challenge type, the only one pebble can validate, and checks the
/// certificate serves every host of the site.
async fn issue_with(challenge_yaml: &str, hook: Option<&str>, reach: Reach) -> Acme {
    let backend = Backend::start("shop").await;
    let acme = start_acme(challenge_yaml, hook, reach, &backend);
    let der = acme.wait_for_certificate(Duration::from_secs(60)).await;
    assert!(!der.is_empty());
    // The issued certificate serves real requests, for every host of the site.
    let conn =
        tls_connect(acme.gh.https.expect("https"), &accept_any_connector(), "shop.test").await.expect("handshake");
    assert_eq!(conn.peer_der, der);
    let r = send_on(conn.stream, get_req("shop.test", "/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "shop");
    // Key material is private to the owner.
    let key = acme.gh.dir.path().join("data/acme/certs/shop/privkey.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).expect("key file").permissions());
    assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    acme
}

/// Pebble logs this line when it validates an HTTP-01 challenge.
const PEBBLE_HTTP01: &str = "Attempting to validate w/ HTTP";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance() {
    let acme = issue_with("    challenge: http-01\n", None, Reach::HttpOnly).await;
    assert!(acme.pebble.log().contains(PEBBLE_HTTP01), "pebble validated no HTTP-01 challenge:\n{}", acme.pebble.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issuance() {
    let acme = issue_with("    challenge: tls-alpn-01\n", None, Reach::TlsOnly).await;
    assert!(!acme.pebble.log().contains(PEBBLE_HTTP01), "an HTTP-01 challenge was tried:\n{}", acme.pebble.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_issuance_through_a_hook() {
    // The hook publishes TXT records in pebble-challtestsrv, as a DNS provider's CLI would,
    // and notes each call next to itself.
    let body = r#"#!/bin/sh
echo "$1 $2" >> "$(dirname "$0")/hook.log"
case "$1" in
  set) curl -sf --max-time 10 -X POST -d "{\"host\":\"$2.\",\"value\":\"$3\"}" http://127.0.0.1:MGMT/set-txt ;;
  clear) curl -sf --max-time 10 -X POST -d "{\"host\":\"$2.\"}" http://127.0.0.1:MGMT/clear-txt ;;
esac
"#;
    let acme = issue_with("    challenge: dns-01\n    dns_hook: sh SCRIPT\n", Some(body), Reach::Neither).await;
    let calls = std::fs::read_to_string(acme.gh.dir.path().join("hook.log")).expect("the hook ran");
    let mut calls: Vec<&str> = calls.lines().collect();
    calls.sort_unstable();
    assert_eq!(
        calls,
        [
            "clear _acme-challenge.shop.test",
            "clear _acme-challenge.www.shop.test",
            "set _acme-challenge.shop.test",
            "set _acme-challenge.www.shop.test"
        ]
    );
    assert!(!acme.pebble.log().contains(PEBBLE_HTTP01), "an HTTP-01 challenge was tried:\n{}", acme.pebble.log());
}

/// ACME follows the running configuration: a site added by a reload (here through the file
/// watcher) gets its certificate without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_added_by_reload_gets_a_certificate() {
    let backend = Backend::start("shop").await;
    let acme = start_acme("    challenge: http-01\n", None, Reach::HttpOnly, &backend);
    acme.wait_for_certificate(Duration::from_secs(60)).await;
    let gh = &acme.gh;
    std::fs::write(gh.dir.path().join("sites/blog.yaml"), format!("host: blog.test\nbackend: {}\n", backend.url()))
        .expect("write");
    let issued = wait_until_async(Duration::from_secs(60), || async {
        let inv = get(gh.admin, "localhost", "/api/certs").await.json();
        inv["certificates"].as_array().expect("list").iter().any(|c| {
            c["names"].as_array().is_some_and(|n| n.iter().any(|n| n == "blog.test"))
                && c["issuer"].as_str().is_some_and(|i| i.contains("Pebble"))
        })
    })
    .await;
    assert!(issued, "no certificate for the added site.\ngatehouse:\n{}\npebble:\n{}", gh.log(), acme.pebble.log());
    let conn = tls_connect(gh.https.expect("https"), &accept_any_connector(), "blog.test").await.expect("handshake");
    let r = send_on(conn.stream, get_req("blog.test", "/")).await;
    assert_eq!(r.status, 200);
    // The first site's certificate was not requested again.
    assert_eq!(acme.gh.log().matches("certificate issued").count(), 2, "{}", acme.gh.log());
}

/// The `attempt` and `retry_in` of each logged failed certificate request, in order.
fn failures(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter(|l| l.contains("certificate request failed"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["attempt"].as_u64().unwrap_or(0), v["retry_in"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// "10s" (a Duration's Debug form) in seconds.
fn secs(debug: &str) -> f64 {
    debug.strip_suffix('s').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a duration: {debug:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_certificate_renewal_swaps_it_and_outages_keep_the_old_one() {
    let backend = Backend::start("shop").await;
    let mut acme = start_acme("", None, Reach::Both, &backend);
    let first = acme.wait_for_certificate(Duration::from_secs(60)).await;
    let issued = |acme: &Acme| acme.gh.log().matches("\"certificate issued\"").count();
    assert_eq!(issued(&acme), 1, "{}", acme.gh.log());

    // Restart: the stored certificate serves at once, and nothing is requested: once the
    // process has served and exited, its log holds every request it made.
    acme.restart(|main| main);
    let conn =
        tls_connect(acme.gh.https.expect("https"), &accept_any_connector(), "shop.test").await.expect("handshake");
    assert_eq!(conn.peer_der, first, "restart must serve the stored certificate");
    assert_eq!(send_on(conn.stream, get_req("shop.test", "/")).await.status, 200);

    // Renewal (forced by renew_before longer than pebble's 45-day lifetime) while requests
    // keep flowing.
    let restarted = acme.restart(|main| {
        main.replace("    ca_root: pebble-ca.pem\n", "    ca_root: pebble-ca.pem\n    renew_before: 60d\n")
    });
    assert!(restarted.contains("gatehouse started"), "{restarted}");
    assert!(!restarted.contains("requesting certificate"), "restart re-requested:\n{restarted}");
    let https_addr = acme.gh.https.expect("https");
    // A load loop, not a wait: every handshake and request must succeed until the new
    // certificate shows up.
    let mut served: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut renewed = false;
    while !renewed && Instant::now() < deadline {
        let conn =
            tls_connect(https_addr, &accept_any_connector(), "shop.test").await.expect("handshake during renewal");
        served.push(conn.peer_der.clone());
        let r = send_on(conn.stream, get_req("shop.test", "/")).await;
        assert_eq!(r.status, 200, "a request failed during renewal");
        renewed = conn_changed(&served, &first);
    }
    assert!(renewed, "never renewed:\n{}\n{}", acme.gh.log(), acme.pebble.log());
    assert!(served.len() > 1 && served[0] == first, "the old certificate served until the new one was ready");
    let renewed = served.last().cloned().expect("served");

    // The CA goes away: renewal fails, is retried after growing intervals, and the current
    // certificate keeps serving.
    acme.pebble.stop();
    acme.restart(|main| main);
    let gh = &acme.gh;
    let t1 = wait_until(Duration::from_secs(20), || !failures(&gh.log()).is_empty()).await.then(Instant::now);
    assert!(t1.is_some(), "no failure logged:\n{}", gh.log());
    let conn = tls_connect(gh.https.expect("https"), &accept_any_connector(), "shop.test").await.expect("handshake");
    assert_eq!(conn.peer_der, renewed, "the last good certificate must keep serving");
    let first_retry = secs(&failures(&gh.log())[0].1);
    let second = wait_until(Duration::from_secs_f64(first_retry + 15.0), || failures(&gh.log()).len() >= 2).await;
    assert!(second, "no second attempt within {first_retry}s + 15s:\n{}", gh.log());
    let gap = t1.map(|t| t.elapsed()).unwrap_or_default();
    let log = failures(&gh.log());
    assert_eq!((log[0].0, log[1].0), (1, 2), "{log:?}");
    assert!(secs(&log[1].1) > secs(&log[0].1), "backoff must grow: {log:?}");
    // The second attempt waited (about) the announced interval.
    assert!(gap.as_secs_f64() >= first_retry - 1.0, "retried after {gap:?}, announced {first_retry}s: {log:?}");
}

fn conn_changed(served: &[Vec<u8>], first: &[u8]) -> bool {
    served.last().is_some_and(|d| d.as_slice() != first)
}

/// A stream that names its host (`tls.hosts`) gets its certificate from ACME like a site,
/// here added by a reload, and serves it to its TLS clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_naming_its_host_gets_an_acme_certificate() {
    let backend = Backend::start("shop").await;
    let acme = start_acme("    challenge: http-01\n", None, Reach::HttpOnly, &backend);
    acme.wait_for_certificate(Duration::from_secs(60)).await;
    let gh = &acme.gh;
    let echo_addr = crate::streams::echo().await;
    let [lease] = lease_ports::<1>();
    let port = lease.port;
    drop(lease);
    let stream = format!(
        "streams:\n  - name: db\n    listen: 127.0.0.1:{port}\n    protocol: redis\n    tls: {{hosts: [db.shop.test]}}\n    backends: [{echo_addr}]\n"
    );
    std::fs::write(gh.dir.path().join("sites/db.yaml"), stream).expect("write");
    let issued = wait_until_async(Duration::from_secs(60), || async {
        let inv = get(gh.admin, "localhost", "/api/certs").await.json();
        inv["certificates"].as_array().expect("list").iter().any(|c| {
            c["names"].as_array().is_some_and(|n| n.iter().any(|n| n == "db.shop.test"))
                && c["issuer"].as_str().is_some_and(|i| i.contains("Pebble"))
        })
    })
    .await;
    assert!(issued, "no certificate for the stream.\ngatehouse:\n{}\npebble:\n{}", gh.log(), acme.pebble.log());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut conn = tls_connect(addr, &accept_any_connector(), "db.shop.test").await.expect("handshake");
    // The one issued for the stream (its own directory next to the sites').
    let chain = std::fs::read(gh.dir.path().join("data/acme/certs/stream-db/fullchain.pem")).expect("issued chain");
    use rustls_pki_types::pem::PemObject;
    let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(&chain).next().expect("a certificate").expect("PEM");
    assert_eq!(conn.peer_der, leaf.as_ref());
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.stream.write_all(b"PING\r\n").await.expect("write");
    let mut buf = [0; 6];
    within("echo", conn.stream.read_exact(&mut buf)).await.expect("read");
    assert_eq!(&buf, b"PING\r\n");
}
