//! HTTPS: certificate selection by SNI from explicit files and a certificate directory (both
//! layouts), ALPN, 421, HTTP -> HTTPS redirects, hot swap of certificates, the self-signed
//! fallback, the inventory, and `check` on TLS mistakes.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

struct Setup {
    gh: Gatehouse,
    ca: TestCa,
    a: Issued,
    wild: Issued,
    b: Issued,
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// a.test: the site's own cert/key files; *.w.test: flat files in cert_dir;
/// b.test: certbot layout in cert_dir.
async fn setup(extra_tls: &str, backend: &Backend) -> Setup {
    let ca = TestCa::new();
    let (a, wild, b) = (ca.issue(&["a.test"]), ca.issue(&["*.w.test"]), ca.issue(&["b.test"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "files/a.crt", &a.cert_pem);
    write(d, "files/a.key", &a.key_pem);
    write(d, "certs/w.crt", &wild.cert_pem);
    write(d, "certs/w.key", &wild.key_pem);
    write(d, "certs/live/b.test/fullchain.pem", &b.cert_pem);
    write(d, "certs/live/b.test/privkey.pem", &b.key_pem);
    let url = backend.url();
    write_config(
        d,
        &format!("{HTTPS}tls:\n  cert_dir: certs\n{extra_tls}"),
        &[
            ("a", &format!("host: a.test\nbackend: {url}\ntls: {{cert: files/a.crt, key: files/a.key}}\n")),
            ("w", &format!("host: '*.w.test'\nbackend: {url}\n")),
            ("b", &format!("host: b.test\nbackend: {url}\nhttps_redirect: false\n")),
        ],
    );
    let gh = Gatehouse::start_in(dir);
    Setup { gh, ca, a, wild, b }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_certificates_from_every_source() {
    let backend = Backend::start("app").await;
    let s = setup("", &backend).await;
    let https = s.gh.https.expect("https listener");
    let connector = s.ca.connector(&[b"http/1.1"]);
    for (sni, want) in [("a.test", &s.a.der), ("x.w.test", &s.wild.der), ("b.test", &s.b.der)] {
        let conn = tls_connect(https, &connector, sni).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(&conn.peer_der, want, "{sni} got the wrong certificate");
        let r = send_on(conn.stream, get_req(sni, "/x")).await;
        assert_eq!(r.status, 200);
        let h = &r.json()["headers"];
        assert_eq!(h["x-forwarded-proto"], "https");
    }
    // HTTP/1.0 may send no Host at all: the name from the handshake routes it, and the
    // backend gets its own address as Host.
    let conn = tls_connect(https, &connector, "a.test").await.expect("tls");
    let mut old = http::Request::get("/x").body(http_body_util::Full::new(bytes::Bytes::new())).expect("request");
    *old.version_mut() = http::Version::HTTP_10;
    let r = send_on(conn.stream, old).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["host"], backend.addr.to_string());

    // No default configured and more than one certificate: an unknown name fails the handshake.
    let err = tls_connect(https, &connector, "unknown.test").await.err().expect("handshake must fail");
    assert!(!err.contains("NotValidForName"), "a certificate was sent: {err}");
    // A wildcard covers exactly one label.
    assert!(tls_connect(https, &connector, "deep.x.w.test").await.is_err());

    // The inventory lists all three with their sources.
    let inv = get(s.gh.admin, "localhost", "/api/certs?warn_days=1000").await.json();
    let certs = inv["certificates"].as_array().expect("list");
    assert_eq!(certs.len(), 3, "{inv}");
    let names: Vec<String> = certs.iter().map(|c| c["names"][0].as_str().expect("name").to_string()).collect();
    assert!(
        names.contains(&"a.test".to_string())
            && names.contains(&"*.w.test".to_string())
            && names.contains(&"b.test".to_string())
    );
    // Test certificates are valid for 300 days from yesterday.
    assert!(
        certs.iter().all(|c| c["warn"] == true && (298..=300).contains(&c["days_remaining"].as_i64().expect("days"))),
        "{inv}"
    );
    let inv = get(s.gh.admin, "localhost", "/api/certs").await.json();
    assert_eq!(inv["warn_days"], 30);
    assert!(inv["certificates"].as_array().expect("list").iter().all(|c| c["warn"] == false), "{inv}");
    assert!(certs.iter().any(|c| c["source"].as_str().expect("source").starts_with("cert_dir: ")));
    assert!(certs.iter().any(|c| c["source"].as_str().expect("source").ends_with("(a)")));
    assert_eq!(get(s.gh.admin, "localhost", "/api/certs?warn_days=x").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_host_answers_unknown_sni() {
    let backend = Backend::start("app").await;
    let s = setup("  default_host: b.test\n", &backend).await;
    let https = s.gh.https.expect("https listener");
    // The client refuses the default certificate for another name, which proves one was sent.
    let err = tls_connect(https, &s.ca.connector(&[]), "unknown.test").await.err().expect("name mismatch");
    assert!(err.contains("NotValidForName") || err.contains("not valid for name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_redirects_and_misdirected_requests() {
    let backend = Backend::start("app").await;
    let s = setup("", &backend).await;
    let https = s.gh.https.expect("https listener");

    // ALPN h2: HTTP/2 over TLS to an HTTP/1.1 backend.
    let conn = tls_connect(https, &s.ca.connector(&[b"h2", b"http/1.1"]), "a.test").await.expect("tls");
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    let (mut tx, c) = within(
        "h2 handshake",
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(conn.stream),
        ),
    )
    .await
    .expect("h2");
    tokio::spawn(c);
    let req = http::Request::get("https://a.test/h2").body(http_body_util::Empty::<bytes::Bytes>::new()).expect("req");
    let resp = within("response", tx.send_request(req)).await.expect("response");
    assert_eq!(resp.status(), 200);

    // Plain HTTP to an HTTPS site: 308 to the HTTPS port, path and query kept.
    let r = get(s.gh.http, "a.test", "/page?q=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some(format!("https://a.test:{}/page?q=1", https.port()).as_str()));
    assert_eq!(backend.count(), 1, "the redirect must not reach the backend");
    // ...except where the site turned it off.
    assert_eq!(get(s.gh.http, "b.test", "/").await.status, 200);
    // ACME challenge paths are never redirected: with no validation pending for the
    // token, the request is routed as usual over plain HTTP (here, to the site's backend).
    let r = get(s.gh.http, "a.test", "/.well-known/acme-challenge/token?x=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["uri"], "/.well-known/acme-challenge/token?x=1");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "http");

    // SNI a.test, Host b.test: another certificate serves b.test, so 421.
    let conn = tls_connect(https, &s.ca.connector(&[b"http/1.1"]), "a.test").await.expect("tls");
    let r = send_on(conn.stream, get_req("b.test", "/")).await;
    assert_eq!(r.status, 421);
    // SNI x.w.test, Host y.w.test: same wildcard certificate, so it is served.
    let conn = tls_connect(https, &s.ca.connector(&[b"http/1.1"]), "x.w.test").await.expect("tls");
    assert_eq!(send_on(conn.stream, get_req("y.w.test", "/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_directory_hot_swap_under_load() {
    let backend = Backend::start("app").await;
    let s = setup("", &backend).await;
    let https = s.gh.https.expect("https listener");
    let connector = s.ca.connector(&[b"http/1.1"]);
    let fresh = s.ca.issue(&["*.w.test"]);
    let certs = s.gh.dir.path().join("certs");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let connector = connector.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen_new = 0;
            let mut total = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
            let mut ders = Vec::new();
            while tokio::time::Instant::now() < deadline {
                let conn = tls_connect(https, &connector, "x.w.test")
                    .await
                    .expect("handshake must keep working during the swap");
                ders.push(conn.peer_der.clone());
                let r = send_on(conn.stream, get_req("x.w.test", "/")).await;
                assert_eq!(r.status, 200, "a request failed during the swap");
                total += 1;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if ders.len() > 1 && ders[ders.len() - 1] != ders[0] {
                    seen_new += 1;
                    if seen_new > 5 {
                        break;
                    }
                }
            }
            (total, ders)
        })
    };
    // The load runs before the swap.
    assert!(wait_until(Duration::from_secs(10), || done.load(std::sync::atomic::Ordering::SeqCst) >= 3).await);
    // Replace the pair the way a renewal tool does: write aside, rename into place.
    std::fs::write(certs.join(".w.crt.new"), &fresh.cert_pem).expect("write");
    std::fs::write(certs.join(".w.key.new"), &fresh.key_pem).expect("write");
    std::fs::rename(certs.join(".w.key.new"), certs.join("w.key")).expect("rename");
    std::fs::rename(certs.join(".w.crt.new"), certs.join("w.crt")).expect("rename");
    let (total, ders) = load.await.expect("load task");
    assert!(total > 5, "too few requests: {total}");
    assert_eq!(ders.first(), Some(&s.wild.der));
    assert_eq!(ders.last(), Some(&fresh.der), "the new certificate was never served; log:\n{}", s.gh.log());

    // A broken file keeps the old certificate and is reported.
    std::fs::write(certs.join("w.crt"), "not a certificate").expect("write");
    let reported = wait_until(Duration::from_secs(10), || s.gh.log().contains("certificate not loaded")).await;
    assert!(reported, "the broken file was not reported: {}", s.gh.log());
    let conn = tls_connect(https, &connector, "x.w.test").await.expect("old certificate still served");
    assert_eq!(conn.peer_der, fresh.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_gets_a_self_signed_certificate() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), HTTPS, &[("local", &format!("host: localhost\nbackend: {}\n", backend.url()))]);
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https");
    let conn = tls_connect(https, &accept_any_connector(), "localhost").await.expect("handshake");
    let r = send_on(conn.stream, get_req("localhost", "/")).await;
    assert_eq!(r.status, 200);
    let inv = get(gh.admin, "localhost", "/api/certs").await.json();
    assert_eq!(inv["certificates"][0]["source"], "self-signed");
    assert!(inv["certificates"][0]["names"].as_array().expect("names").iter().any(|n| n == "localhost"));
}

#[test]
fn check_reports_tls_mistakes() {
    let ca = TestCa::new();
    let (one, two) = (ca.issue(&["a.test"]), ca.issue(&["a.test"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.crt", &one.cert_pem);
    write(d, "a.key", &two.key_pem);
    write_config(
        d,
        &format!("{HTTPS}tls:\n  cert: a.crt\n  key: a.key\n"),
        &[("a", "host: a.test\nbackend: http://127.0.0.1:9\n")],
    );
    let main = std::fs::read_to_string(d.join("gatehouse.yaml")).expect("read");
    let (code, out) = check(d);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a.crt: the private key does not match the certificate"), "{out}");

    // A missing key file is located; ACME settings are checked too.
    let main = main.replace("  key: a.key\n", "  key: missing.key\n  acme: {email: admin@a.test, challenge: http01}\n");
    std::fs::write(d.join("gatehouse.yaml"), main).expect("write");
    let (code, out) = check(d);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tls.key: cannot read"), "{out}");
    assert!(out.contains("tls.acme.challenge: unknown challenge \"http01\" (did you mean `http-01`?)"), "{out}");
}

/// The sslyze version `.ci/run` installs.
const SSLYZE_VERSION: &str = "6.3.1";

/// How to run sslyze: `$SSLYZE` (what .ci/run exports), the virtual environment .ci/run
/// creates (`target/ci-venv`), `sslyze` on PATH, or `python3 -m sslyze`. Fails, naming the
/// install step, when none works: a missing tool is a failure, never a skipped test.
fn sslyze_command() -> Vec<String> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv/bin/sslyze");
    let candidates: Vec<Vec<String>> = [
        std::env::var("SSLYZE").ok().map(|p| vec![p]),
        Some(vec![venv.display().to_string()]),
        Some(vec!["sslyze".to_string()]),
        Some(vec!["python3".to_string(), "-m".to_string(), "sslyze".to_string()]),
    ]
    .into_iter()
    .flatten()
    .collect();
    for c in &candidates {
        let works =
            output_within(std::process::Command::new(&c[0]).args(&c[1..]).arg("--help"), Duration::from_secs(60))
                .is_ok_and(|o| o.status.success());
        if works {
            return c.clone();
        }
    }
    panic!(
        "sslyze not found (tried $SSLYZE, target/ci-venv/bin/sslyze, sslyze, python3 -m sslyze): \
         run .ci/run, or pip install sslyze=={SSLYZE_VERSION} (or set SSLYZE to its path)"
    );
}

/// sslyze (PyPI, installed by .ci/run) checks the listener against Mozilla's "intermediate"
/// TLS configuration, trusting the test CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_mozilla_intermediate() {
    let sslyze = tokio::task::spawn_blocking(sslyze_command).await.expect("sslyze");
    let backend = Backend::start("app").await;
    // sslyze also connects without SNI, which needs a default certificate.
    let s = setup("  default_host: a.test\n", &backend).await;
    let https = s.gh.https.expect("https");
    let ca_file = s.gh.dir.path().join("ca.pem");
    std::fs::write(&ca_file, s.ca.pem()).expect("write ca");
    let out = tokio::task::spawn_blocking(move || {
        output_within(
            std::process::Command::new(&sslyze[0])
                .args(&sslyze[1..])
                .args(["--mozilla_config=intermediate", "--certinfo_ca_file"])
                .arg(&ca_file)
                .arg(format!("127.0.0.1:{}", https.port()))
                .args(["--sni", "a.test"]),
            Duration::from_secs(120),
        )
        .expect("run sslyze")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("127.0.0.1:{}: OK - Compliant", https.port())),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the scan found, for the record: only TLS 1.2 and 1.3.
    assert!(text.contains("TLS 1.3 Cipher Suites"), "{text}");
}

/// A TLS backend: answers with the HTTP version it saw and whether the client showed a
/// certificate. `alpn` is what it offers; `client_ca` makes client certificates mandatory.
async fn tls_backend(cert: &Issued, alpn: &[&[u8]], client_ca: Option<&TestCa>) -> std::net::SocketAddr {
    use rustls_pki_types::pem::PemObject;
    let chain = vec![rustls_pki_types::CertificateDer::from(cert.der.clone())];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("ca"))
                .expect("root");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                    .build()
                    .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(chain, key).expect("server config");
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let client_cert = tls.get_ref().1.peer_certificates().is_some();
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| async move {
                    let text = format!(
                        "{:?} client_cert={client_cert} host={}",
                        req.version(),
                        req.uri().host().or(req.headers().get("host").and_then(|h| h.to_str().ok())).unwrap_or("-")
                    );
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from(text),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_verify_negotiate_h2_and_present_client_certificates() {
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let backend_cert = ca.issue(&["backend.test"]);
    let client_cert = ca.issue(&["gatehouse.client"]);
    let h2 = tls_backend(&backend_cert, &[b"h2", b"http/1.1"], None).await;
    let h1 = tls_backend(&backend_cert, &[b"http/1.1"], None).await;
    let mtls = tls_backend(&backend_cert, &[b"http/1.1"], Some(&ca)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "ca.pem", &ca.pem());
    write(d, "other-ca.pem", &other_ca.pem());
    write(d, "client.crt", &client_cert.cert_pem);
    write(d, "client.key", &client_cert.key_pem);
    let tls_opts = |ca_file: &str, client: bool| {
        let client = if client { ", cert: client.crt, key: client.key" } else { "" };
        format!("    options: {{upstream_tls: {{ca: {ca_file}, server_name: backend.test{client}}}}}\n")
    };
    let site = format!(
        "host: up.test\nroutes:\n  - path: /h2\n    backend: https://{h2}\n{}  - path: /h1\n    backend: https://{h1}\n{}  - path: /mtls\n    backend: https://{mtls}\n{}  - path: /no-client-cert\n    backend: https://{mtls}\n{}  - path: /wrong-ca\n    backend: https://{h2}\n{}",
        tls_opts("ca.pem", false),
        tls_opts("ca.pem", false),
        tls_opts("ca.pem", true),
        tls_opts("ca.pem", false),
        tls_opts("other-ca.pem", false),
    );
    write_config(d, "", &[("up", &site)]);
    let gh = Gatehouse::start_in(dir);

    for _ in 0..3 {
        let r = get(gh.http, "up.test", "/h2").await;
        assert_eq!(
            (r.status.as_u16(), r.text().starts_with("HTTP/2.0 client_cert=false")),
            (200, true),
            "{}",
            r.text()
        );
    }
    let r = get(gh.http, "up.test", "/h1").await;
    assert_eq!(
        (r.status.as_u16(), r.text().starts_with("HTTP/1.1 client_cert=false host=up.test")),
        (200, true),
        "{}",
        r.text()
    );
    let r = get(gh.http, "up.test", "/mtls").await;
    assert_eq!(
        (r.status.as_u16(), r.text().starts_with("HTTP/1.1 client_cert=true")),
        (200, true),
        "{}\n{}",
        r.text(),
        gh.log()
    );
    assert_eq!(get(gh.http, "up.test", "/no-client-cert").await.status, 502);
    assert_eq!(get(gh.http, "up.test", "/wrong-ca").await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_goes_through_the_same_routes() {
    let backend = Backend::start("app").await;
    let ca = TestCa::new();
    let a = ca.issue(&["a.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.crt", &a.cert_pem);
    write(d, "a.key", &a.key_pem);
    write_config(
        d,
        &format!("{HTTPS}http3: true\ntls: {{cert: a.crt, key: a.key}}\n"),
        &[(
            "a",
            &format!(
                "host: a.test\nroutes:\n  - path: /api\n    strip_prefix: true\n    backend: {}\n    options: {{waf: {{mode: block}}}}\n  - path: /\n    redirect: {{to: /api/home, code: 307}}\n",
                backend.url()
            ),
        )],
    );
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https");

    // HTTPS over TCP advertises HTTP/3 on the same port.
    let conn = tls_connect(https, &ca.connector(&[b"http/1.1"]), "a.test").await.expect("tls");
    let r = send_on(conn.stream, get_req("a.test", "/api/x")).await;
    assert_eq!(r.header("alt-svc"), Some(format!("h3=\":{}\"; ma=86400", https.port()).as_str()));

    // The same routes over HTTP/3: strip_prefix, forwarding headers, request ids.
    let (resp, body) = h3_request(
        &ca,
        https,
        "a.test",
        http::Request::get("https://a.test/api/users?id=7").body(()).expect("req"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("alt-svc").is_none(), "no Alt-Svc on HTTP/3 itself");
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(seen["uri"], "/users?id=7");
    assert_eq!(seen["headers"]["host"], "a.test");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(resp.headers()["x-request-id"].len(), 32);

    // A request body streams through.
    let post = http::Request::post("https://a.test/api/upload").header("content-length", "5").body(()).expect("req");
    let (resp, body) = h3_request(&ca, https, "a.test", post, Some("hello")).await;
    assert_eq!(resp.status(), 200);
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(seen["body_len"], 5);
    // A form or JSON body is read ahead by the WAF (the body ends before the read-ahead
    // limit, so it must not be polled again) and still reaches the backend whole.
    let json = |path: &str, len: usize| {
        http::Request::post(format!("https://a.test{path}"))
            .header("content-type", "application/json")
            .header("content-length", len.to_string())
            .body(())
            .expect("req")
    };
    let benign = r#"{"name":"O'Brien","note":"rock 'n' roll"}"#;
    let (resp, body) = h3_request(&ca, https, "a.test", json("/api/users", benign.len()), Some(benign)).await;
    assert_eq!(resp.status(), 200, "{}", String::from_utf8_lossy(&body));
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(seen["body_len"], benign.len());
    let attack = r#"{"q":"1 UNION SELECT password FROM users"}"#;
    let (resp, _) = h3_request(&ca, https, "a.test", json("/api/users", attack.len()), Some(attack)).await;
    assert_eq!(resp.status(), 403);

    // A route action that never reaches a backend.
    let (resp, _) =
        h3_request(&ca, https, "a.test", http::Request::get("https://a.test/").body(()).expect("req"), None).await;
    assert_eq!(resp.status(), 307);
    assert_eq!(resp.headers()["location"], "/api/home");
}

/// SIGHUP reloads explicit certificate pairs (`tls.cert`/`tls.key`): rewritten files are
/// served after the signal, to new handshakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_explicit_certificate_pairs() {
    let backend = Backend::start("app").await;
    let ca = TestCa::new();
    let (old, new) = (ca.issue(&["a.test"]), ca.issue(&["a.test"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "files/a.crt", &old.cert_pem);
    write(d, "files/a.key", &old.key_pem);
    write_config(
        d,
        HTTPS,
        &[("a", &format!("host: a.test\nbackend: {}\ntls: {{cert: files/a.crt, key: files/a.key}}\n", backend.url()))],
    );
    let gh = Gatehouse::start_in(dir);
    let https = gh.https.expect("https");
    let connector = ca.connector(&[b"http/1.1"]);
    assert_eq!(tls_connect(https, &connector, "a.test").await.expect("tls").peer_der, old.der);
    write(gh.dir.path(), "files/a.key", &new.key_pem);
    write(gh.dir.path(), "files/a.crt", &new.cert_pem);
    gh.signal("HUP");
    let swapped = wait_until_async(Duration::from_secs(10), || async {
        tls_connect(https, &connector, "a.test").await.is_ok_and(|c| c.peer_der == new.der)
    })
    .await;
    assert!(swapped, "the rewritten pair was not served after SIGHUP: {}", gh.log());
    let conn = tls_connect(https, &connector, "a.test").await.expect("tls");
    assert_eq!(send_on(conn.stream, get_req("a.test", "/")).await.status, 200);
}

/// The certbot layout also works without `live/`: `<name>/fullchain.pem` and
/// `<name>/privkey.pem` directly in `tls.cert_dir`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_dir_takes_certbot_pairs_without_live() {
    let backend = Backend::start("app").await;
    let ca = TestCa::new();
    let c = ca.issue(&["c.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "certs/c.test/fullchain.pem", &c.cert_pem);
    write(d, "certs/c.test/privkey.pem", &c.key_pem);
    write_config(
        d,
        &format!("{HTTPS}tls: {{cert_dir: certs}}\n"),
        &[("c", &format!("host: c.test\nbackend: {}\n", backend.url()))],
    );
    let gh = Gatehouse::start_in(dir);
    let conn = tls_connect(gh.https.expect("https"), &ca.connector(&[b"http/1.1"]), "c.test").await.expect("tls");
    assert_eq!(conn.peer_der, c.der);
    assert_eq!(send_on(conn.stream, get_req("c.test", "/")).await.status, 200);
    let inv = get(gh.admin, "localhost", "/api/certs").await.json();
    let source = inv["certificates"][0]["source"].as_str().expect("source").to_string();
    assert!(source.starts_with("cert_dir: ") && source.ends_with("c.test/fullchain.pem"), "{inv}");
}
