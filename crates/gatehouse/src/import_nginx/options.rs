//! A route's options from the directives in force in its location: body size and
//! timeouts, request and response headers, `expires`, `allow`/`deny`, basic auth and
//! `limit_except`. nginx's array directives (`add_header`, `proxy_set_header`, the access
//! rules) come whole from the innermost level that has any, as nginx inherits them.

use super::location::{Chain, Srv};
use super::parse::Directive;
use super::site::{Route, Val, set};
use super::translate::Cx;
use super::values::{duration, nginx_size, nginx_time_ms};

/// Every address: what a route that refuses everyone denies.
pub(super) const EVERYONE: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The options of a proxy route: limits, timeouts, request headers (with the `Host`
/// nginx would send by default), hidden response headers, TLS to the backend.
pub(super) fn proxy_options(cx: &mut Cx, chain: &Chain<'_>, route: &mut Route, host: &str, tls: bool) {
    let opts = &mut route.options;
    match chain.last("client_max_body_size") {
        Some(d) => match d.arg(0).and_then(nginx_size) {
            Some(v) => set(opts, &["limits", "request_body"], Val::Str(v)),
            None if d.arg(0).is_some_and(|a| {
                a.strip_suffix(['k', 'K', 'm', 'M', 'g', 'G']).unwrap_or(a).parse::<u64>().is_ok()
            }) =>
            {
                cx.skip(d, "over Gatehouse's largest size (1 TiB): capped to 1024GiB");
                set(opts, &["limits", "request_body"], Val::Str("1024GiB".into()));
            }
            None => cx.skip(d, "cannot read this size"),
        },
        // nginx's default (Gatehouse's is 10MB).
        None => set(opts, &["limits", "request_body"], Val::Str("1MiB".into())),
    }
    if chain.last("proxy_connect_timeout").is_none() {
        // nginx's default (Gatehouse's is 5s).
        set(opts, &["timeouts", "connect"], Val::Str("60s".into()));
    }
    for (name, key) in
        [("proxy_connect_timeout", "connect"), ("proxy_read_timeout", "read"), ("client_body_timeout", "write")]
    {
        let Some(d) = chain.last(name) else { continue };
        match d.arg(0).and_then(nginx_time_ms) {
            Some(0) => cx.skip(d, "0: Gatehouse refuses a timeout of 0 (it would fail every request)"),
            Some(ms) if ms > 365 * 86_400_000 => cx.skip(d, "longer than Gatehouse's limit of 365 days"),
            Some(ms) => set(opts, &["timeouts", key], Val::Str(duration(ms))),
            None => cx.skip(d, "cannot read this duration"),
        }
    }
    let mut host_set = false;
    let mut remove = Vec::new();
    for d in chain.list(&["proxy_set_header"]) {
        let Some((name, value)) = header_pair(cx, d) else { continue };
        let lower = name.to_ascii_lowercase();
        host_set |= lower == "host";
        if gatehouse_sets(&lower, value) {
            continue;
        }
        if lower == "host" && value == "$proxy_host" {
            set(opts, &["headers", "request", "set", "Host"], Val::Str(host.to_string()));
        } else if value.is_empty() {
            remove.push(name.to_string());
        } else if value.contains('$') {
            cx.skip(d, format!("{value}: Gatehouse sets request headers to fixed values (or sets this one itself: see the docs' Headers)"));
        } else {
            set(opts, &["headers", "request", "set", name], Val::Str(value.to_string()));
        }
    }
    if !remove.is_empty() {
        set(opts, &["headers", "request", "remove"], Val::List(remove));
    }
    if !host_set {
        set(opts, &["headers", "request", "set", "Host"], Val::Str(host.to_string()));
        route.notes.push(format!("nginx sends `Host: {host}` here (no proxy_set_header Host); so does this route"));
    }
    let hidden: Vec<String> = chain
        .list(&["proxy_hide_header"])
        .iter()
        .filter_map(|d| d.arg(0))
        .filter(|n| is_header_name(n))
        .map(str::to_string)
        .collect();
    if !hidden.is_empty() {
        set(&mut route.options, &["headers", "response", "remove"], Val::List(hidden));
    }
    if tls {
        for (name, key) in [
            ("proxy_ssl_name", "server_name"),
            ("proxy_ssl_trusted_certificate", "ca"),
            ("proxy_ssl_certificate", "cert"),
            ("proxy_ssl_certificate_key", "key"),
        ] {
            let Some(d) = chain.last(name) else { continue };
            match d.arg(0) {
                Some(v) if !v.contains('$') => set(&mut route.options, &["upstream_tls", key], Val::Str(v.to_string())),
                _ => cx.skip(d, "a value with variables: not translated"),
            }
        }
        if chain.last("proxy_ssl_verify").and_then(|d| d.arg(0)) != Some("on") {
            route.notes.push(
                "nginx does not verify this https:// backend's certificate (no proxy_ssl_verify on); Gatehouse does \
                 (upstream_tls.ca for a private CA)"
                    .into(),
            );
        }
    }
}

/// `proxy_set_header` values that ask for what Gatehouse sends anyway (see the docs'
/// "Headers Gatehouse sets on proxied requests"), WebSocket upgrades included.
fn gatehouse_sets(name: &str, value: &str) -> bool {
    matches!(
        (name, value),
        ("host", "$host" | "$http_host")
            | ("x-real-ip", "$remote_addr")
            | ("x-forwarded-for", "$proxy_add_x_forwarded_for" | "$remote_addr")
            | ("x-forwarded-proto", "$scheme")
            | ("x-forwarded-host", "$host" | "$http_host")
            | ("x-request-id", "$request_id")
            | ("upgrade", "$http_upgrade")
            | ("connection", "upgrade" | "Upgrade" | "$connection_upgrade" | "")
    )
}

/// `add_header` and `expires`: the route's response headers.
pub(super) fn response_headers(cx: &mut Cx, srv: &mut Srv<'_>, chain: &Chain<'_>, route: &mut Route) {
    let mut seen: Vec<String> = Vec::new();
    for d in chain.list(&["add_header"]) {
        let Some((name, value)) = header_pair(cx, d) else { continue };
        if value.contains('$') {
            cx.skip(d, "a value with variables: Gatehouse sets fixed header values only");
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            cx.skip(d, "a second value for the same header: Gatehouse's headers.response.add takes one per name");
            continue;
        }
        seen.push(lower);
        if !value.is_empty() {
            set(&mut route.options, &["headers", "response", "add", name], Val::Str(value.to_string()));
            srv.note(
                "add_header: nginx adds these to 2xx and 3xx answers only (unless `always`); Gatehouse adds them to \
                 every answer of the route but its own error answers",
            );
        }
    }
    let Some(e) = chain.last("expires") else { return };
    let value = match e.args.as_slice() {
        [a] if a == "off" => return,
        [a] if a == "epoch" => "no-cache".to_string(),
        [a] if a == "max" => "max-age=315360000".to_string(),
        [a] => match (a.strip_prefix('-'), nginx_time_ms(a)) {
            (Some(_), _) => "no-cache".to_string(),
            (None, Some(ms)) => format!("max-age={}", ms / 1000),
            (None, None) => {
                cx.skip(e, "cannot read this time");
                return;
            }
        },
        _ => {
            cx.skip(e, "expires relative to the modification time or at a time of day: not translated");
            return;
        }
    };
    set(&mut route.options, &["headers", "response", "set", "Cache-Control"], Val::Str(value));
}

/// `allow` and `deny`, checked in order by nginx, first match wins. Gatehouse checks its
/// deny list, then its allow list: the same when every `deny` comes before every `allow`,
/// with `deny all` (allow list) or nothing / `allow all` (deny list) at the end. Any other
/// order refuses everyone rather than let everyone in.
pub(super) fn access(cx: &mut Cx, chain: &Chain<'_>, route: &mut Route) {
    let rules = chain.list(&["allow", "deny"]);
    if rules.is_empty() {
        return;
    }
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    let mut ends_in_deny_all = false;
    let mut translatable = true;
    for d in &rules {
        let arg = d.arg(0).unwrap_or("");
        let allows = d.name == "allow";
        if arg == "all" {
            ends_in_deny_all = !allows;
            break;
        }
        if !is_address(arg) || (!allows && !allow.is_empty()) {
            translatable = false;
            break;
        }
        if allows { allow.push(arg.to_string()) } else { deny.push(arg.to_string()) }
    }
    let everyone = || EVERYONE.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if !translatable {
        for d in &rules {
            cx.skip(d, "these allow/deny rules (their order, or an entry that is not an address) have no Gatehouse equivalent: deny is checked before allow");
        }
        route
            .notes
            .push("its allow/deny rules are not translated: it refuses everyone until you write `ip` rules".into());
        set(&mut route.options, &["ip", "deny"], Val::List(everyone()));
        return;
    }
    if ends_in_deny_all {
        if allow.is_empty() {
            deny = everyone();
        } else {
            set(&mut route.options, &["ip", "allow"], Val::List(allow));
        }
    }
    if !deny.is_empty() {
        set(&mut route.options, &["ip", "deny"], Val::List(deny));
    }
}

/// An IP address or a CIDR range, as Gatehouse's `ip` lists take them.
fn is_address(s: &str) -> bool {
    let (addr, bits) = s.split_once('/').unwrap_or((s, ""));
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    bits.is_empty() || bits.parse::<u8>().is_ok_and(|b| b <= max)
}

/// A header name nginx may take but HTTP does not (`/50x.html`): refused with a reason.
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `auth_basic` with its user file: `auth.basic.users_file`.
pub(super) fn auth(cx: &mut Cx, srv: &mut Srv<'_>, chain: &Chain<'_>, route: &mut Route) {
    let Some(d) = chain.last("auth_basic") else { return };
    let realm = d.arg(0).unwrap_or("off");
    if realm == "off" {
        return;
    }
    let Some(file) = chain.last("auth_basic_user_file").and_then(|f| f.arg(0)).filter(|f| !f.contains('$')) else {
        cx.skip(d, "auth_basic without a fixed auth_basic_user_file: not translated; the route refuses everyone");
        set(&mut route.options, &["ip", "deny"], Val::List(EVERYONE.iter().map(|s| s.to_string()).collect()));
        return;
    };
    if realm.contains(['"', '\\']) || realm.contains('$') || realm.chars().any(char::is_control) {
        cx.skip(d, "a realm with quotes, backslashes or variables: Gatehouse's default realm is used");
    } else {
        set(&mut route.options, &["auth", "realm"], Val::Str(realm.to_string()));
    }
    set(&mut route.options, &["auth", "basic", "users_file"], Val::Str(file.to_string()));
    srv.note(
        "auth_basic_user_file: Gatehouse accepts bcrypt (htpasswd -B) and argon2 hashes only; `gatehouse check` \
         names any other line",
    );
}

/// `limit_except GET { deny all; }`: the route answers these methods only (the caller
/// adds the route that refuses the others). Whether it was translated.
pub(super) fn limit_except(cx: &mut Cx, d: &Directive, route: &mut Route) -> bool {
    let body = d.children();
    let deny_all = body.len() == 1 && body.iter().all(|c| c.name == "deny" && c.arg(0) == Some("all"));
    if !deny_all || d.args.is_empty() {
        cx.skip(d, "limit_except with rules other than `deny all`: not translated");
        return false;
    }
    let mut methods: Vec<String> = d.args.iter().map(|m| m.to_ascii_uppercase()).collect();
    if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
        methods.push("HEAD".into());
    }
    route.methods = Some(methods);
    route.notes.push("limit_except: other methods go to the next route, which answers 403 as nginx does".into());
    true
}

/// Whether the access rules in force refuse everyone (`deny all` before any `allow`).
pub(super) fn denies_everyone(chain: &Chain<'_>) -> bool {
    for d in chain.list(&["allow", "deny"]) {
        match (d.name.as_str(), d.arg(0)) {
            ("allow", _) => return false,
            ("deny", Some("all")) => return true,
            _ => {}
        }
    }
    false
}

/// A header directive's name and value (`proxy_set_header NAME VALUE`, `add_header NAME
/// VALUE`), or `None` with the directive reported when either is missing or the name is
/// not a header name.
fn header_pair<'d>(cx: &mut Cx, d: &'d Directive) -> Option<(&'d str, &'d str)> {
    let (Some(name), Some(value)) = (d.arg(0), d.arg(1)) else {
        cx.skip(d, "needs a header name and a value");
        return None;
    };
    if !is_header_name(name) {
        cx.skip(d, format!("{name} is not a valid header name"));
        return None;
    }
    Some((name, value))
}
