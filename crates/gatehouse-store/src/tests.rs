use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

fn row<'a>(client: &str, path: &'a str) -> RequestRow<'a> {
    RequestRow {
        time_us: 1_796_000_000_000_000,
        site: Some("shop"),
        route: Some("/"),
        backend: Some("http://127.0.0.1:8080"),
        method: Some("GET"),
        host: "shop.test",
        path,
        status: 200,
        duration_us: 1500,
        bytes_in: 0,
        bytes_out: 42,
        client: client.parse::<IpAddr>().expect("ip"),
        mask: MaskIp::LastOctet,
        user_agent: Some("curl/8.0"),
        country: None,
        request_id: Some("abc"),
        trace: Some(([7; 16], [9; 8])),
        retries: 0,
        error: None,
    }
}

fn batch(rows: &[RequestRow<'_>]) -> Batch {
    let mut b = Batch::new();
    for r in rows {
        b.push(r);
    }
    b
}

#[test]
fn a_batch_gives_back_the_rows_pushed_into_it() {
    let long = "x".repeat(20_000);
    let mut odd = row("2001:db8::1", "/é?q=1");
    odd.site = None;
    odd.user_agent = Some(&long);
    odd.error = Some(RowError { side: "backend", kind: "connect", reason: "refused" });
    let rows = [row("192.0.2.1", "/a"), odd.clone(), row("::ffff:192.0.2.9", "")];
    let b = batch(&rows);
    assert_eq!(b.len(), 3);
    let back: Vec<RequestRow<'_>> = b.iter().collect();
    assert_eq!(back[0], rows[0]);
    assert_eq!(back[2], rows[2]);
    // Over-long fields are cut, the rest comes back as it went in.
    assert_eq!(back[1].user_agent.map(str::len), Some(512));
    assert_eq!(RequestRow { user_agent: odd.user_agent, ..back[1].clone() }, odd);
}

#[test]
fn addresses_are_masked_and_secrets_redacted_when_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Sqlite::open(&dir.path().join("data/gh.db")).expect("open");
    db.insert_requests(&batch(&[
        row("203.0.113.77", "/reset?token=s3cr3t&page=2"),
        row("2001:db8:1:2:3:4:5:6", "/login?Password=x&next=/home"),
        row("::ffff:198.51.100.9", "/plain"),
    ]))
    .expect("insert");
    let got = db.recent_requests(10).expect("read");
    let clients: Vec<&str> = got.iter().rev().map(|r| r.client.as_str()).collect();
    assert_eq!(clients, ["203.0.113.0", "2001:db8:1:2::", "198.51.100.0"]);
    let paths: Vec<&str> = got.iter().rev().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/reset?token=[REDACTED]&page=2", "/login?Password=[REDACTED]&next=/home", "/plain"]);
}

#[test]
fn the_client_hash_tells_addresses_of_one_masked_form_apart_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let db = Sqlite::open(&path).expect("open");
    let (a, b) = ("203.0.113.7".parse().expect("ip"), "203.0.113.8".parse().expect("ip"));
    assert_eq!(mask_ip(a, MaskIp::LastOctet), mask_ip(b, MaskIp::LastOctet));
    assert_ne!(db.client_key(a), db.client_key(b));
    let before = db.client_key(a);
    drop(db);
    let db = Sqlite::open(&path).expect("reopen");
    assert_eq!(db.client_key(a), before, "the key changed across restarts");
    // Another database has another key: a hash means nothing outside its database.
    let other = Sqlite::open(&dir.path().join("other.db")).expect("open");
    assert_ne!(other.client_key(a), before);
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    drop(Sqlite::open(&path).expect("create"));
    drop(Sqlite::open(&path).expect("reopen: migrations must not run twice"));
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
    assert_eq!(version, schema::VERSION);
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("mode");
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "user_version", schema::VERSION + 1).expect("bump");
    drop(conn);
    match Sqlite::open(&path) {
        Err(e @ StoreError::TooNew { .. }) => assert!(e.to_string().contains("newer"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a database from a newer Gatehouse was opened"),
    }
}

#[test]
fn the_writer_batches_rows_and_drops_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let writer = Writer::start(Sqlite::open(&path).expect("open"), 100_000, 2).expect("writer");
    for i in 0..5000 {
        assert!(writer.log(&row("192.0.2.1", &format!("/{i}"))));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while writer.stats().written.load(std::sync::atomic::Ordering::Relaxed) < 5000 {
        assert!(Instant::now() < deadline, "rows not written within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let db = Sqlite::open(&path).expect("reader");
    assert_eq!(db.recent_requests(10_000).expect("read").len(), 5000);

    // A queue of one, and a writer that cannot keep up with a burst: the overflow is
    // dropped and counted, and `log` never blocks.
    let small = Writer::start(Sqlite::open(&path).expect("open"), 1, 1).expect("writer");
    let sent = (0..10_000).filter(|i| small.log(&row("192.0.2.1", &format!("/burst/{i}")))).count();
    let dropped = small.stats().dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "nothing dropped from a queue of one");
    assert_eq!(sent as u64 + dropped, 10_000);
}

#[test]
fn dropping_the_last_writer_writes_what_is_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let writer = Writer::start(Sqlite::open(&path).expect("open"), 100_000, 1).expect("writer");
    let second = writer.clone();
    for i in 0..300 {
        assert!(writer.log(&row("192.0.2.1", &format!("/{i}"))));
    }
    drop(writer);
    assert!(second.log(&row("192.0.2.1", "/last")), "a clone still writes");
    drop(second);
    let db = Sqlite::open(&path).expect("reader");
    assert_eq!(db.recent_requests(1000).expect("read").len(), 301, "rows queued at shutdown were lost");
}

#[test]
fn a_version_1_database_keeps_its_rows_through_the_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("raw");
        let mut conn = conn;
        let tx = conn.transaction().expect("tx");
        tx.execute_batch(schema::migration(1)).expect("v1");
        tx.pragma_update(None, "user_version", 1).expect("version");
        tx.execute_batch(
            "INSERT INTO request_logs (time_ms, site, route, backend, method, host, path, status, duration_us,
               bytes_in, bytes_out, client, client_key, request_id, retries, error_side, error_kind, error_reason)
             VALUES (1, 'shop', '/', NULL, 'GET', 'shop.test', '/a', 200, 5, 0, 1, '192.0.2.0', x'01', 'r1', 0, NULL, NULL, NULL),
                    (2, 'shop', '/', 'http://b', 'POST', 'shop.test', '/b', 502, 7, 3, 4, '192.0.2.0', x'02', 'r2', 1,
                     'backend', 'connect', 'refused');",
        )
        .expect("rows");
        tx.commit().expect("commit");
    }
    let db = Sqlite::open(&path).expect("migrate");
    let got = db.recent_requests(10).expect("read");
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].path.as_str(), got[0].status, got[0].error_side.as_deref()), ("/b", 502, Some("backend")));
    assert_eq!(
        (got[1].method.as_deref(), got[1].site.as_deref(), got[1].client.as_str()),
        (Some("GET"), Some("shop"), "192.0.2.0")
    );
    let clients: i64 = db.connection().query_row("SELECT count(*) FROM clients", [], |r| r.get(0)).expect("count");
    assert_eq!(clients, 2, "two full addresses (two hashes) share one masked form");
}

const DAY_US: i64 = 86_400 * 1_000_000;

#[test]
fn retention_deletes_exactly_what_is_due_and_what_nothing_refers_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let mut db = Sqlite::open(&path).expect("open");
    let now = 1_800_000_000_000_000;
    let aged = |days: i64, status: u16, p: &'static str, agent: &'static str| RequestRow {
        time_us: now - days * DAY_US,
        status,
        user_agent: Some(agent),
        ..row("192.0.2.1", p)
    };
    db.insert_requests(&batch(&[
        aged(8, 200, "/access-due", "old-agent/1"),
        aged(6, 200, "/access-kept", "kept-agent/1"),
        aged(8, 500, "/error-kept", "kept-agent/1"),
        aged(31, 500, "/error-due", "kept-agent/1"),
        aged(31, 404, "/client-error-due", "kept-agent/1"),
        aged(8, 404, "/client-error-kept", "kept-agent/1"),
        RequestRow {
            error: Some(RowError { side: "client", kind: "client_gone", reason: "left" }),
            ..aged(8, 200, "/failed-kept", "kept-agent/1")
        },
    ]))
    .expect("insert");
    db.audit(&AuditEntry {
        time_ms: (now - 366 * DAY_US) / 1000,
        source: "api".into(),
        action: "old".into(),
        detail: "{}".into(),
    })
    .expect("audit");
    db.audit(&AuditEntry {
        time_ms: (now - DAY_US) / 1000,
        source: "api".into(),
        action: "new".into(),
        detail: "{}".into(),
    })
    .expect("audit");

    let pruned = db.apply_retention(now, &Retention::default()).expect("retention");
    assert_eq!((pruned.requests, pruned.audit), (3, 1), "{pruned:?}");
    let mut left: Vec<String> = db.recent_requests(100).expect("read").into_iter().map(|r| r.path).collect();
    left.sort();
    assert_eq!(left, ["/access-kept", "/client-error-kept", "/error-kept", "/failed-kept"]);
    let reader = Reader::open(&path).expect("reader");
    let audit: Vec<String> = reader.audit(10, None).expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(audit, ["new"]);
    // The user agent only the deleted row had is gone from the strings too.
    let count = |sql: &str| -> i64 { db.connection().query_row(sql, [], |r| r.get(0)).expect("count") };
    assert_eq!(count("SELECT count(*) FROM strings WHERE text = 'old-agent/1'"), 0);
    assert_eq!(count("SELECT count(*) FROM strings WHERE text = 'kept-agent/1'"), 1);
    let vacuum: i64 = db.connection().pragma_query_value(None, "auto_vacuum", |r| r.get(0)).expect("pragma");
    assert_eq!(vacuum, 2, "incremental vacuum is on");

    // The writer's remembered ids were dropped with the strings: new rows still resolve.
    db.insert_requests(&batch(&[aged(0, 200, "/after", "old-agent/1")])).expect("insert after");
    let after = &db.recent_requests(1).expect("read")[0];
    assert_eq!((after.path.as_str(), after.user_agent.as_deref()), ("/after", Some("old-agent/1")));
}

#[test]
fn a_subject_request_finds_and_erases_one_address_not_its_neighbours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let mut db = Sqlite::open(&path).expect("open");
    db.insert_requests(&batch(&[
        row("203.0.113.7", "/seven/1"),
        row("203.0.113.8", "/eight/1"),
        row("203.0.113.7", "/seven/2"),
        row("::ffff:203.0.113.8", "/eight/2"),
    ]))
    .expect("insert");
    let reader = Reader::open(&path).expect("reader");
    let (seven, eight) = ("203.0.113.7".parse().expect("ip"), "203.0.113.8".parse().expect("ip"));
    let paths = |ip| -> Vec<String> { reader.client_rows(ip).expect("export").into_iter().map(|r| r.path).collect() };
    assert_eq!(paths(seven), ["/seven/1", "/seven/2"]);
    assert_eq!(paths(eight), ["/eight/1", "/eight/2"], "an IPv4-mapped address is the same client");
    assert_eq!(db.erase_client(seven).expect("erase"), 2);
    assert!(paths(seven).is_empty());
    assert_eq!(paths(eight).len(), 2);
    assert_eq!(db.erase_client(seven).expect("erase again"), 0);
}

#[test]
fn logs_filter_and_page_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let mut db = Sqlite::open(&path).expect("open");
    let paths: Vec<String> = (0..25).map(|i| format!("/p/{i}")).collect();
    let rows: Vec<RequestRow<'_>> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| RequestRow {
            time_us: 1_000_000 + i as i64,
            status: if i % 5 == 0 { 502 } else { 200 },
            site: Some(if i % 2 == 0 { "even" } else { "odd" }),
            ..row("192.0.2.1", p)
        })
        .collect();
    db.insert_requests(&batch(&rows)).expect("insert");
    let reader = Reader::open(&path).expect("reader");
    let q = |f: &dyn Fn(&mut LogQuery)| -> Vec<String> {
        let mut q = LogQuery { limit: 100, ..LogQuery::default() };
        f(&mut q);
        reader.logs(&q).expect("logs").into_iter().map(|r| r.path).collect()
    };
    assert_eq!(q(&|q| q.status_class = Some(5)), ["/p/20", "/p/15", "/p/10", "/p/5", "/p/0"]);
    assert_eq!(
        q(&|q| {
            q.status = Some(502);
            q.site = Some("odd".into());
        }),
        ["/p/15", "/p/5"]
    );
    assert_eq!(q(&|q| q.path_prefix = Some("/p/2".into())), ["/p/24", "/p/23", "/p/22", "/p/21", "/p/20", "/p/2"]);
    assert_eq!(
        q(&|q| {
            q.since_us = Some(1_000_010);
            q.until_us = Some(1_000_012);
        }),
        ["/p/11", "/p/10"]
    );
    // Pages of 10 cover every row once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = reader.logs(&LogQuery { limit: 10, after, ..LogQuery::default() }).expect("page");
        let Some(last) = page.last() else { break };
        after = Some((last.time_us, last.id));
        seen.extend(page.into_iter().map(|r| r.path));
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.first().map(String::as_str), Some("/p/24"));
    assert_eq!(seen.last().map(String::as_str), Some("/p/0"));
}

#[test]
fn rollups_add_up_to_the_rows_and_outlive_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let mut db = Sqlite::open(&path).expect("open");
    // Thursday 2027-01-07 10:00 UTC, and the hour after.
    let ten = 1_799_316_000 * 1_000_000;
    let at = |hour: i64, status: u16, ms: u64, agent: &'static str, route: &'static str| RequestRow {
        time_us: ten + hour * 3_600_000_000 + 17,
        status,
        duration_us: ms * 1000,
        user_agent: Some(agent),
        route: Some(route),
        bytes_out: 100,
        ..row("192.0.2.1", "/")
    };
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let mut rows = Vec::new();
    for i in 0..8 {
        rows.push(at(0, 200, 3 + i, firefox, "shop#0"));
    }
    rows.push(at(0, 404, 1, "curl/8.11.1", "shop#0"));
    rows.push(at(1, 502, 1500, "Googlebot/2.1", "shop#1"));
    // Two batches: the second adds to the hour the first started.
    db.insert_requests(&batch(&rows[..4])).expect("insert");
    db.insert_requests(&batch(&rows[4..])).expect("insert");

    let reader = Reader::open(&path).expect("reader");
    let span = Span { since: ten / 1_000_000, until: ten / 1_000_000 + 7200, site: None };
    let all = &reader.totals(&span, false, 10).expect("totals")[0];
    assert_eq!((all.requests, all.client_errors, all.server_errors, all.bytes_out), (10, 1, 1, 1000));
    assert_eq!((all.p50_ms, all.p90_ms, all.p99_ms), (Some(10), Some(10), Some(2000)), "{all:?}");
    let routes = reader.totals(&span, true, 10).expect("by route");
    let names: Vec<(Option<&str>, u64)> = routes.iter().map(|t| (t.route.as_deref(), t.requests)).collect();
    assert_eq!(names, [(Some("shop#0"), 9), (Some("shop#1"), 1)]);
    assert_eq!(
        reader.counts(&span, "status").expect("status"),
        [("200".to_string(), 8), ("404".to_string(), 1), ("502".to_string(), 1)]
    );
    assert_eq!(
        reader.counts(&span, "agent").expect("agents"),
        [("browser".to_string(), 8), ("api_client".to_string(), 1), ("bot".to_string(), 1)]
    );
    let heat = reader.heatmap(&span).expect("heatmap");
    assert_eq!((heat[4][10], heat[4][11]), (9, 1), "Thursday 10:00 and 11:00");
    assert_eq!(heat.iter().flatten().sum::<u64>(), 10);
    let only_next_hour = Span { since: span.since + 3600, ..span.clone() };
    assert_eq!(reader.totals(&only_next_hour, false, 10).expect("totals")[0].requests, 1);

    // A year on, the rows are gone and the rollups stay (they are kept 400 days).
    let later = ten + 366 * DAY_US;
    let pruned = db.apply_retention(later, &Retention::default()).expect("retention");
    assert_eq!((pruned.requests, pruned.hours), (10, 0));
    assert_eq!(reader.totals(&span, false, 10).expect("totals")[0].requests, 10);
}

#[test]
fn a_site_or_route_with_its_own_retention_keeps_its_rows_by_its_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Sqlite::open(&dir.path().join("gh.db")).expect("open");
    let now = 1_800_000_000_000_000;
    let aged = |site: &'static str, route: &'static str, days: i64, status: u16| RequestRow {
        time_us: now - days * DAY_US,
        site: Some(site),
        route: Some(route),
        status,
        ..row("192.0.2.1", "/")
    };
    db.insert_requests(&batch(&[
        aged("panel", "panel#0", 8, 200),
        aged("panel", "panel#0", 20, 500),
        aged("panel", "panel#1", 3, 200),
        aged("shop", "shop#0", 8, 200),
        aged("shop", "shop#0", 20, 500),
    ]))
    .expect("insert");
    let day = |d: u64| std::time::Duration::from_secs(d * 86_400);
    let r = Retention {
        sites: vec![("panel".into(), day(30), day(10))],
        routes: vec![("panel#1".into(), day(2), day(2))],
        ..Retention::default()
    };
    assert_eq!(db.apply_retention(now, &r).expect("retention").requests, 3);
    let mut left: Vec<(Option<String>, u16)> =
        db.recent_requests(10).expect("read").into_iter().map(|r| (r.route, r.status)).collect();
    left.sort();
    // panel#1 keeps 2 days; the rest of panel 30 days (access) and 10 (errors); shop the
    // defaults (7 and 30).
    assert_eq!(left, [(Some("panel#0".into()), 200), (Some("shop#0".into()), 500)]);
}

#[test]
fn hashed_addresses_are_daily_tokens_and_subject_requests_still_find_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gh.db");
    let mut db = Sqlite::open(&path).expect("open");
    let hashed = |ip: &str, p: &'static str| RequestRow { mask: MaskIp::Hash, ..row(ip, p) };
    db.insert_requests(&batch(&[
        hashed("203.0.113.7", "/a"),
        hashed("203.0.113.8", "/b"),
        hashed("203.0.113.7", "/c"),
    ]))
    .expect("insert");
    let got = db.recent_requests(10).expect("read");
    let by_path = |p: &str| got.iter().find(|r| r.path == p).map(|r| r.client.clone()).expect("row");
    let (a, b, c) = (by_path("/a"), by_path("/b"), by_path("/c"));
    assert!(a.starts_with("h:") && a.len() == 18, "{a}");
    assert_eq!(a, c, "one address, one token within a day");
    assert_ne!(a, b, "two addresses sharing a /24 get different tokens");
    assert!(!a.contains("203.0.113"), "{a}");
    // Another salt (another day, or a restart) gives other tokens.
    assert_ne!(RotatingSalt::default().token("203.0.113.7".parse().expect("ip")), a);
    let reader = Reader::open(&path).expect("reader");
    let rows = reader.client_rows("203.0.113.7".parse().expect("ip")).expect("export");
    assert_eq!(rows.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/a", "/c"]);
}
