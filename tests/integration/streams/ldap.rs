//! LDAP behind StartTLS terminated by Gatehouse: a real OpenLDAP server (slapd, started
//! by the test on a leased port with a minimal configuration) and the real clients
//! (ldapwhoami from ldap-utils, openssl s_client).

use std::process::{Command, Stdio};

use super::{Daemon, expect_metrics, files, need, run, s_client};
use crate::harness::{Gatehouse, TestCa};

/// slapd answering anonymous binds and Who am I? (no database needed for that).
fn slapd() -> Daemon {
    need("slapd", "slapd");
    Daemon::start(|port, dir| {
        let conf = dir.join("slapd.conf");
        let run_dir = dir.display();
        let text = format!(
            "include /etc/ldap/schema/core.schema\npidfile {run_dir}/slapd.pid\nargsfile {run_dir}/slapd.args\n"
        );
        std::fs::write(&conf, text).expect("slapd.conf");
        let mut c = Command::new("slapd");
        c.args(["-d", "0", "-h", &format!("ldap://127.0.0.1:{port}/"), "-f"]).arg(conf).stdout(Stdio::null());
        c
    })
}

#[tokio::test]
async fn ldapwhoami_starts_tls_with_gatehouse_and_gets_its_answer_from_slapd() {
    need("ldapwhoami", "ldap-utils");
    let slapd = slapd();
    let port = slapd.port;
    let ca = TestCa::new();
    let own = ca.issue(&["ldap.test", "127.0.0.1"]);
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(
        dir.path(),
        &format!(
            "streams:\n  - name: ldap\n    listen: 127.0.0.1:0\n    protocol: ldap\n    tls: {{cert: l.crt, key: l.key}}\n    backends: [127.0.0.1:{port}]\n"
        ),
        &[],
    );
    files(dir.path(), &[("l.crt", &own.cert_pem), ("l.key", &own.key_pem), ("ca.pem", &ca.pem())]);
    let ca_path = dir.path().join("ca.pem");
    let gh = Gatehouse::start_in(dir);
    let url = format!("ldap://{}", gh.stream("ldap"));
    let whoami = |extra: &[&str]| {
        let mut c = Command::new("ldapwhoami");
        c.args(["-x", "-o", "nettimeout=10", "-H", &url])
            .args(extra)
            .env("LDAPTLS_CACERT", &ca_path)
            .env("LDAPTLS_REQCERT", "demand");
        run(&mut c)
    };
    // -ZZ: StartTLS, and fail unless it succeeds (the certificate verified).
    let (ok, out) = whoami(&["-ZZ"]);
    assert!(ok && out.trim() == "anonymous", "{out}");
    // Without StartTLS the bind never reaches slapd: Gatehouse sends a Notice of
    // Disconnection (confidentiality required) and closes.
    let (ok, out) = whoami(&[]);
    assert!(!ok && !out.contains("anonymous"), "{out}");
    let (ok, out) = s_client(gh.stream("ldap"), &["-starttls", "ldap"], &ca_path);
    assert!(ok, "{out}");
    expect_metrics(gh.admin, &["{stream=\"ldap\",outcome=\"tls_required\"} 1"]).await;
}
