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
