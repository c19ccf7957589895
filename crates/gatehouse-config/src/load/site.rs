//! Site files: reading the sites directory, building each site (hosts, routes), and the
//! checks across sites (a host served twice).

use super::*;

pub(super) fn read_sites_dir(
    cx: &mut Ctx<'_>,
    dir: &Path,
    raw: Option<&S<String>>,
) -> Vec<(PathBuf, Result<String, String>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            let line = raw.map(|r| r.referenced.line());
            cx.err(line, "sites_dir", format!("cannot read sites directory {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.')))
        .collect();
    files.sort();
    // `a.yaml` and `a.yml` would both be site "a": refuse rather than merge silently.
    for pair in files.windows(2) {
        if pair[0].file_stem() == pair[1].file_stem() {
            cx.err(
                None,
                "sites_dir",
                format!("{} and {} name the same site; keep one", pair[0].display(), pair[1].display()),
            );
        }
    }
    files
        .into_iter()
        .map(|p| {
            let text = crate::file::read_regular_text(&p).map_err(|e| format!("cannot read site file: {e}"));
            (p, text)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_site(
    cx: &mut Ctx<'_>,
    file: &Path,
    base: &Path,
    s: raw::Site,
    defaults: &Layered,
    https: bool,
    pairs: &mut Vec<CertPair>,
    main: (&LoggingConfig, &RetentionConfig, &Arc<ErrorPages>),
    notes: &mut Vec<String>,
) -> Option<Site> {
    let name = file.file_stem().and_then(|n| n.to_str()).unwrap_or("site").to_string();
    let mut client_ca = None;
    if let Some(t) = &s.tls {
        if (t.cert.is_some() || t.key.is_some())
            && let Some(pair) = cert_pair(cx, base, t.cert.as_ref(), t.key.as_ref(), "tls", &name)
        {
            pairs.push(pair);
        }
        if let Some(ca) = &t.client_ca {
            let path = base.join(ca.value.trim());
            match crate::file::read_regular_text(&path) {
                Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => client_ca = Some(path),
                Ok(_) => cx.err_at(ca, "tls.client_ca", format!("{} holds no PEM certificate", path.display())),
                Err(e) => cx.err_at(ca, "tls.client_ca", format!("cannot read {}: {e}", path.display())),
            }
        }
        if !https {
            cx.err(
                t.cert.as_ref().map(|c| c.referenced.line()),
                "tls",
                "this site has TLS settings but the main file has no listen.https",
            );
        }
    }
    let https_redirect = cx.flag(s.https_redirect.as_ref(), "https_redirect", https);
    let mut hosts = Vec::new();
    let mut raw_hosts: Vec<(String, &S<String>)> = Vec::new();
    if let Some(h) = &s.host {
        raw_hosts.push(("host".into(), h));
    }
    for (i, h) in s.hosts.iter().flatten().enumerate() {
        raw_hosts.push((format!("hosts[{i}]"), h));
    }
    if raw_hosts.is_empty() {
        cx.err(Some(1), "host", "a site needs `host` or `hosts` (use \"*\" for a catch-all)");
    }
    for (path, h) in raw_hosts {
        match parse_host(&h.value) {
            Ok(p) => hosts.push(p),
            Err(e) => cx.err_at(h, path, e),
        }
    }

    let mut site_layer = defaults.clone();
    if let Some(o) = &s.options {
        site_layer.apply(cx, o, "options");
    }
    // Options at the top of the file (the proxy-manager's layout) apply as `options` does.
    let top = raw::Options {
        timeouts: s.timeouts.clone(),
        limits: s.limits.clone(),
        headers: s.headers.clone(),
        pool: s.connection_pool.clone(),
        waf: s.waf.clone(),
        ..raw::Options::default()
    };
    let under = s.options.as_ref();
    for (key, both) in [
        ("timeouts", top.timeouts.is_some() && under.is_some_and(|o| o.timeouts.is_some())),
        ("limits", top.limits.is_some() && under.is_some_and(|o| o.limits.is_some())),
        ("headers", top.headers.is_some() && under.is_some_and(|o| o.headers.is_some())),
        ("connection_pool", top.pool.is_some() && under.is_some_and(|o| o.pool.is_some())),
        ("waf", top.waf.is_some() && under.is_some_and(|o| o.waf.is_some())),
    ] {
        if both {
            cx.err(
                None,
                key,
                format!("`{key}` is given both at the top of the site file and under `options`; keep one"),
            );
        }
    }
    site_layer.apply(cx, &top, "");
    let not_built: [(&str, Option<u64>, &str); 1] =
        [("compression", s.compression.as_ref().map(|v| v.referenced.line()), "response compression is not built yet")];
    for (key, line, what) in not_built {
        if let Some(line) = line {
            cx.err(Some(line), key, format!("{what}; remove `{key}` (Gatehouse would not apply it)"));
        }
    }
    for (key, meaning) in [
        (
            "write",
            "the time allowed between two chunks of a request body from the client (a slow upload fails with 408); it is not a limit on writing the response",
        ),
        (
            "idle",
            "how long an idle connection to a backend is kept for reuse; idle client connections are closed after server.keepalive_timeout in the main file",
        ),
    ] {
        let given = match key {
            "write" => s.timeouts.as_ref().and_then(|t| t.write.as_ref()),
            _ => s.timeouts.as_ref().and_then(|t| t.idle.as_ref()),
        };
        if let Some(v) = given {
            notes.push(format!(
                "{}:{}: timeouts.{key}: in Gatehouse this is {meaning}",
                file.display(),
                v.referenced.line()
            ));
        }
    }
    // The proxy-manager's site-wide checks and breaker: for every upstream of this site
    // without its own, inline backends included.
    site_layer.health = s.health_check.as_ref().and_then(|h| super::resilience::health_check(cx, h, "health_check"));
    site_layer.breaker =
        s.circuit_breaker.as_ref().and_then(|c| super::resilience::circuit_breaker(cx, c, "circuit_breaker"));
    let error_pages = match &s.error_pages {
        Some(p) => {
            let mut pages = (**main.2).clone();
            pages.pages.extend(super::resilience::error_pages(cx, base, p, "error_pages").pages);
            Arc::new(pages)
        }
        None => main.2.clone(),
    };
    let maintenance =
        s.maintenance.as_ref().map(|m| Arc::new(super::resilience::maintenance(cx, base, m, "maintenance")));
    let websocket = s.websocket.as_ref().map(|w| Arc::new(super::resilience::websocket(cx, w, "websocket")));
    let rate_limits = s.rate_limit.as_ref().map(|r| super::security::site_rate_limit(cx, r)).unwrap_or_default();
    let logging = s.logging.as_ref().map(|l| super::data::logging(cx, l, "logging", Some(main.0)));
    let retention = s.data_retention.as_ref().map(|r| super::data::retention(cx, r, "data_retention", Some(main.1)));
    // What a route's own `logging` and `data_retention` start from.
    let route_logging = logging.clone().unwrap_or_else(|| main.0.clone());
    let route_retention = retention.unwrap_or(*main.1);
    let inherit = (&route_logging, &route_retention);

    let mut named: BTreeMap<String, Arc<Upstream>> = BTreeMap::new();
    for (uname, u) in s.upstreams.iter().flatten() {
        let at = format!("upstreams.{uname}");
        let mut balance = site_layer.balance();
        if let Some(b) = &u.load_balancing {
            balance = parse_balance(cx, b, &format!("{at}.load_balancing"), balance);
        }
        let service = u
            .service
            .as_ref()
            .and_then(|v| super::route::service_name(cx, &v.value, v.referenced.line(), &format!("{at}.service")));
        let backends = parse_backends(cx, &u.backends, &format!("{at}.backends"));
        if backends.is_empty() && !u.backends.is_empty() {
            continue;
        }
        match (u.backends.is_empty(), &u.service) {
            (true, None) => {
                cx.err(None, format!("{at}.backends"), "an upstream needs at least one backend (or `service`)");
                continue;
            }
            (false, Some(v)) => {
                cx.err_at(
                    v,
                    format!("{at}.service"),
                    "give `backends` or `service` (the registry's instances), not both",
                );
                continue;
            }
            _ => {}
        }
        if u.service.is_some() && service.is_none() {
            continue;
        }
        let id = format!("{name}/{uname}");
        let key = match &service {
            Some(name) => format!("{id}:service:{name}"),
            None => format!("{id}:{}", backend_list_key(&backends)),
        };
        let health = match &u.health_check {
            Some(h) => super::resilience::health_check(cx, h, &format!("{at}.health_check")),
            None => site_layer.health.clone(),
        };
        let passive =
            u.passive_check.as_ref().map(|p| super::resilience::passive_check(cx, p, &format!("{at}.passive_check")));
        let retries = u.retries.as_ref().map(|r| super::resilience::retries(cx, r, &format!("{at}.retries")));
        let breaker = match &u.circuit_breaker {
            Some(c) => super::resilience::circuit_breaker(cx, c, &format!("{at}.circuit_breaker")),
            None => site_layer.breaker.clone(),
        };
        // A changed check is a changed upstream (its state is still carried per backend).
        let key = format!("{key}:{health:?}:{passive:?}:{retries:?}:{breaker:?}");
        let pool = site_layer.pool.clone();
        let up = Upstream { key, id, backends, balance, pool, health, passive, retries, breaker, service };
        named.insert(uname.clone(), Arc::new(up));
    }

    let wrote_routes = s.routes.as_ref().is_some_and(|r| !r.is_empty());
    let mut routes = Vec::new();
    for (i, r) in s.routes.into_iter().flatten().enumerate() {
        let at = format!("routes[{i}]");
        if let Some(route) = build_route(cx, base, &name, i, r, &at, &site_layer, &named, inherit) {
            routes.push(route);
        }
    }
    // The short form (`backend`, `backends`, `static`, `redirect` at site level) is a
    // catch-all route after the explicit ones.
    let short = raw::Route {
        backend: s.backend,
        backends: s.backends,
        static_dir: s.static_dir,
        redirect: s.redirect,
        priority: None,
        ..Default::default()
    };
    let has_short =
        short.backend.is_some() || short.backends.is_some() || short.static_dir.is_some() || short.redirect.is_some();
    if has_short {
        let idx = routes.len();
        if let Some(mut route) = build_route(cx, base, &name, idx, short, "", &site_layer, &named, inherit) {
            route.priority = i32::MIN;
            routes.push(route);
        }
    } else if !wrote_routes {
        cx.err(Some(1), "", "a site needs `backend`, `backends`, `static`, `redirect` or `routes`");
    }
    if let Some(r) =
        routes.iter().find(|r| r.options.rate_limit.as_ref().is_some_and(|l| l.by_user) && r.options.auth.is_none())
    {
        cx.err(
            None,
            format!("routes ({}).options.rate_limit.key.user", r.id),
            "a limit by user needs auth on the route (the user it authenticates)",
        );
    }
    if client_ca.is_none()
        && let Some(r) = routes.iter().find(|r| r.options.auth.as_ref().is_some_and(|a| a.client_cert.is_some()))
    {
        cx.err(
            None,
            format!("routes ({}).options.auth.client_cert", r.id),
            "client certificates need tls.client_ca on the site (the CAs they are verified against)",
        );
    }
    Some(Site {
        name,
        file: file.to_path_buf(),
        hosts,
        routes,
        https_redirect: https_redirect && https,
        logging,
        retention,
        error_pages,
        maintenance,
        websocket,
        rate_limits,
        client_ca,
    })
}

pub(super) fn parse_host(h: &str) -> Result<HostPattern, String> {
    let mut h = h.trim().to_ascii_lowercase();
    // `[::1]` and `::1` are the same host; requests are matched without brackets.
    if h.starts_with('[') && h.ends_with(']') {
        h = h[1..h.len() - 1].to_string();
    }
    if h == "*" {
        return Ok(HostPattern::Any);
    }
    let (pattern, body) = match h.strip_prefix("*.") {
        Some(rest) => (HostPattern::Wildcard(format!(".{rest}")), rest.to_string()),
        None => (HostPattern::Exact(h.clone()), h.clone()),
    };
    let valid = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let ip_literal = body.starts_with('[') && body.ends_with(']') && IpAddr::from_str(&body[1..body.len() - 1]).is_ok();
    if valid || ip_literal || IpAddr::from_str(&body).is_ok() {
        Ok(pattern)
    } else {
        Err(format!(
            "invalid host {h:?}: expected a name like example.test, *.example.test or \"*\" (no scheme, port or path)"
        ))
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn check_host_conflicts(sites: &[Site], errors: &mut Errors) {
    let mut seen: HashMap<String, &Site> = HashMap::new();
    for site in sites {
        for h in &site.hosts {
            let key = h.to_string();
            match seen.get(&key) {
                Some(other) if other.name != site.name => errors.push(Error::new(
                    &site.file,
                    None,
                    "hosts",
                    format!("host {key:?} is already served by {}", other.file.display()),
                )),
                _ => {
                    seen.insert(key, site);
                }
            }
        }
    }
}
