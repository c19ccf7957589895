//! The main file's `tls`: certificate directory, explicit pairs, default host, ACME.

use super::*;

pub(super) fn build_tls(cx: &mut Ctx<'_>, base: &Path, t: Option<&raw::Tls>, storage_path: &Path) -> TlsConfig {
    let mut out = TlsConfig::default();
    let Some(t) = t else { return out };
    if let Some(a) = &t.acme {
        let state_dir = storage_path.parent().unwrap_or(Path::new(".")).join("acme");
        out.acme_dir = Some(state_dir.join("certs"));
        out.acme = build_acme(cx, base, a, state_dir);
    }
    if let Some(dir) = &t.cert_dir {
        let path = base.join(&dir.value);
        match std::fs::read_dir(&path) {
            Ok(_) => out.cert_dir = Some(path),
            Err(e) => cx.err_at(dir, "tls.cert_dir", format!("cannot read {}: {e}", path.display())),
        }
    }
    if let Some(pair) = cert_pair(cx, base, t.cert.as_ref(), t.key.as_ref(), "tls", "main") {
        out.pairs.push(pair);
    }
    if let Some(h) = &t.default_host {
        match parse_host(&h.value) {
            Ok(HostPattern::Exact(name)) => out.default_host = Some(name),
            _ => cx.err_at(h, "tls.default_host", format!("expected a host name like example.test, got {:?}", h.value)),
        }
    }
    out
}

pub(super) const ACME_CHALLENGES: &[&str] = &["http-01", "tls-alpn-01", "dns-01"];

pub(super) fn build_acme(cx: &mut Ctx<'_>, base: &Path, a: &raw::Acme, state_dir: PathBuf) -> Option<AcmeConfig> {
    let errors_before = cx.errors.len();
    if !a.email.value.contains('@') {
        cx.err_at(&a.email, "tls.acme.email", format!("expected an e-mail address, got {:?}", a.email.value));
    }
    let directory = match a.ca.as_ref().map(|c| c.value.trim()) {
        None | Some("letsencrypt") => "https://acme-v02.api.letsencrypt.org/directory".to_string(),
        Some("letsencrypt-staging") => "https://acme-staging-v02.api.letsencrypt.org/directory".to_string(),
        Some("zerossl") => "https://acme.zerossl.com/v2/DV90".to_string(),
        Some(url) if url.starts_with("https://") => url.to_string(),
        Some(other) => {
            if let Some(c) = &a.ca {
                cx.err_at(
                    c,
                    "tls.acme.ca",
                    format!(
                        "expected letsencrypt, letsencrypt-staging, zerossl or an https:// directory URL, got {other:?}"
                    ),
                );
            }
            String::new()
        }
    };
    let ca_root = a.ca_root.as_ref().and_then(|r| {
        let p = base.join(&r.value);
        match crate::file::check_regular(&p) {
            Ok(_) => Some(p),
            Err(e) => {
                cx.err_at(r, "tls.acme.ca_root", format!("cannot read {}: {e}", p.display()));
                None
            }
        }
    });
    let challenge = match a.challenge.as_ref().map(|c| c.value.trim()) {
        None | Some("http-01") => AcmeChallenge::Http01,
        Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some("dns-01") => match &a.dns_hook {
            Some(h) if !h.value.trim().is_empty() => AcmeChallenge::Dns01 { hook: h.value.clone() },
            _ => {
                if let Some(c) = &a.challenge {
                    cx.err_at(
                        c,
                        "tls.acme.dns_hook",
                        "dns-01 needs dns_hook: a command run as `COMMAND set|clear NAME VALUE`",
                    );
                }
                AcmeChallenge::Http01
            }
        },
        Some(other) => {
            if let Some(c) = &a.challenge {
                let hint = nearest(other, ACME_CHALLENGES.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.err_at(
                    c,
                    "tls.acme.challenge",
                    format!("unknown challenge {other:?}{hint}; expected http-01, tls-alpn-01 or dns-01"),
                );
            }
            AcmeChallenge::Http01
        }
    };
    let eab = a.eab.as_ref().and_then(|e| {
        let hmac = cx.secret(base, e.hmac.as_ref(), e.hmac_file.as_ref(), "tls.acme.eab.hmac");
        if e.hmac.is_none() && e.hmac_file.is_none() {
            cx.err_at(&e.kid, "tls.acme.eab.hmac", "external account binding needs hmac (or hmac_file)");
        }
        hmac.map(|h| (e.kid.value.clone(), h))
    });
    if directory.contains("zerossl.com") && eab.is_none() {
        cx.err_at(
            &a.email,
            "tls.acme.eab",
            "ZeroSSL needs external account binding: set eab: {kid, hmac} from your ZeroSSL account",
        );
    }
    let renew_before = a.renew_before.as_ref().map(|r| cx.duration(Some(r), "tls.acme.renew_before", Duration::ZERO));
    (cx.errors.len() == errors_before).then(|| AcmeConfig {
        email: a.email.value.trim().to_string(),
        directory,
        ca_root,
        challenge,
        eab,
        renew_before,
        state_dir,
    })
}

/// A `cert` + `key` pair; both or neither, both readable.
pub(super) fn cert_pair(
    cx: &mut Ctx<'_>,
    base: &Path,
    cert: Option<&S<String>>,
    key: Option<&S<String>>,
    at: &str,
    origin: &str,
) -> Option<CertPair> {
    match (cert, key) {
        (None, None) => None,
        (Some(c), None) => {
            cx.err_at(c, format!("{at}.key"), "a certificate needs its key: add key");
            None
        }
        (None, Some(k)) => {
            cx.err_at(k, format!("{at}.cert"), "a key needs its certificate: add cert");
            None
        }
        (Some(c), Some(k)) => {
            let mut ok = true;
            for (field, v) in [("cert", c), ("key", k)] {
                let p = base.join(&v.value);
                if let Err(e) = crate::file::check_regular(&p) {
                    cx.err_at(v, format!("{at}.{field}"), format!("cannot read {}: {e}", p.display()));
                    ok = false;
                }
            }
            ok.then(|| CertPair { cert: base.join(&c.value), key: base.join(&k.value), origin: origin.to_string() })
        }
    }
}
