//! TLS on generic streams: termination, SNI routing with passthrough to two different TLS
//! backends, re-encryption verified against the backend's CA, and what a client without
//! TLS or with an unknown name gets.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{echo, expect_metrics, files, read_until, tls_backend};
use crate::harness::{Gatehouse, within};
use crate::harness::{TestCa, tls_connect};

#[tokio::test]
async fn sni_routes_pass_through_terminate_and_re_encrypt() {
    let ca = TestCa::new();
    let backend_ca = TestCa::new();
    let (a, b) = (tls_backend(&backend_ca, "a.test").await, tls_backend(&backend_ca, "b.test").await);
    let inner = tls_backend(&backend_ca, "inner.internal").await;
    let plain = echo().await;
    let own = ca.issue(&["c.test", "d.test"]);
    let config = format!(
        "streams:
  - name: mux
    listen: 127.0.0.1:0
    tls: {{cert: mux.crt, key: mux.key}}
    routes:
      - {{sni: [a.test], backends: [{a}], passthrough: true}}
      - {{sni: [b.test], backends: [{b}], passthrough: true}}
      - {{sni: [c.test], backends: [{plain}]}}
      - sni: [d.test]
        backends: [{inner}]
        backend_tls: {{ca: backend-ca.pem, server_name: inner.internal}}
"
    );
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(dir.path(), &config, &[]);
    files(dir.path(), &[("mux.crt", &own.cert_pem), ("mux.key", &own.key_pem), ("backend-ca.pem", &backend_ca.pem())]);
    let gh = Gatehouse::start_in(dir);
    let addr = gh.stream("mux");

    // Passthrough: each name reaches its own backend, whose certificate the client sees.
    for name in ["a.test", "b.test"] {
        let mut c = tls_connect(addr, &backend_ca.connector(&[]), name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let hello = read_until(&mut c.stream, "\n").await;
        assert_eq!(hello, format!("I am {name}\n"));
        c.stream.write_all(b"through").await.expect("write");
        assert!(read_until(&mut c.stream, "through").await.contains("through"));
    }
    // Terminated by Gatehouse (its certificate), plain to the backend.
    let mut c = tls_connect(addr, &ca.connector(&[]), "c.test").await.expect("c.test");
    assert_eq!(c.peer_der, own.der);
    c.stream.write_all(b"echo me").await.expect("write");
    assert_eq!(read_until(&mut c.stream, "echo me").await, "echo me");
    // Terminated, then TLS again to a backend verified as inner.internal.
    let mut c = tls_connect(addr, &ca.connector(&[]), "d.test").await.expect("d.test");
    assert_eq!(read_until(&mut c.stream, "\n").await, "I am inner.internal\n");
    // A name no route has: closed without a handshake.
    assert!(tls_connect(addr, &ca.connector(&[]), "nobody.test").await.is_err());
    // Plaintext: closed too.
    let mut s = within("connect", TcpStream::connect(addr)).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = within("refused", s.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    let text = expect_metrics(
        gh.admin,
        &["{stream=\"mux\",outcome=\"no_route\"} 1", "{stream=\"mux\",outcome=\"tls_required\"} 1"],
    )
    .await;
    assert!(text.contains("gatehouse_stream_tls_handshakes_total{stream=\"mux\",version=\"TLSv1.3\"} 2"), "{text}");
}

#[tokio::test]
async fn a_backend_whose_certificate_does_not_verify_is_not_connected() {
    let ca = TestCa::new();
    let stranger = TestCa::new();
    // Its certificate is for the right name, from a CA the stream does not trust.
    let backend = tls_backend(&stranger, "inner.internal").await;
    let own = ca.issue(&["db.test"]);
    let config = format!(
        "streams:
  - name: strict
    listen: 127.0.0.1:0
    tls: {{cert: s.crt, key: s.key}}
    backends: [{backend}]
    backend_tls: {{ca: ca.pem, server_name: inner.internal}}
"
    );
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(dir.path(), &config, &[]);
    files(dir.path(), &[("s.crt", &own.cert_pem), ("s.key", &own.key_pem), ("ca.pem", &ca.pem())]);
    let gh = Gatehouse::start_in(dir);
    let mut c =
        tls_connect(gh.stream("strict"), &ca.connector(&[]), "db.test").await.expect("handshake with gatehouse");
    let mut buf = Vec::new();
    let _ = within("closed", c.stream.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("I am"), "reached an unverified backend");
    expect_metrics(gh.admin, &["{stream=\"strict\",outcome=\"backend_failed\"} 1"]).await;
}

#[tokio::test]
async fn with_tls_optional_plain_and_tls_clients_share_a_port() {
    let ca = TestCa::new();
    let backend = echo().await;
    let own = ca.issue(&["mixed.test"]);
    let config = format!(
        "streams:
  - name: mixed
    listen: 127.0.0.1:0
    protocol: redis
    tls: {{cert: m.crt, key: m.key, required: false}}
    backends: [{backend}]
"
    );
    let dir = tempfile::tempdir().expect("dir");
    crate::harness::write_config(dir.path(), &config, &[]);
    files(dir.path(), &[("m.crt", &own.cert_pem), ("m.key", &own.key_pem)]);
    let gh = Gatehouse::start_in(dir);
    let mut s = within("connect", TcpStream::connect(gh.stream("mixed"))).await.expect("connect");
    s.write_all(b"PING\r\n").await.expect("write");
    assert_eq!(read_until(&mut s, "PING").await, "PING\r\n");
    let mut c = tls_connect(gh.stream("mixed"), &ca.connector(&[]), "mixed.test").await.expect("tls");
    c.stream.write_all(b"PING\r\n").await.expect("write");
    assert_eq!(read_until(&mut c.stream, "PING").await, "PING\r\n");
}
