//! TLS towards `https://` backends: which roots to trust (a configured CA file or the
//! system's bundle), an optional client certificate, ALPN h2 + http/1.1.

use std::path::Path;
use std::sync::Arc;

use gatehouse_config::UpstreamTls;
use gatehouse_config::file::{MAX_BUNDLE, read_regular, read_regular_up_to};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where Debian, Alpine (ca-certificates), Fedora/RHEL keep the system trust bundle.
const SYSTEM_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

pub fn connector(cfg: &UpstreamTls) -> Result<tokio_rustls::TlsConnector, String> {
    let mut config = client_config(cfg)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The client configuration `cfg` describes, without ALPN.
pub fn client_config(cfg: &UpstreamTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let bundle = match &cfg.ca {
        Some(p) => p.clone(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(Into::into)
            .or_else(|| SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()).map(Path::to_path_buf))
            .ok_or("no system CA bundle found; set upstream_tls.ca")?,
    };
    let pem = read_regular_up_to(&bundle, MAX_BUNDLE).map_err(|e| format!("cannot read {}: {e}", bundle.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{} holds no usable CA certificate", bundle.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &cfg.client {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let read = |p: &Path| read_regular(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&pair.cert)?)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("invalid PEM in {}: {e}", pair.cert.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&read(&pair.key)?)
                .map_err(|e| format!("cannot read {}: {e}", pair.key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
        }
    };
    Ok(config)
}
