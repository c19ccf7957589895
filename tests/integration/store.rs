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
    let gh = Gatehouse::start(
        "logging: {requests: false}\n",
        &[("shop", &format!("host: shop.test\nbackend: {}\n", b.url()))],
    );
    assert_eq!(get(gh.http, "shop.test", "/").await.status, 200);
    assert!(!db_path(&gh).exists(), "a database was created with logging.requests: false");
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
