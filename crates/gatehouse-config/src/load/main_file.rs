//! The main file: listeners, admin, storage, logging, TLS and the global settings, then the
//! site files it points to, into one `Config`.

use super::*;

pub(super) fn build(
    path: &Path,
    base: &Path,
    main: raw::Main,
    env: &EnvOverrides,
    errors: &mut Errors,
    inline_sites: Option<&[(&str, &str)]>,
) -> Config {
    let mut cx = Ctx { file: path, errors };

    let workers = match pick(main.workers.as_ref(), env, "workers") {
        None => default_workers(),
        Some(v) if v.text.trim() == "auto" => default_workers(),
        Some(v) => match v.text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => n,
            _ => {
                cx.value_err(
                    &v,
                    "workers",
                    format!(
                        "expected a number from 1 to {MAX_WORKERS} or \"auto\" (one per CPU: {}), got {:?}",
                        default_workers(),
                        v.text
                    ),
                );
                1
            }
        },
    };

    let listen_http = socket_addr(
        &mut cx,
        pick(main.listen.as_ref().and_then(|l| l.http.as_ref()), env, "listen.http"),
        "listen.http",
        "0.0.0.0:80",
    );
    let listen_https = pick(main.listen.as_ref().and_then(|l| l.https.as_ref()), env, "listen.https")
        .map(|v| socket_addr(&mut cx, Some(v), "listen.https", "0.0.0.0:443"));
    // `admin.listen: off` runs without the admin API (the one-liners' default).
    let admin_listen = match pick(main.admin.as_ref().and_then(|a| a.listen.as_ref()), env, "admin.listen") {
        Some(v) if v.text.trim() == "off" => None,
        given => Some(socket_addr(&mut cx, given, "admin.listen", "127.0.0.1:8080")),
    };

    // Two listeners of this process on one address would split its connections between
    // them (SO_REUSEPORT); the OS refuses a second process, and this refuses the case
    // where both are ours.
    let line = |v: Option<&S<String>>| v.map(|s| s.referenced.line());
    let listen = main.listen.as_ref();
    let mut taken = vec![("listen.http", listen_http, line(listen.and_then(|l| l.http.as_ref())))];
    if let Some(https) = listen_https {
        taken.push(("listen.https", https, line(listen.and_then(|l| l.https.as_ref()))));
    }
    if let Some(admin) = admin_listen {
        taken.push(("admin.listen", admin, line(main.admin.as_ref().and_then(|a| a.listen.as_ref()))));
    }
    let registry = resilience::registry(&mut cx, main.registry.as_ref());
    if let Some(addr) = registry.listen {
        taken.push(("registry.listen", addr, line(main.registry.as_ref().and_then(|r| r.listen.as_ref()))));
    }
    for (i, (name, addr, at)) in taken.iter().enumerate() {
        let clash = taken[..i].iter().find(|(_, other, _)| {
            addr.port() != 0
                && addr.port() == other.port()
                && (addr.ip() == other.ip() || addr.ip().is_unspecified() || other.ip().is_unspecified())
        });
        if let Some((first, _, _)) = clash {
            cx.err(*at, *name, format!("{addr} is also {first}: each listener needs its own port"));
        }
    }

    // `env:NAME` and `token_file` give the token from outside the file.
    let from_outside = main.admin.as_ref().and_then(|a| {
        let from_env = a.token.as_ref().is_some_and(|t| t.value.starts_with("env:"));
        (from_env || a.token_file.is_some())
            .then(|| cx.secret(base, a.token.as_ref(), a.token_file.as_ref(), "admin.token"))
    });
    // GATEHOUSE_ADMIN_TOKEN still wins over the file, as for every overridden key.
    let given = pick(None, env, "admin.token").or_else(|| match from_outside {
        Some(resolved) => resolved.map(|text| Value { text, line: None, env: None }),
        None => pick(main.admin.as_ref().and_then(|a| a.token.as_ref()), env, "admin.token"),
    });
    let admin_token = match given {
        // A token of spaces (or one with spaces around it, as an editor or `echo` may leave)
        // would be a password nobody can type reliably: refuse it rather than trim it.
        Some(v) if v.text.is_empty() => None,
        Some(v) if v.text.trim() != v.text => {
            let what = if v.text.trim().is_empty() { "is only spaces" } else { "has spaces around it" };
            cx.value_err(
                &v,
                "admin.token",
                format!("the token {what}; set a random string (e.g. `openssl rand -hex 32`) or remove the key"),
            );
            None
        }
        // A short token is a guessable one; it matters where the admin API is reachable
        // from the network (loopback-only setups may keep theirs).
        Some(v)
            if v.text.len() < 16
                && (admin_listen.is_some_and(|a| !a.ip().is_loopback())
                    || registry.listen.is_some_and(|a| !a.ip().is_loopback())) =>
        {
            cx.value_err(
                &v,
                "admin.token",
                format!("the token has {} characters; use at least 16 (e.g. `openssl rand -hex 32`)", v.text.len()),
            );
            None
        }
        Some(v) => Some(v.text),
        None => None,
    };
    let admin_allowed_hosts = main.admin.as_ref().and_then(|a| a.allowed_hosts.as_ref()).map(|list| {
        if list.value.is_empty() {
            cx.err_at(list, "admin.allowed_hosts", "an empty list would refuse every change through the admin API; remove the key to allow loopback names and admin.listen");
        }
        let mut out = Vec::new();
        for (i, h) in list.value.iter().enumerate() {
            match AllowedHost::parse(&h.value) {
                Some(a) => out.push(a),
                None => cx.err_at(
                    h,
                    format!("admin.allowed_hosts[{i}]"),
                    format!("expected a host name or IP address with an optional port (admin.example.net, 10.0.0.5:9180, [::1]) or \"*\", got {:?}", h.value),
                ),
            }
        }
        out
    });
    if let Some(addr) = registry.listen
        && !addr.ip().is_loopback()
        && admin_token.is_none()
    {
        let at = main.registry.as_ref().and_then(|r| r.listen.as_ref()).map(|s| s.referenced.line());
        cx.err(
            at,
            "registry.listen",
            "a registry beyond loopback needs admin.token (services send it as a bearer token)",
        );
    }
    if let Some(admin_listen) = admin_listen
        && !admin_listen.ip().is_loopback()
        && admin_token.is_none()
    {
        let line = main.admin.as_ref().and_then(|a| a.listen.as_ref()).map(|l| l.referenced.line());
        cx.err(line, "admin.listen", format!("the admin API listens on {admin_listen}, beyond loopback: set admin.token (or GATEHOUSE_ADMIN_TOKEN) so it is not open to the network"));
    }

    let sites_dir = pick(main.sites_dir.as_ref(), env, "sites_dir").map(|v| v.text).unwrap_or_else(|| "sites".into());
    let sites_dir = base.join(sites_dir);
    let storage_path = pick(main.storage.as_ref().and_then(|s| s.path.as_ref()), env, "storage.path")
        .map(|v| v.text)
        .or_else(|| env.state_directory().map(|d| format!("{d}/gatehouse.db")))
        .unwrap_or_else(|| "data/gatehouse.db".into());
    let storage_path = base.join(storage_path);

    let level = pick(main.log.as_ref().and_then(|l| l.level.as_ref()), env, "log.level");
    let level = match level {
        None => "info".to_string(),
        Some(v) => {
            let ok = v.text.split(',').all(|part| {
                let lvl = part.rsplit('=').next().unwrap_or("").trim();
                LEVELS.contains(&lvl.to_ascii_lowercase().as_str())
            });
            if !ok {
                let hint = nearest(&v.text.to_ascii_lowercase(), LEVELS.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.value_err(
                    &v,
                    "log.level",
                    format!("unknown log level {:?}{hint}; expected one of {}", v.text, LEVELS.join(", ")),
                );
            }
            v.text
        }
    };
    let format = match pick(main.log.as_ref().and_then(|l| l.format.as_ref()), env, "log.format") {
        None => LogFormat::Pretty,
        Some(v) => match v.text.as_str() {
            "json" => LogFormat::Json,
            "pretty" | "text" => LogFormat::Pretty,
            _ => {
                cx.value_err(&v, "log.format", format!("unknown log format {:?}; expected json or pretty", v.text));
                LogFormat::Pretty
            }
        },
    };

    let access_file = main.log.as_ref().and_then(|l| data::access_file(&mut cx, l, base));
    let logging = data::logging(&mut cx, &main.logging.unwrap_or_default(), "logging", None);
    let retention = data::retention(&mut cx, &main.data_retention.unwrap_or_default(), "data_retention", None);
    let webhooks = data::webhooks(&mut cx, base, main.webhooks.as_deref().unwrap_or_default());
    let alerts = data::alerts(&mut cx, &main.alerts.unwrap_or_default());
    let backups = data::backups(&mut cx, &main.backups.unwrap_or_default(), base, &storage_path);
    let otlp = main.opentelemetry.as_ref().and_then(|o| data::otlp(&mut cx, o));

    let shutdown_timeout = match pick(main.shutdown_timeout.as_ref(), env, "shutdown_timeout") {
        None => Duration::from_secs(30),
        Some(v) => parse_duration(&v.text).unwrap_or_else(|e| {
            cx.value_err(&v, "shutdown_timeout", e);
            Duration::from_secs(30)
        }),
    };

    let raw_server = main.server.unwrap_or_default();
    let server = ServerConfig {
        header_read_timeout: cx.timeout(
            raw_server.header_read_timeout.as_ref(),
            "server.header_read_timeout",
            Duration::from_secs(10),
        ),
        keepalive_timeout: cx.duration(
            raw_server.keepalive_timeout.as_ref(),
            "server.keepalive_timeout",
            Duration::from_secs(60),
        ),
        send_timeout: cx.timeout(raw_server.send_timeout.as_ref(), "server.send_timeout", Duration::from_secs(60)),
        h2_ping_interval: match raw_server.h2_ping_interval.as_ref() {
            None => None,
            Some(v) if matches!(v.value.trim(), "0" | "off") => None,
            Some(v) => {
                let every = cx.duration(Some(v), "server.h2_ping_interval", Duration::from_secs(60));
                if every < Duration::from_secs(1) {
                    cx.err_at(v, "server.h2_ping_interval", "must be at least 1s (or off)");
                }
                Some(every)
            }
        },
        max_connections: cx.count(raw_server.max_connections.as_ref(), "server.max_connections", 0, MAX_CONNECTIONS),
        close_banned: cx.flag(raw_server.close_banned.as_ref(), "server.close_banned", false),
        max_connections_per_ip: cx.count(
            raw_server.max_connections_per_ip.as_ref(),
            "server.max_connections_per_ip",
            0,
            MAX_CONNECTIONS,
        ),
        request_body_min_rate: raw_server.request_body_min_rate.as_ref().and_then(|v| {
            // `1KB/s`, or `1KB`; `0` and `off` turn it off.
            let text = v.value.trim();
            if matches!(text, "0" | "off") {
                return None;
            }
            match parse_size(text.strip_suffix("/s").unwrap_or(text)) {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(e) => {
                    cx.err_at(v, "server.request_body_min_rate", format!("{e} per second, e.g. \"1KB/s\""));
                    None
                }
            }
        }),
        proxy_protocol: Vec::new(),
    };
    let mut server = server;
    for (i, s) in raw_server.proxy_protocol.iter().flatten().enumerate() {
        match parse_cidr(&s.value) {
            Some(net) => server.proxy_protocol.push(net),
            None => cx.err_at(
                s,
                format!("server.proxy_protocol[{i}]"),
                format!("{:?} is not an IP address or CIDR range (e.g. 10.0.0.0/8)", s.value),
            ),
        }
    }

    let mut trusted_proxies = Vec::new();
    for (i, s) in main.trusted_proxies.iter().flatten().enumerate() {
        match parse_cidr(&s.value) {
            Some(net) => trusted_proxies.push(net),
            None => cx.err_at(
                s,
                format!("trusted_proxies[{i}]"),
                format!("expected an IP address or CIDR (e.g. 10.0.0.0/8), got {:?}", s.value),
            ),
        }
    }
    let mut dns_refresh = cx.duration(main.dns_refresh.as_ref(), "dns_refresh", Duration::from_secs(30));
    if dns_refresh < Duration::from_secs(1) {
        if let Some(v) = &main.dns_refresh {
            cx.err_at(v, "dns_refresh", "must be at least 1s");
        }
        dns_refresh = Duration::from_secs(30);
    }

    let geoip = main.geoip.as_ref().and_then(|g| {
        let path = base.join(g.database.value.trim());
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Some(path),
            Ok(_) => {
                cx.err_at(&g.database, "geoip.database", format!("{} is not a file", path.display()));
                None
            }
            Err(e) => {
                cx.err_at(&g.database, "geoip.database", format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    });
    let mut defaults = Layered { base: base.to_path_buf(), geoip: main.geoip.is_some(), ..Layered::default() };
    if let Some(d) = &main.defaults {
        defaults.apply(&mut cx, d, "defaults");
    }

    let http3 = cx.flag(main.http3.as_ref(), "http3", false);
    if http3
        && listen_https.is_none()
        && let Some(v) = &main.http3
    {
        cx.err_at(v, "http3", "HTTP/3 runs on the HTTPS port: add listen.https");
    }
    let mut tls = build_tls(&mut cx, base, main.tls.as_ref(), &storage_path);
    if tls != TlsConfig::default() && listen_https.is_none() {
        let line = main.tls.as_ref().and_then(|t| t.cert_dir.as_ref().or(t.cert.as_ref())).map(|s| s.referenced.line());
        cx.err(line, "tls", "certificates are configured but there is no HTTPS listener: add listen.https");
    }

    let main_pages = Arc::new(
        main.error_pages.as_ref().map(|p| resilience::error_pages(&mut cx, base, p, "error_pages")).unwrap_or_default(),
    );
    let mut notes = Vec::new();
    let mut sites = Vec::new();
    let site_files: Vec<(PathBuf, Result<String, String>)> = match inline_sites {
        Some(list) => list
            .iter()
            .map(|(name, text)| (PathBuf::from(format!("sites/{name}.yaml")), Ok(text.to_string())))
            .collect(),
        None => read_sites_dir(&mut cx, &sites_dir, main.sites_dir.as_ref()),
    };
    let mut streams: Vec<(Stream, u64)> = Vec::new();
    for (i, st) in main.streams.into_iter().flatten().enumerate() {
        if let Some(st) = stream::stream(&mut cx, base, st, &format!("streams[{i}]"), listen_https.is_some()) {
            streams.push(st);
        }
    }
    let taken: Vec<(&str, SocketAddr)> = taken.iter().map(|(name, addr, _)| (*name, *addr)).collect();
    let errors = cx.errors;
    for (file, text) in site_files {
        let mut scx = Ctx { file: &file, errors };
        match text {
            Err(e) => scx.err(None, "", e),
            Ok(src) => {
                let Some(mut raw_site) = parse_yaml::<raw::Site>(&file, &src, scx.errors) else { continue };
                let own_streams = raw_site.streams.take().unwrap_or_default();
                let has_streams = !own_streams.is_empty();
                for (i, st) in own_streams.into_iter().enumerate() {
                    let at = format!("streams[{i}]");
                    if let Some(st) = stream::stream(&mut scx, base, st, &at, listen_https.is_some()) {
                        streams.push(st);
                    }
                }
                // A file of streams only is no website.
                let website = raw_site.host.is_some()
                    || raw_site.hosts.is_some()
                    || raw_site.backend.is_some()
                    || raw_site.backends.is_some()
                    || raw_site.routes.is_some()
                    || raw_site.static_dir.is_some()
                    || raw_site.redirect.is_some();
                if (website || !has_streams)
                    && let Some(site) = build_site(
                        &mut scx,
                        &file,
                        base,
                        raw_site,
                        &defaults,
                        listen_https.is_some(),
                        &mut tls.pairs,
                        (&logging, &retention, &main_pages),
                        &mut notes,
                    )
                {
                    sites.push(site);
                }
            }
        }
    }
    check_host_conflicts(&sites, errors);
    stream::check_streams(&streams, &taken, errors);
    let streams = streams.into_iter().map(|(s, _)| s).collect();

    Config {
        source: path.to_path_buf(),
        workers,
        listen_http,
        listen_https,
        http3,
        tls,
        admin_listen,
        admin_token,
        admin_allowed_hosts,
        sites_dir,
        storage_path,
        logging,
        retention,
        webhooks,
        alerts,
        geoip,
        backups,
        otlp,
        log: LogConfig { level, format, access_file },
        shutdown_timeout,
        server,
        trusted_proxies,
        dns_refresh,
        sites,
        error_pages: main_pages,
        registry,
        notes,
        streams,
    }
}

/// Upper bounds for counts and sizes; each is far past what a real deployment sets, so a
/// value beyond it is a typo, and each keeps the value usable where it ends up.
pub(super) const MAX_WORKERS: usize = 1024;
pub(super) const MAX_CONNECTIONS: usize = 10_000_000;
/// Limits on request heads: hyper's read buffer and HTTP/2's header-list size (a u32) are
/// sized from them.
pub(super) const MAX_REQUEST_HEADERS: (u64, u64) = (1024, 16 << 20);
pub(super) const MAX_HEADER_COUNT: usize = 10_000;
pub(super) const MAX_URI_LENGTH: (u64, u64) = (16, 8 << 20);

pub(super) const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

pub(super) fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(super) fn socket_addr(cx: &mut Ctx<'_>, v: Option<Value>, path: &str, default: &str) -> SocketAddr {
    let fallback = || SocketAddr::from_str(default).unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    match v {
        None => fallback(),
        Some(v) => {
            // Accept ":8080" as "all interfaces", the way Go-based proxies spell it.
            let text = if v.text.starts_with(':') { format!("0.0.0.0{}", v.text) } else { v.text.clone() };
            SocketAddr::from_str(text.trim()).unwrap_or_else(|_| {
                cx.value_err(
                    &v,
                    path,
                    format!("expected an address like 127.0.0.1:8080 or [::1]:8080, got {:?}", v.text),
                );
                fallback()
            })
        }
    }
}

pub(super) fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    IpNet::from_str(s).ok().or_else(|| IpAddr::from_str(s).ok().map(IpNet::from))
}
