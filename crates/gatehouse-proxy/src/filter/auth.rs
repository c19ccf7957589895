//! A route's authentication (`options.auth`): basic users, API keys and JWTs; a request
//! passes when any configured method accepts what it presents.
//!
//! - **Basic**: argon2 or bcrypt hashes. Verifying one costs milliseconds by design, so it
//!   runs on the blocking pool, a few at a time (`VERIFIERS`), and credentials that passed
//!   are remembered for `CACHE_FOR` (by a salted digest, never in clear).
//! - **API keys**: the SHA-256 of the presented key against the configured digests, in
//!   constant time.
//! - **Client certificates** (mTLS): verified in the handshake against the site's
//!   `tls.client_ca`; the subject goes to the backend (`client_cert` header), the common
//!   name is the user.
//! - **JWT**: `Authorization: Bearer` (or a cookie); the key is chosen by `kid` and must be
//!   pinned to the token's algorithm (an HS256 token never meets an RSA key); `exp` is
//!   required, `nbf`, `iss` and `aud` checked with the configured leeway. Keys come from
//!   the configuration and from the route's JWKS (fetched by the binary into
//!   `state::Shared::jwks`; a token naming an unknown `kid` asks for a fetch).
//!
//! The backend learns who logged in from `user_header` (and JWT claims from their
//! headers); the client's own values of those headers are removed first, always. Missing
//! credentials answer 401 with `WWW-Authenticate`; wrong ones too, and count as failed
//! logins towards a ban (`ban_after`).
//!
//! Runs after the request filters (it may wait on the blocking pool), before the body
//! filters and the action. Must not log secrets: only user names, key names and reasons.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gatehouse_config::{Auth as Config, JwtKey};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use jsonwebtoken::{Validation, decode, decode_header};

use super::Verdict;
use crate::body::Inbound;
use crate::pipeline::Ctx;
use crate::security::limit::now_ns;

/// How long credentials that passed a password hash are taken without hashing again.
const CACHE_FOR: Duration = Duration::from_secs(300);
/// Remembered credentials per route at most (a flood of logins cannot grow it further).
const CACHE_MAX: usize = 10_000;
/// Hash verifications running at once in the process: half the cores (at least one), so a
/// flood of logins leaves the workers a core; the rest wait their turn.
/// A permit moves into the blocking task, so a client that leaves mid-check (an HTTP/2
/// reset) does not free it while the hash still runs.
static VERIFIERS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    Arc::new(tokio::sync::Semaphore::new((cores / 2).max(1)))
});
/// Verifications waiting at most: beyond it a login is refused at once (a flood of wrong
/// passwords must not queue real users behind it for minutes).
const MAX_WAITING: usize = 64;
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One verification waiting for its turn; counted until dropped (also when the client
/// leaves while it waits).
struct Waiting;

impl Waiting {
    fn join() -> Option<Waiting> {
        use std::sync::atomic::Ordering;
        if WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
            WAITING.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Waiting)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the request presented, and what came of it.
enum Outcome {
    Pass {
        user: String,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// No credentials for any configured method.
    Missing,
    /// Too many logins are being checked: 503, not counted as a failure.
    Busy,
    /// Wrong credentials: `method` (`basic`, `api_key`, `jwt`) and why.
    Failed {
        method: &'static str,
        reason: String,
    },
}

pub struct Auth {
    config: Arc<Config>,
    forward: Option<super::forward_auth::Forward>,
    /// Salted digests of basic credentials that verified, with when they stop counting.
    cache: Mutex<HashMap<[u8; 32], u64>>,
    salt: [u8; 16],
}

impl Auth {
    pub fn new(config: Arc<Config>) -> Self {
        let mut salt = [0u8; 16];
        // Without randomness the cache still works; its digests are just unsalted.
        let _ = aws_lc_rs::rand::fill(&mut salt);
        let forward = config.forward.clone().map(super::forward_auth::Forward::new);
        Auth { config, forward, cache: Mutex::new(HashMap::new()), salt }
    }

    /// Checks the request's credentials; on success it goes on with the user's headers.
    /// `path` is the normalised path the request was routed by.
    pub async fn check(&self, cx: &mut Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        // What the backend will take as the proxy's word must not come from the client.
        let h = req.headers_mut();
        drop_identity(h, &self.config.user_header);
        for (_, name) in self.config.jwt.iter().flat_map(|j| &j.claims) {
            drop_identity(h, name);
        }
        if let Some(name) = &self.config.client_cert {
            drop_identity(h, name);
        }
        if let Some(forward) = &self.forward {
            for name in forward.copied() {
                drop_identity(h, name);
            }
            return self.forwarded(cx, forward, req, path).await;
        }
        let shared = cx.state.shared.clone();
        // A certificate counts only on the site whose CAs verified it: a client cannot
        // shake hands for one site and send its requests to another.
        let client_cert = cx
            .conn
            .tls
            .as_ref()
            .and_then(|t| t.client.clone())
            .filter(|c| cx.route.is_some_and(|r| *r.site == *c.site))
            .map(|c| (c.subject, c.cn));
        match self.outcome(&shared, req.headers(), req.uri(), client_cert).await {
            Outcome::Pass { user, headers } => {
                let h = req.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&user) {
                    h.insert(self.config.user_header.clone(), v);
                }
                for (name, value) in headers {
                    h.insert(name, value);
                }
                Verdict::Continue
            }
            Outcome::Missing => {
                cx.answered_by("auth_required", "missing", "no credentials".into());
                Verdict::Respond(self.challenge(cx, req.headers(), None))
            }
            Outcome::Busy => {
                cx.answered_by("auth_unavailable", "basic", "too many logins being checked".into());
                let mut r = super::refusal(
                    cx,
                    req.headers(),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many logins at once; try again.",
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Verdict::Respond(r)
            }
            Outcome::Failed { method, reason } => {
                let route = cx.route.map_or("", |r| r.route.id.as_str());
                tracing::info!(target: "gatehouse::auth", client = %cx.client, route, method, %reason, "login failed");
                if let Some(rule) = &self.config.ban {
                    let shared = &cx.state.shared;
                    shared.failed_logins.count(&shared.bans, cx.client, rule, route);
                }
                cx.answered_by("auth_failed", method, format!("{method}: {reason}"));
                Verdict::Respond(self.challenge(cx, req.headers(), Some(method)))
            }
        }
    }

    /// Asks the forward-auth service; its refusal is the answer.
    async fn forwarded(
        &self,
        cx: &mut Ctx<'_>,
        forward: &super::forward_auth::Forward,
        req: &mut Request<Inbound>,
        path: &str,
    ) -> Verdict {
        use super::forward_auth::{Answer, Asked};
        let asked = Asked {
            method: req.method(),
            path,
            query: req.uri().query(),
            headers: req.headers(),
            client: cx.client,
            tls: cx.conn.tls.is_some(),
            host: cx.host,
        };
        match forward.ask(asked).await {
            Answer::Pass(fields) => {
                let h = req.headers_mut();
                for (name, value) in fields {
                    h.insert(name, value);
                }
                Verdict::Continue
            }
            Answer::Refuse(r) => {
                let status = r.status().as_u16();
                // Wrong credentials presented (not a first visit without a session).
                let presented = req.headers().contains_key(header::AUTHORIZATION);
                if presented
                    && matches!(status, 401 | 403)
                    && let Some(rule) = &self.config.ban
                {
                    let route = cx.route.map_or("", |r| r.route.id.as_str());
                    let shared = &cx.state.shared;
                    shared.failed_logins.count(&shared.bans, cx.client, rule, route);
                }
                let kind = if presented && matches!(status, 401 | 403) { "auth_failed" } else { "auth_required" };
                cx.answered_by(kind, "forward", format!("the auth service answered {status}"));
                Verdict::Respond(r)
            }
            Answer::Unreachable(e) => {
                tracing::warn!(target: "gatehouse::auth", error = %e, "forward auth service not reachable");
                cx.answered_by("auth_unavailable", "forward", format!("auth service: {e}"));
                Verdict::Respond(super::refusal(
                    cx,
                    req.headers(),
                    StatusCode::BAD_GATEWAY,
                    "The authentication service is not reachable.",
                ))
            }
        }
    }

    /// 401 with a challenge for each method a browser or client can answer.
    fn challenge(
        &self,
        cx: &Ctx<'_>,
        headers: &http::HeaderMap,
        failed: Option<&str>,
    ) -> http::Response<crate::body::Outgoing> {
        let mut r = super::refusal(cx, headers, StatusCode::UNAUTHORIZED, "Authentication is required.");
        let realm = &self.config.realm;
        if !self.config.basic.is_empty()
            && let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
        {
            r.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
        if self.config.jwt.is_some() {
            let error = if failed == Some("jwt") { ", error=\"invalid_token\"" } else { "" };
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"{error}")) {
                r.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }

    /// Takes the head's parts, not the request: its body is not `Sync`, and this waits.
    async fn outcome(
        &self,
        shared: &crate::state::Shared,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        client_cert: Option<(String, Option<String>)>,
    ) -> Outcome {
        // A certificate verified in the handshake against the site's client CAs.
        if let (Some(header), Some((subject, cn))) = (&self.config.client_cert, client_cert)
            && let Ok(v) = HeaderValue::from_str(&subject)
        {
            return Outcome::Pass { user: cn.unwrap_or_else(|| subject.clone()), headers: vec![(header.clone(), v)] };
        }
        let mut failed = None;
        // Two credentials of one kind: which one would the backend read? Refused.
        let repeated = |name: &HeaderName| headers.get_all(name).iter().nth(1).is_some();
        if repeated(&header::AUTHORIZATION)
            || self.config.api_keys.as_ref().and_then(|k| k.header.as_ref()).is_some_and(repeated)
        {
            return Outcome::Failed { method: "repeated", reason: "more than one credential field".into() };
        }
        let authz = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        if let Some(keys) = &self.config.api_keys {
            let presented = keys
                .header
                .as_ref()
                .and_then(|h| headers.get(h))
                .map(|v| v.as_bytes().to_vec())
                .or_else(|| keys.query.as_ref().and_then(|q| query_value(uri.query()?, q)));
            if let Some(key) = presented {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key);
                // Every digest is compared, so the time does not tell which one was close.
                let mut found = None;
                for (name, d) in &keys.keys {
                    if aws_lc_rs::constant_time::verify_slices_are_equal(d, digest.as_ref()).is_ok() {
                        found = Some(name);
                    }
                }
                match found {
                    Some(name) => return Outcome::Pass { user: name.clone(), headers: Vec::new() },
                    None => failed = Some(("api_key", "unknown key".to_string())),
                }
            }
        }
        if let Some(jwt) = &self.config.jwt {
            let token = authz
                .and_then(|v| strip_scheme(v, b"bearer"))
                .map(|t| String::from_utf8_lossy(t).trim().to_string())
                .or_else(|| jwt.cookie.as_ref().and_then(|c| cookie(headers, c)));
            if let Some(token) = token {
                match self.jwt(shared, jwt, &token) {
                    Ok(pass) => return pass,
                    Err(reason) => failed = Some(("jwt", reason)),
                }
            }
        }
        if !self.config.basic.is_empty()
            && let Some(creds) = authz.and_then(|v| strip_scheme(v, b"basic"))
        {
            match self.basic(creds).await {
                Ok(user) => return Outcome::Pass { user, headers: Vec::new() },
                Err(None) => return Outcome::Busy,
                Err(Some(reason)) => failed = Some(("basic", reason)),
            }
        }
        match failed {
            Some((method, reason)) => Outcome::Failed { method, reason },
            None => Outcome::Missing,
        }
    }

    fn jwt(&self, shared: &crate::state::Shared, jwt: &gatehouse_config::Jwt, token: &str) -> Result<Outcome, String> {
        let head = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let fetched = jwt.jwks_url.as_ref().and_then(|u| shared.jwks.load().get(u).cloned());
        let fits = |k: &&JwtKey| {
            k.alg == head.alg
                && match (&head.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        };
        let candidates: Vec<&JwtKey> =
            jwt.keys.iter().chain(fetched.iter().flat_map(|k| k.iter())).filter(fits).collect();
        if candidates.is_empty() {
            if jwt.jwks_url.is_some() {
                shared.jwks_wanted.notify_one();
            }
            return Err(format!("no key for algorithm {:?} and kid {:?}", head.alg, head.kid.as_deref().unwrap_or("")));
        }
        let mut v = Validation::new(head.alg);
        v.leeway = jwt.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        match &jwt.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &jwt.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let mut last = String::new();
        for k in candidates {
            match decode::<serde_json::Value>(token, &k.key, &v) {
                Ok(data) => {
                    let claims = data.claims;
                    let user = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("").to_string();
                    let headers = jwt
                        .claims
                        .iter()
                        .filter_map(|(claim, name)| {
                            let text = match claims.get(claim)? {
                                serde_json::Value::String(s) => s.clone(),
                                serde_json::Value::Array(items) => {
                                    items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(",")
                                }
                                serde_json::Value::Object(_) | serde_json::Value::Null => return None,
                                other => other.to_string(),
                            };
                            Some((name.clone(), HeaderValue::from_str(&text).ok()?))
                        })
                        .collect();
                    return Ok(Outcome::Pass { user, headers });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// `user:password` in base64, checked against the user's hash (cached when it passed).
    /// `Err(None)`: too many checks waiting; `Err(Some(why))`: refused.
    async fn basic(&self, creds: &[u8]) -> Result<String, Option<String>> {
        let malformed = || Some("malformed basic credentials".to_string());
        let decoded = base64_decode(creds).ok_or_else(malformed)?;
        let colon = decoded.iter().position(|&c| c == b':').ok_or_else(malformed)?;
        let (name, password) = (String::from_utf8_lossy(&decoded[..colon]).into_owned(), &decoded[colon + 1..]);
        // An unknown user costs the same hash as a known one: the time of the answer does
        // not tell which names exist.
        static UNKNOWN: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| crate::security::password::hash(b"no such user").unwrap_or_default());
        let user = self.config.basic.iter().find(|u| u.name == name);
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(&decoded);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ctx.finish().as_ref());
        let now = now_ns();
        if self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&digest).is_some_and(|until| *until > now) {
            return Ok(name);
        }
        let ok = {
            let Some(waiting) = Waiting::join() else { return Err(None) };
            let permit = VERIFIERS.clone().acquire_owned().await;
            drop(waiting);
            let Ok(permit) = permit else { return Err(None) };
            let hash = user.map(|u| u.hash.clone());
            let password = password.to_vec();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                // On the blocking pool: the first unknown user makes the stand-in hash here.
                let hash = hash.unwrap_or_else(|| UNKNOWN.clone());
                crate::security::password::verify(&hash, &password)
            })
            .await
            .unwrap_or(false)
        };
        if user.is_none() {
            return Err(Some(format!("unknown user {name:?}")));
        }
        if !ok {
            return Err(Some(format!("wrong password for {name:?}")));
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, until| *until > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, now + CACHE_FOR.as_nanos() as u64);
        Ok(name)
    }
}

/// Removes a field the backend takes as the proxy's word, and its underscore spellings
/// (`X_Auth_User`), which CGI-style backends read as the same field.
fn drop_identity(h: &mut http::HeaderMap, name: &HeaderName) {
    h.remove(name);
    if !h.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let same: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().contains('_') && k.as_str().replace('_', "-") == name.as_str())
        .cloned()
        .collect();
    for k in same {
        h.remove(k);
    }
}

/// The credentials after `scheme` (case-insensitive) and a space.
fn strip_scheme<'a>(v: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let rest = v.get(scheme.len()..)?;
    (v[..scheme.len()].eq_ignore_ascii_case(scheme) && rest.first() == Some(&b' ')).then(|| rest[1..].trim_ascii())
}

fn query_value(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| crate::security::waf::percent_decode(v.as_bytes(), true))
    })
}

fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().find_map(|v| {
        v.to_str().ok()?.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    })
}

/// Standard base64 (padding optional); `None` on anything else.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in input.iter().take_while(|&&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_parsed() {
        assert_eq!(base64_decode(b"YWxpY2U6czNjcmV0").as_deref(), Some(&b"alice:s3cret"[..]));
        assert_eq!(base64_decode(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode(b"a b"), None);
        assert_eq!(strip_scheme(b"Basic YQ==", b"basic"), Some(&b"YQ=="[..]));
        assert_eq!(strip_scheme(b"Bearer  x.y.z ", b"bearer"), Some(&b"x.y.z"[..]));
        assert_eq!(strip_scheme(b"Basically", b"basic"), None);
        assert_eq!(query_value("a=1&api_key=k%2B1", "api_key").as_deref(), Some(&b"k+1"[..]));
    }
}
