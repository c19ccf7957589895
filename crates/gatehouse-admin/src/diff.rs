//! What a configuration changes against another: sites, routes and streams added, removed
//! and changed (compared as loaded, so a reformatted file is no change), and main-file
//! settings by name. Names only, never values: values may be secrets. The audit log records
//! it for each reload; `GET /api/config/diff` and `gatehouse check --diff` show it before one.

use gatehouse_config::Config;

/// What a reload changed, for the audit log: sites and routes added, removed and changed
/// (compared as loaded, so a reformatted file is no change), and the main-file settings
/// that changed, by name. Names only: values may be secrets.
pub fn diff(old: &Config, new: &Config) -> serde_json::Value {
    use std::collections::BTreeMap;
    let sites = |c: &Config| -> BTreeMap<String, gatehouse_config::Site> {
        c.sites.iter().map(|s| (s.name.clone(), s.clone())).collect()
    };
    let (a, b) = (sites(old), sites(new));
    let added: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let removed: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let mut changed = Vec::new();
    for (name, was) in &a {
        let Some(now) = b.get(name) else { continue };
        if format!("{was:?}") == format!("{now:?}") {
            continue;
        }
        let routes = |s: &gatehouse_config::Site| -> BTreeMap<String, String> {
            s.routes.iter().map(|r| (r.id.clone(), format!("{r:?}"))).collect()
        };
        let (ra, rb) = (routes(was), routes(now));
        changed.push(serde_json::json!({
            "site": name,
            "hosts_changed": format!("{:?}", was.hosts) != format!("{:?}", now.hosts),
            "routes_added": rb.keys().filter(|k| !ra.contains_key(*k)).collect::<Vec<_>>(),
            "routes_removed": ra.keys().filter(|k| !rb.contains_key(*k)).collect::<Vec<_>>(),
            "routes_changed": ra.iter().filter(|(k, v)| rb.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k).collect::<Vec<_>>(),
        }));
    }
    let settings: Vec<&str> = [
        ("workers", old.workers != new.workers),
        ("listen", old.listen_http != new.listen_http || old.listen_https != new.listen_https),
        ("http3", old.http3 != new.http3),
        ("tls", old.tls != new.tls),
        ("admin", old.admin_listen != new.admin_listen || old.admin_token != new.admin_token),
        ("sites_dir", old.sites_dir != new.sites_dir),
        ("storage", old.storage_path != new.storage_path),
        ("log", old.log != new.log),
        ("logging", old.logging != new.logging),
        ("data_retention", old.retention != new.retention),
        ("shutdown_timeout", old.shutdown_timeout != new.shutdown_timeout),
        ("server", old.server != new.server),
        ("trusted_proxies", old.trusted_proxies != new.trusted_proxies),
        ("dns_refresh", old.dns_refresh != new.dns_refresh),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name)
    .collect();
    let streams = |c: &Config| -> BTreeMap<String, String> {
        c.streams.iter().map(|s| (s.name.clone(), format!("{s:?}"))).collect()
    };
    let (sa, sb) = (streams(old), streams(new));
    serde_json::json!({
        "sites_added": added,
        "sites_removed": removed,
        "sites_changed": changed,
        "streams_added": sb.keys().filter(|k| !sa.contains_key(*k)).collect::<Vec<_>>(),
        "streams_removed": sa.keys().filter(|k| !sb.contains_key(*k)).collect::<Vec<_>>(),
        "streams_changed": sa.iter().filter(|(k, v)| sb.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k).collect::<Vec<_>>(),
        "settings_changed": settings,
    })
}

/// `diff`'s JSON as lines for a terminal: `+` added, `-` removed, `~` changed; empty when
/// nothing changes.
pub fn render(d: &serde_json::Value) -> Vec<String> {
    let names = |key: &str| -> Vec<String> {
        d[key].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let mut out = Vec::new();
    out.extend(names("sites_added").into_iter().map(|n| format!("+ site {n}")));
    out.extend(names("sites_removed").into_iter().map(|n| format!("- site {n}")));
    for site in d["sites_changed"].as_array().into_iter().flatten() {
        let name = site["site"].as_str().unwrap_or("?");
        let list = |key: &str| -> Vec<String> {
            site[key]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        if site["hosts_changed"].as_bool() == Some(true) {
            out.push(format!("~ site {name}: host names"));
        }
        out.extend(list("routes_added").into_iter().map(|r| format!("+ route {r}")));
        out.extend(list("routes_removed").into_iter().map(|r| format!("- route {r}")));
        out.extend(list("routes_changed").into_iter().map(|r| format!("~ route {r}")));
        if !out.iter().any(|l| l.contains(&format!(" {name}"))) {
            out.push(format!("~ site {name}: its settings"));
        }
    }
    out.extend(names("streams_added").into_iter().map(|n| format!("+ stream {n}")));
    out.extend(names("streams_removed").into_iter().map(|n| format!("- stream {n}")));
    out.extend(names("streams_changed").into_iter().map(|n| format!("~ stream {n}")));
    let settings = names("settings_changed");
    if !settings.is_empty() {
        out.push(format!("~ settings: {}", settings.join(", ")));
    }
    out
}
