//! Loading: read the main file and every site file, apply `GATEHOUSE_*` environment
//! overrides, and validate into the model. Collects every error instead of stopping at the
//! first, so `gatehouse check` can list them all.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use regex::Regex;

use crate::error::{Error, Errors};
use crate::model::*;
use crate::raw::{self, S};
use crate::suggest::nearest;
use crate::units::{parse_duration, parse_size};
use crate::yamlpath::path_at_line;

/// `GATEHOUSE_*` variables that override main-file keys. Taken as a value (not read
/// inside the loader) so tests can pass their own.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides(HashMap<String, String>);

/// Set by systemd for a unit with `StateDirectory=`; not an override, a default.
const STATE_DIRECTORY: &str = "STATE_DIRECTORY";

/// Environment variable -> the main-file key it overrides.
const ENV_KEYS: &[(&str, &str)] = &[
    ("GATEHOUSE_WORKERS", "workers"),
    ("GATEHOUSE_LISTEN_HTTP", "listen.http"),
    ("GATEHOUSE_LISTEN_HTTPS", "listen.https"),
    ("GATEHOUSE_ADMIN_LISTEN", "admin.listen"),
    ("GATEHOUSE_ADMIN_TOKEN", "admin.token"),
    ("GATEHOUSE_SITES_DIR", "sites_dir"),
    ("GATEHOUSE_STORAGE_PATH", "storage.path"),
    ("GATEHOUSE_LOG_LEVEL", "log.level"),
    ("GATEHOUSE_LOG_FORMAT", "log.format"),
    ("GATEHOUSE_SHUTDOWN_TIMEOUT", "shutdown_timeout"),
];

impl EnvOverrides {
    /// The overrides present in this process's environment.
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let wanted = |k: &str| k == STATE_DIRECTORY || ENV_KEYS.iter().any(|(name, _)| *name == k);
        EnvOverrides(pairs.into_iter().filter(|(k, _)| wanted(k)).collect())
    }

    /// Where systemd's `StateDirectory=` put this service's state (its first directory),
    /// when it runs as such a unit: the storage path's default there.
    fn state_directory(&self) -> Option<&str> {
        self.0.get(STATE_DIRECTORY).and_then(|v| v.split(':').next()).filter(|d| !d.is_empty())
    }

    /// The documented variable names, for `--help` and docs.
    pub fn names() -> impl Iterator<Item = (&'static str, &'static str)> {
        ENV_KEYS.iter().copied()
    }
}

/// A scalar value together with where it came from, so errors can point at it.
struct Value {
    text: String,
    line: Option<u64>,
    /// Set when an environment variable supplied the value.
    env: Option<&'static str>,
}

/// Error sink for one file.
struct Ctx<'a> {
    file: &'a Path,
    errors: &'a mut Errors,
}

impl Ctx<'_> {
    fn err(&mut self, line: Option<u64>, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Error::new(self.file, line, path, message));
    }

    fn err_at<T>(&mut self, at: &S<T>, path: impl Into<String>, message: impl Into<String>) {
        self.err(Some(at.referenced.line()), path, message);
    }

    fn value_err(&mut self, v: &Value, path: &str, message: impl Into<String>) {
        match v.env {
            Some(var) => self.errors.push(Error::new(Path::new("environment"), None, var, message)),
            None => self.err(v.line, path, message),
        }
    }

    fn duration(&mut self, v: Option<&S<String>>, path: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(&s.value).unwrap_or_else(|e| {
                self.err_at(s, path, e);
                default
            }),
        }
    }

    /// A secret given in place, as `env:NAME` (the variable's value), or in a file (`FILE`
    /// relative to `base`; a trailing newline is not part of it): exactly one of `value`
    /// and `file`. `None`, with the error reported, when it cannot be had; `None` without
    /// an error when neither is given.
    fn secret(&mut self, base: &Path, value: Option<&S<String>>, file: Option<&S<String>>, at: &str) -> Option<String> {
        let got = match (value, file) {
            (None, None) => return None,
            (Some(v), Some(_)) => {
                self.err_at(v, at, format!("give {at} or {at}_file, not both"));
                return None;
            }
            (Some(v), None) => match v.value.strip_prefix("env:") {
                None => Ok(v.value.clone()),
                Some(name) => std::env::var(name.trim())
                    .map_err(|_| (v, format!("the environment variable {} is not set", name.trim()))),
            },
            (None, Some(f)) => {
                let path = base.join(f.value.trim());
                crate::file::read_regular_text(&path)
                    .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| (f, format!("cannot read {}: {e}", path.display())))
            }
        };
        match got {
            Ok(s) if s.is_empty() => {
                let at_value = value.or(file).map(|v| v.referenced.line());
                self.err(at_value, at, "the secret is empty");
                None
            }
            Ok(s) => Some(s),
            Err((v, why)) => {
                self.err_at(v, at, why);
                None
            }
        }
    }

    /// A duration that must be more than zero (a zero timeout fails every request).
    fn timeout(&mut self, v: Option<&S<String>>, path: &str, default: Duration) -> Duration {
        let d = self.duration(v, path, default);
        if let Some(s) = v
            && d.is_zero()
        {
            self.err_at(s, path, "a timeout of 0 would fail every request; give a duration such as \"30s\"");
            return default;
        }
        d
    }

    /// A share written `10%` or `0.1`, within `min` (exclusive when `above`) and 1.
    fn share(&mut self, v: Option<&S<String>>, path: &str, default: f64, above: bool) -> f64 {
        let Some(v) = v else { return default };
        let text = v.value.trim();
        let parsed = match text.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
            None => text.parse::<f64>().ok(),
        };
        match parsed {
            Some(r) if r <= 1.0 && (r > 0.0 || (!above && r == 0.0)) => r,
            _ => {
                let low = if above { "above 0" } else { "from 0" };
                self.err_at(v, path, format!("expected a share {low} and at most 100% (\"10%\" or 0.1), got {text:?}"));
                default
            }
        }
    }

    fn flag(&mut self, v: Option<&S<String>>, path: &str, default: bool) -> bool {
        match v.map(|s| (s, s.value.trim())) {
            None => default,
            Some((_, "true")) => true,
            Some((_, "false")) => false,
            Some((s, other)) => {
                self.err_at(s, path, format!("expected true or false, got {other:?}"));
                default
            }
        }
    }

    /// A whole number from 0 to `max`. The bound keeps every count usable as it is (a
    /// semaphore of 2^64 permits panics; a limit past any real machine is a typo).
    fn count(&mut self, v: Option<&S<String>>, path: &str, default: usize, max: usize) -> usize {
        match v {
            None => default,
            Some(s) => match s.value.trim().parse::<usize>() {
                Ok(n) if n <= max => n,
                Ok(_) => {
                    self.err_at(s, path, format!("{} is too large: at most {max}", s.value.trim()));
                    default
                }
                Err(_) => {
                    self.err_at(s, path, format!("expected a whole number, got {:?}", s.value));
                    default
                }
            },
        }
    }

    /// A size from `min` to `max` bytes.
    fn size_in(&mut self, v: Option<&S<String>>, path: &str, default: u64, (min, max): (u64, u64)) -> u64 {
        let n = self.size(v, path, default);
        if let Some(s) = v
            && !(min..=max).contains(&n)
        {
            self.err_at(s, path, format!("{:?} is out of range: from {} to {} bytes", s.value, min, max));
            return default;
        }
        n
    }

    /// A size where `0`, `unlimited` and `none` mean no limit.
    fn optional_size(&mut self, v: Option<&S<String>>, path: &str, default: Option<u64>) -> Option<u64> {
        let s = v?;
        if matches!(s.value.trim(), "0" | "unlimited" | "none") {
            return None;
        }
        match parse_size(&s.value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err_at(s, path, e);
                default
            }
        }
    }

    fn size(&mut self, v: Option<&S<String>>, path: &str, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => parse_size(&s.value).unwrap_or_else(|e| {
                self.err_at(s, path, e);
                default
            }),
        }
    }
}

/// Parses YAML into `T`, turning parser errors into located errors with a field path and a
/// "did you mean" for unknown keys.
fn parse_yaml<T: for<'de> serde::Deserialize<'de>>(file: &Path, src: &str, errors: &mut Errors) -> Option<T> {
    match serde_saphyr::from_str::<T>(src) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
            let path = line.map(|l| path_at_line(src, l)).unwrap_or_default();
            errors.push(Error::new(file, line, path, describe_yaml_error(&e.to_string())));
            None
        }
    }
}

/// The parser's message without its location prefix and source snippet, with a suggestion
/// for unknown keys.
fn describe_yaml_error(full: &str) -> String {
    let first = full.lines().next().unwrap_or(full);
    let msg = first.trim_start_matches("error: ");
    // Drop "line N column M: ": the caller prints the line itself.
    let msg = match msg.find(": ") {
        Some(i) if msg.starts_with("line ") => &msg[i + 2..],
        _ => msg,
    };
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((name, tail)) = rest.split_once('`')
    {
        let expected: Vec<&str> = tail
            .trim_start_matches(", ")
            .trim_start_matches("expected one of ")
            .trim_start_matches("expected ")
            .split(", ")
            .map(|s| s.trim_matches('`'))
            .filter(|s| !s.is_empty())
            .collect();
        let mut out = format!("unknown key `{name}`");
        if let Some(best) = nearest(name, expected.iter().copied()) {
            out.push_str(&format!(" (did you mean `{best}`?)"));
        }
        if !expected.is_empty() {
            out.push_str(&format!("; valid keys: {}", expected.join(", ")));
        }
        return out;
    }
    msg.to_string()
}

/// Loads and validates the main file at `path` and all site files it points to.
pub fn load(path: &Path, env: &EnvOverrides) -> Result<Config, Errors> {
    let mut errors = Errors::default();
    let src = match crate::file::read_regular_text(path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(Error::new(path, None, "", format!("cannot read configuration file: {e}")));
            return Err(errors);
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let main: raw::Main = parse_yaml(path, &src, &mut errors).ok_or_else(|| errors.clone())?;
    if main.is_empty() {
        // An empty file would start a server on 0.0.0.0:80 with no sites: almost certainly
        // the wrong file, or one an editor left empty.
        let hint = "the main file has no settings; it needs at least `listen` (see examples/quickstart/gatehouse.yaml)";
        errors.push(Error::new(path, None, "", hint));
        return Err(errors);
    }
    let config = build(path, &base, main, env, &mut errors, None);
    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

/// Loads a main file given as text with site files given as `(name, text)`; for tests of
/// error messages without touching the file system. Paths in messages are `gatehouse.yaml`
/// and `sites/<name>.yaml`; static directories are resolved against `base`.
pub fn load_from_str_for_tests(main_src: &str, sites: &[(&str, &str)], base: &Path) -> Result<Config, Errors> {
    let mut errors = Errors::default();
    let path = Path::new("gatehouse.yaml");
    let main: raw::Main = parse_yaml(path, main_src, &mut errors).ok_or_else(|| errors.clone())?;
    let config = build(path, base, main, &EnvOverrides::default(), &mut errors, Some(sites));
    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

fn pick(raw: Option<&S<String>>, env: &EnvOverrides, key: &str) -> Option<Value> {
    let var = ENV_KEYS.iter().find(|(_, k)| *k == key).map(|(v, _)| *v);
    if let Some(var) = var
        && let Some(text) = env.0.get(var)
    {
        return Some(Value { text: text.clone(), line: None, env: Some(var) });
    }
    raw.map(|s| Value { text: s.value.clone(), line: Some(s.referenced.line()), env: None })
}

fn build(
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
const MAX_WORKERS: usize = 1024;
const MAX_CONNECTIONS: usize = 10_000_000;
/// Limits on request heads: hyper's read buffer and HTTP/2's header-list size (a u32) are
/// sized from them.
const MAX_REQUEST_HEADERS: (u64, u64) = (1024, 16 << 20);
const MAX_HEADER_COUNT: usize = 10_000;
const MAX_URI_LENGTH: (u64, u64) = (16, 8 << 20);

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn socket_addr(cx: &mut Ctx<'_>, v: Option<Value>, path: &str, default: &str) -> SocketAddr {
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

fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    IpNet::from_str(s).ok().or_else(|| IpAddr::from_str(s).ok().map(IpNet::from))
}

mod access;
mod auth;
mod data;
mod options;
mod resilience;
mod route;
mod security;
mod site;
mod stream;
mod tls;

use options::*;
use route::*;
use site::{build_site, check_host_conflicts, one_line, parse_host, read_sites_dir};
use tls::*;

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
