//! What keeps personal data out of the database: client addresses masked (and hashed with
//! the database's key, for subject requests), and secrets in query strings redacted.

use std::net::IpAddr;

/// How a client address is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MaskIp {
    /// IPv4 without its last octet (`203.0.113.0`), IPv6 cut to its /64 (`2001:db8:1:2::`).
    #[default]
    LastOctet,
    /// The address as it is (only where the operator says so).
    Off,
    /// A keyed hash of the address under a salt that changes every day (UTC) and is never
    /// stored: `h:` and 16 hex digits. The same client has the same token within a day;
    /// tokens of different days cannot be linked.
    Hash,
}

/// The stored form of a client address.
pub fn mask_ip(ip: IpAddr, how: MaskIp) -> String {
    mask_addr(ip, how).to_string()
}

/// The client address with what `how` hides zeroed (IPv4-mapped IPv6 counts as IPv4).
/// `Hash` has no address form; it gives the last-octet one (never the whole address).
pub fn mask_addr(ip: IpAddr, how: MaskIp) -> IpAddr {
    match (how, ip.to_canonical()) {
        (MaskIp::Off, ip) => ip,
        (MaskIp::LastOctet | MaskIp::Hash, IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        (MaskIp::LastOctet | MaskIp::Hash, IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The daily salt of `MaskIp::Hash`, kept in memory only (a restart starts a new one).
pub struct RotatingSalt {
    state: std::sync::Mutex<(i64, Option<aws_lc_rs::hmac::Key>)>,
}

impl Default for RotatingSalt {
    fn default() -> Self {
        RotatingSalt { state: std::sync::Mutex::new((i64::MIN, None)) }
    }
}

impl RotatingSalt {
    fn today() -> i64 {
        crate::now_us().div_euclid(86_400_000_000)
    }

    /// The day (since the epoch, UTC) of the salt now in use.
    pub fn day(&self) -> i64 {
        Self::today()
    }

    /// `h:` and 16 hex digits for `ip` under today's salt; the last-octet form if no
    /// randomness is available for a new salt.
    pub fn token(&self, ip: IpAddr) -> String {
        let today = Self::today();
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0 != today {
            let mut bytes = [0u8; 32];
            state.1 = aws_lc_rs::rand::fill(&mut bytes)
                .ok()
                .map(|()| aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes));
            state.0 = today;
        }
        let Some(key) = &state.1 else { return mask_ip(ip, MaskIp::LastOctet) };
        let tag = aws_lc_rs::hmac::sign(key, ip.to_canonical().to_string().as_bytes());
        let mut out = String::from("h:");
        for b in &tag.as_ref()[..8] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// HMAC-SHA256 of the full address under the database's key.
pub(crate) fn client_key(key: &aws_lc_rs::hmac::Key, ip: IpAddr) -> Vec<u8> {
    let canonical = ip.to_canonical().to_string();
    aws_lc_rs::hmac::sign(key, canonical.as_bytes()).as_ref().to_vec()
}

/// Query parameter names that mark a secret: a name containing any of these (in any case)
/// has its value replaced.
const SECRET_NAMES: &[&str] = &["token", "key", "password", "secret", "auth", "session", "code", "signature"];

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// What is taken out of a stored path: the values of query parameters whose names contain
/// a secret word (the built-in list plus `secret_params`), and path segments that patterns
/// mark (`/reset/[TOKEN]` stores `/reset/abc/confirm` as `/reset/[TOKEN]/confirm`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    /// More words marking secret query parameters (lower case).
    pub secret_params: Vec<String>,
    pub paths: Vec<gatehouse_config::PathPattern>,
}

impl Redaction {
    /// `path` (with its query) as stored.
    pub fn apply<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        let (before, query) = match path.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (path, None),
        };
        let redacted = self.paths.iter().find_map(|p| p.apply(before));
        if redacted.is_none() && query.is_none() {
            return std::borrow::Cow::Borrowed(path);
        }
        let mut out = String::with_capacity(path.len());
        out.push_str(redacted.as_deref().unwrap_or(before));
        let Some(query) = query else { return std::borrow::Cow::Owned(out) };
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if is_secret(name) || self.secret_params.iter().any(|w| contains_word(name, w)) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
        std::borrow::Cow::Owned(out)
    }
}

/// The path with the values of secret query parameters replaced by `[REDACTED]` (the
/// built-in words only).
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    Redaction::default().apply(path)
}

fn contains_word(name: &str, word: &str) -> bool {
    name.as_bytes().windows(word.len()).any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

fn is_secret(name: &str) -> bool {
    SECRET_NAMES.iter().any(|s| contains_word(name, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_redact_marked_segments() {
        let r = Redaction {
            secret_params: vec!["otp".into()],
            paths: vec![
                gatehouse_config::PathPattern::parse("/reset/[TOKEN]").expect("p"),
                gatehouse_config::PathPattern::parse("/u/*/invite/[CODE]/").expect("p"),
            ],
        };
        assert_eq!(r.apply("/reset/abc123"), "/reset/[TOKEN]");
        assert_eq!(r.apply("/reset/abc123/confirm?next=/x&OTP=9"), "/reset/[TOKEN]/confirm?next=/x&OTP=[REDACTED]");
        assert_eq!(r.apply("/u/7/invite/zz9"), "/u/7/invite/[CODE]");
        assert_eq!(r.apply("/reset"), "/reset", "too short to match");
        assert_eq!(r.apply("/resets/abc"), "/resets/abc");
        assert_eq!(r.apply("/plain?page=2"), "/plain?page=2");
        assert_eq!(r.apply("/login?api_key=1"), "/login?api_key=[REDACTED]");
        for bad in ["reset/[TOKEN]", "/reset/*", "/a//[T]", "/re[set]x/[T]"] {
            assert!(gatehouse_config::PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
