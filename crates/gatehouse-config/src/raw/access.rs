//! The access-policy keys as written, under `options` (or `defaults`): `cors`, `ip`,
//! `user_agent`, `referer` and `csrf`. Shapes only: every value is checked, and every
//! error placed, in `load::access`.
//!
//! Each has `enabled` (default true), so a route can turn off a policy its site sets. A
//! list written empty (`allow: []`) is the same as no list.

use serde::Deserialize;

use super::S;

/// `cors`.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    pub enabled: Option<S<String>>,
    /// `https://app.example.com`, `https://*.example.com` (subdomains), or `*` (any).
    pub origins: Option<Vec<S<String>>>,
    /// Default GET, HEAD, POST.
    pub methods: Option<Vec<S<String>>>,
    /// Request headers allowed beyond the CORS-safelisted ones.
    pub headers: Option<Vec<S<String>>>,
    pub expose_headers: Option<Vec<S<String>>>,
    pub credentials: Option<S<String>>,
    /// `10m`: how long a browser may cache a preflight's answer.
    pub max_age: Option<S<String>>,
}

/// `ip`.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct IpRules {
    pub enabled: Option<S<String>>,
    /// Addresses and CIDR ranges; when given, only these.
    pub allow: Option<Vec<S<String>>>,
    /// Checked first: deny wins.
    pub deny: Option<Vec<S<String>>>,
}

/// `user_agent` and `referer`: the same shape, patterns read differently.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    pub enabled: Option<S<String>>,
    /// When given, only these.
    pub allow: Option<Vec<S<String>>>,
    /// Checked first: deny wins.
    pub deny: Option<Vec<S<String>>>,
    /// `allow` (default) or `deny`: a request without the header, or with it empty.
    pub empty: Option<S<String>>,
}

/// `csrf`.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Csrf {
    pub enabled: Option<S<String>>,
    /// Trusted origins besides the request's own.
    pub origins: Option<Vec<S<String>>>,
    /// `{cookie: csrf_token, header: X-CSRF-Token}`: the double-submit check.
    pub token: Option<CsrfToken>,
    /// Path prefixes not checked (`/api/webhooks/`).
    pub exempt: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CsrfToken {
    pub cookie: S<String>,
    pub header: S<String>,
}

/// `geo`: countries (ISO 3166-1 alpha-2) by the main file's GeoIP database.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct GeoRules {
    pub enabled: Option<S<String>>,
    /// When given, only these countries.
    pub allow: Option<Vec<S<String>>>,
    /// Checked first: deny wins.
    pub deny: Option<Vec<S<String>>>,
    /// `allow` (default) or `deny`: a client the database places in no country.
    pub unknown: Option<S<String>>,
}

/// The main file's `geoip`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct GeoIp {
    /// A MaxMind DB file (GeoLite2-Country, GeoIP2-City…); read again when it changes.
    pub database: S<String>,
}
