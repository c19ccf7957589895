//! What a new user meets first: `gatehouse init`, shell completions and the manual page.

use std::process::Command;
use std::time::Duration;

use crate::harness::{BIN, check, output_within};

fn gatehouse(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = output_within(
        Command::new(BIN).args(args).current_dir(dir).env_remove("GATEHOUSE_CONFIG"),
        Duration::from_secs(30),
    )
    .expect("gatehouse");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_writes_a_configuration_check_accepts_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, out, err) = gatehouse(&["init", "conf"], dir.path());
    assert!(ok, "{out}{err}");
    let conf = dir.path().join("conf");
    let main = std::fs::read_to_string(conf.join("gatehouse.yaml")).expect("main file");
    assert!(main.contains("sites_dir: sites") && main.contains("# tls:"), "{main}");
    let (code, text) = check(&conf);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("configuration OK (1 sites, 1 routes)"), "{text}");
    // Again: refused, and the files stay as they are (even an edited one).
    std::fs::write(conf.join("sites/example.yaml"), "host: mine.test\nbackend: http://127.0.0.1:9\n").expect("edit");
    let (ok, _, err) = gatehouse(&["init", "conf"], dir.path());
    assert!(!ok && err.contains("exists; nothing was written"), "{err}");
    assert_eq!(std::fs::read_to_string(conf.join("gatehouse.yaml")).expect("main"), main);
    assert!(std::fs::read_to_string(conf.join("sites/example.yaml")).expect("site").contains("mine.test"));
}

#[test]
fn completions_and_the_manual_come_from_the_command_line_definition() {
    let dir = tempfile::tempdir().expect("dir");
    for (shell, marker) in
        [("bash", "complete -F _gatehouse"), ("zsh", "#compdef gatehouse"), ("fish", "complete -c gatehouse")]
    {
        let (ok, out, err) = gatehouse(&["completions", shell], dir.path());
        assert!(ok && out.contains(marker), "{shell}: {err}{out}");
        for sub in ["run", "check", "init", "hash-password", "backup"] {
            assert!(out.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let (ok, out, err) = gatehouse(&["man"], dir.path());
    assert!(ok && out.contains(".TH gatehouse 1") && out.contains("hash\\-password"), "{err}{out}");
    let (ok, _, err) = gatehouse(&["completions", "tcsh"], dir.path());
    assert!(!ok && err.contains("invalid value"), "{err}");
}

#[tokio::test]
async fn check_diff_lists_what_a_reload_would_change() {
    let gh = crate::harness::Gatehouse::start(
        "",
        &[
            (
                "shop",
                "host: shop.test\nroutes:\n  - {path: /, backend: http://127.0.0.1:9}\n  - {path: /old, backend: http://127.0.0.1:9}\n",
            ),
            ("blog", "host: blog.test\nroutes:\n  - {path: /, backend: http://127.0.0.1:9}\n"),
            ("gone", "host: gone.test\nbackend: http://127.0.0.1:9\n"),
        ],
    );
    let dir = gh.dir.path();
    let before = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(before.path().join("sites")).expect("dir");
    for f in ["gatehouse.yaml", "sites/shop.yaml", "sites/blog.yaml", "sites/gone.yaml"] {
        std::fs::copy(dir.join(f), before.path().join(f)).expect("copy");
    }
    // The running instance listens on port 0; its admin address goes in the file `check`
    // reads, so it can find the instance.
    let main = std::fs::read_to_string(dir.join("gatehouse.yaml")).expect("main");
    let main = main.replace("admin: {listen: 127.0.0.1:0}", &format!("admin: {{listen: {}}}", gh.admin));
    std::fs::write(dir.join("gatehouse.yaml"), main).expect("main");
    // The files change: shop loses a route, blog gains one, gone goes, a stream comes.
    let shop = "host: shop.test\nroutes:\n  - {path: /, backend: http://127.0.0.1:9}\n";
    let blog = "host: blog.test\nroutes:\n  - {path: /, backend: http://127.0.0.1:9}\n  - {path: /feed, backend: http://127.0.0.1:9}\n";
    std::fs::write(dir.join("sites/shop.yaml"), shop).expect("shop");
    std::fs::write(dir.join("sites/blog.yaml"), blog).expect("blog");
    std::fs::write(
        dir.join("sites/db.yaml"),
        "streams:\n  - {name: db, listen: 127.0.0.1:0, backends: [127.0.0.1:9]}\n",
    )
    .expect("db");
    std::fs::remove_file(dir.join("sites/gone.yaml")).expect("gone");
    let wanted = ["- site gone", "- route shop#1", "+ route blog#1", "+ stream db", "~ settings: admin"];
    // Against the running instance, through its admin API: nothing is applied.
    let (ok, out, err) = gatehouse(&["check", "-c", "gatehouse.yaml", "--diff"], dir);
    assert!(ok, "{out}{err}");
    for line in wanted {
        assert!(out.contains(line), "{line:?} missing in:\n{out}");
    }
    assert_eq!(crate::harness::config_version(&gh).await, 1, "check --diff reloaded");
    let api = crate::harness::get(gh.admin, "localhost", "/api/config/diff").await.json();
    assert_eq!(api["diff"]["sites_removed"][0], "gone", "{api}");
    // Against another configuration on disk (no instance needed).
    let old = before.path().join("gatehouse.yaml").display().to_string();
    let (ok, offline, err) = gatehouse(&["check", "-c", "gatehouse.yaml", "--diff", &old], dir);
    assert!(ok, "{err}");
    for line in &wanted[..4] {
        assert!(offline.contains(line), "{line:?} missing in:\n{offline}");
    }
    // Nothing changed: said so.
    let (ok, same, _) = gatehouse(&["check", "-c", "gatehouse.yaml", "--diff", "gatehouse.yaml"], dir);
    assert!(ok && same.contains("no changes"), "{same}");
}

#[tokio::test]
async fn the_admin_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(dir.path(), "", &[]);
    let main = std::fs::read_to_string(dir.path().join("gatehouse.yaml")).expect("main");
    let main = main
        .replace("admin: {listen: 127.0.0.1:0}", "admin: {listen: 127.0.0.1:0, token_file: credentials/admin-token}");
    std::fs::write(dir.path().join("gatehouse.yaml"), main).expect("main");
    std::fs::create_dir(dir.path().join("credentials")).expect("dir");
    // As systemd's LoadCredential= or a Docker secret leaves it: one line.
    std::fs::write(dir.path().join("credentials/admin-token"), "0123456789abcdef0123456789abcdef\n").expect("token");
    let gh = crate::harness::Gatehouse::start_in(dir);
    let without = crate::harness::get(gh.admin, "localhost", "/api/config").await;
    assert_eq!(without.status, 401);
    let with = crate::harness::request_with(
        gh.admin,
        http::Method::GET,
        "localhost",
        "/api/config",
        &[("authorization", "Bearer 0123456789abcdef0123456789abcdef")],
    )
    .await;
    assert_eq!(with.status, 200, "{}", with.text());
}
