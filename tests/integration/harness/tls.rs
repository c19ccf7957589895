//! TLS for tests: a throwaway CA, client connectors, handshakes and requests over them.

use super::*;

/// Valid from yesterday for 300 days: current, and shorter than the 366 days Mozilla's
/// configuration check allows.
fn short_validity(params: &mut rcgen::CertificateParams) {
    validity(params, 300);
}

/// Valid from yesterday until `days_left` days from today.
fn validity(params: &mut rcgen::CertificateParams, days_left: i64) {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0)
            as i64;
    let date = |d: i64| {
        let (y, m, day) = civil_from_days(d);
        rcgen::date_time_ymd(y, m, day)
    };
    params.not_before = date(days - 1);
    params.not_after = date(days + days_left);
}

/// Days since 1970-01-01 to a (year, month, day) date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// A throwaway certificate authority for HTTPS tests.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// An issued certificate: PEM for files, DER to recognise it on the wire.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Gatehouse Test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        short_validity(&mut params);
        let key = rcgen::KeyPair::generate().expect("key");
        TestCa { issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("ca") }
    }

    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_for(names, 300)
    }

    /// A certificate that expires `days_left` days from today.
    pub fn issue_for(&self, names: &[&str], days_left: i64) -> Issued {
        self.issue_with(names, days_left, None)
    }

    /// A client certificate whose subject is `CN=cn`.
    pub fn issue_client(&self, cn: &str) -> Issued {
        self.issue_with(&[], 300, Some(cn))
    }

    fn issue_with(&self, names: &[&str], days_left: i64, cn: Option<&str>) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        if let Some(cn) = cn {
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        // What public CAs issue: a leaf valid for well under a year.
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        // Server and client auth, as public CAs long issued; the client EKU lets the same
        // helper issue certificates for mutual TLS.
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days_left);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// The CA certificate in PEM, for external tools.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's certificate and private key in PEM, as mkcert or cfssl leave them on disk.
    pub fn pair(&self) -> (String, String) {
        (self.issuer.pem(), self.issuer.key().serialize_pem())
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("root");
        roots
    }

    /// A client that trusts only this CA, offering `alpn`.
    pub fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let roots = self.roots();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        // Every connection does a full handshake, so tests see the certificate served now
        // (a resumed session reports the certificate of the session it resumes).
        cfg.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

/// A TLS connection's outcome: which certificate the server sent and the negotiated ALPN.
pub struct TlsConn {
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    pub peer_der: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

pub async fn tls_connect(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    sni: &str,
) -> Result<TlsConn, String> {
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        connector.connect(name, tcp).await.map_err(|e| e.to_string())
    };
    let stream = tokio::time::timeout(NET_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("no TLS handshake with {addr} within {NET_TIMEOUT:?}"))??;
    let (_, session) = stream.get_ref();
    let peer_der = session.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).unwrap_or_default();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    Ok(TlsConn { stream, peer_der, alpn })
}

/// One HTTP/1.1 request over an established connection (TLS or not), within `NET_TIMEOUT`.
pub async fn send_on<IO>(io: IO, req: Request<Full<Bytes>>) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let what = format!("{} {}", req.method(), req.uri());
    let exchange = async move {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.expect("handshake");
        tokio::spawn(conn);
        let resp = tx.send_request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(NET_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no complete response within {NET_TIMEOUT:?}"))
}

pub fn get_req(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", host).body(Full::new(Bytes::new())).expect("request")
}

/// Accepts any server certificate: only for tests of self-signed fallbacks.
#[derive(Debug)]
pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn accept_any_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A request over HTTP/3 (quinn + h3 client) to the HTTPS port's UDP side, within
/// `NET_TIMEOUT`.
pub async fn h3_request(
    ca: &TestCa,
    addr: std::net::SocketAddr,
    sni: &str,
    req: http::Request<()>,
    body: Option<&'static str>,
) -> (http::Response<()>, Vec<u8>) {
    within("HTTP/3 request", h3_exchange(ca, addr, sni, req, body)).await
}

pub async fn h3_exchange(
    ca: &TestCa,
    addr: std::net::SocketAddr,
    sni: &str,
    req: http::Request<()>,
    body: Option<&'static str>,
) -> (http::Response<()>, Vec<u8>) {
    use bytes::Buf;
    let H3Client { endpoint: _endpoint, mut sender } = h3_connect(ca, addr, sni).await;
    let mut stream = sender.send_request(req).await.expect("send request");
    if let Some(b) = body {
        stream.send_data(bytes::Bytes::from(b)).await.expect("send body");
    }
    stream.finish().await.expect("finish");
    let resp = stream.recv_response().await.expect("response");
    let mut data = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.expect("data") {
        data.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    (resp, data)
}

/// An HTTP/3 connection (its endpoint must live as long as it is used) and its request
/// sender; the connection's driver runs in a task of its own.
pub struct H3Client {
    pub endpoint: quinn::Endpoint,
    pub sender: h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
}

/// Opens an HTTP/3 connection to `addr` (trusting only `ca`), without a time limit: wrap
/// it in `within`.
pub async fn h3_connect(ca: &TestCa, addr: std::net::SocketAddr, sni: &str) -> H3Client {
    let mut roots = rustls::RootCertStore::empty();
    let ca_der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(ca.pem().as_bytes()).expect("ca pem");
    roots.add(ca_der).expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic config");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    let conn = endpoint.connect(addr, sni).expect("connect").await.expect("QUIC handshake");
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(conn)).await.expect("h3");
    tokio::spawn(async move {
        let _ = driver.wait_idle().await;
    });
    H3Client { endpoint, sender }
}
