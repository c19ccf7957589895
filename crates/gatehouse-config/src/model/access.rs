//! The validated access policies of a route: CORS, IP allow/deny lists, User-Agent and
//! Referer rules, CSRF protection (`options.cors`, `ip`, `user_agent`, `referer`, `csrf`).
//!
//! Owns the value types those policies match with (origins, origin patterns, address sets,
//! user-agent patterns) and how each matches, so that the loader and the proxy's filters
//! read an origin the same way. Everything costly (sorting the address lists, compiling
//! regexes) happens here, once per configuration load. Must not know about requests: the
//! filters hand in the values they took from one.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;
use regex::Regex;

use super::HostPattern;

/// `options.cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Origins whose pages may read the route's responses.
    pub origins: Vec<OriginPattern>,
    /// Methods a preflight may ask for.
    pub methods: Vec<Method>,
    /// Request headers a preflight may ask for, beyond the CORS-safelisted ones.
    pub headers: Vec<HeaderName>,
    /// Response headers a page may read beyond the safelisted ones.
    pub expose_headers: Vec<HeaderName>,
    /// Pages may send cookies and read the answers (never with an any-origin pattern).
    pub credentials: bool,
    /// How long a browser may keep a preflight's answer.
    pub max_age: Option<Duration>,
}

impl Cors {
    /// Whether `*` is among the origins.
    pub fn any_origin(&self) -> bool {
        self.origins.contains(&OriginPattern::Any)
    }

    pub fn allows(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }
}

/// A web origin: `scheme://host[:port]`, the way browsers serialise it in `Origin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Lower-case.
    pub scheme: String,
    /// Lower-case, no trailing dot; an IPv6 address without brackets.
    pub host: String,
    /// `None` for the scheme's default port, so `https://a.test:443` is `https://a.test`.
    pub port: Option<u16>,
}

impl Origin {
    /// `scheme://host[:port]` and nothing after it (an `Origin` value, a configured origin).
    pub fn parse(text: &str) -> Option<Origin> {
        let (scheme, authority, rest) = split_url(text.trim())?;
        if !rest.is_empty() {
            return None;
        }
        Origin::from_parts(scheme, authority)
    }

    /// The origin of a URL (a `Referer`): its path, query and fragment are ignored.
    pub fn of_url(text: &str) -> Option<Origin> {
        let (scheme, authority, _) = split_url(text.trim())?;
        Origin::from_parts(scheme, authority)
    }

    fn from_parts(scheme: &str, authority: &str) -> Option<Origin> {
        // User information has no place in an origin, and `https://good.test@evil.test`
        // is evil.test: refusing it is simpler than getting it right.
        if authority.contains('@') {
            return None;
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(inner) => {
                let (v6, after) = inner.split_once(']')?;
                (v6.parse::<Ipv6Addr>().ok()?.to_string(), after)
            }
            None => {
                let (host, after) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
                let host = host.strip_suffix('.').unwrap_or(host);
                let valid = !host.is_empty()
                    && host.len() <= 253
                    && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                if !valid {
                    return None;
                }
                (host.to_ascii_lowercase(), after)
            }
        };
        let scheme = scheme.to_ascii_lowercase();
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => None,
            None => return None,
            // `http://host:` is the default port, as URL parsers read it.
            Some("") => None,
            Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let n: u16 = p.parse().ok()?;
                (default_port(&scheme) != Some(n)).then_some(n)
            }
            Some(_) => return None,
        };
        Some(Origin { scheme, host, port })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]", self.scheme, self.host)?;
        } else {
            write!(f, "{}://{}", self.scheme, self.host)?;
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `scheme://authority` and the rest (path, query, fragment), or `None` if `text` does not
/// start with a scheme and `://`.
fn split_url(text: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut bytes = scheme.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((scheme, &rest[..end], &rest[end..]))
}

/// One entry of a list of trusted origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: every origin.
    Any,
    Exact(Origin),
    /// `https://*.example.com`: the subdomains of example.com (not example.com itself),
    /// with this scheme and port; `suffix` is `.example.com`.
    Subdomains {
        scheme: String,
        suffix: String,
        port: Option<u16>,
    },
}

impl OriginPattern {
    /// `*`, `https://app.example.com[:port]` or `https://*.example.com[:port]`; the error
    /// says what is wrong, for the loader to place.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let t = text.trim();
        if t == "*" {
            return Ok(OriginPattern::Any);
        }
        let bad = || format!("expected an origin such as https://app.example.com or https://*.example.com, got {t:?}");
        let (scheme, authority, rest) = split_url(t).ok_or_else(bad)?;
        if !rest.is_empty() {
            return Err(format!("{t:?} has a path; an origin is scheme://host[:port] only (drop {rest:?})"));
        }
        match authority.strip_prefix("*.") {
            Some(base) => {
                let o = Origin::from_parts(scheme, base).ok_or_else(bad)?;
                if o.host.parse::<IpAddr>().is_ok() {
                    return Err(format!("{t:?}: a `*.` pattern needs a domain name, not an address"));
                }
                Ok(OriginPattern::Subdomains { scheme: o.scheme, suffix: format!(".{}", o.host), port: o.port })
            }
            None => Origin::from_parts(scheme, authority).map(OriginPattern::Exact).ok_or_else(bad),
        }
    }

    pub fn matches(&self, o: &Origin) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(e) => e == o,
            OriginPattern::Subdomains { scheme, suffix, port } => {
                *scheme == o.scheme
                    && *port == o.port
                    && o.host.len() > suffix.len()
                    && o.host.ends_with(suffix.as_str())
            }
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPattern::Any => f.write_str("*"),
            OriginPattern::Exact(o) => fmt::Display::fmt(o, f),
            OriginPattern::Subdomains { scheme, suffix, port } => {
                write!(f, "{scheme}://*{suffix}")?;
                port.map_or(Ok(()), |p| write!(f, ":{p}"))
            }
        }
    }
}

/// `options.ip`: client addresses refused (`deny`, checked first) and, when `allow` is
/// given, the only ones served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRules {
    pub allow: Option<IpSet>,
    pub deny: IpSet,
}

/// A set of addresses as sorted, merged ranges per family: a lookup is one binary search,
/// however long the configured list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    /// IPv4 ranges (as numbers, widened so both families share the code).
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

/// `::ffff:0:0/96`, where IPv4-mapped IPv6 addresses live.
const MAPPED: u128 = 0xffff_0000_0000;
const MAPPED_END: u128 = MAPPED | 0xffff_ffff;

impl IpSet {
    pub fn new<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> IpSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast())))),
                IpNet::V6(n) => {
                    let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                    v6.push((lo, hi));
                    // A rule written as ::ffff:a.b.c.d is an IPv4 rule: clients are looked
                    // up as IPv4 when their address is mapped.
                    if lo >= MAPPED && hi <= MAPPED_END {
                        v4.push((lo - MAPPED, hi - MAPPED));
                    }
                }
            }
        }
        IpSet { v4: merged(v4), v6: merged(v6) }
    }

    /// Whether `ip` is in the set; an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is looked
    /// up as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => within(&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => within(&self.v4, u128::from(u32::from(v4))),
                None => within(&self.v6, u128::from(a)),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Ranges after merging, for the admin API and tests.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Sorted, with overlapping and touching ranges joined, so at most one range can hold an
/// address.
fn merged(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

fn within(ranges: &[(u128, u128)], x: u128) -> bool {
    // The last range starting at or below x is the only one that can hold it.
    let i = ranges.partition_point(|r| r.0 <= x);
    i.checked_sub(1).and_then(|j| ranges.get(j)).is_some_and(|r| x <= r.1)
}

/// What a rule does with a request whose header is missing or empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfEmpty {
    #[default]
    Allow,
    Deny,
}

/// `options.user_agent`.
#[derive(Debug, Clone)]
pub struct AgentRules {
    /// When not empty, only user agents matching one of these are served.
    pub allow: Vec<AgentPattern>,
    /// Checked first: a match is refused.
    pub deny: Vec<AgentPattern>,
    pub empty: IfEmpty,
}

/// One user-agent rule.
#[derive(Debug, Clone)]
pub enum AgentPattern {
    /// A whole-string match with `*` wildcards, ASCII case-insensitive.
    Glob(Glob),
    /// `~REGEX`: a search anywhere in the value (anchor it with `^…$` for a whole match).
    /// The regex crate runs in linear time, so no pattern can make a request slow.
    Regex(Regex),
}

impl AgentPattern {
    pub fn matches(&self, text: &str) -> bool {
        match self {
            AgentPattern::Glob(g) => g.matches(text),
            AgentPattern::Regex(r) => r.is_match(text),
        }
    }
}

impl fmt::Display for AgentPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentPattern::Glob(g) => f.write_str(g.as_str()),
            AgentPattern::Regex(r) => write!(f, "~{}", r.as_str()),
        }
    }
}

/// A whole-string pattern where `*` stands for any run of characters, matched
/// ASCII-case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    /// The text between the stars, lower-case: one part means no star.
    parts: Vec<Vec<u8>>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let parts = pattern.split('*').map(|p| p.as_bytes().to_ascii_lowercase()).collect();
        Glob { source: pattern.to_string(), parts }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        let text = text.as_bytes();
        let (first, rest) = match self.parts.split_first() {
            Some(x) => x,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text.eq_ignore_ascii_case(first);
        };
        if text.len() < first.len() + last.len()
            || !text[..first.len()].eq_ignore_ascii_case(first)
            || !text[text.len() - last.len()..].eq_ignore_ascii_case(last)
        {
            return false;
        }
        // Between the fixed ends, each middle part at its leftmost place after the one
        // before: leftmost is never worse for what follows, so no backtracking.
        let mut window = &text[first.len()..text.len() - last.len()];
        for part in middle {
            match find_ignore_case(window, part) {
                Some(at) => window = &window[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// `options.referer`: rules on the host of the `Referer` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefererRules {
    /// When not empty, only referers whose host matches one of these are served (a
    /// `Referer` that is not a URL matches none).
    pub allow: Vec<HostPattern>,
    /// Checked first: a match is refused.
    pub deny: Vec<HostPattern>,
    pub empty: IfEmpty,
}

/// `options.csrf`: state-changing requests must come from the site's own pages (or
/// `origins`), by `Origin` or, without it, `Referer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csrf {
    /// Trusted besides the request's own origin.
    pub origins: Vec<OriginPattern>,
    /// The double-submit check, when configured.
    pub token: Option<CsrfToken>,
    /// Path prefixes not checked (webhooks and other server-to-server calls).
    pub exempt: Vec<String>,
}

/// The header that must repeat the cookie's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfToken {
    pub cookie: String,
    pub header: HeaderName,
}

/// `geo`: country rules on the client address, by the main file's `geoip` database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoRules {
    /// Upper-case ISO 3166-1 alpha-2 codes.
    pub allow: Vec<[u8; 2]>,
    pub deny: Vec<[u8; 2]>,
    /// A client in no known country passes.
    pub unknown_allowed: bool,
}

impl GeoRules {
    /// Whether a client in `country` (`None`: unknown) may pass, and the rule that decided.
    pub fn decide(&self, country: Option<[u8; 2]>) -> Result<(), &'static str> {
        match country {
            None if self.unknown_allowed => Ok(()),
            None => Err("unknown"),
            Some(c) if self.deny.contains(&c) => Err("deny"),
            Some(c) if !self.allow.is_empty() && !self.allow.contains(&c) => Err("allow"),
            Some(_) => Ok(()),
        }
    }
}
