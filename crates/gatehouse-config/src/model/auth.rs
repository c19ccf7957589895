//! The validated `auth` settings: basic users, API keys and JWT keys, ready to check.

use std::time::Duration;

use http::HeaderName;

use super::BanRule;

/// `options.auth`: a request passes when any configured method accepts it.
#[derive(Clone)]
pub struct Auth {
    pub realm: String,
    pub basic: Vec<BasicUser>,
    pub api_keys: Option<ApiKeys>,
    pub jwt: Option<Jwt>,
    pub forward: Option<ForwardAuth>,
    /// A verified client certificate passes; its subject goes to the backend in this
    /// header (mTLS, with the site's `tls.client_ca`).
    pub client_cert: Option<HeaderName>,
    /// Failed logins that ban the address.
    pub ban: Option<BanRule>,
    pub user_header: HeaderName,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes or keys.
        f.debug_struct("Auth")
            .field("realm", &self.realm)
            .field("basic_users", &self.basic.len())
            .field("api_keys", &self.api_keys.as_ref().map(|k| k.keys.len()))
            .field("jwt_keys", &self.jwt.as_ref().map(|j| j.keys.len()))
            .finish()
    }
}

/// A basic-auth user and the PHC (argon2) or modular-crypt (bcrypt) hash of the password.
#[derive(Clone)]
pub struct BasicUser {
    pub name: String,
    pub hash: String,
}

#[derive(Clone)]
pub struct ApiKeys {
    pub header: Option<HeaderName>,
    pub query: Option<String>,
    /// name -> SHA-256 of the key.
    pub keys: Vec<(String, [u8; 32])>,
}

/// `auth.forward`: a service that answers, for each request, 2xx (go on) or what the client
/// gets instead (a redirect to a login page, 401…).
#[derive(Debug, Clone)]
pub struct ForwardAuth {
    pub url: http::Uri,
    pub copy_headers: Vec<HeaderName>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Jwt {
    pub keys: Vec<JwtKey>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
    /// claim -> header for the backend.
    pub claims: Vec<(String, HeaderName)>,
    pub cookie: Option<String>,
}

/// A verification key pinned to one algorithm.
#[derive(Clone)]
pub struct JwtKey {
    pub kid: Option<String>,
    pub alg: jsonwebtoken::Algorithm,
    pub key: jsonwebtoken::DecodingKey,
}

/// `options.failed_logins`: answers with one of `statuses` to a path under one of `paths`
/// count as failed logins of the client towards `ban`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLogins {
    pub paths: Vec<String>,
    pub statuses: Vec<u16>,
    pub ban: BanRule,
}
