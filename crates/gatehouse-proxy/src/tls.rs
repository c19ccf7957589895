//! TLS termination: the certificate store (explicit pairs, a certificate directory in the
//! certbot and flat layouts, a self-signed fallback for localhost and IP hosts), SNI-based
//! selection, the rustls server configuration, the certificate inventory, and the directory
//! watcher that hot-swaps certificates.
//!
//! Owns certificate files and their parsing. Must not touch request routing; the pipeline
//! only asks "which certificate serves this name".

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use gatehouse_config::file::read_regular;
use gatehouse_config::{CertPair, HostPattern, Site, TlsConfig};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::hash::FxHashMap;

/// What the inventory says about one certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    /// DNS names and IP addresses the certificate is valid for.
    pub names: Vec<String>,
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// `cert_dir: <path>`, `file: <path> (site)`, or `self-signed`.
    pub source: String,
    /// The file it came from, to keep it when a later read of that file fails.
    pub path: Option<PathBuf>,
}

impl CertInfo {
    pub fn days_remaining(&self) -> i64 {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        (self.not_after - now).div_euclid(86_400)
    }
}

pub struct Cert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Certificates by name. Earlier sources win: explicit pairs, then the directory, then the
/// self-signed fallback.
#[derive(Default)]
pub struct Store {
    certs: Vec<Cert>,
    exact: FxHashMap<String, usize>,
    /// `(".example.test", cert)` for `*.example.test`, longest first.
    wildcard: Vec<(String, usize)>,
    default: Option<usize>,
    /// Files in a certificate directory that were not used, and why (warnings, not errors:
    /// such a directory often holds other files too).
    notes: Vec<String>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("certs", &self.certs.len()).finish()
    }
}

impl Store {
    /// Loads every configured certificate. Problems are returned as messages; a certificate
    /// that fails to load is left out (and, when `previous` had one from the same file, that
    /// one is kept).
    pub fn load(tls: &TlsConfig, sites: &[Site], previous: Option<&Store>) -> (Store, Vec<String>) {
        let provider = provider();
        let mut problems = Vec::new();
        let mut store = Store::default();
        for pair in &tls.pairs {
            match load_pair(&pair.cert, &pair.key, &provider) {
                Ok(key) => {
                    store.add(key, format!("file: {} ({})", pair.cert.display(), pair.origin), Some(pair.cert.clone()))
                }
                Err(e) => problems.push(format!("{}: {e}", pair.cert.display())),
            }
        }
        for dir in tls.cert_dir.iter().chain(tls.acme_dir.iter()) {
            let (pairs, notes) = scan_dir(dir);
            store.notes.extend(notes);
            for pair in pairs {
                match load_pair(&pair.cert, &pair.key, &provider) {
                    // mkcert's `rootCA.pem` + `rootCA-key.pem`, cfssl's `ca.pem` + `ca-key.pem`:
                    // a CA pair is not a server's certificate, and would otherwise become the
                    // default one.
                    Ok(key) if is_ca(&key) => store.notes.push(format!(
                        "{}: a CA certificate (basicConstraints CA:TRUE), not a server certificate; skipped",
                        pair.cert.display()
                    )),
                    Ok(key) => store.add(key, format!("cert_dir: {}", pair.cert.display()), Some(pair.cert.clone())),
                    Err(e) => {
                        problems.push(format!("{}: {e}", pair.cert.display()));
                        store.keep_previous(previous, &pair.cert);
                    }
                }
            }
        }
        // localhost and IP hosts cannot get a public certificate: give them a self-signed one.
        let local: Vec<String> = sites
            .iter()
            .flat_map(|s| s.hosts.iter())
            .filter_map(|h| match h {
                HostPattern::Exact(n) if is_local(n) => Some(n.trim_matches(['[', ']']).to_string()),
                _ => None,
            })
            .filter(|n| store.lookup(n).is_none())
            .collect();
        if !local.is_empty() || (store.certs.is_empty() && sites.iter().any(|s| s.hosts.contains(&HostPattern::Any))) {
            match self_signed(&local, &provider) {
                Ok(key) => store.add(key, "self-signed".into(), None),
                Err(e) => problems.push(format!("self-signed certificate: {e}")),
            }
        }
        store.default = match &tls.default_host {
            Some(h) => store.index_of(h),
            None if store.certs.len() == 1 => Some(0),
            None => store.certs.iter().position(|c| c.info.source == "self-signed"),
        };
        if let (Some(h), None) = (&tls.default_host, store.default) {
            problems.push(format!("tls.default_host: no certificate covers {h}"));
        }
        (store, problems)
    }

    /// Hosts of sites that no certificate covers (catch-all sites excepted).
    pub fn uncovered(&self, sites: &[Site]) -> Vec<String> {
        let mut out = Vec::new();
        for h in sites.iter().flat_map(|s| s.hosts.iter()) {
            match h {
                HostPattern::Exact(n) if self.lookup(n).is_none() => out.push(n.clone()),
                HostPattern::Wildcard(suffix) if !self.wildcard.iter().any(|(s, _)| s == suffix) => {
                    out.push(h.to_string())
                }
                _ => {}
            }
        }
        out
    }

    fn add(&mut self, key: Arc<CertifiedKey>, source: String, path: Option<PathBuf>) {
        let Some(info) = describe(&key, source, path) else { return };
        let i = self.certs.len();
        for name in &info.names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => {
                    if !self.wildcard.iter().any(|(s, _)| s == suffix) {
                        self.wildcard.push((suffix.to_string(), i));
                        self.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
                    }
                }
                _ => {
                    self.exact.entry(name).or_insert(i);
                }
            }
        }
        self.certs.push(Cert { key, info });
    }

    fn keep_previous(&mut self, previous: Option<&Store>, path: &Path) {
        let Some(prev) = previous else { return };
        for c in prev.certs.iter().filter(|c| c.info.path.as_deref() == Some(path)) {
            self.add(c.key.clone(), c.info.source.clone(), c.info.path.clone());
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.');
        if let Some(i) = self.exact.get(name) {
            return Some(*i);
        }
        // A wildcard covers exactly one label.
        let dot = name.find('.')?;
        let suffix = &name[dot..];
        self.wildcard.iter().find(|(s, _)| s == suffix).map(|(_, i)| *i)
    }

    /// The certificate for `name` (lower-case), if one covers it.
    pub fn lookup(&self, name: &str) -> Option<&Cert> {
        self.index_of(name).map(|i| &self.certs[i])
    }

    pub fn certs(&self) -> &[Cert] {
        &self.certs
    }

    /// Files in a certificate directory that were not loaded, and why.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Logs `notes`, one warning each (start, reload, directory change).
    pub fn warn_notes(&self) {
        for n in &self.notes {
            tracing::warn!(file = %n, "certificate directory: file not used");
        }
    }
}

/// Picks the certificate by SNI; unknown or missing SNI gets the default, or the handshake
/// fails (rustls sends `unrecognized_name`-style failure when this returns `None`).
#[derive(Debug)]
pub struct Resolver {
    store: ArcSwap<Store>,
    challenges: Arc<Challenges>,
    /// The configurations of sites that ask for client certificates (`tls.client_ca`).
    client_auth: ArcSwap<crate::client_auth::ClientAuth>,
    me: std::sync::Weak<Resolver>,
}

impl Resolver {
    pub fn new(store: Store, challenges: Arc<Challenges>) -> Arc<Self> {
        Arc::new_cyclic(|me| Resolver {
            store: ArcSwap::from_pointee(store),
            challenges,
            client_auth: ArcSwap::default(),
            me: me.clone(),
        })
    }

    /// (Re)builds the configurations of `sites` with client CAs; warnings for CA files
    /// that cannot be used.
    pub fn set_client_auth(&self, sites: &[Site]) -> Vec<String> {
        let (auth, problems) = crate::client_auth::ClientAuth::build(sites, &self.me);
        self.client_auth.store(Arc::new(auth));
        problems
    }

    /// The site and configuration for a handshake naming `sni`, when its site asks for
    /// client certificates; `None` for the listener's own.
    pub fn for_sni(&self, sni: Option<&str>) -> Option<(Arc<str>, Arc<ServerConfig>)> {
        let auth = self.client_auth.load();
        if auth.is_empty() {
            return None;
        }
        auth.for_sni(&sni?.to_ascii_lowercase())
    }

    /// Some site asks for client certificates: handshakes read the ClientHello first.
    pub fn asks_client_certs(&self) -> bool {
        !self.client_auth.load().is_empty()
    }

    pub fn store(&self) -> Arc<Store> {
        self.store.load_full()
    }

    pub fn replace(&self, store: Store) {
        self.store.store(Arc::new(store));
    }

    /// Whether `a` and `b` are served by the same certificate (for 421 Misdirected Request).
    pub fn same_certificate(&self, a: &str, b: &str) -> bool {
        let s = self.store.load();
        match (s.index_of(a), s.index_of(b)) {
            (Some(x), Some(y)) => x == y,
            (None, None) => true,
            _ => false,
        }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // An ACME TLS-ALPN-01 validation: answer with the challenge certificate only.
        if hello.alpn().is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN)) {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.tls_alpn.read().ok()?.get(&name).cloned();
        }
        let s = self.store.load();
        let by_name = hello.server_name().and_then(|n| {
            let lower = n.to_ascii_lowercase();
            s.index_of(&lower)
        });
        by_name.or(s.default).map(|i| s.certs[i].key.clone())
    }
}

/// The ALPN protocol of ACME TLS-ALPN-01 validations (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Answers to ACME challenges that are in progress: HTTP-01 key authorizations by token, and
/// TLS-ALPN-01 certificates by domain. Written by the ACME client, read by the listeners;
/// only validation requests take the lock.
#[derive(Debug, Default)]
pub struct Challenges {
    pub http01: std::sync::RwLock<std::collections::HashMap<String, String>>,
    pub tls_alpn: std::sync::RwLock<std::collections::HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The key authorization for an HTTP-01 token, if one is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.read().ok()?.get(token).cloned()
    }

    /// Installs the TLS-ALPN-01 certificate for `domain` (DER certificate and PKCS#8 key).
    pub fn set_tls_alpn(&self, domain: &str, cert_der: Vec<u8>, key_der: Vec<u8>) -> Result<(), String> {
        let key = PrivateKeyDer::try_from(key_der).map_err(|e| e.to_string())?;
        // Not `from_der`: its key check parses the certificate and refuses the critical
        // acmeIdentifier extension this certificate exists to carry.
        let signer = provider().key_provider.load_private_key(key).map_err(|e| e.to_string())?;
        let certified = CertifiedKey::new(vec![CertificateDer::from(cert_der)], signer);
        if let Ok(mut m) = self.tls_alpn.write() {
            m.insert(domain.to_ascii_lowercase(), Arc::new(certified));
        }
        Ok(())
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS 1.2 and 1.3 with the provider's AEAD suites and key exchange groups (X25519MLKEM768
/// first, then X25519, P-256, P-384), ALPN h2 and http/1.1, session tickets on.
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(cfg))
}

pub(crate) fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let pem = read_regular(cert).map_err(|e| format!("cannot read certificate: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the file".into());
    }
    let key_pem = read_regular(key).map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => "the private key does not match the certificate".to_string(),
        other => format!("unusable certificate or key: {other}"),
    })?;
    Ok(Arc::new(certified))
}

fn describe(key: &CertifiedKey, source: String, path: Option<PathBuf>) -> Option<CertInfo> {
    let der = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        names.push(std::net::Ipv4Addr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        names.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        // Old certificates name their host only in the subject CN.
        names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_string)));
    }
    Some(CertInfo {
        subject: cert.subject().to_string(),
        names,
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.timestamp(),
        source,
        path,
    })
}

/// Whether the leaf certificate is a CA's (basicConstraints CA:TRUE).
fn is_ca(key: &CertifiedKey) -> bool {
    key.cert
        .first()
        .and_then(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
        .is_some_and(|(_, cert)| cert.is_ca())
}

/// `localhost`, `*.localhost` and IP addresses: names no public CA certifies.
pub fn is_local(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok()
}

fn self_signed(names: &[String], provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !all.contains(n) {
            all.push(n.clone());
        }
    }
    let generated = rcgen::generate_simple_self_signed(all).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).map_err(|e| e.to_string())?;
    CertifiedKey::from_der(vec![generated.cert.der().clone()], key, provider).map(Arc::new).map_err(|e| e.to_string())
}

/// Certificate/key pairs in a directory: certbot's `live/<name>/fullchain.pem` +
/// `privkey.pem` (also `<name>/fullchain.pem` directly under the directory), and flat
/// `NAME.crt` or `NAME.pem` next to `NAME.key` or `NAME-key.pem` (mkcert's naming). NAME
/// is everything before the last extension, dots included (`example.com.crt`). Files that
/// look like part of a pair but are not paired come back as notes saying why.
fn scan_dir(dir: &Path) -> (Vec<CertPair>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for base in [dir.join("live"), dir.to_path_buf()] {
        let Ok(entries) = std::fs::read_dir(&base) else { continue };
        let mut subdirs: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
        subdirs.sort();
        for d in subdirs {
            let (cert, key) = (d.join("fullchain.pem"), d.join("privkey.pem"));
            match (cert.is_file(), key.is_file()) {
                (true, true) => out.push(CertPair { cert, key, origin: "cert_dir".into() }),
                (true, false) => notes.push(format!("{}: no privkey.pem next to it; skipped", cert.display())),
                _ => {}
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return (out, notes) };
    let mut files: Vec<(PathBuf, String)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| Some((p.clone(), p.file_name()?.to_str()?.to_string())))
        .filter(|(_, name)| !name.starts_with('.'))
        .collect();
    files.sort();
    let is_key = |name: &str| name.ends_with(".key") || name.ends_with("-key.pem");
    let mut keys_used = Vec::new();
    for (path, name) in &files {
        if is_key(name) {
            continue;
        }
        let Some(stem) = name.strip_suffix(".crt").or_else(|| name.strip_suffix(".pem")) else { continue };
        if !path.is_file() {
            notes.push(format!("{}: not a regular file; skipped", path.display()));
            continue;
        }
        let candidates = [format!("{stem}.key"), format!("{stem}-key.pem")];
        match candidates.iter().map(|k| dir.join(k)).find(|k| k.is_file()) {
            Some(key) => {
                keys_used.push(key.clone());
                out.push(CertPair { cert: path.clone(), key, origin: "cert_dir".into() });
            }
            None => notes.push(format!(
                "{}: no key next to it (looked for {} and {}); skipped",
                path.display(),
                candidates[0],
                candidates[1]
            )),
        }
    }
    for (path, name) in &files {
        if is_key(name) && !keys_used.contains(path) {
            notes.push(format!("{}: a key with no certificate of the same name; skipped", path.display()));
        }
    }
    (out, notes)
}

/// Watches the certificate directory `dir` (recursively) and calls `on_change` once the
/// files have been quiet for 500 ms, so a renewal writing several files reloads once.
/// Returns the watcher, which must be kept.
///
/// Does not load certificates itself: the caller reloads the store from the configuration
/// running at that moment, one reload at a time (a store built here from a configuration
/// captured earlier could replace the one a configuration reload just published).
/// Openings and reads (`IN_OPEN`) are not changes: loading the store opens every file, and
/// counting that would make each reload cause the next.
pub fn watch(
    dir: &Path,
    on_change: impl Fn() + Send + 'static,
) -> Result<notify_debouncer_full::Debouncer<notify::RecommendedWatcher, notify_debouncer_full::RecommendedCache>, String>
{
    let mut debouncer = notify_debouncer_full::new_debouncer(
        Duration::from_millis(500),
        None,
        move |res: notify_debouncer_full::DebounceEventResult| {
            let Ok(events) = res else { return };
            if events.iter().any(|e| is_change(&e.kind)) {
                on_change();
            }
        },
    )
    .map_err(|e| e.to_string())?;
    debouncer
        .watch(dir, notify::RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    Ok(debouncer)
}

/// Whether a file event is a change. Openings and reads are not: every reload opens the
/// files it reads, and counting that would make each reload ask for the next.
pub fn is_change(kind: &notify::event::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Logs certificates close to expiry: a warning at 30 days or less, an error at 7 or less.
pub fn warn_expiry(store: &Store) {
    for c in store.certs() {
        let days = c.info.days_remaining();
        let names = c.info.names.join(", ");
        if days <= 7 {
            tracing::error!(names = %names, days, source = %c.info.source, "certificate expires within 7 days");
        } else if days <= 14 {
            tracing::warn!(names = %names, days, source = %c.info.source, "certificate expires within 14 days");
        } else if days <= 30 {
            tracing::warn!(names = %names, days, source = %c.info.source, "certificate expires within 30 days");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_pairs_keep_dotted_names_and_unpaired_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in [
            "example.com.crt",
            "example.com.key",
            "_wildcard.example.org.pem",
            "_wildcard.example.org-key.pem",
            "alone.test.crt",
            "orphan.test.key",
            "README",
        ] {
            std::fs::write(d.join(f), "x").expect("write");
        }
        std::fs::create_dir_all(d.join("live/app.test")).expect("mkdir");
        for f in ["fullchain.pem", "privkey.pem"] {
            std::fs::write(d.join("live/app.test").join(f), "x").expect("write");
        }
        let (pairs, notes) = scan_dir(d);
        let names: Vec<(String, String)> = pairs
            .iter()
            .map(|p| {
                let rel = |x: &Path| x.strip_prefix(d).expect("inside").display().to_string();
                (rel(&p.cert), rel(&p.key))
            })
            .collect();
        let want = [
            ("live/app.test/fullchain.pem", "live/app.test/privkey.pem"),
            ("_wildcard.example.org.pem", "_wildcard.example.org-key.pem"),
            ("example.com.crt", "example.com.key"),
        ];
        assert_eq!(names, want.map(|(c, k)| (c.to_string(), k.to_string())));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].ends_with(
                "alone.test.crt: no key next to it (looked for alone.test.key and alone.test-key.pem); skipped"
            ),
            "{notes:?}"
        );
        assert!(
            notes[1].ends_with("orphan.test.key: a key with no certificate of the same name; skipped"),
            "{notes:?}"
        );
    }

    #[test]
    fn wildcards_cover_one_label() {
        let mut s = Store::default();
        let provider = provider();
        let key = self_signed(&["*.w.test".to_string(), "a.test".to_string()], &provider).expect("cert");
        s.add(key, "test".into(), None);
        assert!(s.lookup("x.w.test").is_some());
        assert!(s.lookup("a.test").is_some());
        assert!(s.lookup("y.x.w.test").is_none());
        assert!(s.lookup("w.test").is_none());
        assert!(s.lookup("localhost").is_some());
    }
}
