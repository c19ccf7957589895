//! Server blocks' names and listeners (a child of `translate`): which host patterns
//! Gatehouse takes, the port of a `listen`, nginx's default server of a port, and the
//! shape of a server that only redirects plain HTTP to HTTPS.

use super::super::parse::Directive;
use super::{Cx, Server};

/// Host patterns Gatehouse accepts: labels of letters, digits, `-` and `_` (after an
/// optional `*.`), or an IP address.
pub(super) fn valid_host(h: &str) -> bool {
    let body = h.strip_prefix("*.").unwrap_or(h);
    let ip = body.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
    let name = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ip || name
}

/// The port of a `listen` address (`80`, `*:8080`, `[::]:443`, `127.0.0.1`).
pub(super) fn port(addr: &str) -> Option<u16> {
    if addr.bytes().all(|b| b.is_ascii_digit()) {
        return addr.parse().ok();
    }
    let after_host = match addr.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(_, after)| after)?,
        None => addr.rsplit_once(':').map_or("", |(_, p)| p),
    };
    let digits = after_host.strip_prefix(':').unwrap_or(after_host);
    if digits.is_empty() { Some(80) } else { digits.parse().ok() }
}

/// A server whose whole content sends plain HTTP to the same host over HTTPS, in the
/// shapes people and certbot write: `return 301 https://$host$request_uri;`, the same
/// inside `location / {}`, or certbot's `if ($host = …) { return 301 …; }` + `return 404;`.
/// The redirect's status, when it is one. `$server_name` or a fixed host is not the
/// same host: such a server keeps its own redirect.
pub(super) fn redirects_to_https(d: &Directive) -> Option<u16> {
    let code_of = |c: &Directive| match c.args.as_slice() {
        [code, url]
            if c.name == "return"
                && matches!(url.as_str(), "https://$host$request_uri" | "https://$http_host$request_uri") =>
        {
            code.parse::<u16>().ok().filter(|c| matches!(c, 301 | 302 | 307 | 308))
        }
        _ => None,
    };
    let only_redirects = |c: &Directive| {
        let codes: Vec<Option<u16>> = c.children().iter().map(code_of).collect();
        if codes.is_empty() || codes.iter().any(Option::is_none) { None } else { codes.first().copied().flatten() }
    };
    let mut redirect = None;
    for c in d.children() {
        match c.name.as_str() {
            "listen" | "server_name" => {}
            "return" if code_of(c).is_some() => redirect = code_of(c),
            "return" if c.args == ["404"] => {}
            "if" if only_redirects(c).is_some() => redirect = only_redirects(c),
            "location" if c.args == ["/"] && only_redirects(c).is_some() => redirect = only_redirects(c),
            _ => return None,
        }
    }
    redirect
}

/// nginx's default server of a port: the one with `default_server`, else the first server
/// block listening on it. An unnamed server (`server_name _` or none) takes unknown hosts
/// (`"*"`) only as that; otherwise nginx sends it only requests without a Host.
pub(super) fn defaults(cx: &mut Cx, servers: &mut [Server<'_>]) {
    for i in 0..servers.len() {
        let Some(s) = servers.get(i) else { continue };
        if !s.unnamed || s.default || !s.hosts.is_empty() {
            continue;
        }
        let is_default = s.ports.iter().any(|p| {
            !servers.iter().any(|t| t.default && t.ports.contains(p))
                && servers.iter().position(|t| t.ports.contains(p)) == Some(i)
        });
        if is_default {
            servers[i].hosts.push("*".into());
        } else {
            cx.server = Some(i);
            cx.skip(
                servers[i].d,
                "server_name _ (or none) on a server block that is not the default one of its port (default_server, \
                 else the first server block listening there): nginx sends it only requests without a Host; no \
                 site written",
            );
        }
    }
    cx.server = None;
}
