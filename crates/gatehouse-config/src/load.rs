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
        EnvOverrides(pairs.into_iter().filter(|(k, _)| ENV_KEYS.iter().any(|(name, _)| name == k)).collect())
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
    let admin_listen = socket_addr(
        &mut cx,
        pick(main.admin.as_ref().and_then(|a| a.listen.as_ref()), env, "admin.listen"),
        "admin.listen",
        "127.0.0.1:8080",
    );

    // Two listeners of this process on one address would split its connections between
    // them (SO_REUSEPORT); the OS refuses a second process, and this refuses the case
    // where both are ours.
    let line = |v: Option<&S<String>>| v.map(|s| s.referenced.line());
    let listen = main.listen.as_ref();
    let mut taken = vec![("listen.http", listen_http, line(listen.and_then(|l| l.http.as_ref())))];
    if let Some(https) = listen_https {
        taken.push(("listen.https", https, line(listen.and_then(|l| l.https.as_ref()))));
    }
    taken.push(("admin.listen", admin_listen, line(main.admin.as_ref().and_then(|a| a.listen.as_ref()))));
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

    let admin_token = match pick(main.admin.as_ref().and_then(|a| a.token.as_ref()), env, "admin.token") {
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
        Some(v) if v.text.len() < 16 && !admin_listen.ip().is_loopback() => {
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
    if !admin_listen.ip().is_loopback() && admin_token.is_none() {
        let line = main.admin.as_ref().and_then(|a| a.listen.as_ref()).map(|l| l.referenced.line());
        cx.err(line, "admin.listen", format!("the admin API listens on {admin_listen}, beyond loopback: set admin.token (or GATEHOUSE_ADMIN_TOKEN) so it is not open to the network"));
    }

    let sites_dir = pick(main.sites_dir.as_ref(), env, "sites_dir").map(|v| v.text).unwrap_or_else(|| "sites".into());
    let sites_dir = base.join(sites_dir);
    let storage_path = pick(main.storage.as_ref().and_then(|s| s.path.as_ref()), env, "storage.path")
        .map(|v| v.text)
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

    let access_file = main.log.as_ref().and_then(|l| {
        let f = l.access_file.as_ref()?;
        let max_bytes = cx.size_in(l.access_file_max.as_ref(), "log.access_file_max", 100 << 20, (64 << 10, 1 << 40));
        let keep = cx.count(l.access_file_keep.as_ref(), "log.access_file_keep", 5, 1000);
        match f.value.trim() {
            "" => {
                cx.err_at(f, "log.access_file", "give a file path, or - for stdout");
                None
            }
            "-" => Some(AccessFile::Stdout),
            p => Some(AccessFile::File { path: base.join(p), max_bytes, keep }),
        }
    });
    let logging = logging(&mut cx, &main.logging.unwrap_or_default(), "logging", None);
    let retention = retention(&mut cx, &main.data_retention.unwrap_or_default(), "data_retention", None);

    let mut webhooks = Vec::new();
    for (i, w) in main.webhooks.iter().flatten().enumerate() {
        let path = format!("webhooks[{i}]");
        let url = w.url.value.trim();
        let ok = http::Uri::try_from(url)
            .ok()
            .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
        if !ok {
            cx.err_at(&w.url, format!("{path}.url"), "expected an http:// or https:// URL with a host");
        }
        let format = match w.format.as_ref().map(|f| (f, f.value.trim())) {
            None | Some((_, "json")) => WebhookFormat::Json,
            Some((_, "discord")) => WebhookFormat::Discord,
            Some((f, other)) => {
                cx.err_at(f, format!("{path}.format"), format!("unknown format {other:?}; expected json or discord"));
                WebhookFormat::Json
            }
        };
        let mut events = Vec::new();
        for e in w.events.iter().flatten() {
            let name = e.value.trim();
            if WEBHOOK_EVENTS.contains(&name) {
                events.push(name.to_string());
            } else {
                cx.err_at(
                    e,
                    format!("{path}.events"),
                    format!("unknown event {name:?}; known: {}", WEBHOOK_EVENTS.join(", ")),
                );
            }
        }
        let throttle = cx.duration(w.throttle.as_ref(), &format!("{path}.throttle"), Duration::from_secs(900));
        webhooks.push(WebhookConfig { url: url.to_string(), format, events, throttle });
    }
    let alerts = {
        let raw = main.alerts.unwrap_or_default();
        let error_rate = match &raw.error_rate {
            None => 0.1,
            Some(v) => {
                let text = v.value.trim();
                let parsed = match text.strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
                    None => text.parse::<f64>().ok(),
                };
                match parsed {
                    Some(r) if r > 0.0 && r <= 1.0 => r,
                    _ => {
                        cx.err_at(
                            v,
                            "alerts.error_rate",
                            format!("expected a share above 0 and at most 100% (\"10%\" or 0.1), got {text:?}"),
                        );
                        0.1
                    }
                }
            }
        };
        let window = cx.duration(raw.window.as_ref(), "alerts.window", Duration::from_secs(300));
        if let Some(w) = &raw.window
            && window < Duration::from_secs(1)
        {
            cx.err_at(w, "alerts.window", "the window must be at least 1s");
        }
        let min_requests = cx.count(raw.min_requests.as_ref(), "alerts.min_requests", 20, 1_000_000_000) as u64;
        AlertsConfig { error_rate, window: window.max(Duration::from_secs(1)), min_requests }
    };

    let backups = {
        let raw = main.backups.unwrap_or_default();
        let day = |d: u64| Duration::from_secs(d * 86_400);
        let enabled = cx.flag(raw.enabled.as_ref(), "backups.enabled", true);
        let dir = match &raw.dir {
            Some(d) => base.join(d.value.trim()),
            None => storage_path.parent().unwrap_or(Path::new(".")).join("backups"),
        };
        let interval = cx.duration(raw.interval.as_ref(), "backups.interval", Duration::from_secs(3600));
        if let Some(v) = &raw.interval
            && interval < Duration::from_secs(60)
        {
            cx.err_at(v, "backups.interval", "take backups at most once a minute (at least 1m)");
        }
        let hourly = cx.duration(raw.hourly.as_ref(), "backups.hourly", day(7));
        let daily = cx.duration(raw.daily.as_ref(), "backups.daily", day(28));
        let weekly = cx.duration(raw.weekly.as_ref(), "backups.weekly", day(91));
        if let Some(v) = &raw.daily
            && daily < hourly
        {
            cx.err_at(v, "backups.daily", "must be at least backups.hourly (the tiers follow each other)");
        }
        if let Some(v) = &raw.weekly
            && weekly < daily
        {
            cx.err_at(v, "backups.weekly", "must be at least backups.daily (the tiers follow each other)");
        }
        BackupsConfig { enabled, dir, interval: interval.max(Duration::from_secs(60)), hourly, daily, weekly }
    };

    let otlp = main.opentelemetry.as_ref().and_then(|o| {
        let endpoint = o.endpoint.as_ref()?;
        let url = endpoint.value.trim().trim_end_matches('/');
        let ok = http::Uri::try_from(url)
            .ok()
            .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
        if !ok {
            cx.err_at(
                endpoint,
                "opentelemetry.endpoint",
                "expected the collector's http:// or https:// URL (OTLP over HTTP, e.g. http://127.0.0.1:4318)",
            );
            return None;
        }
        let service_name = o.service_name.as_ref().map_or("gatehouse".to_string(), |s| s.value.trim().to_string());
        Some(OtlpConfig { endpoint: url.to_string(), service_name })
    });

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

    let mut defaults = Layered { base: base.to_path_buf(), ..Layered::default() };
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

    let mut sites = Vec::new();
    let site_files: Vec<(PathBuf, Result<String, String>)> = match inline_sites {
        Some(list) => list
            .iter()
            .map(|(name, text)| (PathBuf::from(format!("sites/{name}.yaml")), Ok(text.to_string())))
            .collect(),
        None => read_sites_dir(&mut cx, &sites_dir, main.sites_dir.as_ref()),
    };
    let errors = cx.errors;
    for (file, text) in site_files {
        let mut scx = Ctx { file: &file, errors };
        match text {
            Err(e) => scx.err(None, "", e),
            Ok(src) => {
                if let Some(raw_site) = parse_yaml::<raw::Site>(&file, &src, scx.errors)
                    && let Some(site) = build_site(
                        &mut scx,
                        &file,
                        base,
                        raw_site,
                        &defaults,
                        listen_https.is_some(),
                        &mut tls.pairs,
                        (&logging, &retention),
                    )
                {
                    sites.push(site);
                }
            }
        }
    }
    check_host_conflicts(&sites, errors);

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
        backups,
        otlp,
        log: LogConfig { level, format, access_file },
        shutdown_timeout,
        server,
        trusted_proxies,
        dns_refresh,
        sites,
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

mod options;
mod route;
mod site;
mod tls;

use options::*;
use route::*;
use site::{build_site, check_host_conflicts, one_line, parse_host, read_sites_dir};
use tls::*;

#[cfg(test)]
mod tests;

/// `logging` of the main file (`inherit: None`) or of a site file (unset keys from the
/// main file's).
fn logging(cx: &mut Ctx<'_>, raw: &raw::Logging, at: &str, inherit: Option<&LoggingConfig>) -> LoggingConfig {
    let requests = cx.flag(raw.requests.as_ref(), &format!("{at}.requests"), inherit.is_none_or(|l| l.requests));
    let mask_pii = cx.flag(raw.mask_pii.as_ref(), &format!("{at}.mask_pii"), true);
    let inherited = inherit.map_or(MaskIpMethod::LastOctet, |l| l.mask_ip);
    let method = match raw.mask_ip_method.as_ref().map(|v| (v, v.value.trim())) {
        None => inherited,
        Some((_, "last_octet")) => MaskIpMethod::LastOctet,
        Some((_, "none")) => MaskIpMethod::None,
        Some((_, "hash")) => MaskIpMethod::Hash,
        Some((v, other)) => {
            cx.err_at(
                v,
                format!("{at}.mask_ip_method"),
                format!("unknown method {other:?}; expected last_octet, hash or none"),
            );
            inherited
        }
    };
    let mask_ip = if raw.mask_pii.is_some() && !mask_pii { MaskIpMethod::None } else { method };
    let mut strip_headers = inherit.map(|l| l.strip_headers.clone()).unwrap_or_default();
    for h in raw.strip_headers.iter().flatten() {
        match http::HeaderName::from_bytes(h.value.trim().as_bytes()) {
            Ok(n) => strip_headers.push(n.as_str().to_string()),
            Err(_) => cx.err_at(h, format!("{at}.strip_headers"), format!("{:?} is not a header name", h.value)),
        }
    }
    let mut secret_params = inherit.map(|l| l.secret_params.clone()).unwrap_or_default();
    for w in raw.secret_params.iter().flatten() {
        let word = w.value.trim().to_ascii_lowercase();
        if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
            cx.err_at(w, format!("{at}.secret_params"), format!("{:?} is not a query parameter name", w.value));
        } else {
            secret_params.push(word);
        }
    }
    let mut redact_paths = inherit.map(|l| l.redact_paths.clone()).unwrap_or_default();
    for p in raw.redact_paths.iter().flatten() {
        match PathPattern::parse(p.value.trim()) {
            Ok(pattern) => redact_paths.push(pattern),
            Err(e) => cx.err_at(p, format!("{at}.redact_paths"), e),
        }
    }
    LoggingConfig { requests, mask_ip, strip_headers, secret_params, redact_paths }
}

/// `data_retention` of the main file (`inherit: None`) or of a site file (unset keys from
/// the main file's; the audit log is the instance's, not a site's).
fn retention(
    cx: &mut Ctx<'_>,
    raw: &raw::DataRetention,
    at: &str,
    inherit: Option<&RetentionConfig>,
) -> RetentionConfig {
    let day = |d: u64| Duration::from_secs(d * 86_400);
    let base = inherit.copied().unwrap_or(RetentionConfig {
        access: day(7),
        errors: day(30),
        security: day(90),
        audit: day(365),
    });
    let mut keep = |v: Option<&S<String>>, key: &str, default: Duration| {
        let path = format!("{at}.{key}");
        let d = cx.duration(v, &path, default);
        match v {
            Some(s) if d < Duration::from_secs(3600) => {
                cx.err_at(s, path, "keep records at least 1h (the job that deletes them runs daily)");
                default
            }
            _ => d,
        }
    };
    let access = keep(raw.access_logs.as_ref(), "access_logs", base.access);
    let errors = keep(raw.error_logs.as_ref(), "error_logs", base.errors);
    let security = keep(raw.security_logs.as_ref(), "security_logs", base.security);
    let audit = keep(raw.audit_logs.as_ref(), "audit_logs", base.audit);
    if let (Some(_), Some(v)) = (inherit, &raw.audit_logs) {
        cx.err_at(
            v,
            format!("{at}.audit_logs"),
            "the audit log belongs to the whole instance: set audit_logs in the main file",
        );
    }
    RetentionConfig { access, errors, security, audit }
}
