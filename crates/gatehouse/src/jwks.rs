//! JWKS for `auth.jwt.jwks_url`: each URL the running configuration names is fetched at
//! start, again every `jwks_refresh`, and sooner (at most every `EARLY_EVERY`) when a token
//! names a key no set has, which is how a provider's key rotation shows up. The keys go to
//! `state::Shared::jwks`, where the auth filter looks them up; a failed fetch keeps the
//! keys it had. Runs on the control runtime, never on a worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::JwtKey;
use gatehouse_proxy::StateHandle;
use http_body_util::BodyExt;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The soonest a set is fetched again because of an unknown key.
const EARLY_EVERY: Duration = Duration::from_secs(30);
/// A JWKS larger than this is refused (a set is a few KiB).
const MAX_BODY: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches the sets the configuration names, for the life of the process.
pub async fn run(state: StateHandle) {
    // Made when a first set is due: a configuration without `jwks_url` reads no roots.
    let mut client: Option<crate::outbound::Client> = None;
    // URL -> when it was fetched last.
    let mut fetched: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut wanted = false;
    loop {
        let live = state.load();
        let urls: HashMap<String, Duration> = live
            .config
            .sites
            .iter()
            .flat_map(|s| &s.routes)
            .filter_map(|r| r.options.auth.as_ref()?.jwt.as_ref())
            .filter_map(|j| Some((j.jwks_url.clone()?, j.jwks_refresh)))
            .collect();
        let now = tokio::time::Instant::now();
        for (url, refresh) in &urls {
            let due = match fetched.get(url) {
                None => true,
                Some(at) => now >= *at + *refresh || wanted && now >= *at + EARLY_EVERY,
            };
            if !due {
                continue;
            }
            fetched.insert(url.clone(), now);
            if client.is_none() {
                client = crate::outbound::client();
            }
            let Some(client) = &client else { continue };
            match fetch(client, url).await {
                Ok(keys) => {
                    tracing::info!(host = %crate::outbound::host(url), keys = keys.len(), "JWKS fetched");
                    let keys: Arc<[JwtKey]> = keys.into();
                    live.shared.jwks.rcu(|old| {
                        let mut m = HashMap::clone(old);
                        m.insert(url.clone(), keys.clone());
                        m
                    });
                }
                Err(e) => {
                    tracing::warn!(host = %crate::outbound::host(url), error = %e, "JWKS not fetched; the keys fetched before stay")
                }
            }
        }
        // Sets no route names any more go.
        fetched.retain(|u, _| urls.contains_key(u));
        if live.shared.jwks.load().keys().any(|u| !urls.contains_key(u)) {
            live.shared.jwks.rcu(|old| {
                old.iter()
                    .filter(|(u, _)| urls.contains_key(*u))
                    .map(|(u, k)| (u.clone(), k.clone()))
                    .collect::<HashMap<_, _>>()
            });
        }
        wanted = false;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = live.shared.jwks_wanted.notified() => wanted = true,
        }
    }
}

async fn fetch(client: &crate::outbound::Client, url: &str) -> Result<Vec<JwtKey>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let req = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let body = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY);
        body.collect().await.map(|b| b.to_bytes()).map_err(|e| e.to_string())
    };
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, body).await.map_err(|_| "timed out".to_string())??;
    let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            // The key's algorithm: as the set states it, else the one its curve or type
            // allows (RSA keys without `alg`: RS256).
            let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(a), _) => key_algorithm(*a)?,
                (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => return None,
                },
                (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                // Symmetric keys are never taken from a URL.
                _ => return None,
            };
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return None;
            }
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(JwtKey { kid: jwk.common.key_id.clone(), alg, key })
        })
        .collect())
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
