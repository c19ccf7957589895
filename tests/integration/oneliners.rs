//! `gatehouse proxy` and `gatehouse serve`: a proxy or a file server from one command, with
//! no configuration file, run as a user would type them.

use std::process::Command;
use std::time::Duration;

use crate::harness::{
    BIN, Backend, Gatehouse, accept_any_connector, check, get, get_req, output_within, send_on, tls_connect,
};

/// Starts a one-liner with `args`, its storage in the test's own directory.
fn one_liner(args: &[&str]) -> Gatehouse {
    let dir = tempfile::tempdir().expect("dir");
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--storage").arg(dir.path().join("storage"));
    Gatehouse::spawn(dir, cmd).unwrap_or_else(|f| panic!("{args:?} did not start:\n{}", f.log))
}

/// Runs a one-liner to its end; its default storage is a temporary directory, never the
/// home directory of whoever runs the tests.
fn output(args: &[&str]) -> (bool, String) {
    let data = tempfile::tempdir().expect("dir");
    let out = output_within(Command::new(BIN).args(args).env("XDG_DATA_HOME", data.path()), Duration::from_secs(30))
        .expect("gatehouse");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn proxy_balances_over_its_targets_over_https_and_stops_on_ctrl_c() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut gh = one_liner(&["proxy", "--from", "127.0.0.1:0", "--to", &a.url(), "--to", &b.addr.to_string()]);
    let https = gh.https.expect("an HTTPS listener by default");
    assert!(gh.log().contains("self-signed"), "{}", gh.log());
    // No admin listener unless asked for.
    assert_eq!(gh.admin.port(), 0);
    let connector = accept_any_connector();
    for i in 0..4 {
        // The self-signed certificate also answers the name a browser would send.
        let conn = tls_connect(https, &connector, "localhost").await.expect("TLS");
        let reply = send_on(conn.stream, get_req("localhost", &format!("/n/{i}"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["uri"], format!("/n/{i}"));
    }
    assert!(a.count() >= 1 && b.count() >= 1, "not balanced: a={} b={}", a.count(), b.count());
    assert_eq!(a.count() + b.count(), 4);
    // Ctrl-C: a graceful stop, exit status 0.
    gh.signal("INT");
    assert_eq!(gh.wait_exit(Duration::from_secs(15)), Some(0), "{}", gh.log());
    assert!(gh.log().contains("gatehouse stopped"), "{}", gh.log());
}

#[tokio::test]
async fn proxy_over_plain_http_with_http_scheme_or_http_only() {
    let backend = Backend::start("app").await;
    for args in [
        vec!["proxy", "--from", "http://127.0.0.1:0", "--to", &backend.url()],
        vec!["proxy", "--from", "127.0.0.1:0", "--http-only", "--to", &backend.url()],
    ] {
        let gh = one_liner(&args);
        assert!(gh.https.is_none(), "{args:?}");
        let reply = get(gh.http, "anything.test", "/hello").await;
        assert_eq!(reply.status, 200, "{args:?}: {}", reply.text());
        assert_eq!(reply.json()["uri"], "/hello");
    }
}

#[tokio::test]
async fn serve_answers_files_and_lists_directories_only_with_browse() {
    let root = tempfile::tempdir().expect("dir");
    std::fs::write(root.path().join("hello.txt"), "hello from disk\n").expect("write");
    std::fs::create_dir(root.path().join("docs & notes")).expect("mkdir");
    std::fs::write(root.path().join("docs & notes/a <b>.md"), "# a\n").expect("write");
    std::fs::write(root.path().join(".env"), "SECRET=1\n").expect("write");
    let dir = root.path().to_str().expect("utf-8");

    let gh = one_liner(&["serve", dir, "--listen", "127.0.0.1:0", "--browse"]);
    let reply = get(gh.http, "127.0.0.1", "/hello.txt").await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "hello from disk\n"));
    let listing = get(gh.http, "127.0.0.1", "/").await;
    assert_eq!(listing.status, 200);
    assert_eq!(listing.header("content-type"), Some("text/html; charset=utf-8"));
    let page = listing.text();
    assert!(page.contains("href=\"hello.txt\"") && page.contains("href=\"docs%20%26%20notes/\""), "{page}");
    assert!(!page.contains(".env"), "dot files are not listed: {page}");
    // Nor served: `serve .` in a project directory must not hand out its secrets.
    assert_eq!(get(gh.http, "127.0.0.1", "/.env").await.status, 404);
    // The link works, and names are escaped in the page.
    let sub = get(gh.http, "127.0.0.1", "/docs%20%26%20notes/").await;
    assert!(sub.text().contains("a &lt;b&gt;.md") && sub.text().contains("href=\"../\""), "{}", sub.text());
    let file = get(gh.http, "127.0.0.1", "/docs%20%26%20notes/a%20%3Cb%3E.md").await;
    assert_eq!(file.text(), "# a\n");

    // Without --browse a directory without index.html is a 404, as with a file; with
    // --dotfiles a dot file is served.
    let gh = one_liner(&["serve", dir, "--listen", "127.0.0.1:0", "--dotfiles"]);
    assert_eq!(get(gh.http, "127.0.0.1", "/.env").await.text(), "SECRET=1\n");
    assert_eq!(get(gh.http, "127.0.0.1", "/").await.status, 404);
    assert_eq!(get(gh.http, "127.0.0.1", "/hello.txt").await.status, 200);
}

#[test]
fn public_names_need_an_email_and_get_an_acme_configuration_check_accepts() {
    let (ok, text) = output(&["proxy", "--from", "app.example.com", "--to", "3000"]);
    assert!(!ok && text.contains("needs --email"), "{text}");
    let (ok, text) =
        output(&["proxy", "--from", "app.example.com", "--to", "3000", "--email", "ops@example.com", "--print-config"]);
    assert!(ok, "{text}");
    assert!(text.contains("https: \"0.0.0.0:443\"") && text.contains("http: \"0.0.0.0:80\""), "{text}");
    assert!(text.contains("email: \"ops@example.com\"") && text.contains("hosts: [\"app.example.com\"]"), "{text}");
    // What was printed is a configuration `check` accepts as it is.
    let (main, site) = text.split_once("# sites/proxy.yaml\n").expect("two files");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("sites")).expect("mkdir");
    std::fs::write(dir.path().join("gatehouse.yaml"), main).expect("write");
    std::fs::write(dir.path().join("sites/proxy.yaml"), site).expect("write");
    let (code, checked) = check(dir.path());
    assert_eq!(code, 0, "{checked}");
    assert!(checked.contains("configuration OK (1 sites, 1 routes)"), "{checked}");
}

#[test]
fn bad_flags_are_refused_with_the_reason() {
    for (args, wanted) in [
        (vec!["proxy", "--from", "ftp://x", "--to", "1"], "unknown scheme"),
        (vec!["proxy", "--from", "example.com/app", "--to", "1"], "not a path"),
        (vec!["proxy", "--from", "127.0.0.1:99999", "--to", "1"], "is not a port"),
        (vec!["proxy", "--from", "127.0.0.1:0"], "--to"),
        (vec!["proxy", "--from", "127.0.0.1:0", "--to", "http://[::1"], "backend"),
        (vec!["serve", "/no/such/dir"], "No such file"),
    ] {
        let (ok, text) = output(&args);
        assert!(!ok && text.contains(wanted), "{args:?}: {text}");
    }
}

#[tokio::test]
async fn a_second_one_liner_on_the_same_storage_and_port_is_refused_and_changes_nothing() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("dir");
    let storage = dir.path().join("storage");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let from = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args(["proxy", "--from", &from, "--to", &backend.url(), "--storage"]).arg(&storage);
    let gh = Gatehouse::spawn(dir, cmd).unwrap_or_else(|f| panic!("did not start:\n{}", f.log));
    let main = storage.join(format!("proxy-{port}/gatehouse.yaml"));
    let before = std::fs::read_to_string(&main).expect("generated main file");
    let other = format!("http://127.0.0.1:{port}");
    let out = output_within(
        Command::new(BIN).args(["proxy", "--from", &other, "--to", "9", "--storage"]).arg(&storage),
        Duration::from_secs(30),
    )
    .expect("second");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("another gatehouse runs from"), "{err}");
    assert_eq!(std::fs::read_to_string(&main).expect("main"), before);
    assert_eq!(get(gh.http, "x.test", "/still").await.status, 200);
}

#[tokio::test]
async fn a_public_name_gets_its_certificate_from_acme() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("dir");
    for attempt in 1..=3 {
        let leases = crate::harness::lease_ports::<2>();
        let [http, https] = leases.each_ref().map(|l| l.port);
        let pebble = crate::harness::Pebble::start(http, https);
        let ca = dir.path().join(format!("pebble-ca-{attempt}.pem"));
        std::fs::write(&ca, &pebble.ca_pem).expect("write");
        let mut cmd = Command::new(BIN);
        cmd.args(["proxy", "--from", &format!("shop.test:{https}"), "--to", &backend.url()])
            .args(["--bind", "127.0.0.1", "--http-port", &http.to_string(), "--email", "ops@example.test"])
            .args(["--acme-ca", &pebble.directory, "--acme-ca-root"])
            .arg(&ca)
            .args(["--admin", "127.0.0.1:0", "--storage"])
            .arg(dir.path().join(format!("storage-{attempt}")));
        let gh = match Gatehouse::spawn(tempfile::tempdir().expect("log dir"), cmd) {
            Ok(gh) => gh,
            Err(e) if e.port_taken() && attempt < 3 => continue,
            Err(e) => panic!("did not start:\n{}", e.log),
        };
        let issued = crate::harness::wait_until_async(Duration::from_secs(60), || async {
            let inv = get(gh.admin, "localhost", "/api/certs").await.json();
            inv["certificates"].as_array().expect("list").iter().any(|c| {
                c["names"].as_array().is_some_and(|n| n.iter().any(|n| n == "shop.test"))
                    && c["issuer"].as_str().is_some_and(|i| i.contains("Pebble"))
            })
        })
        .await;
        assert!(issued, "no certificate in time:\n{}\npebble:\n{}", gh.log(), pebble.log());
        let conn = tls_connect(gh.https.expect("https"), &accept_any_connector(), "shop.test").await.expect("TLS");
        let reply = send_on(conn.stream, get_req("shop.test", "/through")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["uri"], "/through");
        // Plain HTTP on --http-port redirects to HTTPS.
        let plain = get(gh.http, "shop.test", "/x").await;
        assert_eq!(plain.status, 308, "{}", plain.text());
        return;
    }
}
