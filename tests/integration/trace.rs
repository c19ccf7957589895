//! W3C Trace Context through the proxy, in the request log, and exported over OTLP to a
//! local collector stand-in.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::harness::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A stand-in OTLP/HTTP collector: keeps every JSON body posted to /v1/traces.
async fn collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let ok = req.uri().path() == "/v1/traces";
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        if ok {
                            seen.lock().expect("lock").push(serde_json::from_slice(&body).unwrap_or_default());
                        }
                        let mut resp = http::Response::new(Full::new(Bytes::from_static(b"{}")));
                        *resp.status_mut() = if ok { http::StatusCode::OK } else { http::StatusCode::NOT_FOUND };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, got)
}

/// The `traceparent` the echo backend received.
fn received(reply: &Reply) -> String {
    reply.json()["headers"]["traceparent"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_continued_logged_and_exported() {
    let (addr, spans) = collector().await;
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        &format!("opentelemetry: {{endpoint: 'http://{addr}', service_name: edge}}\n"),
        &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))],
    );

    // A valid traceparent: same trace, Gatehouse's span as the backend's parent, tracestate on.
    let r =
        get_with(gh.http, "shop.test", "/traced?token=x", &[("traceparent", PARENT), ("tracestate", "vendor=1")]).await;
    let sent = received(&r);
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01"), "{sent}");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the backend's parent must be Gatehouse's span");
    let span_id = parts[2].to_string();
    assert_eq!(r.json()["headers"]["tracestate"], "vendor=1");

    // None, or a malformed one: a new trace; the orphaned tracestate is dropped.
    let fresh = received(&get(gh.http, "shop.test", "/fresh").await);
    assert!(fresh.len() == 55 && fresh.starts_with("00-") && fresh.ends_with("-01"), "{fresh}");
    let r = get_with(gh.http, "shop.test", "/bad", &[("traceparent", "00-XYZ"), ("tracestate", "vendor=1")]).await;
    assert!(!received(&r).contains("XYZ") && received(&r).len() == 55, "{}", received(&r));
    assert!(r.json()["headers"]["tracestate"].is_null(), "{}", r.text());

    // The request log has the ids; /api/logs finds a request by its trace.
    assert!(wait_until(NET_TIMEOUT, || rows_count(&gh) == 3).await, "{}", gh.log());
    let logs = get(gh.admin, "localhost", "/api/logs?trace_id=4bf92f3577b34da6a3ce929d0e0e4736").await.json();
    let row = &logs["requests"][0];
    assert_eq!(
        (row["path"].as_str(), row["span_id"].as_str()),
        (Some("/traced?token=[REDACTED]"), Some(span_id.as_str())),
        "{logs}"
    );

    // The collector gets a server span per request, in the same trace.
    let found = wait_until(NET_TIMEOUT, || {
        all_spans(&spans).iter().any(|s| s["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736")
    })
    .await;
    assert!(found, "no span exported: {:?}\n{}", spans.lock().expect("lock"), gh.log());
    let all = all_spans(&spans);
    let span = all.iter().find(|s| s["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736").expect("span");
    assert_eq!(
        (span["spanId"].as_str(), span["parentSpanId"].as_str()),
        (Some(span_id.as_str()), Some("00f067aa0ba902b7")),
        "{span}"
    );
    assert_eq!(span["kind"], 2);
    let attrs = span["attributes"].to_string();
    assert!(attrs.contains("\"url.path\"") && attrs.contains("/traced") && !attrs.contains("token"), "{attrs}");
    let resource = spans.lock().expect("lock")[0]["resourceSpans"][0]["resource"].to_string();
    assert!(resource.contains("\"edge\""), "{resource}");
}

fn all_spans(got: &Arc<Mutex<Vec<serde_json::Value>>>) -> Vec<serde_json::Value> {
    got.lock()
        .expect("lock")
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn rows_count(gh: &Gatehouse) -> i64 {
    rusqlite::Connection::open(gh.dir.path().join("data/gatehouse.db"))
        .and_then(|c| c.query_row("SELECT count(*) FROM requests", [], |r| r.get(0)))
        .unwrap_or(0)
}
