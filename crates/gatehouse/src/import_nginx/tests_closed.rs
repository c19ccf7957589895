//! Tests of what keeps the importer from failing open: scoped location rewrites, the
//! route that refuses what `limit_except` leaves out, stand-ins for locations without
//! content or that cannot be matched, `^~` prefixes and their longer plain prefixes,
//! nginx's `proxy_redirect default` and its `/x` → `/x/` redirect.

use super::*;

/// The routes of site `site` as (path, priority, status of a `respond`), in the order
/// Gatehouse tries them.
fn order(config: &Config, site: &str) -> Vec<(String, i32, Option<u16>)> {
    let s = config.sites.iter().find(|s| s.name == site).expect("site");
    s.routes.iter().map(|r| (r.path.to_string(), r.priority, respond(r).map(|(s, _)| s))).collect()
}

#[test]
fn location_rewrites_are_scoped_to_their_location() {
    let im = import(
        r#"server {
    server_name rw.test;
    location = /old { rewrite ^ /new permanent; }
    location = /keep { rewrite ^/other$ /new permanent; proxy_pass http://127.0.0.1:1; }
    location /docs/ { rewrite ^/docs/(.*)$ /manual/$1 redirect; proxy_pass http://127.0.0.1:1; }
    location /wide/ { rewrite /x/ /y/ permanent; proxy_pass http://127.0.0.1:1; }
    location ~ \.htm$ { rewrite ^(.*)\.htm$ $1.html permanent; proxy_pass http://127.0.0.1:1; }
    location / { proxy_pass http://127.0.0.1:2; }
}
"#,
    );
    im.assert_not_skipped(3);
    im.assert_skipped(4, "never matches this exact location's path");
    im.assert_skipped(6, "not anchored");
    im.assert_skipped(7, "not anchored");
    let config = im.load_http();
    let old = route(&config, "rw.test", "exact", "/old");
    assert!(matches!(&old.action, Action::Redirect { code, .. } if code.as_u16() == 301));
    assert_eq!(rewritten(old, "/old"), "/new");
    // No route redirects anything else.
    let s = config.sites.iter().find(|s| s.name == "rw.test").expect("site");
    let redirects: Vec<String> =
        s.routes.iter().filter(|r| matches!(r.action, Action::Redirect { .. })).map(|r| r.path.to_string()).collect();
    // The others are nginx's own `/docs` → `/docs/` redirects of proxied prefixes.
    assert_eq!(redirects, ["= /old", "= /docs", "~ ^/docs/(.*)$", "= /wide"]);
    let docs = route(&config, "rw.test", "regex", "^/docs/(.*)$");
    assert_eq!(docs.priority, 1);
    assert_eq!(rewritten(docs, "/docs/a"), "/manual/a");
    assert!(matches!(&route(&config, "rw.test", "exact", "/keep").action, Action::Proxy(_)));
    assert!(matches!(&route(&config, "rw.test", "prefix", "/wide").action, Action::Proxy(_)));
}

#[test]
fn limit_except_refuses_the_other_methods_before_later_routes() {
    let im = import(
        r#"server {
    server_name le.test;
    location /ro/ { proxy_pass http://127.0.0.1:1; limit_except GET { deny all; } }
    location / { proxy_pass http://127.0.0.1:2; }
}
"#,
    );
    let config = im.load_http();
    let s = config.sites.iter().find(|s| s.name == "le.test").expect("site");
    let ro: Vec<&Route> = s
        .routes
        .iter()
        .filter(|r| r.path.to_string() == route(&config, "le.test", "prefix", "/ro").path.to_string())
        .collect();
    assert_eq!(ro.len(), 2);
    assert!(ro[0].methods.is_some() && matches!(ro[0].action, Action::Proxy(_)));
    assert!(ro[1].methods.is_none() && respond(ro[1]) == Some((403, "")));
    assert_eq!(ro[0].priority, ro[1].priority);
    // Tried before `location /`.
    let at = |r: &Route| s.routes.iter().position(|x| std::ptr::eq(x, r)).expect("position");
    assert!(at(ro[1]) < at(route(&config, "le.test", "prefix", "")));
    assert!(im.site("le.test.yaml").contains("other methods go to the next route, which answers 403"));
}

#[test]
fn locations_without_content_internal_ones_and_unmatchable_ones_fail_closed() {
    let im = import(
        r#"server {
    server_name fc.test;
    location ~ /\.git { deny all; }
    location /nothing/ { allow 10.0.0.0/8; deny all; }
    location /private/ { internal; alias /srv/private/; }
    location ~ ^(?!/static/).+\.php$ { fastcgi_pass 127.0.0.1:9000; }
    location ~ ^/(?=a)b { proxy_pass http://127.0.0.1:1; }
    location /app/ {
        proxy_pass http://127.0.0.1:1;
        location ~ \.php$ { return 403; }
        location /app/x/ { proxy_pass http://127.0.0.1:3; }
    }
    location / { proxy_pass http://127.0.0.1:2; }
}
"#,
    );
    im.assert_not_skipped(3);
    im.assert_skipped(4, "this location's route answers 404");
    im.assert_skipped(5, "internal location: clients get 404");
    im.assert_skipped(6, "stands in for it");
    im.assert_skipped(7, "now go to other routes");
    im.assert_skipped(10, "nested location");
    im.assert_skipped(11, "now go to other routes");
    assert!(!im.skipped.iter().any(|s| s.contains("Gatehouse answers 404 instead")), "{:?}", im.skipped);
    let config = im.load_http();
    assert_eq!(respond(route(&config, "fc.test", "regex", r"/\.git")), Some((403, "")));
    let nothing = route(&config, "fc.test", "prefix", "/nothing");
    assert_eq!(respond(nothing), Some((404, "")));
    assert!(nothing.options.ip.is_some());
    assert_eq!(respond(route(&config, "fc.test", "prefix", "/private")), Some((404, "")));
    let php = route(&config, "fc.test", "regex", r"^.+\.php$");
    assert_eq!(respond(php), Some((403, "")));
    assert!(matches!(&php.path, PathMatch::Regex(r) if r.is_match("/static/x.php") && r.is_match("/a.php")));
    let nested = route(&config, "fc.test", "regex", r"\.php$");
    assert_eq!((respond(nested), nested.priority), (Some((403, "")), 3));
    assert!(im.site("fc.test.yaml").contains("a broader set than nginx's location"));
}

#[test]
fn plain_prefixes_under_a_stop_prefix_keep_the_longest_prefix_rule() {
    let im = import(
        r#"server {
    server_name st.test;
    root ROOT/www;
    location ^~ /static/ { }
    location /static/uploads/ { proxy_pass http://127.0.0.1:1; proxy_redirect off; }
    location /staticx/ { }
    location / { }
}
server {
    server_name re.test;
    root ROOT/www;
    location ^~ /static/ { }
    location /static/uploads/ { }
    location ~ \.png$ { }
}
"#,
    );
    let config = im.load_http();
    assert_eq!(route(&config, "st.test", "prefix", "/static/uploads").priority, 2);
    assert_eq!(route(&config, "st.test", "prefix", "/staticx").priority, 0);
    assert!(!im.skipped(5, "priority"), "{:?}", im.skipped);
    im.assert_skipped(13, "nginx would still try the regex locations");
    assert_eq!(route(&config, "re.test", "prefix", "/static/uploads").priority, 2);
}

#[test]
fn proxy_redirect_default_is_reported_once_and_slash_redirects_are_kept() {
    let im = import(
        r#"server {
    server_name pr.test;
    root ROOT/www;
    location /a/ { proxy_pass http://127.0.0.1:1/; }
    location /b/ { proxy_pass http://127.0.0.1:1/; }
    location /c/ { proxy_pass http://127.0.0.1:1/; proxy_redirect off; }
    location /files/ { alias ROOT/www/assets/; }
    location = /b { return 200 "b"; }
    location / { }
}
"#,
    );
    im.assert_skipped(4, "proxy_redirect default");
    assert_eq!(im.skipped.iter().filter(|s| s.contains("proxy_redirect default")).count(), 1, "{:?}", im.skipped);
    let config = im.load_http();
    let a = route(&config, "pr.test", "exact", "/a");
    assert!(matches!(&a.action, Action::Redirect { to, code } if to == "{uri}" && code.as_u16() == 301));
    assert_eq!(rewritten(a, "/a"), "/a/");
    // `= /b` answers /b itself in nginx.
    assert_eq!(respond(route(&config, "pr.test", "exact", "/b")), Some((200, "b")));
    let yaml = im.site("pr.test.yaml");
    assert!(yaml.contains("nginx's `location /files/` does not take /files"), "{yaml}");
    assert!(order(&config, "pr.test").iter().any(|(p, prio, _)| p.contains("/c") && *prio == 2));
}
