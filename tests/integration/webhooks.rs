//! Webhooks: payloads received by a local server, in both formats, throttled, retried.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::harness::*;

/// A webhook endpoint: records each POST (path, JSON body); answers 500 to the first
/// `fail_first` requests on `/flaky`, 200 otherwise.
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: std::net::SocketAddr,
    got: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(fail_first));
        let seen = got.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, failures) = (seen.clone(), failures.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (seen, failures) = (seen.clone(), failures.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let flaky = path == "/flaky"
                                && failures
                                    .fetch_update(
                                        std::sync::atomic::Ordering::SeqCst,
                                        std::sync::atomic::Ordering::SeqCst,
                                        |n| n.checked_sub(1),
                                    )
                                    .is_ok();
                            let status = if flaky { 500 } else { 200 };
                            if !flaky {
                                let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                                seen.lock().expect("lock").push((path, v));
                            }
                            let mut resp = http::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Receiver { addr, got }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn on(&self, path: &str) -> Vec<serde_json::Value> {
        self.got.lock().expect("lock").iter().filter(|(p, _)| p == path).map(|(_, v)| v.clone()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_is_posted_in_both_formats_throttled_and_retried() {
    let r = Receiver::start(1).await;
    let main = format!(
        "webhooks:\n  - url: {}\n  - url: {}\n    format: discord\n    events: [config_reload_failed]\n  - url: {}\n    throttle: 0s\n  - url: {}\n    events: [cert_expiring]\n",
        r.url("/json"),
        r.url("/discord"),
        r.url("/flaky"),
        r.url("/other")
    );
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(&main, &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    std::fs::write(gh.dir.path().join("sites/shop.yaml"), "host: shop.test\nbakend: nowhere\n").expect("write");
    assert_eq!(admin_reload(&gh).await.status, 422);
    assert!(wait_until(NET_TIMEOUT, || r.on("/json").len() == 1 && r.on("/discord").len() == 1).await, "{}", gh.log());
    let json = &r.on("/json")[0];
    assert_eq!(
        (json["event"].as_str(), json["severity"].as_str()),
        (Some("config_reload_failed"), Some("error")),
        "{json}"
    );
    assert_eq!(json["fields"]["source"], "api");
    assert!(json["message"].as_str().is_some_and(|m| m.contains("bakend")), "{json}");
    let embed = &r.on("/discord")[0]["embeds"][0];
    assert_eq!(embed["title"], "Configuration reload refused", "{embed}");
    assert!(embed["description"].as_str().is_some_and(|d| d.contains("bakend")), "{embed}");
    assert!(embed["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{embed}");

    // A second refusal: the default throttle (15 minutes) holds it back from /json and
    // /discord; /flaky (throttle 0s) gets both, its first attempt answered 500 and retried.
    assert_eq!(admin_reload(&gh).await.status, 422);
    assert!(wait_until(NET_TIMEOUT, || r.on("/flaky").len() == 2).await, "{}", gh.log());
    assert_eq!(r.on("/json").len(), 1);
    assert_eq!(r.on("/discord").len(), 1);
    assert!(r.on("/other").is_empty(), "a webhook got an event it did not ask for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_error_rate_is_posted_with_its_numbers() {
    let r = Receiver::start(0).await;
    // Nothing listens on the backend's port: every request answers 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let main = format!(
        "webhooks:\n  - url: {}\n    events: [high_error_rate]\nalerts: {{error_rate: 50%, window: 2s, min_requests: 5}}\n",
        r.url("/alerts")
    );
    let gh = Gatehouse::start(&main, &[("shop", &format!("host: shop.test\nbackend: http://{dead}\n"))]);
    for _ in 0..8 {
        assert_eq!(get(gh.http, "shop.test", "/").await.status, 502);
    }
    assert!(wait_until(NET_TIMEOUT, || !r.on("/alerts").is_empty()).await, "{}", gh.log());
    let alert = &r.on("/alerts")[0];
    assert_eq!(
        (alert["event"].as_str(), alert["subject"].as_str()),
        (Some("high_error_rate"), Some("shop")),
        "{alert}"
    );
    assert_eq!(alert["fields"]["errors_5xx"], alert["fields"]["requests"], "{alert}");
    assert!(
        alert["fields"]["requests"].as_str().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 5),
        "{alert}"
    );
}

/// A certificate with 10 days left is announced at start (the 14-day threshold), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_close_to_expiry_is_announced() {
    let r = Receiver::start(0).await;
    let ca = TestCa::new();
    let soon = ca.issue_for(&["soon.test"], 10);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("files")).expect("dir");
    std::fs::write(dir.path().join("files/soon.crt"), &soon.cert_pem).expect("write");
    std::fs::write(dir.path().join("files/soon.key"), &soon.key_pem).expect("write");
    let b = Backend::start("b").await;
    write_config(
        dir.path(),
        &format!("{HTTPS}webhooks:\n  - url: {}\n    format: discord\n    throttle: 0s\n", r.url("/certs")),
        &[(
            "soon",
            &format!("host: soon.test\nbackend: {}\ntls: {{cert: files/soon.crt, key: files/soon.key}}\n", b.url()),
        )],
    );
    let gh = Gatehouse::start_in(dir);
    assert!(wait_until(NET_TIMEOUT, || !r.on("/certs").is_empty()).await, "{}", gh.log());
    let embed = &r.on("/certs")[0]["embeds"][0];
    assert_eq!(embed["footer"]["text"], "cert_expiring", "{embed}");
    assert!(embed["description"].as_str().is_some_and(|d| d.contains("soon.test")), "{embed}");
    let days: i64 = embed["fields"][1]["value"].as_str().and_then(|d| d.parse().ok()).expect("days_left");
    assert!((9..=10).contains(&days), "{embed}");
    // A reload checks the certificates again; this threshold was announced already.
    assert_eq!(admin_reload(&gh).await.status, 200);
    assert_eq!(r.on("/certs").len(), 1);

    // The certificates served are recorded in the database, seen again at the reload.
    let db = gh.dir.path().join("data/gatehouse.db");
    let seen = || -> Option<(String, i64, i64)> {
        let c = rusqlite::Connection::open(&db).ok()?;
        c.query_row(
            "SELECT names, first_seen_ms, last_seen_ms FROM certificates WHERE names LIKE '%soon.test%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()
    };
    assert!(wait_until(NET_TIMEOUT, || seen().is_some_and(|(_, first, last)| last > first)).await, "{:?}", seen());
    assert_eq!(seen().map(|s| s.0), Some("soon.test".to_string()));
}
