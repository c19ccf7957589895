//! The admin API's OpenAPI description, fuzzed against the running API by schemathesis
//! (PyPI, installed by .ci/run): no request it generates may get a 5xx.

use crate::harness::*;

/// The schemathesis version `.ci/run` installs.
const SCHEMATHESIS: &str = "4.32.5";

/// `$SCHEMATHESIS`, the virtual environment .ci/run creates, or `schemathesis` on PATH.
fn schemathesis() -> String {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv/bin/schemathesis");
    let candidates =
        [std::env::var("SCHEMATHESIS").ok(), Some(venv.display().to_string()), Some("schemathesis".into())];
    for c in candidates.into_iter().flatten() {
        if output_within(std::process::Command::new(&c).arg("--version"), NET_TIMEOUT).is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!(
        "schemathesis not found (tried $SCHEMATHESIS, target/ci-venv/bin/schemathesis, schemathesis): run .ci/run, \
         or pip install schemathesis=={SCHEMATHESIS} (or set SCHEMATHESIS to its path)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_is_served_and_fuzzing_it_gets_no_5xx() {
    let st = tokio::task::spawn_blocking(schemathesis).await.expect("schemathesis");
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    for i in 0..5 {
        assert_eq!(
            get_with(gh.http, "shop.test", &format!("/p/{i}?token=x"), &[("user-agent", "curl/8")]).await.status,
            200
        );
    }
    let spec = get(gh.admin, "localhost", "/api/openapi.json").await;
    assert_eq!(spec.status, 200);
    let paths: Vec<String> = spec.json()["paths"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    for p in [
        "/api/logs",
        "/api/audit",
        "/api/gdpr/export",
        "/api/gdpr/erase",
        "/api/analytics/{what}",
        "/metrics",
        "/api/maintenance",
        "/api/bans",
        "/api/bans/{ip}",
        "/v1/services",
        "/v1/services/{id}",
        "/v1/services/{id}/heartbeat",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} missing from the description: {paths:?}");
    }
    let url = format!("http://{}/api/openapi.json", gh.admin);
    // schemathesis keeps a cache in its working directory: the test's, not the repository.
    let cwd = gh.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        output_within(
            std::process::Command::new(&st)
                .current_dir(&cwd)
                .args(["run", &url, "--checks", "not_a_server_error", "--max-examples", "25", "--workers", "1"])
                .args(["--request-timeout", "10", "--seed", "1"])
                .env("SCHEMATHESIS_TELEMETRY", "false")
                .env("NO_COLOR", "1"),
            std::time::Duration::from_secs(300),
        )
    })
    .await
    .expect("join")
    .expect("schemathesis ran");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures:\n{text}\n{}", gh.log());
    assert!(!text.contains("Server error"), "{text}");
}
