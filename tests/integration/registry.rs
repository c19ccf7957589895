//! The service registry: instances register, heartbeat, expire and leave; a route with
//! `upstream: {service: NAME}` follows them live; registrations survive a restart; the
//! registry can have a listener of its own.

use crate::harness::*;

fn registration(id: &str, b: &Backend, ttl: &str) -> String {
    format!(
        r#"{{"id": "{id}", "name": "api", "address": "127.0.0.1", "port": {}, "ttl": "{ttl}", "tags": ["v1"]}}"#,
        b.addr.port()
    )
}

async fn ids(gh: &Gatehouse) -> Vec<String> {
    let v = get(gh.admin, "localhost", "/v1/services").await.json();
    v["services"]
        .as_array()
        .map(|l| l.iter().filter_map(|s| s["id"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_register_heartbeat_expire_and_routes_follow_them() {
    let (b1, b2) = (Backend::start("b1").await, Backend::start("b2").await);
    let site = "host: api.test\nroutes:\n  - path: /\n    upstream: {service: api}\n";
    let mut gh = Gatehouse::start("", &[("api", site)]);
    // No instance yet: 503 at once.
    assert_eq!(get(gh.http, "api.test", "/").await.status, 503);

    let r = admin_call(gh.admin, http::Method::POST, "/v1/services", &registration("api-1", &b1, "1s")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["url"], b1.url());
    let r = admin_call(gh.admin, http::Method::POST, "/v1/services", &registration("api-2", &b2, "60s")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Both serve once the state is rebuilt.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    assert!(
        wait_until_async(NET_TIMEOUT, || {
            let seen = seen.clone();
            async move {
                let b = get(gh.http, "api.test", "/").await.header("x-backend").map(String::from);
                let mut seen = seen.lock().expect("lock");
                seen.extend(b);
                seen.len() == 2
            }
        })
        .await,
        "{}",
        gh.log()
    );
    // Registering api-2 again is an update (200), not a new instance.
    assert_eq!(
        admin_call(gh.admin, http::Method::POST, "/v1/services", &registration("api-2", &b2, "60s")).await.status,
        200
    );
    assert_eq!(admin_call(gh.admin, http::Method::PUT, "/v1/services/api-2/heartbeat", "").await.status, 200);
    assert_eq!(get(gh.admin, "localhost", "/v1/services/api-2").await.json()["tags"][0], "v1");

    // api-1 sends no heartbeat: it expires, and only b2 gets requests.
    assert!(wait_until_async(NET_TIMEOUT, || async { ids(&gh).await == ["api-2"] }).await, "{}", gh.log());
    assert!(gh.log().contains("service instance expired"), "{}", gh.log());
    assert_eq!(admin_call(gh.admin, http::Method::PUT, "/v1/services/api-1/heartbeat", "").await.status, 404);
    assert!(
        wait_until_async(NET_TIMEOUT, || async {
            let mut all_b2 = true;
            for _ in 0..6 {
                all_b2 &= get(gh.http, "api.test", "/").await.header("x-backend") == Some("b2");
            }
            all_b2
        })
        .await
    );

    // Bad registrations say what is wrong.
    for (body, why) in [
        ("{", "JSON"),
        (r#"{"name": "api", "address": "127.0.0.1", "port": 70000}"#, "port"),
        (r#"{"name": "api", "address": "not an address", "port": 80}"#, "address"),
        (r#"{"name": "api", "address": "h", "port": 80, "ttl": "5h"}"#, "ttl"),
    ] {
        let r = admin_call(gh.admin, http::Method::POST, "/v1/services", body).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.text().contains(why), "{body}: {}", r.text());
    }

    // Registrations survive a restart.
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(NET_TIMEOUT), Some(0), "{}", gh.log());
    let dir = std::mem::replace(&mut gh.dir, tempfile::tempdir().expect("tempdir"));
    let gh = Gatehouse::start_in(dir);
    assert_eq!(ids(&gh).await, ["api-2"]);
    assert!(
        wait_until_async(NET_TIMEOUT, || async {
            get(gh.http, "api.test", "/").await.header("x-backend") == Some("b2")
        })
        .await,
        "{}",
        gh.log()
    );
    // Leaving: the route has no instance left.
    assert_eq!(admin_call(gh.admin, http::Method::DELETE, "/v1/services/api-2", "").await.status, 200);
    assert_eq!(admin_call(gh.admin, http::Method::DELETE, "/v1/services/api-2", "").await.status, 404);
    assert!(wait_until_async(NET_TIMEOUT, || async { get(gh.http, "api.test", "/").await.status == 503 }).await);
}

/// `registry.listen`: a listener with only the registry on it; a named upstream with
/// `service` keeps its own settings (here: retries) over the registry's instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_listener_serves_only_the_registry() {
    let b = Backend::start("b").await;
    let site = "host: api.test\nupstreams:\n  api:\n    service: api\n    retries: {attempts: 2}\nroutes:\n  - path: /\n    upstream: api\n";
    let gh = Gatehouse::start("registry: {listen: 127.0.0.1:0, ttl: 30s}\n", &[("api", site)]);
    let reg = gh.registry.expect("registry address on the startup line");
    let r = admin_call(reg, http::Method::POST, "/v1/services", &registration("one", &b, "30s")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(get(reg, "localhost", "/api/routes").await.status, 404, "the admin API is not on it");
    assert!(
        wait_until_async(NET_TIMEOUT, || async { get(gh.http, "api.test", "/").await.status == 200 }).await,
        "{}",
        gh.log()
    );
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    assert_eq!(routes["routes"][0]["backends"][0]["url"], b.url(), "{routes}");
}
