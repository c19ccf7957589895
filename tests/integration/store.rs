//! The request log in the embedded database: what is stored (masked addresses, redacted
//! secrets), and that a crash under load leaves the database consistent.

use crate::harness::*;

fn db_path(gh: &Gatehouse) -> std::path::PathBuf {
    gh.dir.path().join("data/gatehouse.db")
}

/// A request-log row: client, method, path, status, site, request id.
type Row = (String, String, String, u16, Option<String>, Option<String>);

/// Rows of the request log, oldest first.
fn rows(gh: &Gatehouse) -> Vec<Row> {
    if !db_path(gh).exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(db_path(gh)).expect("open the database");
    let mut q = conn
        .prepare("SELECT client, method, path, status, site, request_id FROM request_log ORDER BY time_us, id")
        .expect("the request log table");
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .and_then(|rows| rows.collect())
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_stored_with_masked_addresses_and_redacted_secrets() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    let agent = [("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")];
    assert_eq!(get_with(gh.http, "shop.test", "/reset?token=s3cr3t&page=2", &agent).await.status, 200);
    assert_eq!(get(gh.http, "shop.test", "/other").await.status, 200);
    assert_eq!(get(gh.http, "nowhere.test", "/").await.status, 404);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 3).await, "rows: {:?}\n{}", rows(&gh), gh.log());
    let stored = rows(&gh);
    // 127.0.0.1 without its last octet; no row holds the whole address or the token.
    assert!(stored.iter().all(|r| r.0 == "127.0.0.0"), "{stored:?}");
    assert_eq!(stored[0].1, "GET");
    assert_eq!(stored[0].2, "/reset?token=[REDACTED]&page=2");
    assert_eq!((stored[0].3, stored[0].4.as_deref()), (200, Some("shop")));
    assert!(stored[0].5.as_deref().is_some_and(|id| !id.is_empty()), "no request id: {stored:?}");
    assert_eq!(stored[2].3, 404);
    let conn = rusqlite::Connection::open(db_path(&gh)).expect("open");
    let agents: Vec<Option<String>> = conn
        .prepare("SELECT user_agent FROM request_log ORDER BY time_us, id")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .expect("user agents");
    assert_eq!(agents, [Some(agent[0].1.to_string()), None, None]);
    let raw = std::fs::read(db_path(&gh)).unwrap_or_default();
    let wal = std::fs::read(gh.dir.path().join("data/gatehouse.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(!bytes.windows(6).any(|w| w == b"s3cr3t"), "the secret reached the database file");
    }

    // `logging.mask_ip_method: none` stores the whole address; `requests: false` nothing.
    let gh = Gatehouse::start(
        "logging: {mask_ip_method: none}\n",
        &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))],
    );
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 1).await, "{}", gh.log());
    assert_eq!(rows(&gh)[0].0, "127.0.0.1");
    // Path patterns and more secret words.
    let gh = Gatehouse::start(
        "logging: {redact_paths: ['/reset/[TOKEN]'], secret_params: [otp]}\n",
        &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))],
    );
    assert_eq!(get(gh.http, "shop.test", "/reset/t0ps3cret/confirm?otp=123456&page=1").await.status, 200);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 1).await, "{}", gh.log());
    assert_eq!(rows(&gh)[0].2, "/reset/[TOKEN]/confirm?otp=[REDACTED]&page=1");
    let (code, out) = {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(dir.path(), "logging: {redact_paths: ['/reset/*']}\n", &[]);
        check(dir.path())
    };
    assert_eq!(code, 1);
    assert!(out.contains("logging.redact_paths") && out.contains("marks no segment"), "{out}");

    // `requests: false`: no request rows (the database still holds the audit log).
    let gh = Gatehouse::start(
        "logging: {requests: false}\n",
        &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))],
    );
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    assert_eq!(admin_reload(&gh).await.status, 200);
    assert!(wait_until(NET_TIMEOUT, || audit(&gh).iter().any(|a| a == "config_reload")).await, "{}", gh.log());
    assert!(rows(&gh).is_empty(), "request rows stored with logging.requests: false: {:?}", rows(&gh));
}

/// Actions in the audit log, oldest first, read from the file.
fn audit(gh: &Gatehouse) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open(db_path(gh)) else { return Vec::new() };
    conn.prepare("SELECT action FROM audit_log ORDER BY id")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default()
}

/// One request from the loopback address `from` (127.0.0.x), so a test has several clients.
async fn get_from(from: [u8; 4], addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((std::net::Ipv4Addr::from(from), 0).into())?;
        let mut s = socket.connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    tokio::time::timeout(NET_TIMEOUT, exchange).await.expect("request timed out").expect("request")
}

async fn admin_json(gh: &Gatehouse, method: http::Method, path: &str, body: &str) -> (u16, serde_json::Value) {
    let reply = admin_call(gh.admin, method, path, body).await;
    (reply.status.as_u16(), serde_json::from_str(&reply.text()).unwrap_or(serde_json::Value::Null))
}

fn paths(v: &serde_json::Value) -> Vec<String> {
    v["requests"]
        .as_array()
        .map_or_else(Vec::new, |a| a.iter().map(|r| r["path"].as_str().unwrap_or("").to_string()).collect())
}

/// GDPR subject requests: 127.0.0.1 and 127.0.0.2 share the masked form 127.0.0.0, yet an
/// export returns one address's rows only, erasure deletes only those, and both are in the
/// audit log with the masked address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_export_and_erasure_touch_one_address_only_and_are_audited() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    for (from, path) in [([127, 0, 0, 1], "/one/a"), ([127, 0, 0, 2], "/two/a"), ([127, 0, 0, 1], "/one/b")] {
        assert!(get_from(from, gh.http, path).await.starts_with("HTTP/1.1 200"), "{}", gh.log());
    }
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 3).await, "{}", gh.log());

    let (status, one) = admin_json(&gh, http::Method::GET, "/api/gdpr/export?ip=127.0.0.1", "").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(paths(&one), ["/one/a", "/one/b"]);
    assert_eq!(one["client"], "127.0.0.0");
    let (_, two) = admin_json(&gh, http::Method::GET, "/api/gdpr/export?ip=127.0.0.2", "").await;
    assert_eq!(paths(&two), ["/two/a"]);

    let (status, erased) = admin_json(&gh, http::Method::POST, "/api/gdpr/erase", r#"{"ip": "127.0.0.1"}"#).await;
    assert_eq!((status, erased["deleted"].as_u64()), (200, Some(2)), "{erased}");
    let (_, one) = admin_json(&gh, http::Method::GET, "/api/gdpr/export?ip=127.0.0.1", "").await;
    assert!(paths(&one).is_empty(), "{one}");
    let left: Vec<String> = rows(&gh).into_iter().map(|r| r.2).collect();
    assert_eq!(left, ["/two/a"]);

    for (method, path, body) in [
        (http::Method::GET, "/api/gdpr/export", ""),
        (http::Method::GET, "/api/gdpr/export?ip=127.0.0.999", ""),
        (http::Method::POST, "/api/gdpr/erase", "not json"),
        (http::Method::POST, "/api/gdpr/erase", r#"{"ip": 7}"#),
    ] {
        let (status, v) = admin_json(&gh, method, path, body).await;
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }

    // Audit entries are written by the database's writer thread, shortly after.
    let audit_api = || async { admin_json(&gh, http::Method::GET, "/api/audit", "").await.1 };
    assert!(
        wait_until_async(NET_TIMEOUT, || async { audit_api().await["entries"].as_array().map_or(0, Vec::len) >= 4 })
            .await,
        "{}",
        audit_api().await
    );
    let log = audit_api().await;
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = entries.iter().rev().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["gdpr_export", "gdpr_export", "gdpr_erase", "gdpr_export"], "{log}");
    let erase = entries.iter().find(|e| e["action"] == "gdpr_erase").expect("erase entry");
    assert_eq!(
        (erase["source"].as_str(), &erase["detail"]),
        (Some("api"), &serde_json::json!({"client": "127.0.0.0", "deleted": 2}))
    );
    let raw = std::fs::read(db_path(&gh)).unwrap_or_default();
    let wal = std::fs::read(gh.dir.path().join("data/gatehouse.db-wal")).unwrap_or_default();
    // (127.0.0.1 is also the backend's address, stored as such; 127.0.0.2 is only a client.)
    for bytes in [raw, wal] {
        assert!(!bytes.windows(9).any(|w| w == b"127.0.0.2"), "a full client address reached the database");
    }
}

/// `GET /api/logs` filters and pages what the test sent; bad filters are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_api_filters_and_pages() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    for i in 0..5 {
        assert_eq!(get(gh.http, "shop.test", &format!("/page/{i}")).await.status, 200);
    }
    assert_eq!(get(gh.http, "nowhere.test", "/missing").await.status, 404);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 6).await, "{}", gh.log());
    let (status, v) = admin_json(&gh, http::Method::GET, "/api/logs?status_class=4xx", "").await;
    assert_eq!((status, paths(&v)), (200, vec!["/missing".to_string()]), "{v}");
    let (_, v) = admin_json(&gh, http::Method::GET, "/api/logs?site=shop&path_prefix=%2Fpage%2F&limit=3", "").await;
    assert_eq!(paths(&v), ["/page/4", "/page/3", "/page/2"]);
    let next = v["next"].as_str().expect("a next cursor").to_string();
    let (_, v) = admin_json(&gh, http::Method::GET, &format!("/api/logs?site=shop&limit=3&after={next}"), "").await;
    assert_eq!(paths(&v), ["/page/1", "/page/0"]);
    assert!(v["next"].is_null(), "{v}");
    for bad in ["/api/logs?limit=0", "/api/logs?stauts=500", "/api/logs?status_class=9xx", "/api/logs?after=x"] {
        let (status, v) = admin_json(&gh, http::Method::GET, bad, "").await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
}

/// A reload is in the audit log with its source and what changed; a refused one with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_audited_with_a_diff() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "",
        &[
            ("shop", &format!("host: shop.test\nroutes:\n  - path: /\n    backend: {}\n", b.url())),
            ("old", &format!("host: old.test\nbackend: {}\n", b.url())),
        ],
    );
    let sites = gh.dir.path().join("sites");
    std::fs::write(
        sites.join("shop.yaml"),
        format!("host: shop.test\nroutes:\n  - path: /\n    backend: {}\n    priority: 5\n  - path: /api\n    backend: {}\n", b.url(), b.url()),
    )
    .expect("write");
    std::fs::remove_file(sites.join("old.yaml")).expect("remove");
    std::fs::write(sites.join("new.yaml"), format!("host: new.test\nbackend: {}\n", b.url())).expect("write");
    assert_eq!(admin_reload(&gh).await.status, 200, "{}", gh.log());
    std::fs::write(sites.join("new.yaml"), "host: new.test\nbakend: nowhere\n").expect("write");
    assert_eq!(admin_reload(&gh).await.status, 422);

    let entries = || async {
        admin_json(&gh, http::Method::GET, "/api/audit", "").await.1["entries"].as_array().cloned().unwrap_or_default()
    };
    assert!(wait_until_async(NET_TIMEOUT, || async { entries().await.len() >= 2 }).await, "{}", gh.log());
    let list = entries().await;
    let (failed, done) = (&list[0], &list[1]);
    assert_eq!((done["action"].as_str(), done["source"].as_str()), (Some("config_reload"), Some("api")), "{done}");
    let d = &done["detail"];
    assert_eq!(d["sites_added"], serde_json::json!(["new"]), "{d}");
    assert_eq!(d["sites_removed"], serde_json::json!(["old"]), "{d}");
    let shop = &d["sites_changed"][0];
    assert_eq!(shop["site"], "shop", "{d}");
    assert_eq!(shop["routes_added"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(shop["routes_changed"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(failed["action"], "config_reload_failed", "{failed}");
    assert!(failed["detail"]["errors"][0].as_str().is_some_and(|e| e.contains("bakend")), "{failed}");
}

/// kill -9 while requests are being logged: the database opens, passes
/// `PRAGMA integrity_check`, and holds the rows committed before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_under_load_leaves_a_consistent_database() {
    let b = Backend::start("b").await;
    let mut gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    let addr = gh.http;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // Failures are expected once the process is killed; the loop just ends.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let exchange = async {
                        let mut s = tokio::net::TcpStream::connect(addr).await?;
                        s.write_all(b"GET /load HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n").await?;
                        let mut out = Vec::new();
                        s.read_to_end(&mut out).await
                    };
                    if !matches!(tokio::time::timeout(NET_TIMEOUT, exchange).await, Ok(Ok(_))) {
                        break;
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() >= 200).await, "no rows under load: {}", gh.log());
    gh.signal("KILL");
    // Killed by the signal: no exit code, but gone.
    assert_eq!(gh.wait_exit(NET_TIMEOUT), None);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    let conn = rusqlite::Connection::open(db_path(&gh)).expect("the database opens after a kill");
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(check, "ok");
    let count: i64 = conn.query_row("SELECT count(*) FROM requests", [], |r| r.get(0)).expect("count");
    assert!(count >= 200, "rows committed before the kill are gone: {count}");
}

/// Analytics read from the hourly rollups equal the traffic the test sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_equal_the_traffic_sent() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    let firefox = [("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")];
    for _ in 0..5 {
        assert_eq!(get_with(gh.http, "shop.test", "/", &firefox).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get_with(gh.http, "nowhere.test", "/", &[("user-agent", "curl/8.11.1")]).await.status, 404);
    }
    assert_eq!(get_with(gh.http, "shop.test", "/bot", &[("user-agent", "Googlebot/2.1")]).await.status, 200);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 8).await, "{}", gh.log());

    let (status, v) = admin_json(&gh, http::Method::GET, "/api/analytics/summary", "").await;
    assert_eq!(status, 200, "{v}");
    let s = &v["summary"];
    assert_eq!(
        (s["requests"].as_u64(), s["client_errors"].as_u64(), s["server_errors"].as_u64()),
        (Some(8), Some(2), Some(0)),
        "{v}"
    );
    assert!(s["p50_ms"].as_u64().is_some(), "{v}");
    let (_, v) = admin_json(&gh, http::Method::GET, "/api/analytics/routes?hours=2", "").await;
    let routes: Vec<(String, u64)> = v["routes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| (r["route"].as_str().unwrap_or("?").to_string(), r["requests"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(routes, [("shop#0".to_string(), 6), (String::new(), 2)], "{v}");
    let (_, v) = admin_json(&gh, http::Method::GET, "/api/analytics/status", "").await;
    assert_eq!(
        v["status"],
        serde_json::json!([{"value": "200", "requests": 6}, {"value": "404", "requests": 2}]),
        "{v}"
    );
    let (_, v) = admin_json(&gh, http::Method::GET, "/api/analytics/user_agents?site=shop", "").await;
    assert_eq!(
        v["user_agents"],
        serde_json::json!([{"value": "browser", "requests": 5}, {"value": "bot", "requests": 1}]),
        "{v}"
    );
    let (_, v) = admin_json(&gh, http::Method::GET, "/api/analytics/heatmap", "").await;
    let total: u64 = v["weekday_hour"].as_array().map_or(0, |d| {
        d.iter().flat_map(|h| h.as_array().cloned().unwrap_or_default()).filter_map(|n| n.as_u64()).sum()
    });
    assert_eq!(total, 8, "{v}");
    for bad in [
        "/api/analytics/summary?hours=0",
        "/api/analytics/summary?hours=99999",
        "/api/analytics/nothing",
        "/api/analytics/routes?limit=x",
    ] {
        let (status, v) = admin_json(&gh, http::Method::GET, bad, "").await;
        assert!(status == 400 || status == 404, "{bad}: {status} {v}");
        assert!(v["error"].is_string(), "{v}");
    }
}

fn gatehouse_cli(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = output_within(
        std::process::Command::new(BIN).args(args).arg("--config").arg(dir.join("gatehouse.yaml")),
        NET_TIMEOUT,
    )
    .expect("run gatehouse");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `gatehouse backup now|list|verify|restore`: a backup taken while the proxy runs holds
/// its rows and the ACME state; restoring is refused while the database is in use, and once
/// it is not, brings back both, and a restarted Gatehouse serves the restored rows. A
/// second instance on the same database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_rows_and_acme_state() {
    let b = Backend::start("b").await;
    let mut gh = Gatehouse::start("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    let d = gh.dir.path().to_path_buf();
    for i in 0..3 {
        assert_eq!(get(gh.http, "shop.test", &format!("/before/{i}")).await.status, 200);
    }
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 3).await, "{}", gh.log());
    std::fs::create_dir_all(d.join("data/acme/certs/shop")).expect("dir");
    std::fs::write(d.join("data/acme/account.json"), b"{\"id\": \"acct\"}").expect("write");
    std::fs::write(d.join("data/acme/certs/shop/fullchain.pem"), b"PEM").expect("write");

    let (code, out) = tokio::task::spawn_blocking({
        let d = d.clone();
        move || gatehouse_cli(&d, &["run"])
    })
    .await
    .expect("second instance");
    assert_eq!(code, Some(1), "a second instance on the same database started: {out}");
    assert!(out.contains("in use by another Gatehouse"), "{out}");

    let cli = |args: &'static [&'static str]| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || gatehouse_cli(&d, args))
    };
    let (code, out) = cli(&["backup", "now"]).await.expect("backup");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("backup written: ") && out.contains(".db.gz"), "{out}");
    let (code, out) = cli(&["backup", "list"]).await.expect("list");
    assert_eq!((code, out.lines().count()), (Some(0), 1), "{out}");
    let (code, out) = cli(&["backup", "verify"]).await.expect("verify");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OK (3 request rows") && out.contains("2 files"), "{out}");
    let (code, out) = cli(&["backup", "restore", "--at", "now"]).await.expect("restore");
    assert_eq!(code, Some(1), "restored over a running instance: {out}");
    assert!(out.contains("in use by a running Gatehouse"), "{out}");
    let (code, out) = cli(&["backup", "restore", "--at", "2001-01-01"]).await.expect("restore");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no backup"), "{out}");

    // More traffic after the backup, then the instance stops and its data is lost.
    assert_eq!(get(gh.http, "shop.test", "/after").await.status, 200);
    gh.signal("TERM");
    assert_eq!(gh.wait_exit(NET_TIMEOUT), Some(0), "{}", gh.log());
    for f in ["gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm"] {
        let _ = std::fs::remove_file(d.join("data").join(f));
    }
    std::fs::remove_dir_all(d.join("data/acme")).expect("remove acme");

    let (code, out) = cli(&["backup", "restore", "--at", "now"]).await.expect("restore");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(d.join("data/acme/account.json")).expect("account back"), b"{\"id\": \"acct\"}");
    assert_eq!(std::fs::read(d.join("data/acme/certs/shop/fullchain.pem")).expect("cert back"), b"PEM");
    let restored: Vec<String> = rows(&gh).into_iter().map(|r| r.2).collect();
    assert_eq!(restored, ["/before/0", "/before/1", "/before/2"], "the restored rows are those of the backup");

    let dir = std::mem::replace(&mut gh.dir, tempfile::tempdir().expect("tempdir"));
    let gh = Gatehouse::start_in(dir);
    let (status, v) = admin_json(&gh, http::Method::GET, "/api/logs?path_prefix=%2Fbefore", "").await;
    assert_eq!((status, paths(&v).len()), (200, 3), "{v}");
}

/// The proxy-manager's site file (tests/compat/pterodactyl.yaml, a copy of the team's
/// shared compat file) as written: `check` names only the keys of features not built yet
/// and the error pages it cannot read, and notes what `timeouts.write` and `timeouts.idle`
/// mean here; without those keys (and with its pages) it runs: its `logging` and
/// `data_retention` apply to that site, its `health_check` and `circuit_breaker` to its
/// backend, its `rate_limit` to its paths, its `waf` to every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_manager_site_file_is_accepted_but_for_unbuilt_features() {
    let compat = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/pterodactyl.yaml");
    let text = std::fs::read_to_string(&compat).unwrap_or_else(|e| panic!("{}: {e}", compat.display()));
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "", &[("panel", &text)]);
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    let named: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("note: "))
        .filter_map(|l| l.split_once(": ").map(|(at, _)| at))
        .filter_map(|at| at.split(' ').nth(1))
        .collect();
    assert_eq!(named, ["compression", "error_pages.502", "error_pages.503"], "{out}");
    assert!(out.contains("3 error(s)") && out.contains("not built yet"), "{out}");
    assert!(out.contains("cannot read page /etc/proxy/error-pages/maintenance.html"), "{out}");

    // Without those keys, with this test's backend and a page of its own, it runs.
    let b = Backend::start("b").await;
    let page = dir.path().join("maintenance.html");
    std::fs::write(&page, "<h1>{{status}}: back soon</h1>").expect("page");
    let unbuilt = ["compression"];
    let mut kept = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let top = !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#');
        if top {
            skipping = unbuilt.iter().any(|k| line.starts_with(&format!("{k}:")));
        }
        if !skipping {
            kept.push_str(
                &line
                    .replace("http://127.0.0.1:8080", &b.url())
                    .replace("mask_ip_method: last_octet", "mask_ip_method: none")
                    .replace("/etc/proxy/error-pages/maintenance.html", &page.display().to_string()),
            );
            kept.push('\n');
        }
    }
    // `check` passes it, and says what the proxy-manager's two timeouts mean here.
    let fixed = tempfile::tempdir().expect("tempdir");
    write_config(fixed.path(), "", &[("panel", &kept)]);
    let (code, out) = check(fixed.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("timeouts.write: in Gatehouse this is the time allowed between two chunks"), "{out}");
    assert!(out.contains("timeouts.idle: in Gatehouse this is how long an idle connection to a backend"), "{out}");
    let gh = Gatehouse::start("", &[("panel", &kept), ("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))]);
    assert_eq!(get(gh.http, "panel.example.test", "/").await.status, 200, "{}", gh.log());
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 2).await, "{}", gh.log());
    let clients: Vec<(Option<String>, String)> = rows(&gh).into_iter().map(|r| (r.4, r.0)).collect();
    assert!(
        clients.contains(&(Some("panel".into()), "127.0.0.1".into())),
        "the site's mask_ip_method: none: {clients:?}"
    );
    assert!(clients.contains(&(Some("shop".into()), "127.0.0.0".into())), "the main file's default: {clients:?}");
    // The site's health check and breaker watch its backend; the other site's does not.
    let backends = get(gh.admin, "localhost", "/api/backends").await.json();
    let of = |site: &str| {
        backends["backends"].as_array().and_then(|l| l.iter().find(|b| b["site"] == site).cloned()).unwrap_or_default()
    };
    assert_eq!(of("panel")["breaker"], "closed", "{backends}");
    assert_eq!(of("shop")["breaker"], serde_json::Value::Null, "{backends}");
    assert!(
        wait_until_async(NET_TIMEOUT, || async {
            let v = get(gh.admin, "localhost", "/api/backends").await.json();
            v["backends"].as_array().is_some_and(|l| l.iter().any(|b| b["site"] == "panel" && b["health"] == "up"))
        })
        .await,
        "{}",
        gh.log()
    );
    // The panel's headers preset and its added header apply (`add` appends to the preset's).
    let r = get(gh.http, "panel.example.test", "/").await;
    let sts: Vec<&str> =
        r.headers.get_all("strict-transport-security").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(sts.contains(&"max-age=31536000; includeSubDomains"), "{:?}", r.headers);
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "security-strict preset: {:?}", r.headers);
    // Its rate limit: `/auth/*` at 5 per minute per address (the site-wide 100 per minute
    // allows more); the 6th request is 429.
    for i in 0..5 {
        assert_eq!(get(gh.http, "panel.example.test", &format!("/auth/login{i}")).await.status, 200, "{i}");
    }
    let r = get(gh.http, "panel.example.test", "/auth/login").await;
    assert_eq!((r.status.as_u16(), r.header("ratelimit-policy")), (429, Some("per_client;q=5;w=60")));
    assert_eq!(get(gh.http, "panel.example.test", "/dashboard").await.status, 200, "other paths are not limited");
    // Its WAF (`waf: {enabled: true, mode: block, rules: {sql_injection, xss, path_traversal}}`).
    let r = get(gh.http, "panel.example.test", "/dashboard?server=1%27%20OR%20%271%27%3D%271").await;
    assert_eq!(r.status, 403, "the site's WAF blocks: {}", r.text());
    assert_eq!(get(gh.http, "panel.example.test", "/dashboard?q=O%27Brien").await.status, 200);
}

/// `/api/stats`, `/api/backends`, `/api/routes` (24-hour figures) and `/api/ai-context`
/// (Markdown; no secrets, masked clients) show the traffic sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overviews_show_the_traffic_and_no_secrets() {
    let b = Backend::start("b").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let token = "s3cret-admin-token-0123456789";
    let gh = Gatehouse::start_edited(
        "webhooks:\n  - url: http://127.0.0.1:9/hook/webhook-secret\n",
        &[
            ("shop", &format!("host: shop.test\nbackend: {}\n", b.url())),
            ("down", &format!("host: down.test\nbackend: http://{dead}\n")),
        ],
        |main| main.replace("admin: {listen: 127.0.0.1:0}", &format!("admin: {{listen: 127.0.0.1:0, token: {token}}}")),
    );
    for _ in 0..4 {
        assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    }
    assert_eq!(get(gh.http, "down.test", "/broken?password=hunter2").await.status, 502);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 5).await, "{}", gh.log());
    let auth = [("authorization", format!("Bearer {token}"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stats = get_with(gh.admin, "localhost", "/api/stats", &auth).await.json();
    assert_eq!(stats["last_24h"]["requests"], 5, "{stats}");
    assert_eq!(stats["last_24h"]["server_errors"], 1, "{stats}");
    assert!(stats["live"]["requests"]["total"].as_u64().is_some_and(|n| n >= 5), "{stats}");
    assert!(stats["live"]["uptime_seconds"].is_u64(), "{stats}");
    let backends = get_with(gh.admin, "localhost", "/api/backends", &auth).await.json();
    let shop =
        backends["backends"].as_array().and_then(|l| l.iter().find(|x| x["site"] == "shop").cloned()).expect("shop");
    assert_eq!((shop["requests"].as_u64(), shop["url"].as_str()), (Some(4), Some(b.url().as_str())), "{backends}");
    let routes = get_with(gh.admin, "localhost", "/api/routes", &auth).await.json();
    let day: Vec<u64> = routes["routes"]
        .as_array()
        .map_or_else(Vec::new, |l| l.iter().filter_map(|r| r["last_24h"]["requests"].as_u64()).collect());
    assert_eq!(day.iter().sum::<u64>(), 5, "{routes}");

    let report = get_with(gh.admin, "localhost", "/api/ai-context", &auth).await;
    assert_eq!(report.status, 200);
    assert!(report.header("content-type").is_some_and(|c| c.starts_with("text/markdown")));
    let md = report.text();
    for want in [
        "# Gatehouse status",
        "| shop#0 | shop |",
        "## Recent errors",
        "/broken?password=[REDACTED]",
        "client 127.0.0.0",
        "## Anomalies",
    ] {
        assert!(md.contains(want), "missing {want:?} in:\n{md}");
    }
    for secret in [token, "webhook-secret", "hunter2"] {
        assert!(!md.contains(secret), "{secret:?} leaked into:\n{md}");
    }
    assert!(!md.contains("client 127.0.0.1"), "an unmasked client in:\n{md}");
}

/// A route's own `logging` overrides its site's: one route unlogged, one with whole
/// addresses, the rest as the site says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_have_its_own_logging() {
    let b = Backend::start("b").await;
    let url = b.url();
    let gh = Gatehouse::start(
        "",
        &[(
            "shop",
            &format!(
                "host: shop.test\nlogging: {{mask_ip_method: hash}}\nroutes:\n  - path: /health\n    backend: {url}\n    logging: {{requests: false}}\n  - path: /admin\n    backend: {url}\n    logging: {{mask_ip_method: none}}\n  - path: /\n    backend: {url}\n"
            ),
        )],
    );
    for p in ["/health", "/admin/x", "/page"] {
        assert_eq!(get(gh.http, "shop.test", p).await.status, 200);
    }
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 2).await, "{:?}", rows(&gh));
    // Give a stray /health row the time to show up, were it stored.
    assert_eq!(get(gh.http, "shop.test", "/page2").await.status, 200);
    assert!(wait_until(NET_TIMEOUT, || rows(&gh).len() == 3).await, "{:?}", rows(&gh));
    let stored: Vec<(String, String)> = rows(&gh).into_iter().map(|r| (r.2, r.0)).collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(!stored.iter().any(|(p, _)| p == "/health"), "{stored:?}");
    assert_eq!(stored[0], ("/admin/x".to_string(), "127.0.0.1".to_string()));
    assert!(stored[1].1.starts_with("h:") && stored[2].1 == stored[1].1, "{stored:?}");
}

/// `log.access_file`: JSON lines in a file of their own, masked as the database stores
/// the client, without the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_file_has_json_lines_masked_like_the_database() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start_edited("", &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))], |main| {
        main.replace(
            "log: {level: warn, format: json}",
            "log: {level: warn, format: json, access_file: logs/access.log}",
        )
    });
    assert_eq!(get(gh.http, "shop.test", "/file?token=s3cr3t").await.status, 200);
    let path = gh.dir.path().join("logs/access.log");
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    assert!(wait_until(NET_TIMEOUT, || lines().len() == 1).await, "{}", gh.log());
    let l = &lines()[0];
    assert_eq!(
        (l["client"].as_str(), l["path"].as_str(), l["status"].as_u64()),
        (Some("127.0.0.0"), Some("/file"), Some(200)),
        "{l}"
    );
    assert!(l["trace_id"].as_str().is_some_and(|t| t.len() == 32), "{l}");
    assert!(!std::fs::read_to_string(&path).unwrap_or_default().contains("s3cr3t"));
    assert!(!gh.log().contains("\"target\":\"access\""), "access lines also went to the log stream");
}
