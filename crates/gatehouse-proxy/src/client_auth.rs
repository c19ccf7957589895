//! Client certificates (mTLS) for the sites with `tls.client_ca`: a server configuration
//! per such site that asks the client for a certificate and verifies it against the site's
//! CAs (a connection without one still completes; `auth.client_cert` decides per route).
//! Other sites' handshakes never ask, so browsers there see no certificate prompt.
//!
//! The listener reads the ClientHello first when any site has client CAs and picks the
//! configuration by SNI (`Resolver::for_sni`); otherwise handshakes go as before. Built when
//! certificates are (re)loaded; a CA file that cannot be used is a warning, and that site's
//! clients then present nothing (so `auth.client_cert` refuses them: it fails closed).

use std::sync::{Arc, Weak};

use gatehouse_config::{HostPattern, Site};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The configurations of the sites with client CAs, by the sites' host patterns.
#[derive(Default)]
pub struct ClientAuth {
    /// (site name, its host patterns, its configuration).
    sites: Vec<(Arc<str>, Vec<HostPattern>, Arc<ServerConfig>)>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth").field("sites", &self.sites.len()).finish()
    }
}

/// The certificate resolver of these configurations: the listener's own, without holding
/// it alive (it holds them).
#[derive(Debug)]
struct Certs(Weak<crate::tls::Resolver>);

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.upgrade()?.resolve(hello)
    }
}

impl ClientAuth {
    /// The configurations for `sites`; warnings for CA files that cannot be used.
    pub fn build(sites: &[Site], resolver: &Weak<crate::tls::Resolver>) -> (ClientAuth, Vec<String>) {
        let mut out = ClientAuth::default();
        let mut problems = Vec::new();
        for site in sites {
            let Some(path) = &site.client_ca else { continue };
            match config(path, resolver) {
                Ok(cfg) => out.sites.push((site.name.as_str().into(), site.hosts.clone(), cfg)),
                Err(e) => problems.push(format!("{}: tls.client_ca {}: {e}", site.name, path.display())),
            }
        }
        (out, problems)
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The site and configuration for a handshake naming `sni` (lower case), if its site
    /// asks for client certificates.
    pub fn for_sni(&self, sni: &str) -> Option<(Arc<str>, Arc<ServerConfig>)> {
        // As the router picks a site: an exact name, else the longest wildcard, else `*`.
        let exact = self
            .sites
            .iter()
            .find(|(_, hosts, _)| hosts.iter().any(|p| matches!(p, HostPattern::Exact(h) if h == sni)));
        let wildcard = || {
            self.sites
                .iter()
                .filter_map(|entry| {
                    entry.1.iter().find_map(|p| match p {
                        HostPattern::Wildcard(s) if sni.ends_with(s.as_str()) && sni.len() > s.len() => {
                            Some((s.len(), entry))
                        }
                        _ => None,
                    })
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, entry)| entry)
        };
        let any = || self.sites.iter().find(|(_, hosts, _)| hosts.contains(&HostPattern::Any));
        exact.or_else(wildcard).or_else(any).map(|(site, _, cfg)| (site.clone(), cfg.clone()))
    }
}

fn config(path: &std::path::Path, resolver: &Weak<crate::tls::Resolver>) -> Result<Arc<ServerConfig>, String> {
    let pem = gatehouse_config::file::read_regular_up_to(path, gatehouse_config::file::MAX_BUNDLE)
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CA certificate".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| e.to_string())?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(Certs(resolver.clone())));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), crate::tls::ACME_TLS_ALPN.to_vec()];
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(Arc::new(cfg))
}

/// The subject of a verified client certificate (RFC 4514 form) and its common name.
pub fn subject(cert: &CertificateDer<'_>) -> Option<(String, Option<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let cn = subject.iter_common_name().next().and_then(|c| c.as_str().ok()).map(str::to_string);
    Some((subject.to_string(), cn))
}
