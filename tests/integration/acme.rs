//! Automatic certificates against Debian's Pebble: HTTP-01, TLS-ALPN-01 and DNS-01 issuance,
//! restart without re-issuance, renewal under load, and a CA outage.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

fn acme_config(dir: &Path, pebble: &Pebble, http: u16, https: u16, acme_extra: &str, backend: &Backend) {
    std::fs::write(dir.join("pebble-ca.pem"), &pebble.ca_pem).expect("write");
    write_config(
        dir,
        &format!(
            "tls:\n  acme:\n    email: admin@example.test\n    ca: {}\n    ca_root: pebble-ca.pem\n{acme_extra}",
            pebble.directory
        ),
        &[("shop", &format!("hosts: [shop.test, www.shop.test]\nbackend: {}\n", backend.url()))],
    );
    let main = std::fs::read_to_string(dir.join("gatehouse.yaml"))
        .expect("read")
        .replace(
            "listen: {http: 127.0.0.1:0}",
            &format!("listen: {{http: 127.0.0.1:{http}, https: 127.0.0.1:{https}}}"),
        )
        .replace("log: {level: warn, format: json}", "log: {level: info, format: json}");
    std::fs::write(dir.join("gatehouse.yaml"), main).expect("write");
}

/// Waits until the site's ACME certificate is served; returns its DER.
async fn wait_for_certificate(gh: &Gatehouse, pebble: &Pebble, limit: Duration) -> Vec<u8> {
    let https = gh.https.expect("https");
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let inv = get(gh.admin, "localhost", "/api/certs").await.json();
        let issued = inv["certificates"].as_array().expect("list").iter().any(|c| {
            c["names"].as_array().is_some_and(|n| n.iter().any(|n| n == "shop.test"))
                && c["issuer"].as_str().is_some_and(|i| i.contains("Pebble"))
        });
        if issued {
            let conn = tls_connect(https, &accept_any_connector(), "www.shop.test").await.expect("handshake");
            return conn.peer_der;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no certificate in time.\ngatehouse:\n{}\npebble:\n{}",
            gh.log(),
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `hook`: a DNS hook script body; written next to the configuration (with MGMT replaced by
/// challtestsrv's management port) and named by SCRIPT in `challenge_yaml`.
async fn issue_with(challenge_yaml: &str, hook: Option<&str>) {
    let backend = Backend::start("shop").await;
    let [http, https] = free_ports();
    let pebble = Pebble::start(http, https);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("dns-hook.sh");
    if let Some(body) = hook {
        std::fs::write(&script, body.replace("MGMT", &pebble.challtest_mgmt.to_string())).expect("write hook");
    }
    let extra = challenge_yaml.replace("SCRIPT", &script.display().to_string());
    acme_config(dir.path(), &pebble, http, https, &extra, &backend);
    let gh = Gatehouse::start_in(dir);
    let der = wait_for_certificate(&gh, &pebble, Duration::from_secs(60)).await;
    assert!(!der.is_empty());
    // The issued certificate serves real requests, for every host of the site.
    let conn = tls_connect(gh.https.expect("https"), &accept_any_connector(), "shop.test").await.expect("handshake");
    assert_eq!(conn.peer_der, der);
    let r = send_on(conn.stream, get_req("shop.test", "/")).await;
    assert_eq!(r.status, 200);
    // Key material is private to the owner.
    let key = gh.dir.path().join("data/acme/certs/shop/privkey.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).expect("key file").permissions());
    assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance() {
    issue_with("    challenge: http-01\n", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issuance() {
    issue_with("    challenge: tls-alpn-01\n", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_issuance_through_a_hook() {
    // The hook publishes TXT records in pebble-challtestsrv, as a DNS provider's CLI would.
    let body = r#"#!/bin/sh
case "$1" in
  set) curl -sf -X POST -d "{\"host\":\"$2.\",\"value\":\"$3\"}" http://127.0.0.1:MGMT/set-txt ;;
  clear) curl -sf -X POST -d "{\"host\":\"$2.\"}" http://127.0.0.1:MGMT/clear-txt ;;
esac
"#;
    issue_with("    challenge: dns-01\n    dns_hook: sh SCRIPT\n", Some(body)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_certificate_renewal_swaps_it_and_outages_keep_the_old_one() {
    let backend = Backend::start("shop").await;
    let [http, https] = free_ports();
    let mut pebble = Pebble::start(http, https);
    let dir = tempfile::tempdir().expect("tempdir");
    acme_config(dir.path(), &pebble, http, https, "", &backend);
    let mut gh = Gatehouse::start_in(dir);
    let first = wait_for_certificate(&gh, &pebble, Duration::from_secs(60)).await;
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(Duration::from_secs(10)), Some(0));

    // Restart: the stored certificate serves at once and nothing is requested.
    let dir = std::mem::replace(&mut gh.dir, tempfile::tempdir().expect("tempdir"));
    drop(gh);
    let gh = Gatehouse::start_in(dir);
    let conn = tls_connect(gh.https.expect("https"), &accept_any_connector(), "shop.test").await.expect("handshake");
    assert_eq!(conn.peer_der, first, "restart must serve the stored certificate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!gh.log().contains("requesting certificate"), "restart re-requested:\n{}", gh.log());

    // Renewal (forced by renew_before longer than the lifetime) while requests keep flowing.
    let mut gh = gh;
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(Duration::from_secs(10)), Some(0));
    let dir = std::mem::replace(&mut gh.dir, tempfile::tempdir().expect("tempdir"));
    drop(gh);
    let main = std::fs::read_to_string(dir.path().join("gatehouse.yaml")).expect("read");
    std::fs::write(
        dir.path().join("gatehouse.yaml"),
        main.replace("    ca_root: pebble-ca.pem\n", "    ca_root: pebble-ca.pem\n    renew_before: 100000d\n"),
    )
    .expect("write");
    let gh = Gatehouse::start_in(dir);
    let https_addr = gh.https.expect("https");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut served = Vec::new();
    loop {
        let conn =
            tls_connect(https_addr, &accept_any_connector(), "shop.test").await.expect("handshake during renewal");
        served.push(conn.peer_der.clone());
        let r = send_on(conn.stream, get_req("shop.test", "/")).await;
        assert_eq!(r.status, 200, "a request failed during renewal");
        if conn_changed(&served, &first) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never renewed:\n{}\n{}", gh.log(), pebble.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewed = served.last().cloned().expect("served");

    // The CA goes away: renewal fails, is retried with backoff, and the current certificate keeps serving.
    pebble.stop();
    let mut gh = gh;
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(Duration::from_secs(10)), Some(0));
    let dir = std::mem::replace(&mut gh.dir, tempfile::tempdir().expect("tempdir"));
    drop(gh);
    let gh = Gatehouse::start_in(dir);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !gh.log().contains("certificate request failed") {
        assert!(tokio::time::Instant::now() < deadline, "no failure logged:\n{}", gh.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gh.log().contains("retry_in"), "{}", gh.log());
    let conn = tls_connect(gh.https.expect("https"), &accept_any_connector(), "shop.test").await.expect("handshake");
    assert_eq!(conn.peer_der, renewed, "the last good certificate must keep serving");
}

fn conn_changed(served: &[Vec<u8>], first: &[u8]) -> bool {
    served.last().is_some_and(|d| d.as_slice() != first)
}
