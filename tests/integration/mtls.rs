//! Client certificates (mTLS): a site with `tls.client_ca` asks its clients for a
//! certificate (other sites on the listener never ask), a route with `auth.client_cert`
//! lets through only clients whose certificate the CA issued, and the backend gets the
//! subject; a forged subject header is dropped.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::harness::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// A client that trusts `ca` and presents `cert` (if any); records whether the server
/// asked for a certificate.
fn client(ca: &TestCa, cert: Option<&Issued>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.roots());
    let mut cfg = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let chain = vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).expect("cert")];
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("client auth")
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// Notes whether the server asked for a client certificate (it has none to give).
#[derive(Debug, Default)]
struct Asked(std::sync::atomic::AtomicBool);

impl rustls::client::ResolvesClientCert for Asked {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn watching(ca: &TestCa, asked: Arc<Asked>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_client_cert_resolver(asked);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_the_sites_ca_pass_and_others_do_not() {
    let b = Backend::start("b").await;
    let (server_ca, client_ca, rogue_ca) = (TestCa::new(), TestCa::new(), TestCa::new());
    let (vault_cert, open_cert) = (server_ca.issue(&["vault.test"]), server_ca.issue(&["open.test"]));
    let alice = client_ca.issue_client("alice");
    let mallory = rogue_ca.issue_client("mallory");
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    write(d, "certs/vault.crt", &vault_cert.cert_pem);
    write(d, "certs/vault.key", &vault_cert.key_pem);
    write(d, "certs/open.crt", &open_cert.cert_pem);
    write(d, "certs/open.key", &open_cert.key_pem);
    write(d, "certs/clients-ca.pem", &client_ca.pem());
    let url = b.url();
    write_config(
        d,
        HTTPS,
        &[
            (
                "vault",
                &format!(
                    "host: vault.test\nhttps_redirect: false\ntls: {{cert: certs/vault.crt, key: certs/vault.key, client_ca: certs/clients-ca.pem}}\nroutes:\n  - path: /secure\n    backend: {url}\n    options:\n      auth:\n        client_cert: {{header: X-Client-Subject}}\n  - path: /\n    backend: {url}\n"
                ),
            ),
            (
                "open",
                &format!(
                    "host: open.test\nhttps_redirect: false\ntls: {{cert: certs/open.crt, key: certs/open.key}}\nbackend: {url}\n"
                ),
            ),
        ],
    );
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https listener");
    let ask = |connector: tokio_rustls::TlsConnector, sni: &'static str, path: &'static str| async move {
        let conn = tls_connect(https, &connector, sni).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
        let req = http::Request::get(path)
            .header("host", sni)
            .header("x-client-subject", "CN=forged")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        send_on(conn.stream, req).await
    };
    let r = ask(client(&server_ca, Some(&alice)), "vault.test", "/secure").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let subject = r.json()["headers"]["x-client-subject"].as_str().unwrap_or("").to_string();
    assert_eq!(subject, "CN=alice", "the verified subject");
    assert!(!subject.contains("forged"));
    // Without a certificate the handshake completes (other routes of the site work), and
    // the protected route answers 401.
    assert_eq!(ask(client(&server_ca, None), "vault.test", "/secure").await.status, 401);
    assert_eq!(ask(client(&server_ca, None), "vault.test", "/").await.status, 200);
    // A certificate from another CA fails the handshake itself.
    // A certificate from another CA is refused in the handshake (with TLS 1.3 the client
    // learns it on its first read).
    if let Ok(conn) = tls_connect(https, &client(&server_ca, Some(&mallory)), "vault.test").await {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = conn.stream;
        let answered = tokio::time::timeout(NET_TIMEOUT, async {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: vault.test\r\n\r\n").await;
            let mut buf = [0u8; 64];
            matches!(s.read(&mut buf).await, Ok(n) if n > 0)
        })
        .await
        .unwrap_or(false);
        assert!(!answered, "a certificate of another CA must not be accepted");
    }
    // The other site on the same listener does not ask for a certificate (browsers there
    // see no prompt); the mTLS site does.
    for (sni, asks) in [("open.test", false), ("vault.test", true)] {
        let asked = Arc::new(Asked::default());
        assert_eq!(ask(watching(&server_ca, asked.clone()), sni, "/").await.status, 200, "{sni}");
        assert_eq!(asked.0.load(std::sync::atomic::Ordering::SeqCst), asks, "{sni}");
    }
}

#[test]
fn client_cert_routes_need_the_sites_client_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let site = "host: a.test\nroutes:\n  - path: /\n    backend: http://127.0.0.1:9\n    options:\n      auth: {client_cert: {}}\n";
    write_config(dir.path(), "", &[("a", site)]);
    let (code, out) = check(dir.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("client certificates need tls.client_ca on the site"), "{out}");
    // A CA file with a PEM block that is no certificate: named by `check`.
    let ca = TestCa::new();
    let cert = ca.issue(&["a.test"]);
    write(dir.path(), "a.crt", &cert.cert_pem);
    write(dir.path(), "a.key", &cert.key_pem);
    write(dir.path(), "ca.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    let site = "host: a.test\ntls: {cert: a.crt, key: a.key, client_ca: ca.pem}\nroutes:\n  - path: /\n    backend: http://127.0.0.1:9\n    options:\n      auth: {client_cert: {}}\n";
    write_config(dir.path(), HTTPS, &[("a", site)]);
    let (code, out) = check(dir.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("tls.client_ca") && out.contains("no usable CA certificate"), "{out}");
}

/// A certificate counts only on the site whose CAs verified it: shaking hands for site A
/// (whose CA issued the client's certificate) and sending the request to site B (another
/// CA; the same server certificate, so no 421) gets B's 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_verified_for_one_site_does_not_open_another() {
    let b = Backend::start("b").await;
    let (server_ca, ca_a, ca_b) = (TestCa::new(), TestCa::new(), TestCa::new());
    let both = server_ca.issue(&["a.m.test", "b.m.test"]);
    let client_a = ca_a.issue_client("client-of-a");
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    write(d, "certs/m.crt", &both.cert_pem);
    write(d, "certs/m.key", &both.key_pem);
    write(d, "ca-a.pem", &ca_a.pem());
    write(d, "ca-b.pem", &ca_b.pem());
    let url = b.url();
    let site = |host: &str, ca: &str| {
        format!(
            "host: {host}\nhttps_redirect: false\ntls: {{client_ca: {ca}}}\nroutes:\n  - path: /\n    backend: {url}\n    options:\n      auth: {{client_cert: {{}}}}\n"
        )
    };
    write_config(
        d,
        &format!("{HTTPS}tls:\n  cert_dir: certs\n"),
        &[("a", &site("a.m.test", "ca-a.pem")), ("b", &site("b.m.test", "ca-b.pem"))],
    );
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https");
    for (host, want) in [("a.m.test", 200), ("b.m.test", 401)] {
        let conn = tls_connect(https, &client(&server_ca, Some(&client_a)), "a.m.test").await.expect("tls");
        let req = http::Request::get("/")
            .header("host", host)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        assert_eq!(send_on(conn.stream, req).await.status, want, "SNI a.m.test, Host {host}");
    }
}
