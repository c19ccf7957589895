//! NATS behind TLS terminated by Gatehouse, with the NATS server this machine runs
//! (127.0.0.1:4222, plain) and the real Python client (nats-py, from PyPI).

use std::process::Command;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{expect_metrics, files, read_until, run};
use crate::harness::{Gatehouse, TestCa, ci_python, within};

/// Subscribes, publishes and reads the message back through `url`, trusting `ca`.
const CLIENT: &str = r#"
import asyncio, ssl, sys
import nats

async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    nc = await nats.connect(sys.argv[1], tls=ctx, tls_hostname="nats.test", connect_timeout=10, max_reconnect_attempts=0)
    sub = await nc.subscribe("gatehouse.test")
    await nc.publish("gatehouse.test", b"through gatehouse over TLS")
    msg = await sub.next_msg(timeout=10)
    print(msg.data.decode())
    await nc.close()

asyncio.run(main())
"#;

#[tokio::test]
async fn a_nats_client_is_told_to_start_tls_and_reaches_the_plain_server() {
    let python = ci_python("nats", "nats-py==2.9.0");
    let ca = TestCa::new();
    let own = ca.issue(&["nats.test"]);
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(
        dir.path(),
        "streams:\n  - name: nats\n    listen: 127.0.0.1:0\n    protocol: nats\n    tls: {cert: n.crt, key: n.key}\n    backends: [127.0.0.1:4222]\n",
        &[],
    );
    files(dir.path(), &[("n.crt", &own.cert_pem), ("n.key", &own.key_pem), ("ca.pem", &ca.pem())]);
    let ca_path = dir.path().join("ca.pem");
    let gh = Gatehouse::start_in(dir);
    let addr = gh.stream("nats");
    let (ok, out) = run(Command::new(&python).args(["-c", CLIENT, &format!("tls://{addr}")]).arg(&ca_path));
    assert!(ok && out.lines().any(|l| l == "through gatehouse over TLS"), "{out}");

    // What the client was told, and what a client without TLS gets.
    let mut s = within("connect", TcpStream::connect(addr)).await.expect("connect");
    let info = read_until(&mut s, "\r\n").await;
    assert!(info.starts_with("INFO {") && info.contains("\"tls_required\":true"), "{info}");
    s.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await.expect("write");
    let answer = read_until(&mut s, "\r\n").await;
    assert!(answer.starts_with("-ERR 'Secure Connection - TLS Required'"), "{answer}");
    expect_metrics(gh.admin, &["{stream=\"nats\",outcome=\"tls_required\"} 1"]).await;
}
