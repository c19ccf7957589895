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
}

/// The stored form of a client address.
pub fn mask_ip(ip: IpAddr, how: MaskIp) -> String {
    mask_addr(ip, how).to_string()
}

/// The client address with what `how` hides zeroed (IPv4-mapped IPv6 counts as IPv4).
pub fn mask_addr(ip: IpAddr, how: MaskIp) -> IpAddr {
    match (how, ip.to_canonical()) {
        (MaskIp::Off, ip) => ip,
        (MaskIp::LastOctet, IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        (MaskIp::LastOctet, IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
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

/// The path with the values of secret query parameters replaced by `[REDACTED]`.
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    let Some((before, query)) = path.split_once('?') else {
        return std::borrow::Cow::Borrowed(path);
    };
    let mut out = String::with_capacity(path.len());
    out.push_str(before);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn is_secret(name: &str) -> bool {
    let name = name.as_bytes();
    SECRET_NAMES.iter().any(|s| name.windows(s.len()).any(|w| w.eq_ignore_ascii_case(s.as_bytes())))
}
