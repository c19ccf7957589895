//! GeoIP: a MaxMind DB written for the test (mmdb-writer from PyPI), countries in the
//! request log, `geo` rules on the client address `trusted_proxies` vouches for, and a
//! database file replaced while serving.

use crate::harness::*;

/// Writes a country database: each (CIDR, ISO code).
fn write_db(path: &std::path::Path, networks: &[(&str, &str)]) {
    let python = ci_python("mmdb_writer", "mmdb-writer==0.2.7");
    let entries: Vec<String> = networks.iter().map(|(net, cc)| format!("([{net:?}], {cc:?})")).collect();
    let script = format!(
        "import sys\nfrom mmdb_writer import MMDBWriter\nfrom netaddr import IPSet\nw = MMDBWriter(ip_version=6, database_type='GeoLite2-Country', languages=['en'], description='gatehouse test', ipv4_compatible=True)\nfor nets, cc in [{}]:\n    w.insert_network(IPSet(nets), {{'country': {{'iso_code': cc}}}})\nw.to_db_file(sys.argv[1] + '.tmp')\nimport os\nos.replace(sys.argv[1] + '.tmp', sys.argv[1])\n",
        entries.join(", ")
    );
    let out = output_within(
        std::process::Command::new(python).args(["-c", &script, &path.display().to_string()]),
        NET_TIMEOUT,
    )
    .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countries_are_logged_and_ruled_and_a_replaced_database_is_followed() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("country.mmdb");
    write_db(&db, &[("10.1.0.0/16", "DE"), ("10.2.0.0/16", "US"), ("2001:db8::/32", "FR")]);
    let site = format!(
        "host: shop.test\nroutes:\n  - path: /eu\n    backend: {0}\n    options:\n      geo: {{allow: [DE, fr], unknown: deny}}\n  - path: /\n    backend: {0}\n    options:\n      geo: {{deny: [US]}}\n",
        b.url()
    );
    let main = format!("trusted_proxies: [127.0.0.1]\ngeoip: {{database: {}}}\n", db.display());
    let gh = Gatehouse::start_edited(&main, &[("shop", &site)], |m| {
        m.replace("log: {level: warn, format: json}", "log: {level: warn, format: json, access_file: access.log}")
    });
    let from = |ip: &'static str, path: &'static str| async move {
        get_with(gh.http, "shop.test", path, &[("x-forwarded-for", ip)]).await.status.as_u16()
    };
    assert_eq!(from("10.1.2.3", "/eu/x").await, 200);
    assert_eq!(from("2001:db8::9", "/eu/x").await, 200, "IPv6");
    assert_eq!(from("10.2.2.3", "/eu/x").await, 403, "not allowed");
    assert_eq!(from("10.9.9.9", "/eu/x").await, 403, "unknown: deny");
    assert_eq!(from("10.2.2.3", "/").await, 403, "denied");
    assert_eq!(from("10.9.9.9", "/").await, 200, "unknown passes by default");
    // The country goes to the request log.
    let logged = wait_until_async(NET_TIMEOUT, || async {
        let v = admin_call(gh.admin, http::Method::GET, "/api/logs?limit=50", "").await.json();
        let rows = v["requests"].as_array().cloned().unwrap_or_default();
        rows.iter().any(|r| r["country"] == "DE" && r["status"] == 200)
            && rows.iter().any(|r| r["country"] == "US" && r["status"] == 403 && r["error_kind"] == "geo_denied")
    })
    .await;
    assert!(logged, "{}", admin_call(gh.admin, http::Method::GET, "/api/logs?limit=10", "").await.text());
    // And to the access line.
    let access = gh.dir.path().join("access.log");
    assert!(
        wait_until(NET_TIMEOUT, || std::fs::read_to_string(&access).unwrap_or_default().contains("\"country\":\"DE\""))
            .await,
        "{}",
        std::fs::read_to_string(&access).unwrap_or_default()
    );
    // A new database in place of the old one (as a weekly update does) is followed.
    write_db(&db, &[("10.1.0.0/16", "DE"), ("10.2.0.0/16", "DE")]);
    assert!(
        wait_until_async(std::time::Duration::from_secs(20), || async { from("10.2.2.3", "/eu/x").await == 200 }).await,
        "the replaced database was not loaded: {}",
        gh.log()
    );
}

#[test]
fn geo_rules_need_a_database_and_country_codes() {
    let dir = tempfile::tempdir().expect("dir");
    let site = "host: a.test\nbackend: http://127.0.0.1:9\noptions:\n  geo: {allow: [Germany, FR]}\n";
    write_config(dir.path(), "", &[("a", site)]);
    let (code, out) = check(dir.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("options.geo.allow[0]: expected a two-letter country code"), "{out}");
    assert!(out.contains("country rules need a GeoIP database: set geoip.database"), "{out}");
    write_config(dir.path(), "geoip: {database: missing.mmdb}\n", &[]);
    let (code, out) = check(dir.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("geoip.database: cannot read"), "{out}");
    // A file that is not a MaxMind DB is named by `check`, not found out at start.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("garbage.mmdb"), vec![7u8; 4096]).expect("write");
    write_config(
        dir.path(),
        "geoip: {database: garbage.mmdb}\n",
        &[("a", "host: a.test\nbackend: http://127.0.0.1:9\n")],
    );
    let (code, out) = check(dir.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("geoip.database: invalid database"), "{out}");
}
