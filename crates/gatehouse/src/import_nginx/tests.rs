//! Translation tests (a child of `translate`): nginx text in, site files out. Each site
//! file also goes through Gatehouse's own loader, so a key or value `gatehouse check`
//! would refuse fails here, and routes are checked in the loaded model (priorities,
//! strip_prefix, the rewrite applied to a path) rather than only as text.

use std::path::Path;

use gatehouse_config::{Action, Config, PathMatch, Route};

/// An import of one file written in a temporary directory. `ROOT` in the text stands for
/// that directory, which holds `www/` (with `assets/`), `htpasswd`, `cert.pem`, `key.pem`.
struct Imported {
    dir: tempfile::TempDir,
    sites: Vec<(String, String)>,
    /// `LINE: directive: reason`
    skipped: Vec<String>,
}

fn import(text: &str) -> Imported {
    import_with(text, &[])
}

/// `import`, with more files (name, text) beside `site.conf`.
fn import_with(text: &str, extra: &[(&str, &str)]) -> Imported {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("www/assets")).expect("www");
    let hash = format!("$2y$05${}", "a".repeat(53));
    std::fs::write(dir.path().join("htpasswd"), format!("admin:{hash}\n")).expect("htpasswd");
    for f in ["cert.pem", "key.pem", "www/50x.html"] {
        std::fs::write(dir.path().join(f), "x").expect("file");
    }
    for (name, body) in extra {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, body).expect("extra file");
    }
    let path = dir.path().join("site.conf");
    std::fs::write(&path, text.replace("ROOT", &root)).expect("conf");
    let out = super::super::import(&[path]).unwrap_or_else(|e| panic!("import failed: {e}"));
    let skipped = out.skipped.iter().map(|s| format!("{}: {}: {}", s.line, s.directive, s.reason)).collect();
    Imported { dir, sites: out.sites, skipped }
}

impl Imported {
    fn site(&self, file: &str) -> &str {
        let names: Vec<&str> = self.sites.iter().map(|(n, _)| n.as_str()).collect();
        self.sites
            .iter()
            .find(|(n, _)| n == file)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no {file} in {names:?}"))
    }

    /// Whether line `line` was reported, its message containing `needle`.
    fn skipped(&self, line: usize, needle: &str) -> bool {
        let prefix = format!("{line}: ");
        self.skipped.iter().any(|s| s.starts_with(&prefix) && s.contains(needle))
    }

    fn assert_skipped(&self, line: usize, needle: &str) {
        assert!(self.skipped(line, needle), "no skip at line {line} with {needle:?} in:\n{}", self.skipped.join("\n"));
    }

    fn assert_not_skipped(&self, line: usize) {
        assert!(!self.skipped(line, ""), "line {line} was reported:\n{}", self.skipped.join("\n"));
    }

    /// Every site file through Gatehouse's loader, with `main` as the main file.
    fn load(&self, main: &str) -> Config {
        let sites: Vec<(&str, &str)> =
            self.sites.iter().map(|(n, t)| (n.strip_suffix(".yaml").unwrap_or(n), t.as_str())).collect();
        gatehouse_config::load_from_str_for_tests(main, &sites, self.dir.path()).unwrap_or_else(|e| {
            let texts: Vec<String> = self.sites.iter().map(|(n, t)| format!("--- {n}\n{t}")).collect();
            panic!("the loader refused the import:\n{e}\n{}", texts.join("\n"))
        })
    }

    fn load_http(&self) -> Config {
        self.load("listen: {http: 127.0.0.1:0}\n")
    }
}

/// The route of site `site` whose path is written `path` (and of kind `kind`).
fn route<'a>(config: &'a Config, site: &str, kind: &str, path: &str) -> &'a Route {
    let s = config.sites.iter().find(|s| s.name == site).unwrap_or_else(|| panic!("no site {site}"));
    s.routes
        .iter()
        .find(|r| match (&r.path, kind) {
            (PathMatch::Exact(p), "exact") | (PathMatch::Prefix(p), "prefix") => p == path,
            (PathMatch::Regex(re), "regex") => re.as_str() == path,
            _ => false,
        })
        .unwrap_or_else(|| {
            panic!(
                "no {kind} route {path} in {site}: {:?}",
                s.routes.iter().map(|r| r.path.to_string()).collect::<Vec<_>>()
            )
        })
}

/// What the route's rewrite makes of `path`.
fn rewritten(r: &Route, path: &str) -> String {
    let rw = r.rewrite.as_ref().expect("a rewrite");
    rw.pattern.replace(path, rw.replace.as_str()).into_owned()
}

/// Whether some route of the site file answers 403 to everyone (the stand-in for what
/// is not translated).
fn refuses_everyone(yaml: &str) -> bool {
    yaml.contains("    respond:\n      status: 403\n")
}

/// The route's fixed answer, if it has one.
fn respond(r: &Route) -> Option<(u16, &str)> {
    match &r.action {
        Action::Respond { status, body } => Some((status.as_u16(), body.as_str())),
        _ => None,
    }
}

/// The route's `static` directory settings: (fallback, browse).
fn files(r: &Route) -> (Option<&str>, bool) {
    match &r.action {
        Action::Static(d) => (d.fallback.as_deref(), d.browse),
        _ => panic!("not a static route: {}", r.path),
    }
}

#[test]
fn proxy_pass_upstreams_and_headers() {
    let im = import(
        r#"upstream app {
    least_conn;
    server 127.0.0.1:9001 weight=3 max_fails=2 fail_timeout=5s;
    server 127.0.0.1:9002 max_fails=2 fail_timeout=5s;
    keepalive 16;
}
server {
    listen 80;
    server_name example.test www.example.test;
    client_max_body_size 10m;
    location /app/ { proxy_pass http://app/; }
    location /v1/ { proxy_pass http://127.0.0.1:9003/api/v1/; }
    location / {
        proxy_pass http://127.0.0.1:9004;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header X-Static yes;
        proxy_set_header X-Var $ssl_client_s_dn;
        proxy_read_timeout 1m30s;
        proxy_buffering off;
    }
}
"#,
    );
    let yaml = im.site("example.test.yaml");
    for want in [
        "\"http://127.0.0.1:9001 weight=3\"",
        "algorithm: \"least_conn\"",
        "failures: 2",
        "ejection: \"5s\"",
        "X-Static: \"yes\"",
        "Host: \"app\"",
        "request_body: \"10MiB\"",
        "read: \"90s\"",
        "https_redirect: false",
    ] {
        assert!(yaml.contains(want), "{want} missing in:\n{yaml}");
    }
    for absent in ["Upgrade", "X-Real-IP", "X-Forwarded-For", "Host: \"$host\""] {
        assert!(!yaml.contains(absent), "{absent} in:\n{yaml}");
    }
    im.assert_skipped(5, "not needed");
    im.assert_skipped(22, "$ssl_client_s_dn");
    im.assert_skipped(15, "not needed");
    im.assert_skipped(24, "not needed");
    assert!(!im.skipped.iter().any(|s| s.contains("Upgrade") || s.contains("Connection")), "{:?}", im.skipped);

    let config = im.load_http();
    let app = route(&config, "example.test", "prefix", "/app");
    assert_eq!(app.strip_prefix.as_deref(), Some("/app"));
    let v1 = route(&config, "example.test", "prefix", "/v1");
    assert_eq!(rewritten(v1, "/v1/users"), "/api/v1/users");
    let root = route(&config, "example.test", "prefix", "");
    assert!(root.strip_prefix.is_none() && root.rewrite.is_none());
    assert!(matches!(&root.action, Action::Proxy(u) if u.backends.len() == 1));
    assert!(matches!(&app.action, Action::Proxy(u) if u.backends.len() == 2 && u.backends[0].weight == 3));
}

#[test]
fn locations_keep_nginx_order_through_priorities() {
    let im = import(
        r#"server {
    server_name a.test;
    root ROOT/www;
    location = /exact { }
    location ^~ /static/ { }
    location ~* \.(png|jpg)$ { expires 30d; }
    location / { }
    location /nested { location /nested/x { } }
    location @fallback { proxy_pass http://127.0.0.1:1; }
    location ~ /\.(?!well-known) { deny all; }
}
"#,
    );
    im.assert_skipped(8, "nested location");
    im.assert_skipped(9, "named location");
    im.assert_skipped(10, "negative lookahead");
    let config = im.load_http();
    assert_eq!(route(&config, "a.test", "exact", "/exact").priority, 2);
    assert_eq!(route(&config, "a.test", "prefix", "/static").priority, 2);
    let re = route(&config, "a.test", "regex", r"(?i)\.(png|jpg)$");
    assert_eq!(re.priority, 1);
    assert!(matches!(&re.path, PathMatch::Regex(r) if r.is_match("/img/A.PNG")));
    assert_eq!(route(&config, "a.test", "prefix", "").priority, 0);
    assert!(im.site("a.test.yaml").contains("Cache-Control: \"max-age=2592000\""));
}

#[test]
fn static_sites_alias_index_fallback_listings_and_fixed_answers() {
    let im = import(
        r#"server {
    listen 80;
    server_name spa.test;
    root ROOT/www;
    index index.php index.html;
    location / { try_files $uri $uri/ /index.html; }
    location /assets/ { alias ROOT/www/assets/; }
    location = /health { return 200 "ok"; }
    location /plain/ { try_files $uri $uri/ =404; autoindex on; }
    error_page 500 502 503 504 /50x.html;
    error_page 404 /404.html;
}
"#,
    );
    im.assert_skipped(5, "index.php left out");
    im.assert_skipped(11, "own error answers");
    for line in [6, 8, 9] {
        im.assert_not_skipped(line);
    }
    let yaml = im.site("spa.test.yaml");
    assert!(!refuses_everyone(yaml), "{yaml}");
    assert!(yaml.contains("fallback: \"/index.html\"") && yaml.contains("browse: true"), "{yaml}");
    let config = im.load_http();
    let assets = route(&config, "spa.test", "prefix", "/assets");
    assert_eq!(assets.strip_prefix.as_deref(), Some("/assets"));
    assert!(matches!(&assets.action, Action::Static(d) if d.root.ends_with("www/assets") && d.index == ["index.html"]));
    assert_eq!(files(assets), (None, false));
    assert_eq!(files(route(&config, "spa.test", "prefix", "")), (Some("index.html"), false));
    assert_eq!(files(route(&config, "spa.test", "prefix", "/plain")), (None, true));
    assert_eq!(respond(route(&config, "spa.test", "exact", "/health")), Some((200, "ok")));
    let site = config.sites.iter().find(|s| s.name == "spa.test").expect("site");
    assert!(site.routes.iter().all(|r| !r.id.is_empty()));
}

#[test]
fn returns_become_fixed_answers_and_the_rest_refuses() {
    let im = import(
        r#"server {
    server_name ret.test;
    default_type application/json;
    location = /ok { return 200 '{"ok":true}'; }
    location = /empty { return 204 "ignored"; }
    location = /gone { return 410; }
    location = /drop { return 444; }
    location = /var { return 200 "$remote_addr"; }
    location = /odd { return 600; }
    location = /bare { return 301; }
    location = /open { allow 10.0.0.0/8; deny all; return 200 "x"; }
    location / { proxy_pass http://127.0.0.1:1; }
}
server { server_name whole.test; return 503 "down for maintenance"; }
server { server_name forbidden.test; add_header X-A b always; return 403; }
"#,
    );
    im.assert_skipped(7, "444 closes the connection");
    im.assert_skipped(8, "variables");
    im.assert_skipped(9, "from 200 to 599");
    im.assert_skipped(10, "without a target");
    for line in [4, 5, 6, 11, 14, 15] {
        im.assert_not_skipped(line);
    }
    let yaml = im.site("ret.test.yaml");
    assert!(yaml.contains("nginx sends this text as application/json (default_type)"), "{yaml}");
    assert!(yaml.contains("nginx sends its own error page (or the error_page for 410)"), "{yaml}");
    assert_eq!(yaml.matches("this route answers 403 to everyone until you replace it").count(), 4, "{yaml}");
    assert!(!yaml.contains("0.0.0.0/0"), "{yaml}");
    let config = im.load_http();
    let at = |path: &str| respond(route(&config, "ret.test", "exact", path));
    assert_eq!(at("/ok"), Some((200, r#"{"ok":true}"#)));
    assert_eq!(at("/empty"), Some((204, "")));
    assert_eq!(at("/gone"), Some((410, "")));
    for refused in ["/drop", "/var", "/odd", "/bare"] {
        assert_eq!(at(refused), Some((403, "")), "{refused}");
    }
    // `return` runs before nginx's access checks: the rules never apply.
    assert_eq!(at("/open"), Some((200, "x")));
    assert!(route(&config, "ret.test", "exact", "/open").options.ip.is_none());
    assert_eq!(respond(route(&config, "whole.test", "prefix", "")), Some((503, "down for maintenance")));
    assert_eq!(respond(route(&config, "forbidden.test", "prefix", "")), Some((403, "")));
    assert!(im.site("forbidden.test.yaml").contains("X-A: \"b\""));
}

#[test]
fn try_files_fallbacks_that_name_the_same_file_are_translated() {
    let im = import(
        r#"server {
    server_name tf.test;
    root ROOT/www;
    location / { try_files $uri $uri/ /index.html; }
    location = /index.html { add_header Cache-Control no-cache; }
    location /app/ { alias ROOT/www/assets/; try_files $uri $uri/ /app/app.html; }
    location /out/ { alias ROOT/www/assets/; try_files $uri /index.html; }
    location /q/ { try_files $uri $uri/ /index.html?$args; }
    location /api/ { proxy_pass http://127.0.0.1:1; }
    location /to-api/ { try_files $uri /api/fallback.json; }
    location /dir/ { try_files $uri/ /index.html; }
    location /only/ { try_files $uri /only/shell.html; }
    location /slash/ { try_files $uri $uri/ /; }
}
"#,
    );
    for line in [4, 6, 12] {
        im.assert_not_skipped(line);
    }
    im.assert_skipped(7, "outside this alias location");
    im.assert_skipped(8, "a URI with variables or a query");
    im.assert_skipped(10, "which nginx then serves through `location /api/`");
    im.assert_skipped(11, "only `try_files $uri $uri/ FILE` and `try_files $uri FILE` are translated");
    im.assert_skipped(13, "a file of the route's directory");
    let yaml = im.site("tf.test.yaml");
    assert!(
        yaml.contains("a missing file gets /index.html, which nginx serves through `location = /index.html`"),
        "{yaml}"
    );
    assert!(yaml.contains("try_files without $uri/: nginx answers a directory with /only/shell.html too"), "{yaml}");
    let config = im.load_http();
    let at = |path: &str| files(route(&config, "tf.test", "prefix", path));
    assert_eq!(at(""), (Some("index.html"), false));
    assert_eq!(at("/app"), (Some("app.html"), false));
    assert_eq!(at("/only"), (Some("only/shell.html"), false));
    for untranslated in ["/out", "/q", "/to-api", "/dir", "/slash"] {
        assert_eq!(at(untranslated), (None, false), "{untranslated}");
    }
}

#[test]
fn php_is_refused_not_served_as_files() {
    let im = import(
        r#"server {
    listen 80;
    server_name www.wp.test;
    return 301 https://wp.test$request_uri;
}
server {
    listen 80;
    server_name wp.test;
    root ROOT/www;
    index index.php;
    location / { try_files $uri $uri/ /index.php?$args; }
    location ~ \.php$ {
        include fastcgi_params;
        fastcgi_pass unix:/run/php/php-fpm.sock;
    }
}
"#,
    );
    let www = im.site("www.wp.test.yaml");
    assert!(www.contains("to: \"https://wp.test{uri}\"") && www.contains("code: 301"), "{www}");
    im.assert_skipped(
        14,
        "Gatehouse speaks HTTP to backends, not FastCGI; run php-fpm behind an HTTP server or point the route at one",
    );
    im.assert_skipped(13, "not needed");
    im.assert_skipped(11, "falls back to PHP");
    let wp = im.site("wp.test.yaml");
    assert!(refuses_everyone(wp) && wp.contains("index: []"), "{wp}");
    let config = im.load_http();
    let php = route(&config, "wp.test", "regex", r"\.php$");
    assert_eq!(php.priority, 1);
    assert_eq!(respond(php), Some((403, "")));
    assert_eq!(files(route(&config, "wp.test", "prefix", "")), (None, false));
}

#[test]
fn http_to_https_servers_fold_into_the_https_site() {
    let im = import(
        r#"server {
    listen 80;
    server_name example.test www.example.test;
    return 301 https://$host$request_uri;
}
server {
    listen 443 ssl http2;
    server_name example.test www.example.test;
    ssl_certificate ROOT/cert.pem;
    ssl_certificate_key ROOT/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://127.0.0.1:3000; }
}
server {
    listen 80 default_server;
    server_name _;
    return 444;
}
server {
    listen 8443 ssl;
    server_name example.test;
    location / { proxy_pass http://127.0.0.1:3001; }
}
"#,
    );
    assert_eq!(im.sites.len(), 1, "{:?}", im.sites);
    let yaml = im.site("example.test.yaml");
    assert!(yaml.contains("only redirected plain HTTP to HTTPS") && yaml.contains("tls:"), "{yaml}");
    assert!(!yaml.contains("https_redirect:"), "{yaml}");
    im.assert_skipped(11, "TLS 1.2 and 1.3");
    im.assert_skipped(17, "444");
    im.assert_skipped(20, "port 8443");
    im.assert_skipped(21, "also served by the server block");
    let config = im.load("listen: {http: 127.0.0.1:0, https: 127.0.0.1:0}\n");
    assert_eq!(config.sites.len(), 1);
}

#[test]
fn redirects_and_rewrites() {
    let im = import(
        r#"server {
    listen 80;
    server_name r.test;
    rewrite ^/old/(.*)$ /new/$1 permanent;
    rewrite ^/blog/(\d+)$ https://blog.r.test/p/$1 redirect;
    rewrite /legacy/ /modern/;
    rewrite ^/x$ /y last;
    location = /gone { return 308 /new; }
    location /moved { return 302 /elsewhere; }
    location /api/ { rewrite ^/api/v1/(.*)$ /v2/$1 break; proxy_pass http://127.0.0.1:3000; }
    location / { proxy_pass http://127.0.0.1:3000; }
}
"#,
    );
    im.assert_skipped(6, "last");
    im.assert_skipped(7, "last");
    let config = im.load_http();
    let old = route(&config, "r.test", "regex", "^/old/(.*)$");
    assert_eq!(old.priority, 3);
    assert_eq!(rewritten(old, "/old/a/b"), "/new/a/b");
    assert!(matches!(&old.action, Action::Redirect { to, code } if to == "{uri}" && code.as_u16() == 301));
    let blog = route(&config, "r.test", "regex", r"^/blog/(\d+)$");
    assert_eq!(rewritten(blog, "/blog/12"), "/p/12");
    assert!(
        matches!(&blog.action, Action::Redirect { to, code } if to == "https://blog.r.test{uri}" && code.as_u16() == 302)
    );
    let gone = route(&config, "r.test", "exact", "/gone");
    assert!(matches!(&gone.action, Action::Redirect { to, code } if to == "/new" && code.as_u16() == 308));
    let moved = route(&config, "r.test", "prefix", "/moved");
    assert!(matches!(&moved.action, Action::Redirect { to, code } if to == "/elsewhere" && code.as_u16() == 302));
    let api = route(&config, "r.test", "prefix", "/api");
    assert_eq!(rewritten(api, "/api/v1/users"), "/v2/users");
    assert_eq!(rewritten(api, "/api/other"), "/api/other");
}

#[test]
fn access_auth_limits_and_methods() {
    let im = import(
        r#"server {
    server_name t.test;
    add_header X-Frame-Options SAMEORIGIN always;
    location /admin/ {
        allow 10.0.0.0/8;
        deny all;
        auth_basic "Admin area";
        auth_basic_user_file ROOT/htpasswd;
        proxy_pass http://127.0.0.1:3000;
    }
    location /open/ {
        deny 192.0.2.1;
        proxy_pass http://127.0.0.1:3000;
        proxy_connect_timeout 0;
        limit_except GET { deny all; }
    }
    location /mixed/ {
        allow 10.0.0.1;
        deny 10.0.0.0/8;
        allow all;
        proxy_pass http://127.0.0.1:3000;
    }
    location / { add_header X-Only here; proxy_pass http://127.0.0.1:3000; }
}
"#,
    );
    im.assert_skipped(14, "timeout of 0");
    im.assert_skipped(18, "no Gatehouse equivalent");
    let config = im.load_http();
    let admin = route(&config, "t.test", "prefix", "/admin");
    assert!(admin.options.ip.is_some() && admin.options.auth.is_some());
    let open = route(&config, "t.test", "prefix", "/open");
    let methods: Vec<String> = open.methods.iter().flatten().map(|m| m.to_string()).collect();
    assert_eq!(methods, ["GET", "HEAD"]);
    // The other methods are refused by the route right after it, not served by `location /`.
    let site = config.sites.iter().find(|s| s.name == "t.test").expect("site");
    let at = site.routes.iter().position(|r| std::ptr::eq(r, open)).expect("position");
    let next = site.routes.get(at + 1).expect("a route after it");
    assert!(next.path.to_string() == open.path.to_string() && next.methods.is_none());
    assert_eq!(respond(next), Some((403, "")));
    assert!(route(&config, "t.test", "prefix", "/mixed").options.ip.is_some());
    let yaml = im.site("t.test.yaml");
    // The server's add_header applies where a location has none of its own (nginx
    // replaces the whole list in a location that has one).
    assert_eq!(yaml.matches("X-Frame-Options: \"SAMEORIGIN\"").count(), 3, "{yaml}");
    assert!(yaml.contains("X-Only: \"here\""), "{yaml}");
}

#[test]
fn names_files_and_errors() {
    let im = import(
        r#"server { server_name .wild.test; location / { proxy_pass http://127.0.0.1:1; } }
server { server_name *.other.test; location / { proxy_pass http://127.0.0.1:1; } }
server { server_name ~^(www\.)?re\.test$; location / { proxy_pass http://127.0.0.1:1; } }
server { location / { proxy_pass http://127.0.0.1:1; } }
server { server_name wild.test; location / { proxy_pass http://127.0.0.1:2; } }
server { server_name dup.test; location / { proxy_pass http://127.0.0.1:1; } }
server { server_name dup.test; listen 81; location / { proxy_pass http://127.0.0.1:1; } }
"#,
    );
    let names: Vec<&str> = im.sites.iter().map(|(n, _)| n.as_str()).collect();
    // The unnamed server at line 4 is not the default server of port 80 (line 1 is).
    assert_eq!(names, ["wild.test.yaml", "wildcard.other.test.yaml", "dup.test.yaml"]);
    assert!(im.site("wild.test.yaml").contains("hosts: [\"wild.test\", \"*.wild.test\"]"));
    im.assert_skipped(4, "not the default one of its port");
    im.assert_skipped(3, "regular-expression names");
    im.assert_skipped(5, "also served by");
    im.assert_skipped(7, "also served by");
    im.load_http();

    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "server {\n  listen 80\n}\n").expect("write");
    let err = super::super::import(&[bad]).expect_err("syntax error");
    assert!(err.contains("bad.conf:2: `listen 80` is not ended by ';'"), "{err}");
    let none = dir.path().join("none.conf");
    std::fs::write(&none, "worker_processes 2;\n").expect("write");
    assert!(super::super::import(&[none]).expect_err("no server").contains("no server blocks"));
    assert!(super::super::import(&[dir.path().join("missing.conf")]).expect_err("missing").contains("cannot read"));
}

#[test]
fn every_site_of_the_integration_configs_loads() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/integration/import_nginx");
    for name in ["wordpress.conf", "websocket.conf", "spa.conf", "weights.conf", "redirects.conf"] {
        let text = std::fs::read_to_string(base.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = text
            .replace("__BACKEND1__", "127.0.0.1:9001")
            .replace("__BACKEND2__", "127.0.0.1:9002")
            .replace("__ROOT__", "ROOT/www")
            .replace("__PORT__", "8080");
        // weights.conf includes a snippet that sits next to it.
        let snippet = std::fs::read_to_string(base.join("snippets/headers.conf")).expect("snippet");
        let im = import_with(&text, &[("snippets/headers.conf", &snippet)]);
        assert!(!im.sites.is_empty(), "{name}");
        if name == "weights.conf" {
            assert!(im.sites.iter().any(|(_, t)| t.contains("X-Frame-Options")), "{name}: snippet not included");
        }
        im.load_http();
    }
}

#[path = "tests_closed.rs"]
mod closed;

#[path = "tests_defaults.rs"]
mod defaults;
