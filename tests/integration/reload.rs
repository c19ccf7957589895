//! The one reload path from outside: site files added, edited and removed apply without a
//! signal (file watcher); a broken edit is refused, logged with file:line and answered with
//! a structured 422, while the old configuration serves; `POST /api/reload` and
//! `GET /api/config`; the Host / Origin / Sec-Fetch-Site guard and the token on changing
//! admin requests; backend counters kept when a backend is added; reloads under load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::harness::*;

/// How long a change may take to apply: the watcher's debounce plus a reload, with room
/// for a loaded CI machine.
const APPLY: Duration = Duration::from_secs(15);

/// The backend that answered `host`'s `/`, or `None` for any other status.
async fn backend_of(gh: &Gatehouse, host: &str) -> Option<String> {
    let r = get(gh.http, host, "/").await;
    (r.status == 200).then(|| r.json()["backend"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_files_added_edited_and_removed_apply_without_sighup() {
    let (one, two) = (Backend::start("one").await, Backend::start("two").await);
    let gh = Gatehouse::start("", &[("a", &site("a.test", &format!("backend: {}\n", one.url())))]);
    let sites = gh.dir.path().join("sites");
    assert_eq!(get(gh.http, "new.test", "/").await.status, 404);

    // Added.
    std::fs::write(sites.join("new.yaml"), site("new.test", &format!("backend: {}\n", one.url()))).expect("write");
    let added = wait_until_async(APPLY, || async { backend_of(&gh, "new.test").await.as_deref() == Some("one") }).await;
    assert!(added, "a new site file did not apply: {}", gh.log());

    // Edited as editors save: a temporary file (ignored itself) renamed over the old one.
    let tmp = sites.join(".new.yaml.swp");
    std::fs::write(&tmp, site("new.test", &format!("backend: {}\n", two.url()))).expect("write");
    std::fs::rename(&tmp, sites.join("new.yaml")).expect("rename");
    let edited =
        wait_until_async(APPLY, || async { backend_of(&gh, "new.test").await.as_deref() == Some("two") }).await;
    assert!(edited, "an edited site file did not apply: {}", gh.log());

    // Removed.
    std::fs::remove_file(sites.join("new.yaml")).expect("remove");
    let removed = wait_until_async(APPLY, || async { get(gh.http, "new.test", "/").await.status == 404 }).await;
    assert!(removed, "a removed site file still serves: {}", gh.log());

    // The other site served all along, and no signal was sent: the watcher reloaded.
    assert_eq!(backend_of(&gh, "a.test").await.as_deref(), Some("one"));
    assert!(config_version(&gh).await >= 4, "three changes, three reloads at least");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_is_refused_while_the_old_configuration_serves() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("a", &site("a.test", &format!("backend: {}\n", b.url())))]);
    let file = gh.dir.path().join("sites/a.yaml");
    std::fs::write(&file, format!("host: a.test\nbakend: {}\n", b.url())).expect("write");

    // The watcher's reload is refused: one log line with file:line, field and message.
    let at = format!("{}:2 bakend: unknown key `bakend`", file.display());
    let logged = wait_until(APPLY, || gh.log().lines().any(|l| l.contains(&at) && l.contains("reload rejected"))).await;
    assert!(logged, "no rejection naming {at}:\n{}", gh.log());
    assert_eq!(backend_of(&gh, "a.test").await.as_deref(), Some("b"), "the old configuration serves");

    // The admin API gives the same error, structured.
    let r = admin_reload(&gh).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let errors = r.json()["errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(
        (&e["file"], &e["line"], &e["field"]),
        (&json!(file.display().to_string()), &json!(2), &json!("bakend")),
        "{e}"
    );
    assert!(
        e["message"].as_str().is_some_and(|m| m.starts_with("unknown key `bakend` (did you mean `backend`?)")),
        "{e}"
    );
    assert_eq!(config_version(&gh).await, 1, "nothing was published");
    assert_eq!(backend_of(&gh, "a.test").await.as_deref(), Some("b"));

    // Fixed: it applies, and the API reports the version now running.
    std::fs::write(&file, site("a.test", &format!("backend: {}\n", b.url()))).expect("write");
    let r = admin_reload(&gh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let version = r.json()["version"].as_u64().expect("version");
    assert!(version >= 2, "{version}");
    assert_eq!(config_version(&gh).await, version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_counts_versions_and_get_config_lists_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), TestCa::new().pem()).expect("write");
    write_config(
        dir.path(),
        "",
        &[
            ("a", "host: a.test\nroutes:\n  - {path: /x, backend: http://127.0.0.1:9}\n  - {path: /, static: .}\n"),
            ("b", "host: b.test\nbackend: https://127.0.0.1:9\noptions: {upstream_tls: {ca: ca.pem}}\n"),
        ],
    );
    let gh = Gatehouse::start_in(dir);
    let d = gh.dir.path();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();

    let c = get(gh.admin, "localhost", "/api/config").await.json();
    let files: Vec<String> = ["gatehouse.yaml", "sites/a.yaml", "sites/b.yaml", "ca.pem"]
        .iter()
        .map(|f| d.join(f).display().to_string())
        .collect();
    assert_eq!(
        (&c["version"], &c["files"], &c["sites"], &c["routes"]),
        (&json!(1), &json!(files), &json!(2), &json!(3))
    );
    let loaded_at = c["loaded_at"].as_u64().expect("loaded_at");
    assert!(loaded_at <= before && loaded_at + 120 > before, "{loaded_at} vs {before}");

    for want in [2, 3] {
        let r = admin_reload(&gh).await;
        assert_eq!((r.status.as_u16(), r.json()), (200, json!({"version": want})));
    }
    let c = get(gh.admin, "localhost", "/api/config").await.json();
    assert_eq!(c["version"], 3);
    assert!(c["loaded_at"].as_u64().expect("loaded_at") >= loaded_at);

    // Requests that come while one reload runs share the next one: each caller gets a
    // version built after it asked, and there are no more reloads than requests.
    let answers = futures_util::future::join_all((0..6).map(|_| admin_reload(&gh))).await;
    let versions: Vec<u64> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["version"].as_u64().expect("version")
        })
        .collect();
    assert!(versions.iter().all(|v| (4..=9).contains(v)), "{versions:?}");
    assert_eq!(config_version(&gh).await, *versions.iter().max().expect("some"));
}

/// The main file's admin line with `extra` keys added.
fn admin_with(extra: &str) -> impl Fn(String) -> String {
    let line = format!("admin: {{listen: 127.0.0.1:0, {extra}}}");
    move |main: String| main.replace("admin: {listen: 127.0.0.1:0}", &line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_admin_requests_need_an_admin_host_the_same_origin_and_the_token() {
    let token = "0123456789abcdef-token";
    let gh = Gatehouse::start_edited(
        "",
        &[("a", "host: a.test\nbackend: http://127.0.0.1:9\n")],
        admin_with(&format!("token: '{token}'")),
    );
    let (admin, port) = (gh.admin, gh.admin.port());
    let bearer = format!("Bearer {token}");
    let post = |host: String, extra: Vec<(&'static str, String)>| {
        let bearer = bearer.clone();
        async move {
            let mut headers: Vec<(&str, &str)> = vec![("authorization", bearer.as_str())];
            headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            request_with(admin, Method::POST, &host, "/api/reload", &headers).await
        }
    };

    // DNS rebinding: a name that is not the admin listener's.
    for host in [
        "evil.test".to_string(),
        format!("evil.test:{port}"),
        format!("127.0.0.2:{port}"),
        format!("localhost.evil.test:{port}"),
    ] {
        let r = post(host.clone(), vec![]).await;
        assert_eq!(r.status, 403, "{host}: {}", r.text());
        assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("is not an admin host")), "{}", r.text());
    }
    for host in
        ["localhost".to_string(), format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]
    {
        assert_eq!(post(host.clone(), vec![]).await.status, 200, "{host}");
    }

    // Cross-origin browser requests.
    let local = format!("127.0.0.1:{port}");
    for (name, value) in [
        ("origin", "http://evil.test".to_string()),
        ("origin", "null".to_string()),
        ("sec-fetch-site", "cross-site".to_string()),
    ] {
        let r = post(local.clone(), vec![(name, value.clone())]).await;
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.text());
    }
    let same = vec![("origin", format!("http://localhost:{port}")), ("sec-fetch-site", "same-origin".to_string())];
    assert_eq!(post(local.clone(), same).await.status, 200);

    // The token, as for every /api/ endpoint.
    for auth in [None, Some(format!("Bearer {token}x"))] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = request_with(gh.admin, Method::POST, &local, "/api/reload", &headers).await;
        assert_eq!((r.status.as_u16(), r.json()), (401, json!({"error": "missing or wrong bearer token"})));
    }

    // Reads need an admin Host too (a rebound name must not read the configuration), but
    // no Origin check; the probes answer any Host.
    let r = get_with(gh.admin, "evil.test", "/api/config", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r =
        get_with(gh.admin, "localhost", "/api/config", &[("authorization", &bearer), ("origin", "http://evil.test")])
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(gh.admin, "evil.test", "/health").await.status, 200);
    // Every changing method is guarded, not only the ones routed.
    let r = request_with(gh.admin, Method::DELETE, "evil.test", "/api/reload", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 403);
    let r = request_with(gh.admin, Method::DELETE, &local, "/api/reload", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_allowed_hosts_replace_the_loopback_names() {
    let gh = Gatehouse::start_edited(
        "",
        &[("a", "host: a.test\nbackend: http://127.0.0.1:9\n")],
        admin_with("allowed_hosts: [admin.test]"),
    );
    let (admin, port) = (gh.admin, gh.admin.port());
    let post = |host: String| async move { request_with(admin, Method::POST, &host, "/api/reload", &[]).await.status };
    assert_eq!(post(format!("admin.test:{port}")).await, 200);
    assert_eq!(post("ADMIN.test".to_string()).await, 200);
    assert_eq!(post(format!("localhost:{port}")).await, 403);
    assert_eq!(post(format!("127.0.0.1:{port}")).await, 403);
}

/// Requests sent per backend URL, from the admin API's view of site `lb`.
async fn requests_by_url(gh: &Gatehouse) -> HashMap<String, u64> {
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    let route = routes["routes"].as_array().expect("routes").iter().find(|r| r["site"] == "lb").expect("route").clone();
    route["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| (b["url"].as_str().expect("url").to_string(), b["requests"].as_u64().expect("requests")))
        .collect()
}

fn lb_site(bs: &[&Backend]) -> String {
    let list: Vec<String> = bs.iter().map(|b| format!("  - {}", b.url())).collect();
    format!("host: lb.test\nbackends:\n{}\n", list.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_or_removing_a_backend_keeps_the_others_counters() {
    let bs = [Backend::start("b0").await, Backend::start("b1").await, Backend::start("b2").await];
    let gh = Gatehouse::start("", &[("lb", &lb_site(&[&bs[0], &bs[1]]))]);
    for _ in 0..10 {
        assert_eq!(get(gh.http, "lb.test", "/").await.status, 200);
    }
    let want: HashMap<String, u64> = [(bs[0].url(), 5), (bs[1].url(), 5)].into_iter().collect();
    assert_eq!(requests_by_url(&gh).await, want);

    // Added (through the watcher): the two old backends keep their counts.
    let file = gh.dir.path().join("sites/lb.yaml");
    std::fs::write(&file, lb_site(&[&bs[0], &bs[1], &bs[2]])).expect("write");
    let grown = wait_until_async(APPLY, || async { requests_by_url(&gh).await.len() == 3 }).await;
    assert!(grown, "the added backend did not apply: {}", gh.log());
    let want: HashMap<String, u64> = [(bs[0].url(), 5), (bs[1].url(), 5), (bs[2].url(), 0)].into_iter().collect();
    assert_eq!(requests_by_url(&gh).await, want);
    for _ in 0..3 {
        assert_eq!(get(gh.http, "lb.test", "/").await.status, 200);
    }
    let counts = requests_by_url(&gh).await;
    assert_eq!(counts.values().sum::<u64>(), 13, "{counts:?}");

    // Removed: the remaining ones keep theirs.
    std::fs::write(&file, lb_site(&[&bs[1], &bs[2]])).expect("write");
    let shrunk = wait_until_async(APPLY, || async { requests_by_url(&gh).await.len() == 2 }).await;
    assert!(shrunk, "the removal did not apply: {}", gh.log());
    let want: HashMap<String, u64> =
        [(bs[1].url(), counts[&bs[1].url()]), (bs[2].url(), counts[&bs[2].url()])].into_iter().collect();
    assert_eq!(requests_by_url(&gh).await, want);
}

/// One client's loop until `stop`: requests to `lb.test`, on one kept-alive connection or a
/// new connection each; returns every status that is not 200, as text.
async fn client(
    addr: std::net::SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut conn = None;
    while !stop.load(Ordering::SeqCst) {
        let result = tokio::time::timeout(NET_TIMEOUT, async {
            if conn.is_none() || !keep_alive {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let (tx, c) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
                tokio::spawn(c);
                conn = Some(tx);
            }
            let Some(tx) = conn.as_mut() else { return Err("no connection".to_string()) };
            let req = http::Request::get("/").header("host", "lb.test").body(Full::new(Bytes::new())).expect("request");
            let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            resp.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(status)
        })
        .await;
        sent.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(Ok(s)) if s == 200 => {}
            Ok(Ok(s)) => failures.push(format!("status {s}")),
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("timed out".into()),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_drop_no_request() {
    let bs = [Backend::start("b0").await, Backend::start("b1").await];
    let gh = Gatehouse::start("", &[("lb", &lb_site(&[&bs[0]]))]);
    let file = gh.dir.path().join("sites/lb.yaml");
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = [true, true, false, false]
        .into_iter()
        .map(|keep_alive| tokio::spawn(client(gh.http, keep_alive, stop.clone(), sent.clone())))
        .collect();

    // Twenty reloads, each changing the group (one backend, then two, with a header rule).
    let mut last = 1;
    for round in 0..20 {
        let text = if round % 2 == 0 {
            format!(
                "{}options: {{headers: {{response: {{set: {{x-round: '{round}'}}}}}}}}\n",
                lb_site(&[&bs[0], &bs[1]])
            )
        } else {
            lb_site(&[&bs[0]])
        };
        std::fs::write(&file, text).expect("write");
        // Requests in flight across every reload, not only before or after them.
        let before = sent.load(Ordering::SeqCst);
        let r = admin_reload(&gh).await;
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        let version = r.json()["version"].as_u64().expect("version");
        assert!(version > last, "round {round}: version {version} after {last}");
        last = version;
        let busy = wait_until(Duration::from_secs(10), || sent.load(Ordering::SeqCst) >= before + 20).await;
        assert!(busy, "round {round}: the clients stalled");
    }
    // A few hundred requests in all.
    let enough = wait_until(Duration::from_secs(60), || sent.load(Ordering::SeqCst) >= 400).await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(within("client", c).await.expect("client task"));
    }
    assert!(enough, "only {} requests were sent", sent.load(Ordering::SeqCst));
    assert!(failures.is_empty(), "{} of {} requests failed: {failures:?}", failures.len(), sent.load(Ordering::SeqCst));
    assert!(bs[1].count() > 0, "the second backend took requests in the rounds that had it");
}

/// The certificate-directory watcher loads certificates with the running configuration,
/// not the one the process started with: a `default_host` changed by a reload stays
/// after the directory changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_watcher_follows_the_reloaded_configuration() {
    let backend = Backend::start("app").await;
    let ca = TestCa::new();
    let (a, b, c) = (ca.issue(&["a.test"]), ca.issue(&["b.test"]), ca.issue(&["c.test"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    for (name, issued) in [("a", &a), ("b", &b)] {
        std::fs::write(certs.join(format!("{name}.test.key")), &issued.key_pem).expect("write");
        std::fs::write(certs.join(format!("{name}.test.crt")), &issued.cert_pem).expect("write");
    }
    let sites: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| (n.to_string(), site(&format!("{n}.test"), &format!("backend: {}\n", backend.url()))))
        .collect();
    let sites: Vec<(&str, &str)> = sites.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    write_config(dir.path(), &format!("{HTTPS}tls: {{cert_dir: certs, default_host: a.test}}\n"), &sites);
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https");
    let served = |sni: &'static str| async move {
        tls_connect(https, &accept_any_connector(), sni).await.map(|c| c.peer_der).unwrap_or_default()
    };
    assert_eq!(served("unknown.test").await, a.der);

    // Reloaded (by the watcher, so no reload of the main file is still to come) with
    // another default.
    let main = gh.dir.path().join("gatehouse.yaml");
    let text = std::fs::read_to_string(&main).expect("read").replace("default_host: a.test", "default_host: b.test");
    std::fs::write(&main, text).expect("write");
    let switched = wait_until_async(APPLY, || async { served("unknown.test").await == b.der }).await;
    assert!(switched, "the new default_host did not apply: {}", gh.log());

    // A certificate added to the directory is served, and the default stays the reloaded one.
    std::fs::write(certs.join("c.test.key"), &c.key_pem).expect("write");
    std::fs::write(certs.join("c.test.crt"), &c.cert_pem).expect("write");
    let added = wait_until_async(APPLY, || async { served("c.test").await == c.der }).await;
    assert!(added, "the new certificate was not loaded: {}", gh.log());
    assert_eq!(served("unknown.test").await, b.der, "the directory reload used the startup configuration");
}

/// A free loopback port (bound and released; the test uses it at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `listen.http` changed by a reload: the new address serves at once, the old one takes no
/// new connection, and a connection accepted on it before the move goes on serving. An
/// address that cannot be bound refuses the reload, and the running address stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_listener_binds_the_new_address_and_drains_the_old() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("a", &site("a.test", &format!("backend: {}\n", b.url())))]);
    // A kept-alive connection on the old address, used before and after the move.
    let stream = within("connect", tokio::net::TcpStream::connect(gh.http)).await.expect("connect");
    let (mut tx, conn) =
        within("handshake", hyper::client::conn::http1::handshake(TokioIo::new(stream))).await.expect("handshake");
    tokio::spawn(conn);
    let on_old = |tx: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>| {
        let req = http::Request::get("/").header("host", "a.test").body(Full::new(Bytes::new())).expect("req");
        tx.send_request(req)
    };
    assert_eq!(within("first", on_old(&mut tx)).await.expect("first").status(), 200);

    let main = gh.dir.path().join("gatehouse.yaml");
    let text = std::fs::read_to_string(&main).expect("main file");
    let port = free_port();
    std::fs::write(&main, text.replace("listen: {http: 127.0.0.1:0}", &format!("listen: {{http: 127.0.0.1:{port}}}")))
        .expect("write");
    let r = admin_reload(&gh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let moved: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(get(moved, "a.test", "/").await.status, 200, "{}", gh.log());
    assert!(!gh.log().contains("change only on restart"), "{}", gh.log());
    // The old address takes no new connection (each worker has let its socket go).
    assert!(
        wait_until_async(APPLY, || async { tokio::net::TcpStream::connect(gh.http).await.is_err() }).await,
        "the old address still accepts"
    );
    // The connection accepted before the move still serves.
    let again = within("second", on_old(&mut tx)).await.expect("the old connection still serves");
    assert_eq!(again.status(), 200);
    let _ = again.into_body().collect().await;

    // An address that is taken: the reload is refused, naming it; the moved address serves on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    let text = std::fs::read_to_string(&main).expect("main file");
    std::fs::write(&main, text.replace(&format!("127.0.0.1:{port}"), &taken_addr.to_string())).expect("write");
    let r = admin_reload(&gh).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("listen.http") && r.text().contains("cannot listen on"), "{}", r.text());
    assert_eq!(get(moved, "a.test", "/").await.status, 200);
}
