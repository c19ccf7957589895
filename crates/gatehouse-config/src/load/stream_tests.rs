//! `streams`: what loads, and every refusal with its place.

use super::*;

fn load(main: &str, sites: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    load_from_str_for_tests(main, sites, Path::new(".")).map_err(|e| e.iter().map(ToString::to_string).collect())
}

/// Readable files stand in for the certificate and key (only readability is checked here).
const TLS: &str = "tls: {cert: Cargo.toml, key: src/lib.rs}";

#[test]
fn streams_load_from_the_main_file_and_from_a_file_of_streams_only() {
    let main = format!(
        "listen: {{http: 127.0.0.1:0}}\nstreams:\n  - name: pg\n    listen: 127.0.0.1:15432\n    protocol: postgres\n    {TLS}\n    backends: [127.0.0.1:5432, \"db2:5432 weight=3\"]\n    backend_tls: {{server_name: db.internal}}\n    proxy_protocol: {{accept_from: [10.0.0.0/8], send: v2}}\n"
    );
    let site = format!(
        "streams:\n  - name: mux\n    listen: \":8443\"\n    {TLS}\n    routes:\n      - {{sni: [a.test, \"*.b.test\"], backends: [\"[::1]:443\"], passthrough: true}}\n      - {{sni: [c.test], backends: [unix:/run/c.sock]}}\n"
    );
    let c = load(&main, &[("mux", &site)]).expect("valid");
    assert!(c.sites.is_empty(), "a file of streams only is no website");
    assert_eq!(c.streams.len(), 2);
    let pg = &c.streams[0];
    assert_eq!((pg.name.as_str(), pg.protocol, pg.listen.port()), ("pg", StreamProtocol::Postgres, 15432));
    let up = pg.upstream.as_ref().expect("backends");
    assert_eq!(up.backends[1].weight, 3);
    assert_eq!(pg.send_proxy, Some(ProxyVersion::V2));
    assert!(pg.tls.as_ref().is_some_and(|t| t.required));
    assert_eq!(pg.backend_tls.as_ref().and_then(|t| t.server_name.as_deref()), Some("db.internal"));
    let mux = &c.streams[1];
    assert_eq!(mux.listen.ip().to_string(), "0.0.0.0");
    assert!(mux.routes[0].passthrough && !mux.routes[1].passthrough);
    assert_eq!(mux.routes[1].upstream.backends[0].addr, BackendAddr::Unix("/run/c.sock".into()));
}

#[test]
fn every_mistake_is_named_with_its_place() {
    let cases: &[(&str, &str)] = &[
        ("  - {name: a, listen: 127.0.0.1:1, protocol: postgress, backends: [h:1]}", "did you mean `postgres`?"),
        (
            "  - {name: a, listen: 127.0.0.1:1, protocol: ftp, tls: {cert: Cargo.toml, key: src/lib.rs}, backends: [h:1], backend_tls: {}}",
            "FTP re-encryption",
        ),
        ("  - {name: a, listen: 127.0.0.1:1, protocol: mssql, backends: [h:1]}", "TDS PRELOGIN"),
        ("  - {name: a, listen: 127.0.0.1:1, protocol: postgres, backends: [h:1]}", "add tls"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [\"http://h:1\"]}", "not a URL"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h]}", "needs a port"),
        ("  - {name: a, listen: 127.0.0.1:1}", "needs backends"),
        ("  - {name: \"a b\", listen: 127.0.0.1:1, backends: [h:1]}", "letters, digits"),
        ("  - {name: a, listen: nowhere, backends: [h:1]}", "expected an address"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], deny: [10.0.0.0/33]}", "deny[0]"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], allow: []}", "refuse everyone"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], idle_timeout: 0s}", "a timeout of 0"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], proxy_protocol: {send: v3}}", "expected v1 or v2"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], tls: {cert: Cargo.toml}}", "needs its key"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], tls: {hosts: [db.test]}}", "needs listen.https"),
        ("  - {name: a, listen: 127.0.0.1:1, routes: [{sni: [a.test], backends: [h:1]}]}", "needs the stream's tls"),
        (
            "  - {name: a, listen: 127.0.0.1:1, protocol: smtp, tls: {cert: Cargo.toml, key: src/lib.rs, required: false}, backends: [h:1]}",
            "always required",
        ),
        (
            "  - {name: a, listen: 127.0.0.1:1, routes: [{sni: [a.test], backends: [h:1], passthrough: true, backend_tls: {}}]}",
            "cannot re-encrypt",
        ),
        (
            "  - {name: a, listen: 127.0.0.1:1, backends: [h:1], load_balancing: {hash_key: \"header:x\"}}",
            "hashes the client address",
        ),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], max_connections: 99999999999}", "too large"),
        ("  - {name: a, listen: 127.0.0.1:1, backends: [h:1], colour: blue}", "unknown key `colour`"),
    ];
    for (stream, wanted) in cases {
        let e = load(&format!("listen: {{http: 127.0.0.1:0}}\nstreams:\n{stream}\n"), &[]).expect_err(stream);
        assert!(
            e.iter().any(|m| m.contains(wanted) && m.starts_with("gatehouse.yaml:")),
            "{stream}: wanted {wanted:?} in {e:?}"
        );
    }
}

#[test]
fn names_and_addresses_are_unique_across_files_and_listeners() {
    let main = "listen: {http: 127.0.0.1:8080}\nstreams:\n  - {name: a, listen: 127.0.0.1:9000, backends: [h:1]}\n  - {name: b, listen: 0.0.0.0:9000, backends: [h:1]}\n  - {name: c, listen: 127.0.0.1:8080, backends: [h:1]}\n";
    let site = "streams:\n  - {name: a, listen: 127.0.0.1:9100, backends: [h:1]}\n";
    let e = load(main, &[("s", site)]).expect_err("clashes");
    let all = e.join("\n");
    assert!(all.contains("is also the listen address of stream \"a\""), "{all}");
    assert!(all.contains("which is also listen.http"), "{all}");
    assert!(all.contains("sites/s.yaml") && all.contains("stream name \"a\" is also used in gatehouse.yaml"), "{all}");
}
