//! The process around the proxy: `check`, startup failures, admin endpoints, graceful shutdown.

use std::time::Duration;

use crate::harness::*;

#[test]
fn check_reports_file_line_field_and_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        "defaults:\n  timeouts: {connect: 3 fortnights}\n",
        &[
            (
                "panel",
                "host: panel.test\nroutes:\n  - path: /\n    backend: http://127.0.0.1:9000\n  - path: /api\n    bakend: http://127.0.0.1:9001\n",
            ),
            (
                "shop",
                "hosts: [shop.test]\nroutes:\n  - path: '^/(['\n    match: regex\n    backend: http://127.0.0.1:9002\n  - path: /x\n    upstream: missing\n",
            ),
            ("lb", "host: lb.test\nbackends: [http://a:1]\noptions:\n  load_balancing: {algorithm: round_robbin}\n"),
            (
                "tunnel",
                "host: t.test\nroutes:\n  - path: /\n    methods: [GET, connect]\n    backend: http://127.0.0.1:9003\n",
            ),
        ],
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    let sites = dir.path().join("sites");
    let expect = [
        format!(
            "{}:9 defaults.timeouts.connect: invalid duration \"3 fortnights\": unknown unit \"fortnights\"",
            dir.path().join("gatehouse.yaml").display()
        ),
        format!(
            "{}:6 routes[1].bakend: unknown key `bakend` (did you mean `backend`?)",
            sites.join("panel.yaml").display()
        ),
        format!("{}:3 routes[0].path: invalid regex", sites.join("shop.yaml").display()),
        format!("{}:7 routes[1].upstream: no upstream named \"missing\"", sites.join("shop.yaml").display()),
        format!(
            "{}:4 options.load_balancing.algorithm: unknown algorithm \"round_robbin\" (did you mean `round_robin`?)",
            sites.join("lb.yaml").display()
        ),
        format!(
            "{}:4 routes[0].methods[1]: CONNECT opens a tunnel, which Gatehouse does not proxy",
            sites.join("tunnel.yaml").display()
        ),
    ];
    for e in expect {
        assert!(out.contains(&e), "missing {e:?} in:\n{out}");
    }
    assert!(out.contains("6 error(s)"), "{out}");

    // A valid configuration passes, without binding anything.
    let ok = tempfile::tempdir().expect("tempdir");
    write_config(ok.path(), "", &[("a", "host: a.test\nbackend: http://127.0.0.1:9\n")]);
    let (code, out) = check(ok.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK (1 sites, 1 routes)"), "{out}");
}

#[test]
fn startup_fails_clearly_when_the_port_is_taken_or_sites_dir_is_missing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "", &[("a", "host: a.test\nbackend: http://127.0.0.1:9\n")]);
    let main = std::fs::read_to_string(dir.path().join("gatehouse.yaml"))
        .expect("read")
        .replace("http: 127.0.0.1:0", &format!("http: 127.0.0.1:{port}"));
    std::fs::write(dir.path().join("gatehouse.yaml"), main).expect("write");
    let out = run_once(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");

    std::fs::remove_dir_all(dir.path().join("sites")).expect("rm");
    let out = run_once(dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read sites directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn environment_overrides_the_main_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "", &[("a", "host: a.test\nbackend: http://127.0.0.1:9\n")]);
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path().join("gatehouse.yaml"))
        .env("GATEHOUSE_LOG_LEVEL", "chatty")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("environment GATEHOUSE_LOG_LEVEL: unknown log level \"chatty\"")
    );
    // GATEHOUSE_CONFIG picks the file when --config is absent.
    let out = std::process::Command::new(BIN)
        .arg("check")
        .env("GATEHOUSE_CONFIG", dir.path().join("gatehouse.yaml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let b = Backend::start("b").await;
    let gh = Gatehouse::start(
        "",
        &[("a", &format!("host: a.test\nroutes:\n  - path: /api\n    methods: [GET]\n    backend: {}\n", b.url()))],
    );
    for p in ["/health", "/live", "/ready"] {
        let r = get(gh.admin, "localhost", p).await;
        assert_eq!(r.status, 200, "{p}");
    }
    let routes = get(gh.admin, "localhost", "/api/routes").await.json();
    let r = &routes["routes"][0];
    assert_eq!(r["site"], "a");
    assert_eq!(r["hosts"][0], "a.test");
    assert_eq!(r["path"], "/api");
    assert_eq!(r["methods"][0], "GET");
    assert_eq!(r["backends"][0]["url"], b.url());
    // The admin listener is not the proxy.
    assert_eq!(get(gh.http, "a.test", "/health").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let b = Backend::start("b").await;
    let mut gh = Gatehouse::start("", &[("a", &format!("host: a.test\nbackend: {}\n", b.url()))]);
    let addr = gh.http;
    let slow = tokio::spawn(async move { get(addr, "a.test", "/sleep/1500").await });
    // An idle keep-alive connection must not hold the shutdown up.
    let idle = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").expect("write");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        s
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = std::time::Instant::now();
    gh.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused while the old request finishes.
    assert!(std::net::TcpStream::connect(addr).is_err(), "listener still accepting after SIGTERM");
    let r = slow.await.expect("join");
    assert_eq!(r.status, 200);
    assert_eq!(gh.wait_exit(Duration::from_secs(10)), Some(0));
    // Well before the 60 s keep-alive timeout and the shutdown timeout.
    assert!(signalled.elapsed() < Duration::from_secs(5), "shutdown took {:?}", signalled.elapsed());
    drop(idle);
}

/// `gatehouse run` on a configuration that must not start; its output.
fn run_once(dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(BIN).args(["run", "--config"]).arg(dir.join("gatehouse.yaml")).output().expect("run")
}
