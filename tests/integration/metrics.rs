//! `GET /metrics`: parsed by the Prometheus project's own Python client (prometheus_client
//! on PyPI, installed by .ci/run), and equal to the traffic the test sent.

use std::collections::BTreeMap;

use crate::harness::*;

/// The prometheus_client version `.ci/run` installs.
const PROMETHEUS_CLIENT: &str = "0.21.1";

fn python() -> String {
    ci_python("prometheus_client", &format!("prometheus_client=={PROMETHEUS_CLIENT}"))
}

/// Parses exposition text with `prometheus_client.parser`; returns each sample as
/// `name{labels}` (labels sorted) -> value, and each family's type.
fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples, types = {}, {}
for f in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    types[f.name] = f.type
    for s in f.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps({"samples": samples, "types": types}))
"#;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write metrics");
    let out = output_within(std::process::Command::new(python()).args(["-c", SCRIPT]).arg(file.path()), NET_TIMEOUT)
        .expect("run the parser");
    assert!(
        out.status.success(),
        "prometheus_client refused the text:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parser output");
    let samples = v["samples"]
        .as_object()
        .expect("samples")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
        .collect();
    let types = v["types"]
        .as_object()
        .expect("types")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    (samples, types)
}

async fn scrape(gh: &Gatehouse) -> (BTreeMap<String, f64>, BTreeMap<String, String>, String) {
    let reply = get(gh.admin, "localhost", "/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.header("content-type")
    );
    let text = reply.text();
    let parsed = tokio::task::spawn_blocking({
        let text = text.clone();
        move || parse(&text)
    })
    .await
    .expect("parse");
    (parsed.0, parsed.1, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_was_sent() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "",
        &[("shop", &format!("host: shop.test\nroutes:\n  - path: /\n    backend: {}\n", b.url()))],
    );
    for _ in 0..7 {
        assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    }
    let post = http::Request::post("/form")
        .header("host", "shop.test")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"abcdef")))
        .expect("request");
    assert_eq!(send(gh.http, post).await.status, 200);
    for _ in 0..3 {
        assert_eq!(get(gh.http, "nowhere.test", "/").await.status, 404);
    }
    let route = get(gh.admin, "localhost", "/api/routes").await.json()["routes"][0]["id"]
        .as_str()
        .expect("route id")
        .to_string();
    let key = |name: &str, labels: &str| format!("{name}{{{labels}}}");
    let get_2xx =
        key("gatehouse_requests_total", &format!(r#"method="GET",route="{route}",site="shop",status_class="2xx""#));
    // Records are counted when each response has ended, which may be just after the client
    // has read it.
    let counted = wait_until_async(NET_TIMEOUT, || async { scrape(&gh).await.0.get(&get_2xx) == Some(&7.0) }).await;
    assert!(counted, "{get_2xx} not 7: {:#?}", scrape(&gh).await.0);
    let (samples, types, text) = scrape(&gh).await;
    let at = |k: &str| samples.get(k).copied().unwrap_or_else(|| panic!("no sample {k} in\n{text}"));
    assert_eq!(
        at(&key(
            "gatehouse_requests_total",
            &format!(r#"method="POST",route="{route}",site="shop",status_class="2xx""#)
        )),
        1.0
    );
    assert_eq!(at(&key("gatehouse_requests_total", r#"method="GET",route="",site="",status_class="4xx""#)), 3.0);
    assert_eq!(at(&key("gatehouse_request_duration_seconds_count", &format!(r#"route="{route}",site="shop""#))), 8.0);
    assert_eq!(
        at(&key("gatehouse_request_duration_seconds_bucket", &format!(r#"le="+Inf",route="{route}",site="shop""#))),
        8.0
    );
    assert_eq!(at(&key("gatehouse_request_bytes_total", &format!(r#"route="{route}",site="shop""#))), 6.0);
    assert_eq!(
        at(&key("gatehouse_backend_requests_total", &format!(r#"backend="{}",route="{route}",site="shop""#, b.url()))),
        8.0
    );
    assert!(at("gatehouse_connections_total{}") >= 11.0, "{text}");
    assert_eq!(at(r#"gatehouse_config_reloads_total{result="ok"}"#), 0.0);
    assert!(at("process_resident_memory_bytes{}") > 1e6);
    assert!(at("process_open_fds{}") > 3.0);
    assert!(at("process_cpu_seconds_total{}") > 0.0);
    assert_eq!(types.get("gatehouse_request_duration_seconds").map(String::as_str), Some("histogram"));
    assert_eq!(types.get("gatehouse_requests").map(String::as_str), Some("counter"));
    // No client address or raw path in any label.
    assert!(!text.contains("127.0.0.1\"") && !text.contains("/form"), "{text}");

    assert_eq!(admin_reload(&gh).await.status, 200);
    assert_eq!(scrape(&gh).await.0.get(r#"gatehouse_config_reloads_total{result="ok"}"#), Some(&1.0));
}

/// Every series the Grafana dashboard in docs/ queries is one Gatehouse exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_exported_series() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    assert!(
        wait_until_async(NET_TIMEOUT, || async { scrape(&gh).await.2.contains("gatehouse_requests_total{") }).await
    );
    let (_, types, text) = scrape(&gh).await;
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !(word.starts_with("gatehouse_") || word.starts_with("process_")) {
                    continue;
                }
                let family =
                    ["_bucket", "_sum", "_count", "_total"].iter().fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
                assert!(types.contains_key(family), "the dashboard queries {word}, which /metrics lacks:\n{text}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} series references found");
}
