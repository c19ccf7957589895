//! `auth`: basic users (argon2 or bcrypt hashes), API keys (SHA-256 digests) and JWT keys
//! (read and parsed here, so a bad key is a `check` error with its line, not a surprise at
//! the first request).

use super::*;

/// `options.auth`.
pub(super) fn auth(cx: &mut Ctx<'_>, base: &Path, a: &raw::Auth, at: &str) -> Option<Auth> {
    let realm = a.realm.as_ref().map_or_else(|| "gatehouse".to_string(), |r| r.value.trim().to_string());
    if (realm.contains(['"', '\\']) || realm.chars().any(char::is_control))
        && let Some(r) = &a.realm
    {
        cx.err_at(r, format!("{at}.realm"), "the realm must not contain quotes, backslashes or control characters");
    }
    let mut basic = Vec::new();
    if let Some(b) = &a.basic {
        for (name, hash) in b.users.iter().flatten() {
            let here = format!("{at}.basic.users.{name}");
            // `env:NAME` gives the hash from the environment.
            let Some(value) = cx.secret(base, Some(hash), None, &here) else { continue };
            match user(name, &value) {
                Ok(u) => basic.push(u),
                Err(e) => cx.err_at(hash, here, e),
            }
        }
        if let Some(file) = &b.users_file {
            let here = format!("{at}.basic.users_file");
            let path = base.join(file.value.trim());
            match crate::file::read_regular_text(&path) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let parsed = line.split_once(':').ok_or_else(|| "expected name:hash".to_string());
                        match parsed.and_then(|(name, hash)| user(name, hash)) {
                            Ok(u) => basic.push(u),
                            Err(e) => cx.err_at(file, here.clone(), format!("{}:{}: {e}", path.display(), n + 1)),
                        }
                    }
                }
                Err(e) => cx.err_at(file, here, format!("cannot read {}: {e}", path.display())),
            }
        }
        if basic.is_empty() && b.users_file.is_none() && b.users.as_ref().is_none_or(|u| u.is_empty()) {
            cx.err(None, format!("{at}.basic"), "basic auth needs users or users_file");
        }
    }
    let api_keys = a.api_key.as_ref().map(|k| api_keys(cx, k, &format!("{at}.api_key")));
    let jwt = a.jwt.as_ref().and_then(|j| jwt(cx, base, j, &format!("{at}.jwt")));
    let forward = a.forward.as_ref().and_then(|f| forward(cx, f, &format!("{at}.forward")));
    let client_cert = a.client_cert.as_ref().map(|c| {
        header_name(cx, c.header.as_ref(), &format!("{at}.client_cert.header"))
            .unwrap_or(HeaderName::from_static("x-client-subject"))
    });
    if a.forward.is_some() && (a.basic.is_some() || a.api_key.is_some() || a.jwt.is_some() || a.client_cert.is_some()) {
        cx.err(
            None,
            format!("{at}.forward"),
            "forward auth decides alone: remove basic, api_key, jwt and client_cert, or forward",
        );
    }
    if a.basic.is_none() && a.api_key.is_none() && a.jwt.is_none() && a.forward.is_none() && a.client_cert.is_none() {
        cx.err(None, at.to_string(), "auth needs at least one of basic, api_key, jwt, forward or client_cert");
    }
    let ban = match &a.ban_after {
        None => {
            for (key, v) in [("ban_for", &a.ban_for), ("ban_window", &a.ban_window)] {
                if let Some(v) = v {
                    cx.err_at(v, format!("{at}.{key}"), "needs ban_after (the failed logins that ban)");
                }
            }
            None
        }
        Some(v) => {
            let after = cx.count(Some(v), &format!("{at}.ban_after"), 1, 1_000_000).max(1) as u32;
            let window = cx.timeout(a.ban_window.as_ref(), &format!("{at}.ban_window"), Duration::from_secs(600));
            let duration = cx.timeout(a.ban_for.as_ref(), &format!("{at}.ban_for"), Duration::from_secs(3600));
            Some(BanRule { after, window, duration })
        }
    };
    let user_header = header_name(cx, a.user_header.as_ref(), &format!("{at}.user_header"))
        .unwrap_or(HeaderName::from_static("x-auth-user"));
    Some(Auth { realm, basic, api_keys, jwt, forward, client_cert, ban, user_header })
}

fn forward(cx: &mut Ctx<'_>, f: &raw::ForwardAuth, at: &str) -> Option<ForwardAuth> {
    let url = f.url.value.trim();
    let uri = match http::Uri::from_str(url) {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
        _ => {
            cx.err_at(&f.url, format!("{at}.url"), format!("expected an http:// or https:// URL, got {url:?}"));
            return None;
        }
    };
    let mut copy_headers = Vec::new();
    for (i, h) in f.copy_headers.iter().flatten().enumerate() {
        if let Some(name) = header_name(cx, Some(h), &format!("{at}.copy_headers[{i}]")) {
            copy_headers.push(name);
        }
    }
    let timeout = cx.timeout(f.timeout.as_ref(), &format!("{at}.timeout"), Duration::from_secs(5));
    Some(ForwardAuth { url: uri, copy_headers, timeout })
}

fn header_name(cx: &mut Ctx<'_>, v: Option<&S<String>>, at: &str) -> Option<HeaderName> {
    let v = v?;
    HeaderName::from_str(v.value.trim())
        .map_err(|_| cx.err_at(v, at.to_string(), format!("invalid header name {:?}", v.value)))
        .ok()
}

/// A basic-auth user: a name without `:` and an argon2 (PHC) or bcrypt hash.
fn user(name: &str, hash: &str) -> Result<BasicUser, String> {
    let name = name.trim();
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
        return Err(format!("invalid user name {name:?} (no `:` or control characters)"));
    }
    let hash = hash.trim();
    let argon2 = Regex::new(r"^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$");
    let bcrypt = Regex::new(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$");
    let ok = [argon2, bcrypt].into_iter().flatten().any(|r| r.is_match(hash));
    if !ok {
        return Err(format!(
            "the password of {name:?} must be an argon2 or bcrypt hash (make one with `gatehouse hash-password`), not the password itself"
        ));
    }
    Ok(BasicUser { name: name.to_string(), hash: hash.to_string() })
}

fn api_keys(cx: &mut Ctx<'_>, k: &raw::ApiKeyAuth, at: &str) -> ApiKeys {
    let query = k.query.as_ref().map(|q| q.value.trim().to_string());
    let header = header_name(cx, k.header.as_ref(), &format!("{at}.header"))
        .or_else(|| query.is_none().then(|| HeaderName::from_static("x-api-key")));
    let mut keys = Vec::new();
    for (name, digest) in &k.keys {
        let hex = digest.value.trim().strip_prefix("sha256:").unwrap_or("");
        let mut out = [0u8; 32];
        let ok = hex.len() == 64
            && out.iter_mut().enumerate().all(|(i, b)| match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
                Ok(v) => {
                    *b = v;
                    true
                }
                Err(_) => false,
            });
        if ok {
            keys.push((name.clone(), out));
        } else {
            cx.err_at(
                digest,
                format!("{at}.keys.{name}"),
                "expected sha256: and 64 hex digits, the key's digest (`gatehouse hash-password --api-key`), not the key itself",
            );
        }
    }
    if keys.is_empty() && k.keys.is_empty() {
        cx.err(None, format!("{at}.keys"), "api_key needs at least one key");
    }
    ApiKeys { header, query, keys }
}

fn jwt(cx: &mut Ctx<'_>, base: &Path, j: &raw::JwtAuth, at: &str) -> Option<Jwt> {
    use jsonwebtoken::{Algorithm, DecodingKey};
    let mut keys = Vec::new();
    for (i, k) in j.keys.iter().flatten().enumerate() {
        let here = format!("{at}.keys[{i}]");
        let Ok(alg) = Algorithm::from_str(k.alg.value.trim()) else {
            cx.err_at(
                &k.alg,
                format!("{here}.alg"),
                format!("unknown algorithm {:?}; expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA", k.alg.value),
            );
            continue;
        };
        let read = |cx: &mut Ctx<'_>, f: &S<String>, key: &str| -> Option<Vec<u8>> {
            let path = base.join(f.value.trim());
            std::fs::read(&path)
                .map_err(|e| cx.err_at(f, format!("{here}.{key}"), format!("cannot read {}: {e}", path.display())))
                .ok()
        };
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        let key = if hmac {
            let secret = match (&k.secret, &k.secret_file) {
                (Some(s), None) => cx.secret(base, Some(s), None, &format!("{here}.secret")).map(String::into_bytes),
                (None, Some(f)) => read(cx, f, "secret_file").map(|mut b| {
                    // A trailing newline from an editor is not part of the secret.
                    while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                        b.pop();
                    }
                    b
                }),
                _ => {
                    cx.err_at(&k.alg, here.clone(), format!("{} needs one of secret or secret_file", k.alg.value));
                    None
                }
            };
            match secret {
                Some(s) if s.len() < 32 => {
                    cx.err_at(&k.alg, here.clone(), "an HMAC secret must be at least 32 bytes");
                    None
                }
                Some(s) => DecodingKey::from_secret(&s).ok(),
                None => None,
            }
        } else {
            let pem = match (&k.file, &k.pem) {
                (Some(f), None) => read(cx, f, "file"),
                (None, Some(p)) => Some(p.value.as_bytes().to_vec()),
                _ => {
                    cx.err_at(&k.alg, here.clone(), format!("{} needs one of file or pem (a public key)", k.alg.value));
                    None
                }
            };
            pem.and_then(|pem| {
                let parsed = match alg {
                    Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem),
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                };
                parsed
                    .map_err(|e| cx.err_at(&k.alg, here.clone(), format!("not a {} public key: {e}", k.alg.value)))
                    .ok()
            })
        };
        if let Some(key) = key {
            keys.push(JwtKey { kid: k.kid.as_ref().map(|v| v.value.trim().to_string()), alg, key });
        }
    }
    let jwks_url = j.jwks_url.as_ref().and_then(|u| {
        let url = u.value.trim();
        // Keys fetched in clear could be swapped on the way: plain HTTP only to this host.
        let local = http::Uri::from_str(url).ok().and_then(|u| u.host().map(str::to_string)).is_some_and(|h| {
            h == "localhost" || h.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        });
        if url.starts_with("https://") || url.starts_with("http://") && local {
            Some(url.to_string())
        } else {
            cx.err_at(u, format!("{at}.jwks_url"), "expected an https:// URL (http:// only to a loopback address)");
            None
        }
    });
    if j.keys.as_ref().is_none_or(|k| k.is_empty()) && j.jwks_url.is_none() {
        cx.err(None, at.to_string(), "jwt needs keys or jwks_url");
    }
    let jwks_refresh = cx.timeout(j.jwks_refresh.as_ref(), &format!("{at}.jwks_refresh"), Duration::from_secs(600));
    let leeway = cx.duration(j.leeway.as_ref(), &format!("{at}.leeway"), Duration::from_secs(30));
    let mut claims = Vec::new();
    for (claim, h) in j.claims.iter().flatten() {
        if let Some(name) = header_name(cx, Some(h), &format!("{at}.claims.{claim}")) {
            claims.push((claim.clone(), name));
        }
    }
    Some(Jwt {
        keys,
        jwks_url,
        jwks_refresh,
        issuer: j.issuer.as_ref().map(|v| v.value.trim().to_string()),
        audience: j.audience.as_ref().map(|v| v.value.trim().to_string()),
        leeway,
        claims,
        cookie: j.cookie.as_ref().map(|v| v.value.trim().to_string()),
    })
}

/// `options.failed_logins`.
pub(super) fn failed_logins(cx: &mut Ctx<'_>, f: &raw::FailedLogins, at: &str) -> Option<FailedLogins> {
    let mut paths = Vec::new();
    for (i, p) in f.paths.iter().flatten().enumerate() {
        let path = p.value.trim();
        if !path.starts_with('/') {
            cx.err_at(p, format!("{at}.paths[{i}]"), "expected a path starting with / (`/login`, `/auth/*`)");
            continue;
        }
        paths.push(path.strip_suffix('*').unwrap_or(path).to_string());
    }
    let mut statuses = Vec::new();
    for (i, s) in f.statuses.iter().flatten().enumerate() {
        match s.value.trim().parse::<u16>() {
            Ok(code) if (400..=599).contains(&code) => statuses.push(code),
            _ => cx.err_at(
                s,
                format!("{at}.statuses[{i}]"),
                format!("expected an error status (400 to 599), got {:?}", s.value),
            ),
        }
    }
    if statuses.is_empty() {
        statuses = vec![401, 403];
    }
    let after = cx.count(Some(&f.ban_after), &format!("{at}.ban_after"), 1, 1_000_000).max(1) as u32;
    let window = cx.timeout(f.ban_window.as_ref(), &format!("{at}.ban_window"), Duration::from_secs(600));
    let duration = cx.timeout(f.ban_for.as_ref(), &format!("{at}.ban_for"), Duration::from_secs(3600));
    Some(FailedLogins { paths, statuses, ban: BanRule { after, window, duration } })
}
