//! Databases behind TLS terminated by Gatehouse, with the real servers this machine runs
//! (PostgreSQL on 5432, MariaDB on 3306, Redis on 6379) and their real clients.

use std::process::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{expect_metrics, files, need, run, s_client};
use crate::harness::TestCa;
use crate::harness::{Gatehouse, NET_TIMEOUT, wait_until_blocking, within};

/// A gatehouse with `streams` and a certificate for 127.0.0.1 and db.test in `db.crt`,
/// its CA in `ca.pem`.
fn with_streams(streams: &str) -> (Gatehouse, std::path::PathBuf) {
    let ca = TestCa::new();
    let own = ca.issue(&["db.test", "127.0.0.1"]);
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(dir.path(), &format!("streams:\n{streams}"), &[]);
    files(dir.path(), &[("db.crt", &own.cert_pem), ("db.key", &own.key_pem), ("ca.pem", &ca.pem())]);
    let ca_path = dir.path().join("ca.pem");
    (Gatehouse::start_in(dir), ca_path)
}

/// A stream `name` of `protocol` to `backend`, with the certificate `with_streams` writes.
fn db_stream(name: &str, protocol: &str, backend: &str) -> String {
    format!(
        "  - name: {name}\n    listen: 127.0.0.1:0\n    protocol: {protocol}\n    tls: {{cert: db.crt, key: db.key}}\n    backends: [{backend}]\n"
    )
}

/// The certificate the local PostgreSQL serves, for verifying the re-encrypted leg.
fn postgres_cert() -> String {
    let (ok, out) = run(Command::new("psql").args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-Atc",
        "select setting from pg_settings where name in ('ssl', 'ssl_cert_file') order by name",
    ]));
    assert!(ok, "the local PostgreSQL (127.0.0.1:5432, trust auth) must answer: {out}");
    let mut lines = out.lines();
    let (ssl, file) = (lines.next().unwrap_or(""), lines.next().unwrap_or("").to_string());
    assert_eq!(ssl, "on", "the local PostgreSQL must have ssl = on for the re-encryption test");
    file
}

fn psql(port: u16, ca: &std::path::Path, mode: &str, sql: &str) -> (bool, String) {
    let conn = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode={mode} sslrootcert={} connect_timeout=10",
        ca.display()
    );
    run(Command::new("psql").arg(conn).args(["-Atc", sql]))
}

#[tokio::test]
async fn psql_verifies_gatehouse_and_reaches_postgres_plain_or_re_encrypted() {
    need("psql", "postgresql-client");
    let cert = postgres_cert();
    let (gh, ca) = with_streams(&format!(
        "  - name: pg
    listen: 127.0.0.1:0
    protocol: postgres
    tls: {{cert: db.crt, key: db.key}}
    backends: [127.0.0.1:5432]
  - name: pgtls
    listen: 127.0.0.1:0
    protocol: postgres
    tls: {{cert: db.crt, key: db.key}}
    backends: [127.0.0.1:5432]
    backend_tls: {{ca: {cert}, server_name: localhost}}
"
    ));
    let ssl_of_backend = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    // The backend leg is plain: PostgreSQL sees no TLS, the client verified Gatehouse.
    let (ok, out) = psql(gh.stream("pg").port(), &ca, "verify-full", ssl_of_backend);
    assert!(ok && out.trim() == "f", "{out}");
    // Re-encrypted: PostgreSQL sees TLS from Gatehouse.
    let (ok, out) = psql(gh.stream("pgtls").port(), &ca, "verify-full", ssl_of_backend);
    assert!(ok && out.trim() == "t", "{out}");
    // No downgrade: a plaintext startup gets a FATAL error, never a session.
    let (ok, out) = psql(gh.stream("pg").port(), &ca, "disable", "select 1");
    assert!(!ok && out.contains("requires TLS"), "{out}");
    // `prefer` (psql's default) ends up on TLS.
    let (ok, out) = psql(gh.stream("pg").port(), &ca, "prefer", "select 'tls'");
    assert!(ok && out.contains("tls"), "{out}");
    expect_metrics(
        gh.admin,
        &["{stream=\"pg\",outcome=\"tls_required\"} 1", "{stream=\"pgtls\",outcome=\"closed\"} 1"],
    )
    .await;
}

#[test]
fn a_cancel_request_from_psql_reaches_postgres() {
    need("psql", "postgresql-client");
    let (gh, ca) = with_streams(&db_stream("pg", "postgres", "127.0.0.1:5432"));
    let marker = format!("gatehouse-cancel-{}", std::process::id());
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        gh.stream("pg").port(),
        ca.display()
    );
    let mut child = Command::new("psql")
        .arg(conn)
        .args(["-Atc", &format!("select pg_sleep(25) /* {marker} */")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    let running = wait_until_blocking(NET_TIMEOUT, || {
        let (_, out) = run(Command::new("psql").args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            &format!("select count(*) from pg_stat_activity where query like '%{marker}%' and pid <> pg_backend_pid()"),
        ]));
        out.trim() == "1"
    });
    assert!(running, "the query did not start through gatehouse");
    // Ctrl-C: psql sends a CancelRequest on a new (plaintext) connection.
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let done = wait_until_blocking(NET_TIMEOUT, || child.try_wait().ok().flatten().is_some());
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("psql output");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(done && text.contains("canceling statement due to user request"), "{text}");
}

#[tokio::test]
async fn gssenc_is_declined_ssl_is_accepted_and_direct_tls_needs_no_request() {
    let (gh, ca) = with_streams(&db_stream("pg", "postgres", "127.0.0.1:5432"));
    let mut s = within("connect", TcpStream::connect(gh.stream("pg"))).await.expect("connect");
    s.write_all(&[0, 0, 0, 8, 4, 210, 22, 48]).await.expect("gssenc request");
    assert_eq!(within("N", s.read_u8()).await.expect("answer"), b'N');
    s.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.expect("ssl request");
    assert_eq!(within("S", s.read_u8()).await.expect("answer"), b'S');
    // PostgreSQL 17's direct TLS (ALPN postgresql), and the SSLRequest way, through openssl.
    let (ok, out) = s_client(gh.stream("pg"), &["-alpn", "postgresql"], &ca);
    assert!(ok && out.contains("ALPN protocol: postgresql"), "{out}");
    let (ok, out) = s_client(gh.stream("pg"), &["-starttls", "postgres"], &ca);
    assert!(ok, "{out}");
}

#[test]
fn mariadb_logs_in_over_verified_tls_and_a_plaintext_login_is_refused() {
    need("mariadb", "mariadb-client");
    let (gh, ca) = with_streams(&db_stream("my", "mysql", "127.0.0.1:3306"));
    let port = gh.stream("my").port().to_string();
    let mariadb = |extra: &[&str]| {
        let mut c = Command::new("mariadb");
        c.args(["-h", "127.0.0.1", "-P", &port, "-u", "root", "--connect-timeout=10"]).args(extra);
        run(&mut c)
    };
    let ssl_ca = format!("--ssl-ca={}", ca.display());
    let (ok, out) = mariadb(&[
        "--ssl",
        &ssl_ca,
        "--ssl-verify-server-cert",
        "-N",
        "-e",
        "select concat('through ', 'gatehouse'), @@version",
    ]);
    assert!(ok && out.contains("through gatehouse"), "{out}");
    let (ok, out) = mariadb(&["--skip-ssl", "-e", "select 1"]);
    assert!(!ok && out.contains("3159"), "{out}");
    let (ok, out) = s_client(gh.stream("my"), &["-starttls", "mysql"], &ca);
    assert!(ok, "{out}");
}

#[test]
fn redis_cli_speaks_tls_to_gatehouse_and_plain_to_redis() {
    need("redis-cli", "redis-tools");
    let (gh, ca) = with_streams(&db_stream("rd", "redis", "127.0.0.1:6379"));
    let port = gh.stream("rd").port().to_string();
    let (ok, out) = run(Command::new("redis-cli").args(["--tls", "--cacert"]).arg(&ca).args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "PING",
    ]));
    assert!(ok && out.trim() == "PONG", "{out}");
    // Without TLS the stream answers nothing.
    let (_, out) = run(Command::new("timeout").args(["10", "redis-cli", "-h", "127.0.0.1", "-p", &port, "PING"]));
    assert!(!out.contains("PONG"), "{out}");
}

/// A PostgreSQL of the test's own (initdb in a temporary directory, a leased port) whose
/// TCP logins use SCRAM-SHA-256 with the password `secret`: the local server trusts
/// everyone, so it cannot show what happens to SCRAM. Stopped when dropped.
struct ScramPostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl ScramPostgres {
    fn start() -> ScramPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).find(|b| b.join("initdb").is_file()))
            .expect("this test needs PostgreSQL's server programs: apt-get install postgresql");
        need("runuser", "util-linux");
        let dir = tempfile::tempdir().expect("dir");
        let (_, uid) = run(Command::new("id").args(["-u", "postgres"]));
        let uid: u32 = uid.trim().parse().expect("the postgres user (apt-get install postgresql)");
        std::os::unix::fs::chown(dir.path(), Some(uid), None).expect("chown");
        std::fs::write(dir.path().join("pw"), "secret\n").expect("password file");
        std::os::unix::fs::chown(dir.path().join("pw"), Some(uid), None).expect("chown");
        let data = dir.path().join("data");
        let as_postgres = |program: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        };
        let (ok, out) = run(as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-host=scram-sha-256", "--auth-local=trust", "--pwfile"])
            .arg(dir.path().join("pw")));
        assert!(ok, "initdb: {out}");
        let [lease] = crate::harness::lease_ports::<1>();
        let port = lease.port;
        drop(lease);
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", dir.path().display());
        let (ok, out) = run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .arg("start"));
        assert!(ok, "pg_ctl start: {out}");
        ScramPostgres { bin, dir, port }
    }
}

impl Drop for ScramPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["stop", "-m", "immediate"])
            .output();
    }
}

#[test]
fn scram_logins_with_channel_binding_prefer_work_through_a_plain_backend_leg() {
    need("psql", "postgresql-client");
    let pg = ScramPostgres::start();
    let (gh, ca) = with_streams(&db_stream("pg", "postgres", &format!("127.0.0.1:{}", pg.port)));
    let login = |binding: &str| {
        let conn = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={} channel_binding={binding} connect_timeout=10",
            gh.stream("pg").port(),
            ca.display()
        );
        run(Command::new("psql").arg(conn).args(["-Atc", "select 'logged in'"]).env("PGPASSWORD", "secret"))
    };
    // libpq's default: the server (on a plain leg) offers no SCRAM-SHA-256-PLUS, so the
    // client logs in with SCRAM-SHA-256.
    let (ok, out) = login("prefer");
    assert!(ok && out.trim() == "logged in", "{out}");
    // A client that insists on binding to the database server's certificate is refused by
    // its own libpq: no terminating proxy can give it that.
    let (ok, out) = login("require");
    assert!(!ok && out.contains("channel binding"), "{out}");
    let (ok, out) = run(Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
            gh.stream("pg").port(),
            ca.display()
        ))
        .args(["-Atc", "select 1"])
        .env("PGPASSWORD", "wrong"));
    assert!(!ok && out.contains("password authentication failed"), "{out}");
}
