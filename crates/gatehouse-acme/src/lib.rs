//! ACME (RFC 8555): the account, one order per site (its hosts as SANs), HTTP-01,
//! TLS-ALPN-01 and DNS-01 challenges, renewal when a third of the lifetime is left, retries
//! with exponential backoff, and storage of the account and certificates on disk so a
//! restart does not issue again.
//!
//! Owns the order state machine and the files under `<storage>/acme`. Must not serve
//! traffic itself: answers to challenges go through a `Responder` the binary provides.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse_config::{AcmeChallenge, AcmeConfig};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// How challenge answers reach the listeners.
pub trait Responder: Send + Sync {
    fn http01_set(&self, token: &str, key_authorization: &str);
    fn http01_clear(&self, token: &str);
    /// `cert_der` carries the acmeIdentifier extension; `key_der` is PKCS#8.
    fn tls_alpn01_set(&self, domain: &str, cert_der: Vec<u8>, key_der: Vec<u8>);
    fn tls_alpn01_clear(&self, domain: &str);
}

/// One certificate to keep: a site and the host names it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub site: String,
    pub hosts: Vec<String>,
}

/// Where a site's issued certificate lives.
pub fn cert_paths(config: &AcmeConfig, site: &str) -> (PathBuf, PathBuf) {
    let dir = config.state_dir.join("certs").join(site);
    (dir.join("fullchain.pem"), dir.join("privkey.pem"))
}

/// What happened to a certificate request.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// A new certificate is on disk.
    Issued { site: &'a str },
    /// The request failed; it is tried again after a backoff.
    Failed { site: &'a str, hosts: &'a [String], error: &'a str, attempt: u32, retry_in: Duration },
}

/// Keeps every wanted certificate issued and fresh. Calls `report` after each new
/// certificate is on disk and after each failed request. Runs until the process ends.
pub async fn maintain(
    config: AcmeConfig,
    wanted: Vec<Wanted>,
    responder: Arc<dyn Responder>,
    report: Arc<dyn Fn(Outcome<'_>) + Send + Sync>,
) {
    let mut failures = vec![0u32; wanted.len()];
    let mut next_try = vec![tokio::time::Instant::now(); wanted.len()];
    loop {
        let now = tokio::time::Instant::now();
        for (i, w) in wanted.iter().enumerate() {
            if now < next_try[i] {
                continue;
            }
            match due(&config, w) {
                Ok(None) => {
                    // Fresh: look again in an hour (or sooner if renewal comes due).
                    next_try[i] = now + Duration::from_secs(3600);
                    continue;
                }
                Ok(Some(reason)) => tracing::info!(site = %w.site, hosts = ?w.hosts, reason, "requesting certificate"),
                Err(e) => {
                    tracing::warn!(site = %w.site, error = %e, "cannot read the stored certificate; requesting a new one")
                }
            }
            match issue(&config, w, responder.as_ref()).await {
                Ok(()) => {
                    failures[i] = 0;
                    next_try[i] = now + Duration::from_secs(3600);
                    tracing::info!(site = %w.site, hosts = ?w.hosts, "certificate issued");
                    report(Outcome::Issued { site: &w.site });
                }
                Err(e) => {
                    failures[i] += 1;
                    let wait = backoff(failures[i]);
                    next_try[i] = now + wait;
                    tracing::warn!(site = %w.site, error = %e, attempt = failures[i], retry_in = ?wait, "certificate request failed; the current certificate (if any) keeps serving");
                    let error = e.to_string();
                    report(Outcome::Failed {
                        site: &w.site,
                        hosts: &w.hosts,
                        error: &error,
                        attempt: failures[i],
                        retry_in: wait,
                    });
                }
            }
        }
        let soonest = next_try.iter().min().copied().unwrap_or(now + Duration::from_secs(3600));
        tokio::time::sleep_until(soonest.max(tokio::time::Instant::now() + Duration::from_millis(100))).await;
    }
}

/// 10 s, 20 s, 40 s, … up to an hour between attempts.
fn backoff(failures: u32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << failures.saturating_sub(1).min(12));
    Duration::from_secs(secs.min(3600))
}

/// Why a site needs a (new) certificate, or `None` when the stored one is good.
fn due(config: &AcmeConfig, w: &Wanted) -> Result<Option<&'static str>, Error> {
    let (cert, key) = cert_paths(config, &w.site);
    if !cert.exists() || !key.exists() {
        return Ok(Some("no certificate yet"));
    }
    let pem = std::fs::read(&cert)?;
    let (_, der) =
        x509_parser::pem::parse_x509_pem(&pem).map_err(|e| Error::Other(format!("{}: {e}", cert.display())))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der.contents)
        .map_err(|e| Error::Other(format!("{}: {e}", cert.display())))?;
    let names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if w.hosts.iter().any(|h| !names.contains(h)) {
        return Ok(Some("the site's hosts changed"));
    }
    let not_before = parsed.validity().not_before.timestamp();
    let not_after = parsed.validity().not_after.timestamp();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let renew_at = match config.renew_before {
        Some(before) => not_after - before.as_secs() as i64,
        None => not_after - (not_after - not_before) / 3,
    };
    Ok((now >= renew_at).then_some("renewal is due"))
}

async fn account(config: &AcmeConfig) -> Result<Account, Error> {
    let builder = || match &config.ca_root {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    };
    let path = config.state_dir.join("account.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let creds: AccountCredentials =
            serde_json::from_str(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        return Ok(builder()?.from_credentials(creds).await?);
    }
    let contact = format!("mailto:{}", config.email);
    let eab = match &config.eab {
        Some((kid, hmac)) => Some(ExternalAccountKey::new(kid.clone(), &decode_base64url(hmac)?)),
        None => None,
    };
    let (account, creds) = builder()?
        .create(
            &NewAccount { contact: &[&contact], terms_of_service_agreed: true, only_return_existing: false },
            config.directory.clone(),
            eab.as_ref(),
        )
        .await?;
    std::fs::create_dir_all(&config.state_dir)?;
    write_private(&path, serde_json::to_string(&creds).map_err(|e| Error::Other(e.to_string()))?.as_bytes())?;
    tracing::info!(directory = %config.directory, "ACME account created");
    Ok(account)
}

/// One order: authorize every host, finalize, store the chain and key.
async fn issue(config: &AcmeConfig, w: &Wanted, responder: &dyn Responder) -> Result<(), Error> {
    let account = account(config).await?;
    let identifiers: Vec<Identifier> = w.hosts.iter().map(|h| Identifier::Dns(h.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut cleanup = Cleanup { responder, http: Vec::new(), alpn: Vec::new(), dns: Vec::new() };

    let mut auths = order.authorizations();
    while let Some(auth) = auths.next().await {
        let mut auth = auth?;
        match auth.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(Error::Other(format!("authorization is {other:?}"))),
        }
        let kind = match config.challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Dns01 { .. } => ChallengeType::Dns01,
        };
        let mut challenge = auth
            .challenge(kind.clone())
            .ok_or_else(|| Error::Other(format!("the server offers no {kind:?} challenge")))?;
        let domain = challenge.identifier().to_string();
        let key_auth = challenge.key_authorization();
        match &config.challenge {
            AcmeChallenge::Http01 => {
                responder.http01_set(&challenge.token, key_auth.as_str());
                cleanup.http.push(challenge.token.clone());
            }
            AcmeChallenge::TlsAlpn01 => {
                let (cert, key) = alpn_certificate(&domain, key_auth.digest().as_ref())?;
                responder.tls_alpn01_set(&domain, cert, key);
                cleanup.alpn.push(domain.clone());
            }
            AcmeChallenge::Dns01 { hook } => {
                let name = format!("_acme-challenge.{}", domain.trim_start_matches("*."));
                let value = key_auth.dns_value();
                run_hook(hook, "set", &name, &value).await?;
                cleanup.dns.push((hook.clone(), name, value));
            }
        }
        challenge.set_ready().await?;
    }

    let retries = RetryPolicy::new().timeout(Duration::from_secs(90));
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        return Err(Error::Other(format!("order ended as {status:?}")));
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&retries).await?;
    cleanup.run().await;

    let (cert_path, key_path) = cert_paths(config, &w.site);
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Key first: the certificate directory loader pairs files, and a new certificate with
    // an old key is refused (the old pair keeps serving) rather than half-swapped.
    write_private(&key_path, key_pem.as_bytes())?;
    write_atomic(&cert_path, chain_pem.as_bytes())?;
    Ok(())
}

/// Removes challenge answers after the order, whatever its outcome.
struct Cleanup<'a> {
    responder: &'a dyn Responder,
    http: Vec<String>,
    alpn: Vec<String>,
    dns: Vec<(String, String, String)>,
}

impl Cleanup<'_> {
    async fn run(&mut self) {
        for t in self.http.drain(..) {
            self.responder.http01_clear(&t);
        }
        for d in self.alpn.drain(..) {
            self.responder.tls_alpn01_clear(&d);
        }
        for (hook, name, value) in self.dns.drain(..) {
            if let Err(e) = run_hook(&hook, "clear", &name, &value).await {
                tracing::warn!(error = %e, "dns_hook clear failed");
            }
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for t in self.http.drain(..) {
            self.responder.http01_clear(&t);
        }
        for d in self.alpn.drain(..) {
            self.responder.tls_alpn01_clear(&d);
        }
    }
}

/// Runs the DNS hook as `sh -c 'COMMAND "$@"' -- ACTION NAME VALUE`, so any provider's CLI
/// or a small script can publish the TXT record.
async fn run_hook(hook: &str, action: &str, name: &str, value: &str) -> Result<(), Error> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{hook} \"$@\""))
        .arg("--")
        .args([action, name, value])
        .output()
        .await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "dns_hook {action} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The self-signed certificate a TLS-ALPN-01 validation expects (RFC 8737 §3).
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| Error::Other(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Other(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| Error::Other(e.to_string()))?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

/// Like `write_atomic`, readable by the owner only (keys, account credentials).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// base64url (RFC 4648 §5), with or without padding, as ACME providers hand out EAB keys.
fn decode_base64url(s: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return Err(Error::Other("eab.hmac is not base64url".into())),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url() {
        assert_eq!(decode_base64url("aGVsbG8").expect("valid"), b"hello");
        assert_eq!(decode_base64url("_-8=").expect("valid"), vec![0xff, 0xef]);
        assert!(decode_base64url("a b").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(30), Duration::from_secs(3600));
    }
}
