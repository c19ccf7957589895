//! Tests of nginx's defaults and of what a partial import misses: http-level settings,
//! default body size and connect timeout, default servers, HTTP-to-HTTPS folding, QUIC,
//! sizes and regexes Gatehouse refuses, TLS snippets, Lua blocks.

use super::*;

#[test]
fn site_files_without_nginx_conf_say_what_was_not_read_and_files_are_read_once() {
    let im = import_with(
        "include extra.conf;\nserver { server_name a.test; location / { proxy_pass http://127.0.0.1:1; } }\n",
        &[("extra.conf", "server { server_name b.test; location / { proxy_pass http://127.0.0.1:2; } }\n")],
    );
    im.assert_skipped(1, "http-level settings of nginx.conf");
    // The same file given directly too: read once.
    let site = im.dir.path().join("site.conf");
    let extra = im.dir.path().join("extra.conf");
    let out = super::super::super::import(&[extra, site]).expect("import");
    assert_eq!(out.sites.len(), 2, "{:?}", out.sites.iter().map(|s| &s.0).collect::<Vec<_>>());
    assert!(out.skipped.iter().any(|s| s.reason.contains("includes it; read once")), "{:?}", out.skipped);

    let http = import("http {\n  server { server_name c.test; location / { proxy_pass http://127.0.0.1:1; } }\n}\n");
    assert!(!http.skipped.iter().any(|s| s.contains("http-level")), "{:?}", http.skipped);
}

#[test]
fn nginx_defaults_for_body_size_and_connect_timeout_are_written() {
    let im = import(
        r#"server {
    server_name d.test;
    location /big/ { client_max_body_size 2000g; proxy_pass http://127.0.0.1:1; }
    location / { proxy_pass http://127.0.0.1:1; proxy_connect_timeout 3s; }
}
"#,
    );
    im.assert_skipped(3, "capped to 1024GiB");
    let config = im.load_http();
    let big = route(&config, "d.test", "prefix", "/big");
    let root = route(&config, "d.test", "prefix", "");
    let yaml = im.site("d.test.yaml");
    assert!(yaml.contains("request_body: \"1024GiB\"") && yaml.contains("request_body: \"1MiB\""), "{yaml}");
    assert!(yaml.contains("connect: \"60s\"") && yaml.contains("connect: \"3s\""), "{yaml}");
    assert_ne!(format!("{:?}", big.options), format!("{:?}", root.options));
}

#[test]
fn unnamed_servers_take_unknown_hosts_only_as_the_default_server() {
    let im = import(
        r#"server { listen 80; server_name a.test; location / { proxy_pass http://127.0.0.1:1; } }
server { listen 80; server_name _; location / { proxy_pass http://127.0.0.1:2; } }
server { listen 8080; server_name _; location / { proxy_pass http://127.0.0.1:3; } }
server { listen 81 default_server; server_name b.test; location / { proxy_pass http://127.0.0.1:4; } }
"#,
    );
    im.assert_skipped(2, "not the default one of its port");
    let default = im.site("default.yaml");
    assert!(default.contains("hosts: [\"*\"]") && default.contains("127.0.0.1:3"), "{default}");
    // Gatehouse has one "*": the first default server keeps it.
    im.assert_skipped(4, "also served by");
}

#[test]
fn only_same_host_https_redirects_fold_and_quic_is_tls() {
    let im = import(
        r#"server { listen 80; server_name a.test; return 302 https://$host$request_uri; }
server { listen 443 ssl; server_name a.test; ssl_certificate ROOT/cert.pem; ssl_certificate_key ROOT/key.pem;
    location / { proxy_pass http://127.0.0.1:1; } }
server { listen 80; server_name b.test; return 301 https://$server_name$request_uri; }
server { listen 443 quic; server_name b.test; ssl_certificate ROOT/cert.pem; ssl_certificate_key ROOT/key.pem;
    location / { proxy_pass http://127.0.0.1:1; } }
"#,
    );
    let a = im.site("a.test.yaml");
    assert!(a.contains("with 308 Permanent Redirect instead of nginx's 302"), "{a}");
    // $server_name is not the requested host: not folded (its names go to the HTTPS site).
    let b = im.site("b.test.yaml");
    assert!(b.contains("tls:") && !b.contains("only redirected plain HTTP"), "{b}");
    im.assert_skipped(4, "all of its names are served by other server blocks");
}

#[test]
fn regexes_gatehouse_refuses_are_reported() {
    let im = import(
        r#"server {
    server_name re.test;
    location ~ "^/\p{Nope}$" { return 403; }
    location / { rewrite "^/x\p{Nope}$" /y permanent; proxy_pass http://127.0.0.1:1; }
}
"#,
    );
    im.assert_skipped(3, "not valid in Gatehouse's regex syntax");
    im.assert_skipped(4, "not valid in Gatehouse's regex syntax");
    im.load_http();
}

#[test]
fn tls_snippets_are_read_and_lua_is_reported() {
    let im = import_with(
        r#"server {
    listen 443 ssl;
    server_name t.test;
    include snippets/ssl-params.conf;
    ssl_certificate ROOT/cert.pem;
    ssl_certificate_key ROOT/key.pem;
    location /lua { content_by_lua_block { ngx.say("}") -- }
    } }
    location / { proxy_pass http://127.0.0.1:1; }
}
"#,
        &[(
            "snippets/ssl-params.conf",
            "ssl_protocols TLSv1.2;\nadd_header Strict-Transport-Security max-age=63072000;\n",
        )],
    );
    assert!(im.site("t.test.yaml").contains("Strict-Transport-Security: \"max-age=63072000\""));
    assert!(im.skipped.iter().any(|s| s.contains("ssl_protocols")), "{:?}", im.skipped);
    im.assert_skipped(7, "Lua");
    im.load("listen: {http: 127.0.0.1:0, https: 127.0.0.1:0}\n");
}
