use super::*;

fn errs(main: &str, sites: &[(&str, &str)]) -> Vec<String> {
    match load_from_str_for_tests(main, sites, Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn short_form_site_loads() {
    let c = load_from_str_for_tests(
        "listen: {http: 127.0.0.1:0}\n",
        &[("app", "host: app.test\nbackend: http://127.0.0.1:9000\n")],
        Path::new("."),
    )
    .expect("valid");
    assert_eq!(c.sites.len(), 1);
    assert_eq!(c.sites[0].hosts, vec![HostPattern::Exact("app.test".into())]);
    let Action::Proxy(up) = &c.sites[0].routes[0].action else { panic!("expected proxy") };
    assert_eq!(up.backends[0].addr, BackendAddr::Tcp { host: "127.0.0.1".into(), port: 9000 });
}

#[test]
fn unknown_key_names_file_line_path_and_suggestion() {
    let e = errs(
        "",
        &[(
            "panel",
            "host: a.test\nroutes:\n  - path: /\n    backend: http://x:1\n  - path: /b\n    bakend: http://x:2\n",
        )],
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("sites/panel.yaml:6 routes[1].bakend: unknown key `bakend` (did you mean `backend`?)"),
        "{}",
        e[0]
    );
}

#[test]
fn numbers_are_accepted_where_strings_are_parsed() {
    let c = load_from_str_for_tests(
        "workers: 3\nlisten: {http: 127.0.0.1:0}\n",
        &[(
            "a",
            "host: a.test\nbackend: http://x:1\noptions: {limits: {request_header_count: 20, request_body: 1000}}\n",
        )],
        Path::new("."),
    )
    .expect("valid");
    assert_eq!(c.workers, 3);
    assert_eq!(c.sites[0].routes[0].options.max_request_header_count, 20);
    assert_eq!(c.sites[0].routes[0].options.max_request_body, Some(1000));
}

#[test]
fn semantic_errors_are_all_reported() {
    let e = errs(
        "log: {level: verbose}\n",
        &[(
            "s",
            "host: a.test\nroutes:\n  - path: '(['\n    match: regex\n    backend: http://x:1\n  - path: /x\n    backend: ftp://x\n    options:\n      timeouts: {connect: 5 parsecs}\n",
        )],
    );
    assert!(e.iter().any(|m| m.starts_with("gatehouse.yaml:1 log.level: unknown log level")), "{e:?}");
    assert!(e.iter().any(|m| m.starts_with("sites/s.yaml:3 routes[0].path: invalid regex")), "{e:?}");
    assert!(e.iter().any(|m| m.starts_with("sites/s.yaml:7 routes[1].backend[0]: invalid backend")), "{e:?}");
    assert!(
        e.iter().any(|m| m.starts_with("sites/s.yaml:9 routes[1].options.timeouts.connect: invalid duration")),
        "{e:?}"
    );
}

#[test]
fn absurd_values_are_errors_with_their_bounds() {
    let site = "host: a.test\nroutes:\n  - path: /x\n    backend: http://x:1\n    rewrite: {pattern: '^/x/(\\d+)$', replace: '/$2/$1x/${1}'}\n    options:\n      limits: {request_headers: 20GB, request_header_count: 99999999, uri_length: 0}\n      pool: {max_connections_per_host: 18446744073709551615}\n      timeouts: {read: 0s, connect: 213503982334602d}\n";
    let e = errs(
        "workers: 100000\nadmin: {token: '   '}\nserver: {keepalive_timeout: 18446744073709551615s, header_read_timeout: 0, max_connections: 99999999999, h2_ping_interval: 10ms}\nshutdown_timeout: 213503982334600d\n",
        &[("s", site)],
    );
    let want = [
        "gatehouse.yaml:1 workers: expected a number from 1 to 1024",
        "gatehouse.yaml:2 admin.token: the token is only spaces",
        "gatehouse.yaml:3 server.header_read_timeout: a timeout of 0 would fail every request",
        "gatehouse.yaml:3 server.keepalive_timeout: duration \"18446744073709551615s\" is too long: at most 365d",
        "gatehouse.yaml:3 server.max_connections: 99999999999 is too large: at most 10000000",
        "gatehouse.yaml:3 server.h2_ping_interval: must be at least 1s",
        "gatehouse.yaml:4 shutdown_timeout: duration \"213503982334600d\" is too long",
        "sites/s.yaml:5 routes[0].rewrite.replace: `/$2/$1x/${1}` names capture group `2`",
        "sites/s.yaml:5 routes[0].rewrite.replace: `/$2/$1x/${1}` names capture group `1x`",
        "sites/s.yaml:7 routes[0].options.limits.request_headers: \"20GB\" is out of range",
        "sites/s.yaml:7 routes[0].options.limits.request_header_count: 99999999 is too large",
        "sites/s.yaml:7 routes[0].options.limits.uri_length: \"0\" is out of range",
        "sites/s.yaml:8 routes[0].options.pool.max_connections_per_host: 18446744073709551615 is too large",
        "sites/s.yaml:9 routes[0].options.timeouts.read: a timeout of 0",
        "sites/s.yaml:9 routes[0].options.timeouts.connect: duration \"213503982334602d\" is too long",
    ];
    for w in want {
        assert!(e.iter().any(|m| m.starts_with(w)), "missing {w:?} in {e:#?}");
    }
    assert_eq!(e.len(), want.len(), "{e:#?}");
    // A token with spaces around it is refused too; a short one as well.
    assert!(errs("admin: {token: ' abcdefghijklmnopq'}\n", &[])[0].contains("has spaces around it"));
    assert!(errs("admin: {listen: '0.0.0.0:9', token: short}\n", &[])[0].contains("use at least 16"));
    assert!(errs("admin: {token: short}\n", &[]).is_empty(), "a short token is fine on loopback");
    let zero = "host: a.test\nbackend: http://x:1\noptions: {limits: {request_header_count: 0}}\n";
    assert!(errs("", &[("s", zero)])[0].contains("request_header_count: 0 would refuse every request"));
}

#[test]
fn values_at_the_bounds_and_unicode_classes_load() {
    let site = "host: a.test\nroutes:\n  - path: '^/\\p{L}+$'\n    match: regex\n    backend: http://x:1\n    rewrite: {pattern: '^/(?P<w>\\p{L}+)$', replace: '/w/${w}/$$'}\n    options:\n      limits: {request_headers: 16MiB}\n      timeouts: {read: 365d}\n";
    let c = load_from_str_for_tests(
        "workers: 1024\nserver: {keepalive_timeout: 0, h2_ping_interval: 30s}\nadmin: {token: 0123456789abcdef}\n",
        &[("s", site)],
        Path::new("."),
    )
    .expect("valid");
    assert_eq!(c.workers, 1024);
    assert_eq!(c.server.keepalive_timeout, Duration::ZERO);
    assert_eq!(c.server.h2_ping_interval, Some(Duration::from_secs(30)));
    let r = &c.sites[0].routes[0];
    let rw = r.rewrite.as_ref().expect("rewrite");
    assert_eq!(rw.pattern.replace("/größe", rw.replace.as_str()), "/w/größe/$");
    let off = load_from_str_for_tests("server: {h2_ping_interval: off}\n", &[], Path::new(".")).expect("valid");
    assert_eq!(off.server.h2_ping_interval, None);
}

#[test]
fn empty_main_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for text in ["", "# only a comment\n"] {
        let main = dir.path().join("gatehouse.yaml");
        std::fs::write(&main, text).expect("write");
        let e = load(&main, &EnvOverrides::default()).expect_err("empty main file");
        assert!(e.to_string().contains("the main file has no settings"), "{e}");
    }
}

#[test]
fn presets_can_be_overridden_by_sites() {
    let c = load_from_str_for_tests(
        "defaults: {headers: {preset: security-basic}}\n",
        &[("a", "host: a.test\nbackend: http://x:1\noptions:\n  headers:\n    response:\n      set: {X-Frame-Options: DENY}\n      remove: [Strict-Transport-Security]\n")],
        Path::new("."),
    )
    .expect("valid");
    let rules = &c.sites[0].routes[0].options.response_headers;
    assert!(rules.set.iter().any(|(n, v)| n == "x-frame-options" && v == "DENY"));
    assert!(!rules.set.iter().any(|(n, _)| n == "strict-transport-security"));
    assert!(rules.set.iter().any(|(n, _)| n == "x-content-type-options"));
}

#[test]
fn env_overrides_win_and_bad_values_name_the_variable() {
    let dir = std::env::temp_dir().join(format!("gh-env-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sites")).expect("mkdir");
    std::fs::write(dir.join("gatehouse.yaml"), "listen: {http: 127.0.0.1:1}\n").expect("write");
    std::fs::write(dir.join("sites/a.yaml"), "host: a.test\nbackend: http://x:1\n").expect("write");
    let env = EnvOverrides::from_pairs([("GATEHOUSE_LISTEN_HTTP".to_string(), "127.0.0.1:2".to_string())]);
    let c = load(&dir.join("gatehouse.yaml"), &env).expect("valid");
    assert_eq!(c.listen_http.port(), 2);
    let env = EnvOverrides::from_pairs([("GATEHOUSE_LOG_FORMAT".to_string(), "xml".to_string())]);
    let e = load(&dir.join("gatehouse.yaml"), &env).expect_err("invalid");
    assert!(e.to_string().starts_with("environment GATEHOUSE_LOG_FORMAT: unknown log format"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn dns_refresh_must_be_positive() {
    let e = errs("dns_refresh: 0s\n", &[("a", "host: a.test\nbackend: http://x:1\n")]);
    assert_eq!(e, vec!["gatehouse.yaml:1 dns_refresh: must be at least 1s".to_string()]);
}

#[test]
fn backends_parse() {
    let b = parse_backend("unix:/run/app.sock").expect("unix");
    assert_eq!(b.addr, BackendAddr::Unix("/run/app.sock".into()));
    let b = parse_backend("h2c://[::1]:50051 weight=3").expect("h2c");
    assert!(b.h2c);
    assert_eq!(b.weight, 3);
    assert!(parse_backend("http://x:1/path").is_err());
    assert!(parse_backend("http://x:1 weight=0").is_err());
}

#[test]
fn admin_allowed_hosts_are_parsed_and_checked() {
    let c = load_from_str_for_tests(
        "listen: {http: 127.0.0.1:0}\nadmin:\n  allowed_hosts: [Admin.Example.NET, '10.0.0.5:9180', '[::1]', '*', '::2']\n",
        &[],
        Path::new("."),
    )
    .expect("valid");
    let want = vec![
        AllowedHost::Host { name: "admin.example.net".into(), port: None },
        AllowedHost::Host { name: "10.0.0.5".into(), port: Some(9180) },
        AllowedHost::Host { name: "::1".into(), port: None },
        AllowedHost::Any,
        AllowedHost::Host { name: "::2".into(), port: None },
    ];
    assert_eq!(c.admin_allowed_hosts, Some(want));
    assert_eq!(
        load_from_str_for_tests("listen: {http: 127.0.0.1:0}\n", &[], Path::new("."))
            .expect("valid")
            .admin_allowed_hosts,
        None
    );
    let e = errs("admin:\n  allowed_hosts:\n    - http://a.test\n    - 'a.test:99999'\n", &[]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("gatehouse.yaml:3 admin.allowed_hosts[0]: expected a host name"), "{}", e[0]);
    assert!(e[1].starts_with("gatehouse.yaml:4 admin.allowed_hosts[1]:"), "{}", e[1]);
    let e = errs("admin:\n  allowed_hosts: []\n", &[]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("gatehouse.yaml:2 admin.allowed_hosts: an empty list"), "{}", e[0]);
}

#[test]
fn files_lists_main_sites_and_referenced_files_once() {
    let c = load_from_str_for_tests(
        "listen: {http: 127.0.0.1:0}\n",
        &[
            ("a", "host: a.test\nbackend: http://127.0.0.1:1\n"),
            ("b", "host: b.test\nroutes:\n  - {path: /x, backend: http://127.0.0.1:2}\n  - {path: /y, backend: http://127.0.0.1:3}\n"),
        ],
        Path::new("."),
    )
    .expect("valid");
    let files: Vec<String> = c.files().iter().map(|p| p.display().to_string()).collect();
    assert_eq!(files, ["gatehouse.yaml", "sites/a.yaml", "sites/b.yaml"]);
}

#[test]
fn request_body_min_rate_takes_a_size_per_second() {
    let site = [("s", "host: a.test\nbackend: http://127.0.0.1:1\n")];
    let rate = |v: &str| {
        load_from_str_for_tests(&format!("server: {{request_body_min_rate: {v}}}\n"), &site, Path::new("."))
            .expect("config")
            .server
            .request_body_min_rate
    };
    assert_eq!(rate("1KB/s"), rate("1KB"));
    assert!(rate("1KB/s").is_some_and(|n| n >= 1000));
    assert_eq!(rate("off"), None);
    assert_eq!(rate("0"), None);
    let e = errs("server: {request_body_min_rate: fast}\n", &site);
    assert!(e.iter().any(|e| e.contains("server.request_body_min_rate") && e.contains("per second")), "{e:?}");
}

#[test]
fn data_retention_has_defaults_and_refuses_what_the_daily_job_cannot_keep() {
    let day = |d: u64| Duration::from_secs(d * 86_400);
    let c = load_from_str_for_tests("", &[], Path::new(".")).expect("valid");
    assert_eq!(c.retention, RetentionConfig { access: day(7), errors: day(30), security: day(90), audit: day(365) });
    let c = load_from_str_for_tests("data_retention: {access_logs: 2d, audit_logs: 400d}\n", &[], Path::new("."));
    let e: Vec<String> = c.err().map(|e| e.iter().map(ToString::to_string).collect()).unwrap_or_default();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("data_retention.audit_logs") && e[0].contains("at most 365d"), "{e:?}");
    let e = errs("data_retention:\n  error_logs: 10m\n  security_logs: often\n", &[]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("gatehouse.yaml:2 data_retention.error_logs: keep records at least 1h"), "{e:?}");
    assert!(e[1].starts_with("gatehouse.yaml:3 data_retention.security_logs"), "{e:?}");
    let c = load_from_str_for_tests("data_retention: {access_logs: 36h}\n", &[], Path::new(".")).expect("valid");
    assert_eq!(c.retention.access, Duration::from_secs(36 * 3600));
}

#[test]
fn webhooks_and_alerts_are_checked() {
    let c = load_from_str_for_tests(
        "webhooks:\n  - url: https://discord.test/api/webhooks/1/secret\n    format: discord\n    events: [cert_expiring]\n  - url: http://127.0.0.1:9/hook\n    throttle: 0s\nalerts: {error_rate: 25%, window: 1m, min_requests: 5}\n",
        &[],
        Path::new("."),
    )
    .expect("valid");
    assert_eq!(c.webhooks.len(), 2);
    assert_eq!(
        (c.webhooks[0].format, c.webhooks[0].wants("cert_expiring"), c.webhooks[0].wants("high_error_rate")),
        (WebhookFormat::Discord, true, false)
    );
    assert!(c.webhooks[1].wants("high_error_rate"), "no events listed means all");
    assert_eq!(c.webhooks[1].throttle, Duration::ZERO);
    assert_eq!(
        c.alerts,
        AlertsConfig {
            error_rate: 0.25,
            window: Duration::from_secs(60),
            min_requests: 5,
            failed_logins: 20,
            waf_blocks: 50
        }
    );
    assert!(!format!("{:?}", c.webhooks[0]).contains("secret"), "the URL is a secret");
    let e = errs(
        "webhooks:\n  - url: ftp://x\n    format: slack\n    events: [cert_expired]\nalerts: {error_rate: 150%}\n",
        &[],
    );
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e[0].contains("webhooks[0].url"), "{e:?}");
    assert!(e[1].contains("webhooks[0].format") && e[1].contains("json or discord"), "{e:?}");
    assert!(e[2].contains("unknown event \"cert_expired\"") && e[2].contains("cert_expiring"), "{e:?}");
    assert!(e[3].contains("alerts.error_rate"), "{e:?}");
}

#[test]
fn health_checks_are_checked() {
    let site = |check: &str| {
        format!(
            "host: a.test\nupstreams:\n  app:\n    backends: [http://127.0.0.1:1]\n    health_check: {check}\nroutes:\n  - path: /\n    upstream: app\n"
        )
    };
    let c = load_from_str_for_tests(
        "",
        &[("a", &site("{path: /health, interval: 1s, timeout: 500ms, unhealthy_after: 2, healthy_after: 2}"))],
        Path::new("."),
    )
    .expect("valid");
    let Action::Proxy(up) = &c.sites[0].routes[0].action else { panic!("proxy") };
    let h = up.health.as_ref().expect("health");
    assert_eq!(
        (h.interval, h.timeout, h.unhealthy_after, h.healthy_after),
        (Duration::from_secs(1), Duration::from_millis(500), 2, 2)
    );
    assert_eq!(h.http.as_ref().map(|x| (x.path.as_str(), x.expect)), Some(("/health", (200, 399))));
    let e = errs("", &[("a", &site("{type: udp, interval: 10ms, method: POST, expect_status: 7xx}"))]);
    assert_eq!(e.len(), 4, "{e:?}");
    for want in ["health_check.type", "health_check.interval", "health_check.method", "health_check.expect_status"] {
        assert!(e.iter().any(|x| x.contains(want)), "{want} missing: {e:?}");
    }
    let e = errs("", &[("a", &site("{type: tcp, path: /x}"))]);
    assert!(e.len() == 1 && e[0].contains("tcp check only connects"), "{e:?}");
}

#[test]
fn registry_services_are_upstreams_by_name_or_inline() {
    let c = load_from_str_for_tests(
        "",
        &[(
            "a",
            "host: a.test\nupstreams:\n  api:\n    service: api-v2\n    retries: {attempts: 2}\nroutes:\n  - path: /api\n    upstream: api\n  - path: /inline\n    upstream: {service: web}\n  - path: /\n    backend: http://127.0.0.1:1\n",
        )],
        Path::new("."),
    )
    .expect("valid");
    let services: Vec<Option<&str>> = c.sites[0]
        .routes
        .iter()
        .map(|r| match &r.action {
            Action::Proxy(up) => up.service.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(services, [Some("api-v2"), Some("web"), None]);
    let e = errs(
        "",
        &[(
            "a",
            "host: a.test\nupstreams:\n  both:\n    service: x\n    backends: [http://127.0.0.1:1]\n  bad:\n    service: \"a b\"\nroutes:\n  - path: /\n    upstream: {service: \"\"}\n",
        )],
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().any(|x| x.contains("upstreams.both.service") && x.contains("not both")), "{e:?}");
    assert!(e.iter().any(|x| x.contains("upstreams.bad.service") && x.contains("invalid service name")), "{e:?}");
    assert!(e.iter().any(|x| x.contains("routes[0].upstream.service")), "{e:?}");
    let e = errs("", &[("a", "host: a.test\nroutes:\n  - path: /\n    upstream: {servce: x}\n")]);
    assert!(!e.is_empty() && e[0].contains("upstream"), "{e:?}");
}

#[test]
fn resilience_keys_are_checked() {
    let site = |extra: &str| {
        format!(
            "host: a.test\nupstreams:\n  app:\n    backends: [http://127.0.0.1:1]\n{extra}routes:\n  - path: /\n    upstream: app\n"
        )
    };
    let c = load_from_str_for_tests(
        "",
        &[(
            "a",
            &site("    circuit_breaker: {failure_threshold: 5, timeout: 30s, ratio: 50%}\n    retries: {attempts: 3, statuses: [502, 503], methods: [post], max_body: 4KiB}\n"),
        )],
        Path::new("."),
    )
    .expect("valid");
    let Action::Proxy(up) = &c.sites[0].routes[0].action else { panic!("proxy") };
    let b = up.breaker.as_ref().expect("breaker");
    assert_eq!((b.failures, b.open_for, b.ratio), (5, Duration::from_secs(30), Some(0.5)));
    let r = up.retries.as_ref().expect("retries");
    assert_eq!((r.attempts, r.statuses.clone(), r.max_body), (3, vec![502, 503], 4096));
    assert!(r.allows(&Method::POST) && !r.allows(&Method::PATCH) && r.allows(&Method::PUT));
    let e = errs(
        "",
        &[(
            "a",
            &site(
                "    circuit_breaker: {probes: 1, successes: 2, open_for: 0s}\n    retries: {statuses: [200], methods: [CONNECT]}\n",
            ),
        )],
    );
    for want in ["circuit_breaker.successes", "circuit_breaker.open_for", "retries.statuses[0]", "retries.methods[0]"] {
        assert!(e.iter().any(|x| x.contains(want)), "{want} missing: {e:?}");
    }
    // A breaker switched off is none at all.
    let c = load_from_str_for_tests("", &[("a", &site("    circuit_breaker: {enabled: false}\n"))], Path::new("."))
        .expect("valid");
    let Action::Proxy(up) = &c.sites[0].routes[0].action else { panic!("proxy") };
    assert!(up.breaker.is_none());
    // Splits need known upstreams, two pools and a weight somewhere.
    let e = errs(
        "",
        &[(
            "a",
            "host: a.test\nupstreams:\n  a:\n    backends: [http://127.0.0.1:1]\nroutes:\n  - path: /\n    split:\n      sticky: {cookie: \"a b\"}\n      pools:\n        - {upstream: a, weight: 0}\n        - {upstream: b}\n",
        )],
    );
    for want in ["split.pools[1].upstream", "split.sticky.cookie"] {
        assert!(e.iter().any(|x| x.contains(want)), "{want} missing: {e:?}");
    }
    // Maintenance windows must parse and end after they start.
    let e = errs(
        "",
        &[(
            "a",
            "host: a.test\nbackend: http://127.0.0.1:1\nmaintenance:\n  allow: [nope]\n  windows:\n    - {start: \"2026-12-24T22:00:00Z\", end: \"2026-12-24T21:00:00Z\"}\n    - {start: tomorrow, end: \"2026-12-24T21:00:00Z\"}\n",
        )],
    );
    for want in ["maintenance.allow[0]", "maintenance.windows[0].end", "maintenance.windows[1].start"] {
        assert!(e.iter().any(|x| x.contains(want)), "{want} missing: {e:?}");
    }
}

#[test]
fn secrets_come_from_the_environment_or_files() {
    let dir = std::env::temp_dir().join(format!("gatehouse-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("token"), "a-token-from-a-file-of-32-bytes\n").expect("token");
    std::fs::write(dir.join("hook"), "https://hooks.example.test/T0/secret\n").expect("hook");
    std::fs::write(dir.join("hmac"), "b64-hmac-key\n").expect("hmac");
    let path = std::env::var("PATH").expect("PATH is set");
    let main = |token: &str| {
        format!(
            "admin: {{listen: 127.0.0.1:0, {token}}}\nwebhooks:\n  - {{url_file: hook}}\n  - {{url: \"env:GATEHOUSE_TEST_UNSET_VARIABLE\"}}\ntls:\n  acme: {{email: a@b.test, eab: {{kid: k, hmac_file: hmac}}}}\nlisten: {{http: 127.0.0.1:0, https: 127.0.0.1:0}}\n"
        )
    };
    // The unset variable is named; the rest loads.
    let e = load_from_str_for_tests(&main("token_file: token"), &[], &dir).expect_err("unset variable");
    let all: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].contains("webhooks[1].url: the environment variable GATEHOUSE_TEST_UNSET_VARIABLE is not set"),
        "{all:?}"
    );
    let fine = |m: String| m.replace("  - {url: \"env:GATEHOUSE_TEST_UNSET_VARIABLE\"}\n", "");
    let c = load_from_str_for_tests(&fine(main("token_file: token")), &[], &dir).expect("valid");
    assert_eq!(c.admin_token.as_deref(), Some("a-token-from-a-file-of-32-bytes"));
    assert_eq!(c.webhooks[0].url, "https://hooks.example.test/T0/secret");
    assert_eq!(c.tls.acme.as_ref().and_then(|a| a.eab.clone()), Some(("k".into(), "b64-hmac-key".into())));
    let c = load_from_str_for_tests(&fine(main("token: \"env:PATH\"")), &[], &dir).expect("valid");
    assert_eq!(c.admin_token, Some(path));
    let e = load_from_str_for_tests(&fine(main("token: x, token_file: token")), &[], &dir).expect_err("both");
    assert!(e.iter().any(|m| m.to_string().contains("give admin.token or admin.token_file, not both")), "{e:?}");
    let e = load_from_str_for_tests(&fine(main("token_file: missing")), &[], &dir).expect_err("missing");
    assert!(e.iter().any(|m| m.to_string().contains("admin.token: cannot read")), "{e:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_api_can_be_turned_off_and_browse_belongs_to_static_routes() {
    let c = load_from_str_for_tests("listen: {http: 127.0.0.1:0}\nadmin: {listen: \"off\"}\n", &[], Path::new("."))
        .expect("valid");
    assert_eq!(c.admin_listen, None);
    let c = load_from_str_for_tests("listen: {http: 127.0.0.1:0}\n", &[], Path::new(".")).expect("valid");
    assert_eq!(c.admin_listen, Some("127.0.0.1:8080".parse().expect("addr")));
    let site = "host: a.test\nroutes:\n  - path: /\n    backend: http://127.0.0.1:1\n    browse: true\n  - path: /f\n    static: .\n    browse: yes\n";
    let e = errs("", &[("a", site)]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("sites/a.yaml:5 routes[0].browse: browse lists directories of a `static` route"), "{e:?}");
    assert!(e[1].starts_with("sites/a.yaml:8 routes[1].browse: expected true or false"), "{e:?}");
}

#[test]
fn under_systemd_the_storage_path_defaults_to_the_state_directory() {
    let dir = tempfile::tempdir().expect("dir");
    let main = dir.path().join("gatehouse.yaml");
    std::fs::write(&main, "listen: {http: 127.0.0.1:0}\n").expect("write");
    std::fs::create_dir(dir.path().join("sites")).expect("sites");
    let env =
        |pairs: &[(&str, &str)]| EnvOverrides::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let c = load(&main, &env(&[("STATE_DIRECTORY", "/var/lib/gatehouse:/var/lib/other")])).expect("valid");
    assert_eq!(c.storage_path, Path::new("/var/lib/gatehouse/gatehouse.db"));
    let c = load(&main, &env(&[])).expect("valid");
    assert_eq!(c.storage_path, dir.path().join("data/gatehouse.db"));
    // A path written in the file (or GATEHOUSE_STORAGE_PATH) still wins.
    std::fs::write(&main, "listen: {http: 127.0.0.1:0}\nstorage: {path: /srv/gh.db}\n").expect("write");
    let c = load(&main, &env(&[("STATE_DIRECTORY", "/var/lib/gatehouse")])).expect("valid");
    assert_eq!(c.storage_path, Path::new("/srv/gh.db"));
}

#[test]
fn respond_and_fallback_are_checked() {
    let site = "host: a.test\nroutes:\n  - path: /a\n    respond: {status: 99}\n  - path: /b\n    respond: {status: 204, body: x}\n  - path: /c\n    static: .\n    fallback: ../etc/passwd\n  - path: /d\n    backend: http://127.0.0.1:1\n    fallback: /index.html\n  - path: /e\n    respond: {status: 200}\n    backend: http://127.0.0.1:1\n";
    let e = errs("", &[("a", site)]);
    let wanted = [
        "sites/a.yaml:4 routes[0].respond.status: expected a status from 200 to 599",
        "sites/a.yaml:6 routes[1].respond.body: a 204 answer has no body",
        "sites/a.yaml:9 routes[2].fallback: expected a file inside the static directory",
        "sites/a.yaml:12 routes[3].fallback: fallback is the file a `static` route answers missing paths with",
        "routes[4]: a route takes only one of backend, backends, upstream, split, static, redirect, respond; found backend and respond",
    ];
    assert_eq!(e.len(), wanted.len(), "{e:#?}");
    for w in wanted {
        assert!(e.iter().any(|m| m.contains(w)), "{w}\n{e:#?}");
    }
    let ok = "host: a.test\nroutes:\n  - path: /\n    respond: {status: 503, body: \"down for maintenance\"}\n";
    let c = load_from_str_for_tests("", &[("a", ok)], Path::new(".")).expect("valid");
    assert!(
        matches!(&c.sites[0].routes[0].action, Action::Respond { status, body } if status.as_u16() == 503 && body == "down for maintenance")
    );
}
