//! The `auth` keys as written.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::S;

/// `options.auth`: who may use a route.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The realm named in `WWW-Authenticate`.
    pub realm: Option<S<String>>,
    pub basic: Option<BasicAuth>,
    pub api_key: Option<ApiKeyAuth>,
    pub jwt: Option<JwtAuth>,
    /// Ask an authentication service (Authelia, Authentik, oauth2-proxy) about each request.
    pub forward: Option<ForwardAuth>,
    /// A client certificate verified against the site's `tls.client_ca` (mTLS).
    pub client_cert: Option<ClientCert>,
    /// Failed logins (wrong credentials) within `ban_window` that ban the address.
    pub ban_after: Option<S<String>>,
    pub ban_for: Option<S<String>>,
    pub ban_window: Option<S<String>>,
    /// The header that tells the backend who logged in (default `X-Auth-User`).
    pub user_header: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// name -> argon2 or bcrypt hash (`gatehouse hash-password`).
    pub users: Option<BTreeMap<String, S<String>>>,
    /// `name:hash` lines (htpasswd's layout, with argon2 or bcrypt hashes).
    pub users_file: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// The header carrying the key (default `X-Api-Key` unless `query` is given).
    pub header: Option<S<String>>,
    /// The query parameter carrying the key.
    pub query: Option<S<String>>,
    /// name -> `sha256:HEX` of the key (`gatehouse hash-password --api-key`).
    pub keys: BTreeMap<String, S<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClientCert {
    /// The header that carries the certificate's subject to the backend (default
    /// `X-Client-Subject`).
    pub header: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuth {
    /// `http://127.0.0.1:9091/api/authz/forward-auth`.
    pub url: S<String>,
    /// Headers of the service's 2xx answer sent on to the backend (`Remote-User`…).
    pub copy_headers: Option<Vec<S<String>>>,
    /// Default 5s.
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    pub keys: Option<Vec<JwtKey>>,
    pub jwks_url: Option<S<String>>,
    /// How often the JWKS is fetched again (default 10m); an unknown `kid` fetches it
    /// sooner (at most every 30 s).
    pub jwks_refresh: Option<S<String>>,
    pub issuer: Option<S<String>>,
    pub audience: Option<S<String>>,
    /// Clock skew allowed on `exp` and `nbf` (default 30s).
    pub leeway: Option<S<String>>,
    /// claim -> header sent to the backend.
    pub claims: Option<BTreeMap<String, S<String>>>,
    /// Read the token from this cookie when there is no `Authorization: Bearer`.
    pub cookie: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// The one algorithm this key verifies: HS256/384/512, RS256/384/512, PS256/384/512,
    /// ES256/384, EdDSA.
    pub alg: S<String>,
    pub kid: Option<S<String>>,
    /// An HMAC secret (HS*).
    pub secret: Option<S<String>>,
    pub secret_file: Option<S<String>>,
    /// A PEM public key file (RS*, PS*, ES*, EdDSA).
    pub file: Option<S<String>>,
    /// A PEM public key written in place.
    pub pem: Option<S<String>>,
}

/// `options.failed_logins`: the application's own answers on its login paths counted as
/// failed logins (fail2ban's job, for logins the proxy never sees).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FailedLogins {
    /// Path prefixes (`/login`, `/api/auth/*`); default: every path of the route.
    pub paths: Option<Vec<S<String>>>,
    /// Default 401 and 403.
    pub statuses: Option<Vec<S<String>>>,
    pub ban_after: S<String>,
    pub ban_for: Option<S<String>>,
    pub ban_window: Option<S<String>>,
}
