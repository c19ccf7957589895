//! LDAP behind StartTLS terminated by Gatehouse: a real OpenLDAP server (slapd, started
//! by the test on a leased port with a minimal configuration) and the real clients
//! (ldapwhoami from ldap-utils, openssl s_client).

use std::process::{Command, Stdio};

use super::{files, need, run};
use crate::harness::{Gatehouse, NET_TIMEOUT, TestCa, lease_ports, metrics_with, wait_until_blocking};

struct Slapd(std::process::Child, tempfile::TempDir);

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// slapd answering anonymous binds and Who am I? (no database needed for that).
fn slapd() -> (Slapd, u16) {
    need("slapd", "slapd");
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("slapd.conf");
    let run_dir = dir.path().display().to_string();
    std::fs::write(
        &conf,
        format!("include /etc/ldap/schema/core.schema\npidfile {run_dir}/slapd.pid\nargsfile {run_dir}/slapd.args\n"),
    )
    .expect("slapd.conf");
    let [lease] = lease_ports::<1>();
    let port = lease.port;
    drop(lease);
    let child = Command::new("slapd")
        .args(["-d", "0", "-h", &format!("ldap://127.0.0.1:{port}/"), "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("slapd");
    let up = wait_until_blocking(NET_TIMEOUT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(up, "slapd did not listen on {port}");
    (Slapd(child, dir), port)
}

#[tokio::test]
async fn ldapwhoami_starts_tls_with_gatehouse_and_gets_its_answer_from_slapd() {
    need("ldapwhoami", "ldap-utils");
    need("openssl", "openssl");
    let (_slapd, port) = slapd();
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
    let addr = gh.stream("ldap").to_string();
    let (ok, out) = run(Command::new("openssl")
        .args(["s_client", "-connect", &addr, "-starttls", "ldap", "-verify_return_error", "-CAfile"])
        .arg(&ca_path));
    assert!(ok && out.contains("Verify return code: 0 (ok)"), "{out}");
    metrics_with(gh.admin, &["{stream=\"ldap\",outcome=\"tls_required\"} 1"]).await;
}
