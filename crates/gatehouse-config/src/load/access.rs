//! The access-policy keys under `options`: `cors`, `ip`, `user_agent`, `referer` and
//! `csrf`. Each function turns its raw section into the model, checking every value and
//! naming its key in errors (`options.cors.origins[2]`). `None` when the policy is turned
//! off (`enabled: false`, for a route under a site that sets it) or cannot be built; the
//! errors are then already recorded.
//!
//! Must not decide anything about requests: what a policy means at run time is the proxy
//! filter's business (`gatehouse-proxy::filter`).

use super::*;

/// `cors` under `options`.
pub(super) fn cors(cx: &mut Ctx<'_>, r: &raw::Cors, at: &str) -> Option<Cors> {
    if !cx.flag(r.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let credentials = cx.flag(r.credentials.as_ref(), &format!("{at}.credentials"), false);
    let list = r.origins.as_deref().unwrap_or_default();
    if list.is_empty() {
        cx.err(
            None,
            format!("{at}.origins"),
            "CORS needs the origins whose pages may read this route's responses \
             (e.g. [\"https://app.example.com\"], or \"*\" for any)",
        );
        return None;
    }
    let mut origins = Vec::new();
    let mut any_at = None;
    for (i, o) in list.iter().enumerate() {
        match OriginPattern::parse(&o.value) {
            Ok(p) => {
                if p == OriginPattern::Any {
                    any_at.get_or_insert(i);
                }
                origins.push(p);
            }
            Err(e) => cx.err_at(o, format!("{at}.origins[{i}]"), e),
        }
    }
    if credentials && let (Some(i), Some(c)) = (any_at, &r.credentials) {
        cx.err_at(
            c,
            format!("{at}.credentials"),
            format!(
                "credentials: true cannot go with \"*\" ({at}.origins[{i}]): browsers refuse credentialed \
                 answers for any origin; list the origins instead"
            ),
        );
    }
    let methods = match &r.methods {
        // What a browser may send cross-origin without a preflight anyway.
        None => vec![Method::GET, Method::HEAD, Method::POST],
        Some(list) => {
            let mut out: Vec<Method> = Vec::new();
            for (i, m) in list.iter().enumerate() {
                // Methods are case-sensitive, but `get` in a configuration means GET.
                let name = m.value.trim().to_ascii_uppercase();
                let path = format!("{at}.methods[{i}]");
                if name == "*" {
                    cx.err_at(m, path, "list the methods (\"*\" is not supported)");
                    continue;
                }
                match Method::from_bytes(name.as_bytes()) {
                    Ok(method) if !name.is_empty() => {
                        if !out.contains(&method) {
                            out.push(method);
                        }
                    }
                    _ => cx.err_at(
                        m,
                        path,
                        format!("{:?} is not an HTTP method (a token such as GET or PATCH)", m.value),
                    ),
                }
            }
            if list.is_empty() {
                let hint = "an empty list would refuse every preflight; remove the key for GET, HEAD, POST";
                cx.err(None, format!("{at}.methods"), hint);
            }
            out
        }
    };
    let headers = header_names(cx, r.headers.as_deref(), &format!("{at}.headers"));
    let expose_headers = header_names(cx, r.expose_headers.as_deref(), &format!("{at}.expose_headers"));
    let max_age = r.max_age.as_ref().map(|v| cx.duration(Some(v), &format!("{at}.max_age"), Duration::ZERO));
    Some(Cors { origins, methods, headers, expose_headers, credentials, max_age })
}

fn header_names(cx: &mut Ctx<'_>, list: Option<&[S<String>]>, at: &str) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for (i, h) in list.unwrap_or_default().iter().enumerate() {
        let text = h.value.trim();
        if text == "*" {
            cx.err_at(h, format!("{at}[{i}]"), "list the header names (\"*\" is not supported)");
            continue;
        }
        match HeaderName::from_str(text) {
            Ok(name) => {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            Err(_) => cx.err_at(h, format!("{at}[{i}]"), format!("invalid header name {:?}", h.value)),
        }
    }
    out
}

/// `ip` under `options`.
pub(super) fn ip(cx: &mut Ctx<'_>, r: &raw::IpRules, at: &str) -> Option<IpRules> {
    if !cx.flag(r.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let allow = nets(cx, r.allow.as_deref(), &format!("{at}.allow"));
    let deny = nets(cx, r.deny.as_deref(), &format!("{at}.deny"));
    let written = |l: &Option<Vec<S<String>>>| l.as_ref().is_some_and(|l| !l.is_empty());
    if !written(&r.allow) && !written(&r.deny) {
        cx.err(None, at.to_string(), "IP rules need allow or deny (e.g. allow: [10.0.0.0/8])");
        return None;
    }
    Some(IpRules { allow: (!allow.is_empty()).then(|| IpSet::new(&allow)), deny: IpSet::new(&deny) })
}

pub(super) fn nets(cx: &mut Ctx<'_>, list: Option<&[S<String>]>, at: &str) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, s) in list.unwrap_or_default().iter().enumerate() {
        match parse_cidr(&s.value) {
            Some(net) => out.push(net),
            None => cx.err_at(
                s,
                format!("{at}[{i}]"),
                format!(
                    "expected an IP address or CIDR range (192.0.2.7, 10.0.0.0/8, 2001:db8::/32), got {:?}",
                    s.value
                ),
            ),
        }
    }
    out
}

/// `empty: allow | deny`.
fn if_empty(cx: &mut Ctx<'_>, v: Option<&S<String>>, at: &str) -> IfEmpty {
    match v.map(|v| (v, v.value.trim())) {
        None | Some((_, "allow")) => IfEmpty::Allow,
        Some((_, "deny")) => IfEmpty::Deny,
        Some((v, other)) => {
            cx.err_at(v, format!("{at}.empty"), format!("expected allow or deny, got {other:?}"));
            IfEmpty::Allow
        }
    }
}

/// `user_agent` under `options`.
pub(super) fn user_agent(cx: &mut Ctx<'_>, r: &raw::MatchRules, at: &str) -> Option<AgentRules> {
    if !cx.flag(r.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let empty = if_empty(cx, r.empty.as_ref(), at);
    let allow = agent_patterns(cx, r.allow.as_deref(), &format!("{at}.allow"));
    let deny = agent_patterns(cx, r.deny.as_deref(), &format!("{at}.deny"));
    if nothing_to_do(cx, r, empty, at) {
        return None;
    }
    Some(AgentRules { allow, deny, empty })
}

fn agent_patterns(cx: &mut Ctx<'_>, list: Option<&[S<String>]>, at: &str) -> Vec<AgentPattern> {
    let mut out = Vec::new();
    for (i, s) in list.unwrap_or_default().iter().enumerate() {
        let text = s.value.trim();
        let parsed = match text.strip_prefix('~') {
            Some("") => Err("`~` needs a regex after it (e.g. \"~(?i)python-requests\")".to_string()),
            // Linear-time matching, and a bound on the compiled size: no pattern can make a
            // request slow or the process large.
            Some(re) => regex::RegexBuilder::new(re)
                .size_limit(1 << 20)
                .build()
                .map(AgentPattern::Regex)
                .map_err(|e| format!("invalid regex: {e}")),
            None if text.is_empty() => {
                Err("an empty pattern; use `empty: deny` for requests without a User-Agent".to_string())
            }
            None => Ok(AgentPattern::Glob(Glob::new(text))),
        };
        match parsed {
            Ok(p) => out.push(p),
            Err(e) => cx.err_at(s, format!("{at}[{i}]"), e),
        }
    }
    out
}

/// `referer` under `options`.
pub(super) fn referer(cx: &mut Ctx<'_>, r: &raw::MatchRules, at: &str) -> Option<RefererRules> {
    if !cx.flag(r.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let empty = if_empty(cx, r.empty.as_ref(), at);
    let mut hosts = |list: Option<&[S<String>]>, key: &str| {
        let mut out = Vec::new();
        for (i, s) in list.unwrap_or_default().iter().enumerate() {
            // The same host patterns as a site's `hosts` (`*.example.com`: subdomains only).
            match parse_host(&s.value) {
                Ok(p) => out.push(p),
                Err(e) => cx.err_at(s, format!("{at}.{key}[{i}]"), e),
            }
        }
        out
    };
    let allow = hosts(r.allow.as_deref(), "allow");
    let deny = hosts(r.deny.as_deref(), "deny");
    if nothing_to_do(cx, r, empty, at) {
        return None;
    }
    Some(RefererRules { allow, deny, empty })
}

/// Rules that could never refuse anything are a mistake worth reporting.
fn nothing_to_do(cx: &mut Ctx<'_>, r: &raw::MatchRules, empty: IfEmpty, at: &str) -> bool {
    let written = |l: &Option<Vec<S<String>>>| l.as_ref().is_some_and(|l| !l.is_empty());
    if written(&r.allow) || written(&r.deny) || empty == IfEmpty::Deny {
        return false;
    }
    cx.err(None, at.to_string(), "these rules refuse nothing: give allow, deny or `empty: deny`");
    true
}

/// `csrf` under `options`.
pub(super) fn csrf(cx: &mut Ctx<'_>, r: &raw::Csrf, at: &str) -> Option<Csrf> {
    if !cx.flag(r.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let mut origins = Vec::new();
    for (i, o) in r.origins.as_deref().unwrap_or_default().iter().enumerate() {
        match OriginPattern::parse(&o.value) {
            Ok(OriginPattern::Any) => cx.err_at(
                o,
                format!("{at}.origins[{i}]"),
                "\"*\" would trust every origin and turn the check off; list the trusted origins \
                 (the request's own origin is always trusted)",
            ),
            Ok(p) => origins.push(p),
            Err(e) => cx.err_at(o, format!("{at}.origins[{i}]"), e),
        }
    }
    let token = r.token.as_ref().and_then(|t| {
        let cookie = t.cookie.value.trim();
        // A cookie name is an RFC 9110 token.
        let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        let cookie_ok = !cookie.is_empty() && cookie.bytes().all(token_char);
        if !cookie_ok {
            cx.err_at(&t.cookie, format!("{at}.token.cookie"), format!("invalid cookie name {:?}", t.cookie.value));
        }
        let header = match HeaderName::from_str(t.header.value.trim()) {
            Ok(h) => Some(h),
            Err(_) => {
                cx.err_at(&t.header, format!("{at}.token.header"), format!("invalid header name {:?}", t.header.value));
                None
            }
        };
        let header = header.filter(|_| cookie_ok)?;
        Some(CsrfToken { cookie: cookie.to_string(), header })
    });
    let mut exempt = Vec::new();
    for (i, p) in r.exempt.as_deref().unwrap_or_default().iter().enumerate() {
        let path = p.value.trim();
        if !path.starts_with('/') {
            cx.err_at(p, format!("{at}.exempt[{i}]"), "expected a path prefix starting with / (e.g. /api/webhooks/)");
            continue;
        }
        exempt.push(path.strip_suffix('*').unwrap_or(path).to_string());
    }
    Some(Csrf { origins, token, exempt })
}

/// `geo`.
pub(super) fn geo(cx: &mut Ctx<'_>, r: &raw::GeoRules, at: &str, have_database: bool) -> Option<GeoRules> {
    if !cx.flag(r.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let mut codes = |list: Option<&[S<String>]>, key: &str| {
        let mut out = Vec::new();
        for (i, s) in list.unwrap_or_default().iter().enumerate() {
            let v = s.value.trim();
            match v.as_bytes() {
                [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                    out.push([a.to_ascii_uppercase(), b.to_ascii_uppercase()]);
                }
                _ => cx.err_at(
                    s,
                    format!("{at}.{key}[{i}]"),
                    format!("expected a two-letter country code (DE, US…), got {v:?}"),
                ),
            }
        }
        out
    };
    let allow = codes(r.allow.as_deref(), "allow");
    let deny = codes(r.deny.as_deref(), "deny");
    let unknown_allowed = match r.unknown.as_ref().map(|v| (v, v.value.trim())) {
        None | Some((_, "allow")) => true,
        Some((_, "deny")) => false,
        Some((v, other)) => {
            cx.err_at(v, format!("{at}.unknown"), format!("expected allow or deny, got {other:?}"));
            true
        }
    };
    if allow.is_empty() && deny.is_empty() && unknown_allowed {
        cx.err(None, at.to_string(), "these rules refuse nothing: give allow, deny or `unknown: deny`");
        return None;
    }
    if !have_database {
        cx.err(None, at.to_string(), "country rules need a GeoIP database: set geoip.database in the main file");
    }
    Some(GeoRules { allow, deny, unknown_allowed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_parse_and_match() {
        let o = |t: &str| Origin::parse(t).expect("origin");
        assert_eq!(o("HTTPS://App.Example.com:443"), o("https://app.example.com"));
        assert_eq!(o("http://[::1]:8080").to_string(), "http://[::1]:8080");
        for bad in ["app.example.com", "https://a.test/path", "https://u@a.test", "null", "https://a.test:99999"] {
            assert!(Origin::parse(bad).is_none(), "{bad}");
        }
        let sub = OriginPattern::parse("https://*.example.com").expect("pattern");
        assert!(sub.matches(&o("https://app.example.com")));
        assert!(sub.matches(&o("https://a.b.example.com")));
        assert!(!sub.matches(&o("https://example.com")), "subdomains only");
        assert!(!sub.matches(&o("https://evilexample.com")));
        assert!(!sub.matches(&o("http://app.example.com")), "scheme must match");
        assert!(!sub.matches(&o("https://app.example.com:8443")), "port must match");
        assert!(OriginPattern::parse("https://app.example.com/").is_err(), "a path, even /, is refused");
        assert_eq!(Origin::of_url("https://a.test/x?y#z"), Some(o("https://a.test")));
    }

    // The two tests below need the keys wired into `raw::Options`, `RouteOptions` and
    // `Layered::apply` (target/wiring-notes.md).
    #[test]
    fn policies_load_and_layer() {
        let site = "host: a.test\noptions:\n  ip: {allow: [10.0.0.0/8]}\n  cors: {origins: ['https://app.a.test'], max_age: 10m}\nroutes:\n  - path: /\n    backend: http://x:1\n    options:\n      ip: {enabled: false}\n      user_agent: {deny: ['curl/*', '~(?i)python'], empty: deny}\n      referer: {allow: ['*.a.test', a.test]}\n      csrf: {origins: ['https://app.a.test'], token: {cookie: csrf_token, header: X-CSRF-Token}, exempt: [/hooks/]}\n  - path: /b\n    backend: http://x:1\n";
        let c = load_from_str_for_tests("", &[("s", site)], Path::new(".")).expect("valid");
        let (r0, r1) = (&c.sites[0].routes[0].options, &c.sites[0].routes[1].options);
        assert!(r0.ip.is_none(), "enabled: false turns the site's rules off");
        assert!(r1.ip.as_ref().is_some_and(|ip| ip.allow.is_some() && ip.deny.is_empty()));
        for r in [r0, r1] {
            let cors = r.cors.as_ref().expect("the site's cors");
            assert_eq!(cors.max_age, Some(Duration::from_secs(600)));
            assert_eq!(cors.methods, vec![Method::GET, Method::HEAD, Method::POST]);
            assert!(!cors.credentials);
        }
        let ua = r0.user_agent.as_ref().expect("user_agent");
        assert_eq!((ua.deny.len(), ua.empty), (2, IfEmpty::Deny));
        let referer = r0.referer.as_ref().expect("referer");
        assert_eq!(referer.allow, vec![HostPattern::Wildcard(".a.test".into()), HostPattern::Exact("a.test".into())]);
        let csrf = r0.csrf.as_ref().expect("csrf");
        assert_eq!(
            csrf.token.as_ref().map(|t| (t.cookie.as_str(), t.header.as_str())),
            Some(("csrf_token", "x-csrf-token"))
        );
        assert_eq!(csrf.exempt, vec!["/hooks/".to_string()]);
        assert!(r1.user_agent.is_none() && r1.csrf.is_none());
    }

    #[test]
    fn bad_values_name_their_keys() {
        let site = "host: a.test\nbackend: http://x:1\noptions:\n  cors: {origins: ['*', 'https://a.test/app', a.test], credentials: true, methods: [GET, 'B@D']}\n  ip: {deny: [10.0.0.0/33]}\n  user_agent: {deny: ['~(']}\n  referer: {allow: ['https://a.test']}\n  csrf: {origins: ['*'], exempt: [hooks]}\n";
        let e = match load_from_str_for_tests("", &[("s", site)], Path::new(".")) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect::<Vec<_>>(),
        };
        let want = [
            "sites/s.yaml:4 options.cors.origins[1]: \"https://a.test/app\" has a path",
            "sites/s.yaml:4 options.cors.origins[2]: expected an origin",
            "sites/s.yaml:4 options.cors.credentials: credentials: true cannot go with \"*\" (options.cors.origins[0])",
            "sites/s.yaml:4 options.cors.methods[1]: \"B@D\" is not an HTTP method",
            "sites/s.yaml:5 options.ip.deny[0]: expected an IP address or CIDR range",
            "sites/s.yaml:6 options.user_agent.deny[0]: invalid regex",
            "sites/s.yaml:7 options.referer.allow[0]: invalid host",
            "sites/s.yaml:8 options.csrf.origins[0]: \"*\" would trust every origin",
            "sites/s.yaml:8 options.csrf.exempt[0]: expected a path prefix",
        ];
        for w in want {
            assert!(e.iter().any(|m| m.starts_with(w)), "missing {w:?} in {e:#?}");
        }
        assert_eq!(e.len(), want.len(), "{e:#?}");
        let idle = "host: a.test\nbackend: http://x:1\noptions: {user_agent: {allow: []}}\n";
        let e = load_from_str_for_tests("", &[("s", idle)], Path::new(".")).map(|_| ()).expect_err("refuses nothing");
        assert!(e.to_string().contains("options.user_agent: these rules refuse nothing"), "{e}");
    }

    #[test]
    fn globs_match_the_whole_string() {
        let g = Glob::new("curl/*");
        assert!(g.matches("curl/8.4.0"));
        assert!(g.matches("CURL/"));
        assert!(!g.matches("xcurl/8"));
        let g = Glob::new("*bot*crawl*");
        assert!(g.matches("SomeBot/1.0 (crawler)"));
        assert!(!g.matches("crawler bot"));
        assert!(Glob::new("exact").matches("EXACT"));
        assert!(!Glob::new("a*a").matches("a"), "the ends must not overlap");
    }
}
