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
    };

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
                    && let Some(site) =
                        build_site(&mut scx, &file, base, raw_site, &defaults, listen_https.is_some(), &mut tls.pairs)
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
        sites_dir,
        storage_path,
        log: LogConfig { level, format },
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

fn read_sites_dir(cx: &mut Ctx<'_>, dir: &Path, raw: Option<&S<String>>) -> Vec<(PathBuf, Result<String, String>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            let line = raw.map(|r| r.referenced.line());
            cx.err(line, "sites_dir", format!("cannot read sites directory {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.')))
        .collect();
    files.sort();
    // `a.yaml` and `a.yml` would both be site "a": refuse rather than merge silently.
    for pair in files.windows(2) {
        if pair[0].file_stem() == pair[1].file_stem() {
            cx.err(
                None,
                "sites_dir",
                format!("{} and {} name the same site; keep one", pair[0].display(), pair[1].display()),
            );
        }
    }
    files
        .into_iter()
        .map(|p| {
            let text = crate::file::read_regular_text(&p).map_err(|e| format!("cannot read site file: {e}"));
            (p, text)
        })
        .collect()
}

/// Options accumulated through defaults <- site <- route.
#[derive(Clone, Default)]
struct Layered {
    opts: RouteOptions,
    pool: PoolSettings,
    balance: Option<Balance>,
    /// Directory that relative file paths in options resolve against.
    base: PathBuf,
}

impl Layered {
    fn apply(&mut self, cx: &mut Ctx<'_>, o: &raw::Options, at: &str) {
        if let Some(t) = &o.timeouts {
            let d = &mut self.opts;
            d.connect_timeout = cx.timeout(t.connect.as_ref(), &format!("{at}.timeouts.connect"), d.connect_timeout);
            d.read_timeout = cx.timeout(t.read.as_ref(), &format!("{at}.timeouts.read"), d.read_timeout);
            d.write_timeout = cx.timeout(t.write.as_ref(), &format!("{at}.timeouts.write"), d.write_timeout);
            self.pool.idle_timeout =
                cx.duration(t.idle.as_ref(), &format!("{at}.timeouts.idle"), self.pool.idle_timeout);
        }
        if let Some(l) = &o.limits {
            let d = &mut self.opts;
            if l.request_body.is_some() {
                d.max_request_body =
                    cx.optional_size(l.request_body.as_ref(), &format!("{at}.limits.request_body"), d.max_request_body);
            }
            if l.response_body.is_some() {
                d.max_response_body = cx.optional_size(
                    l.response_body.as_ref(),
                    &format!("{at}.limits.response_body"),
                    d.max_response_body,
                );
            }
            d.max_request_headers = cx.size_in(
                l.request_headers.as_ref(),
                &format!("{at}.limits.request_headers"),
                d.max_request_headers,
                MAX_REQUEST_HEADERS,
            );
            d.max_request_header_count = cx.count(
                l.request_header_count.as_ref(),
                &format!("{at}.limits.request_header_count"),
                d.max_request_header_count,
                MAX_HEADER_COUNT,
            );
            if let Some(v) = &l.request_header_count
                && d.max_request_header_count == 0
            {
                cx.err_at(
                    v,
                    format!("{at}.limits.request_header_count"),
                    "0 would refuse every request (431); at least 1",
                );
                d.max_request_header_count = 1;
            }
            d.max_uri_length = cx.size_in(
                l.uri_length.as_ref(),
                &format!("{at}.limits.uri_length"),
                d.max_uri_length as u64,
                MAX_URI_LENGTH,
            ) as usize;
        }
        if let Some(p) = &o.pool {
            self.pool.max_idle_per_host = cx.count(
                p.max_idle_per_host.as_ref(),
                &format!("{at}.pool.max_idle_per_host"),
                self.pool.max_idle_per_host,
                MAX_CONNECTIONS,
            );
            self.pool.max_connections_per_host = cx.count(
                p.max_connections_per_host.as_ref(),
                &format!("{at}.pool.max_connections_per_host"),
                self.pool.max_connections_per_host,
                MAX_CONNECTIONS,
            );
        }
        if let Some(t) = &o.upstream_tls {
            let mut tls = self.pool.tls.clone();
            if let Some(ca) = &t.ca {
                let p = self.base.join(&ca.value);
                match crate::file::check_regular(&p) {
                    Ok(_) => tls.ca = Some(p),
                    Err(e) => {
                        cx.err_at(ca, format!("{at}.upstream_tls.ca"), format!("cannot read {}: {e}", p.display()))
                    }
                }
            }
            if t.cert.is_some() || t.key.is_some() {
                tls.client =
                    cert_pair(cx, &self.base, t.cert.as_ref(), t.key.as_ref(), &format!("{at}.upstream_tls"), at);
            }
            if let Some(n) = &t.server_name {
                tls.server_name = Some(n.value.trim().to_string());
            }
            self.pool.tls = tls;
        }
        if let Some(b) = &o.load_balancing {
            let base = self
                .balance
                .clone()
                .unwrap_or(Balance { algorithm: Algorithm::RoundRobin, hash_key: HashKey::ClientIp });
            self.balance = Some(parse_balance(cx, b, &format!("{at}.load_balancing"), base));
        }
        if let Some(h) = &o.headers {
            if let Some(p) = &h.preset {
                match preset(&p.value) {
                    Some(rules) => {
                        for (name, value) in rules {
                            set_header(&mut self.opts.response_headers, name, value);
                        }
                    }
                    None => {
                        let hint = nearest(&p.value, PRESETS.iter().copied())
                            .map(|n| format!(" (did you mean `{n}`?)"))
                            .unwrap_or_default();
                        cx.err_at(
                            p,
                            format!("{at}.headers.preset"),
                            format!("unknown preset {:?}{hint}; expected one of {}", p.value, PRESETS.join(", ")),
                        );
                    }
                }
            }
            if let Some(ops) = &h.request {
                apply_header_ops(cx, &mut self.opts.request_headers, ops, &format!("{at}.headers.request"));
            }
            if let Some(ops) = &h.response {
                apply_header_ops(cx, &mut self.opts.response_headers, ops, &format!("{at}.headers.response"));
            }
        }
    }

    fn balance(&self) -> Balance {
        self.balance.clone().unwrap_or(Balance { algorithm: Algorithm::RoundRobin, hash_key: HashKey::ClientIp })
    }
}

fn parse_balance(cx: &mut Ctx<'_>, b: &raw::Balance, at: &str, mut out: Balance) -> Balance {
    if let Some(a) = &b.algorithm {
        out.algorithm = match a.value.as_str() {
            "round_robin" => Algorithm::RoundRobin,
            "weighted_round_robin" | "weighted" => Algorithm::WeightedRoundRobin,
            "least_conn" | "least_connections" => Algorithm::LeastConn,
            "consistent_hash" | "ip_hash" | "hash" => Algorithm::ConsistentHash,
            "random" => Algorithm::Random,
            other => {
                let hint = nearest(other, Algorithm::NAMES.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.err_at(
                    a,
                    format!("{at}.algorithm"),
                    format!("unknown algorithm {other:?}{hint}; expected one of {}", Algorithm::NAMES.join(", ")),
                );
                out.algorithm
            }
        };
    }
    if let Some(k) = &b.hash_key {
        let v = k.value.trim();
        out.hash_key = if v == "client_ip" {
            HashKey::ClientIp
        } else if let Some(h) = v.strip_prefix("header:") {
            match HeaderName::from_str(h.trim()) {
                Ok(name) => HashKey::Header(name),
                Err(_) => {
                    cx.err_at(k, format!("{at}.hash_key"), format!("invalid header name {h:?}"));
                    out.hash_key
                }
            }
        } else if let Some(c) = v.strip_prefix("cookie:") {
            HashKey::Cookie(c.trim().to_string())
        } else {
            cx.err_at(
                k,
                format!("{at}.hash_key"),
                format!("expected client_ip, header:NAME or cookie:NAME, got {v:?}"),
            );
            out.hash_key
        };
    }
    out
}

const PRESETS: &[&str] = &["security-basic", "security-strict"];

fn preset(name: &str) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let pairs: &[(&str, &str)] = match name {
        "security-basic" => &[
            ("strict-transport-security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "SAMEORIGIN"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
        ],
        "security-strict" => &[
            ("strict-transport-security", "max-age=63072000; includeSubDomains"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
            (
                "content-security-policy",
                "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
            ),
            ("cross-origin-opener-policy", "same-origin"),
        ],
        _ => return None,
    };
    Some(pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect())
}

/// `set` replaces any earlier rule for the same header, so a site can override a preset.
fn set_header(rules: &mut HeaderRules, name: HeaderName, value: HeaderValue) {
    rules.set.retain(|(n, _)| *n != name);
    rules.add.retain(|(n, _)| *n != name);
    rules.set.push((name, value));
}

fn apply_header_ops(cx: &mut Ctx<'_>, rules: &mut HeaderRules, ops: &raw::HeaderOps, at: &str) {
    for (i, name) in ops.remove.iter().flatten().enumerate() {
        match HeaderName::from_str(&name.value) {
            Ok(n) => {
                rules.set.retain(|(x, _)| *x != n);
                rules.add.retain(|(x, _)| *x != n);
                rules.remove.push(n);
            }
            Err(_) => cx.err_at(name, format!("{at}.remove[{i}]"), format!("invalid header name {:?}", name.value)),
        }
    }
    for (kind, map) in [("set", &ops.set), ("add", &ops.add)] {
        let Some(map) = map else { continue };
        for (k, v) in &map.value {
            let parsed = (HeaderName::from_str(k), HeaderValue::from_str(v));
            match parsed {
                (Ok(n), Ok(val)) => {
                    if kind == "set" {
                        set_header(rules, n, val);
                    } else {
                        rules.add.push((n, val));
                    }
                }
                (Err(_), _) => cx.err_at(map, format!("{at}.{kind}.{k}"), format!("invalid header name {k:?}")),
                (_, Err(_)) => cx.err_at(map, format!("{at}.{kind}.{k}"), format!("invalid header value {v:?}")),
            }
        }
    }
}

fn build_site(
    cx: &mut Ctx<'_>,
    file: &Path,
    base: &Path,
    s: raw::Site,
    defaults: &Layered,
    https: bool,
    pairs: &mut Vec<CertPair>,
) -> Option<Site> {
    let name = file.file_stem().and_then(|n| n.to_str()).unwrap_or("site").to_string();
    if let Some(t) = &s.tls {
        if let Some(pair) = cert_pair(cx, base, t.cert.as_ref(), t.key.as_ref(), "tls", &name) {
            pairs.push(pair);
        }
        if !https {
            cx.err(
                t.cert.as_ref().map(|c| c.referenced.line()),
                "tls",
                "this site has a certificate but the main file has no listen.https",
            );
        }
    }
    let https_redirect = cx.flag(s.https_redirect.as_ref(), "https_redirect", https);
    let mut hosts = Vec::new();
    let mut raw_hosts: Vec<(String, &S<String>)> = Vec::new();
    if let Some(h) = &s.host {
        raw_hosts.push(("host".into(), h));
    }
    for (i, h) in s.hosts.iter().flatten().enumerate() {
        raw_hosts.push((format!("hosts[{i}]"), h));
    }
    if raw_hosts.is_empty() {
        cx.err(Some(1), "host", "a site needs `host` or `hosts` (use \"*\" for a catch-all)");
    }
    for (path, h) in raw_hosts {
        match parse_host(&h.value) {
            Ok(p) => hosts.push(p),
            Err(e) => cx.err_at(h, path, e),
        }
    }

    let mut site_layer = defaults.clone();
    if let Some(o) = &s.options {
        site_layer.apply(cx, o, "options");
    }

    let mut named: BTreeMap<String, Arc<Upstream>> = BTreeMap::new();
    for (uname, u) in s.upstreams.iter().flatten() {
        let at = format!("upstreams.{uname}");
        let mut balance = site_layer.balance();
        if let Some(b) = &u.load_balancing {
            balance = parse_balance(cx, b, &format!("{at}.load_balancing"), balance);
        }
        let backends = parse_backends(cx, &u.backends, &format!("{at}.backends"));
        if backends.is_empty() && !u.backends.is_empty() {
            continue;
        }
        if u.backends.is_empty() {
            cx.err(None, format!("{at}.backends"), "an upstream needs at least one backend");
            continue;
        }
        let key = format!("{name}/{uname}:{}", backend_list_key(&backends));
        named.insert(uname.clone(), Arc::new(Upstream { key, backends, balance, pool: site_layer.pool.clone() }));
    }

    let wrote_routes = s.routes.as_ref().is_some_and(|r| !r.is_empty());
    let mut routes = Vec::new();
    for (i, r) in s.routes.into_iter().flatten().enumerate() {
        let at = format!("routes[{i}]");
        if let Some(route) = build_route(cx, base, &name, i, r, &at, &site_layer, &named) {
            routes.push(route);
        }
    }
    // The short form (`backend`, `backends`, `static`, `redirect` at site level) is a
    // catch-all route after the explicit ones.
    let short = raw::Route {
        backend: s.backend,
        backends: s.backends,
        static_dir: s.static_dir,
        redirect: s.redirect,
        priority: None,
        ..Default::default()
    };
    let has_short =
        short.backend.is_some() || short.backends.is_some() || short.static_dir.is_some() || short.redirect.is_some();
    if has_short {
        let idx = routes.len();
        if let Some(mut route) = build_route(cx, base, &name, idx, short, "", &site_layer, &named) {
            route.priority = i32::MIN;
            routes.push(route);
        }
    } else if !wrote_routes {
        cx.err(Some(1), "", "a site needs `backend`, `backends`, `static`, `redirect` or `routes`");
    }
    Some(Site { name, file: file.to_path_buf(), hosts, routes, https_redirect: https_redirect && https })
}

fn build_tls(cx: &mut Ctx<'_>, base: &Path, t: Option<&raw::Tls>, storage_path: &Path) -> TlsConfig {
    let mut out = TlsConfig::default();
    let Some(t) = t else { return out };
    if let Some(a) = &t.acme {
        let state_dir = storage_path.parent().unwrap_or(Path::new(".")).join("acme");
        out.acme_dir = Some(state_dir.join("certs"));
        out.acme = build_acme(cx, base, a, state_dir);
    }
    if let Some(dir) = &t.cert_dir {
        let path = base.join(&dir.value);
        match std::fs::read_dir(&path) {
            Ok(_) => out.cert_dir = Some(path),
            Err(e) => cx.err_at(dir, "tls.cert_dir", format!("cannot read {}: {e}", path.display())),
        }
    }
    if let Some(pair) = cert_pair(cx, base, t.cert.as_ref(), t.key.as_ref(), "tls", "main") {
        out.pairs.push(pair);
    }
    if let Some(h) = &t.default_host {
        match parse_host(&h.value) {
            Ok(HostPattern::Exact(name)) => out.default_host = Some(name),
            _ => cx.err_at(h, "tls.default_host", format!("expected a host name like example.test, got {:?}", h.value)),
        }
    }
    out
}

const ACME_CHALLENGES: &[&str] = &["http-01", "tls-alpn-01", "dns-01"];

fn build_acme(cx: &mut Ctx<'_>, base: &Path, a: &raw::Acme, state_dir: PathBuf) -> Option<AcmeConfig> {
    let errors_before = cx.errors.len();
    if !a.email.value.contains('@') {
        cx.err_at(&a.email, "tls.acme.email", format!("expected an e-mail address, got {:?}", a.email.value));
    }
    let directory = match a.ca.as_ref().map(|c| c.value.trim()) {
        None | Some("letsencrypt") => "https://acme-v02.api.letsencrypt.org/directory".to_string(),
        Some("letsencrypt-staging") => "https://acme-staging-v02.api.letsencrypt.org/directory".to_string(),
        Some("zerossl") => "https://acme.zerossl.com/v2/DV90".to_string(),
        Some(url) if url.starts_with("https://") => url.to_string(),
        Some(other) => {
            if let Some(c) = &a.ca {
                cx.err_at(
                    c,
                    "tls.acme.ca",
                    format!(
                        "expected letsencrypt, letsencrypt-staging, zerossl or an https:// directory URL, got {other:?}"
                    ),
                );
            }
            String::new()
        }
    };
    let ca_root = a.ca_root.as_ref().and_then(|r| {
        let p = base.join(&r.value);
        match crate::file::check_regular(&p) {
            Ok(_) => Some(p),
            Err(e) => {
                cx.err_at(r, "tls.acme.ca_root", format!("cannot read {}: {e}", p.display()));
                None
            }
        }
    });
    let challenge = match a.challenge.as_ref().map(|c| c.value.trim()) {
        None | Some("http-01") => AcmeChallenge::Http01,
        Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some("dns-01") => match &a.dns_hook {
            Some(h) if !h.value.trim().is_empty() => AcmeChallenge::Dns01 { hook: h.value.clone() },
            _ => {
                if let Some(c) = &a.challenge {
                    cx.err_at(
                        c,
                        "tls.acme.dns_hook",
                        "dns-01 needs dns_hook: a command run as `COMMAND set|clear NAME VALUE`",
                    );
                }
                AcmeChallenge::Http01
            }
        },
        Some(other) => {
            if let Some(c) = &a.challenge {
                let hint = nearest(other, ACME_CHALLENGES.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.err_at(
                    c,
                    "tls.acme.challenge",
                    format!("unknown challenge {other:?}{hint}; expected http-01, tls-alpn-01 or dns-01"),
                );
            }
            AcmeChallenge::Http01
        }
    };
    let eab = a.eab.as_ref().map(|e| (e.kid.value.clone(), e.hmac.value.clone()));
    if directory.contains("zerossl.com") && eab.is_none() {
        cx.err_at(
            &a.email,
            "tls.acme.eab",
            "ZeroSSL needs external account binding: set eab: {kid, hmac} from your ZeroSSL account",
        );
    }
    let renew_before = a.renew_before.as_ref().map(|r| cx.duration(Some(r), "tls.acme.renew_before", Duration::ZERO));
    (cx.errors.len() == errors_before).then(|| AcmeConfig {
        email: a.email.value.trim().to_string(),
        directory,
        ca_root,
        challenge,
        eab,
        renew_before,
        state_dir,
    })
}

/// A `cert` + `key` pair; both or neither, both readable.
fn cert_pair(
    cx: &mut Ctx<'_>,
    base: &Path,
    cert: Option<&S<String>>,
    key: Option<&S<String>>,
    at: &str,
    origin: &str,
) -> Option<CertPair> {
    match (cert, key) {
        (None, None) => None,
        (Some(c), None) => {
            cx.err_at(c, format!("{at}.key"), "a certificate needs its key: add key");
            None
        }
        (None, Some(k)) => {
            cx.err_at(k, format!("{at}.cert"), "a key needs its certificate: add cert");
            None
        }
        (Some(c), Some(k)) => {
            let mut ok = true;
            for (field, v) in [("cert", c), ("key", k)] {
                let p = base.join(&v.value);
                if let Err(e) = crate::file::check_regular(&p) {
                    cx.err_at(v, format!("{at}.{field}"), format!("cannot read {}: {e}", p.display()));
                    ok = false;
                }
            }
            ok.then(|| CertPair { cert: base.join(&c.value), key: base.join(&k.value), origin: origin.to_string() })
        }
    }
}

fn parse_host(h: &str) -> Result<HostPattern, String> {
    let mut h = h.trim().to_ascii_lowercase();
    // `[::1]` and `::1` are the same host; requests are matched without brackets.
    if h.starts_with('[') && h.ends_with(']') {
        h = h[1..h.len() - 1].to_string();
    }
    if h == "*" {
        return Ok(HostPattern::Any);
    }
    let (pattern, body) = match h.strip_prefix("*.") {
        Some(rest) => (HostPattern::Wildcard(format!(".{rest}")), rest.to_string()),
        None => (HostPattern::Exact(h.clone()), h.clone()),
    };
    let valid = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let ip_literal = body.starts_with('[') && body.ends_with(']') && IpAddr::from_str(&body[1..body.len() - 1]).is_ok();
    if valid || ip_literal || IpAddr::from_str(&body).is_ok() {
        Ok(pattern)
    } else {
        Err(format!(
            "invalid host {h:?}: expected a name like example.test, *.example.test or \"*\" (no scheme, port or path)"
        ))
    }
}

fn backend_list_key(backends: &[Backend]) -> String {
    backends.iter().map(|b| format!("{}*{}", b.url(), b.weight)).collect::<Vec<_>>().join(",")
}

fn parse_backends(cx: &mut Ctx<'_>, list: &[S<String>], at: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    for (i, b) in list.iter().enumerate() {
        match parse_backend(&b.value) {
            Ok(be) => out.push(be),
            Err(e) => cx.err_at(b, format!("{at}[{i}]"), e),
        }
    }
    out
}

/// `http://host:port`, `h2c://host:port`, `unix:/path.sock`, each optionally followed by
/// ` weight=N`.
fn parse_backend(spec: &str) -> Result<Backend, String> {
    let mut parts = spec.split_whitespace();
    let url = parts.next().ok_or("empty backend")?;
    let mut weight = 1;
    for extra in parts {
        match extra.strip_prefix("weight=").map(str::parse::<u32>) {
            Some(Ok(w)) if w >= 1 => weight = w,
            _ => {
                return Err(format!("unexpected {extra:?} after the backend URL; only `weight=N` (N >= 1) may follow"));
            }
        }
    }
    if let Some(path) = url.strip_prefix("unix:") {
        let path = path.trim_start_matches("//");
        if !path.starts_with('/') {
            return Err(format!("unix socket backend needs an absolute path: unix:/run/app.sock, got {url:?}"));
        }
        return Ok(Backend { addr: BackendAddr::Unix(PathBuf::from(path)), weight, h2c: false, tls: false });
    }
    let (h2c, tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, false, r)
    } else if let Some(r) = url.strip_prefix("h2c://") {
        (true, false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, true, r)
    } else {
        return Err(format!(
            "invalid backend {url:?}: expected http://host:port, https://host:port, h2c://host:port or unix:/path.sock"
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') {
        return Err(format!(
            "backend {url:?} has a path; backends are addresses only (use `rewrite` or `strip_prefix` to change paths)"
        ));
    }
    let (host, port) = split_host_port(rest).ok_or_else(|| format!("invalid backend address {url:?}"))?;
    if host.is_empty() {
        return Err(format!("backend {url:?} has no host"));
    }
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    Ok(Backend { addr: BackendAddr::Tcp { host, port }, weight, h2c, tls })
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((s.to_string(), None)),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_route(
    cx: &mut Ctx<'_>,
    base: &Path,
    site: &str,
    idx: usize,
    r: raw::Route,
    at: &str,
    site_layer: &Layered,
    named: &BTreeMap<String, Arc<Upstream>>,
) -> Option<Route> {
    let dot = if at.is_empty() { String::new() } else { format!("{at}.") };
    let mut layer = site_layer.clone();
    if let Some(o) = &r.options {
        layer.apply(cx, o, &format!("{dot}options"));
    }

    let kind = r.match_kind.as_ref().map(|m| m.value.as_str()).unwrap_or("prefix");
    let raw_path = r.path.as_ref().map(|p| p.value.clone()).unwrap_or_else(|| "/".into());
    let path = match kind {
        "prefix" | "exact" => {
            if !raw_path.starts_with('/') {
                if let Some(p) = &r.path {
                    cx.err_at(p, format!("{dot}path"), format!("path must start with '/', got {raw_path:?}"));
                }
                return None;
            }
            if kind == "exact" {
                PathMatch::Exact(raw_path.clone())
            } else {
                PathMatch::Prefix(raw_path.trim_end_matches('/').to_string())
            }
        }
        "regex" => match Regex::new(&raw_path) {
            Ok(re) => PathMatch::Regex(re),
            Err(e) => {
                let line = r.path.as_ref().map(|p| p.referenced.line());
                cx.err(line, format!("{dot}path"), format!("invalid regex: {}", one_line(&e.to_string())));
                return None;
            }
        },
        other => {
            if let Some(m) = &r.match_kind {
                let hint = nearest(other, ["prefix", "exact", "regex"])
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.err_at(
                    m,
                    format!("{dot}match"),
                    format!("unknown match kind {other:?}{hint}; expected prefix, exact or regex"),
                );
            }
            return None;
        }
    };

    let mut methods = None;
    if let Some(list) = &r.methods {
        let mut out = Vec::new();
        for (i, m) in list.iter().enumerate() {
            let upper = m.value.trim().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(Method::CONNECT) => cx.err_at(
                    m,
                    format!("{dot}methods[{i}]"),
                    "CONNECT opens a tunnel, which Gatehouse does not proxy (use an L4 route for raw TCP)".to_string(),
                ),
                Ok(method) => out.push(method),
                Err(_) => cx.err_at(m, format!("{dot}methods[{i}]"), format!("invalid method {:?}", m.value)),
            }
        }
        methods = Some(out);
    }

    let priority = match &r.priority {
        None => 0,
        Some(p) => p.value.trim().parse().unwrap_or_else(|_| {
            cx.err_at(p, format!("{dot}priority"), format!("expected an integer, got {:?}", p.value));
            0
        }),
    };

    let strip_prefix = match &r.strip_prefix {
        None => None,
        Some(s) => match s.value.trim() {
            "false" => None,
            "true" => match &path {
                PathMatch::Prefix(p) | PathMatch::Exact(p) => Some(p.trim_end_matches('/').to_string()),
                PathMatch::Regex(_) => {
                    cx.err_at(
                        s,
                        format!("{dot}strip_prefix"),
                        "strip_prefix: true needs a prefix or exact path; give the prefix to strip instead",
                    );
                    None
                }
            },
            p if p.starts_with('/') => Some(p.trim_end_matches('/').to_string()),
            p => {
                cx.err_at(
                    s,
                    format!("{dot}strip_prefix"),
                    format!("expected true, false or a path starting with '/', got {p:?}"),
                );
                None
            }
        },
    };

    let rewrite = match &r.rewrite {
        None => None,
        Some(rw) => match Regex::new(&rw.pattern.value) {
            Ok(pattern) => {
                for group in replacement_groups(&rw.replace) {
                    let exists = match group.parse::<usize>() {
                        Ok(n) => n < pattern.captures_len(),
                        Err(_) => pattern.capture_names().flatten().any(|n| n == group),
                    };
                    if !exists {
                        cx.err_at(
                            &rw.pattern,
                            format!("{dot}rewrite.replace"),
                            format!(
                                "`{}` names capture group `{group}`, which the pattern does not have (it has {} numbered group(s){}); write ${{1}}x, not $1x, when letters follow, and $$ for a literal $",
                                rw.replace,
                                pattern.captures_len() - 1,
                                named_groups(&pattern),
                            ),
                        );
                    }
                }
                Some(Rewrite { pattern, replace: rw.replace.clone() })
            }
            Err(e) => {
                cx.err_at(
                    &rw.pattern,
                    format!("{dot}rewrite.pattern"),
                    format!("invalid regex: {}", one_line(&e.to_string())),
                );
                None
            }
        },
    };

    // Exactly one action.
    let given: Vec<&str> = [
        ("backend", r.backend.is_some()),
        ("backends", r.backends.is_some()),
        ("upstream", r.upstream.is_some()),
        ("static", r.static_dir.is_some()),
        ("redirect", r.redirect.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    let line = r.path.as_ref().map(|p| p.referenced.line());
    if given.len() != 1 {
        let msg = if given.is_empty() {
            "a route needs one of backend, backends, upstream, static or redirect".to_string()
        } else {
            format!(
                "a route takes only one of backend, backends, upstream, static, redirect; found {}",
                given.join(" and ")
            )
        };
        cx.err(line, at.to_string(), msg);
        return None;
    }

    let id = format!("{site}#{idx}");
    let inline = |cx: &mut Ctx<'_>, list: Vec<S<String>>, path: String| -> Option<Arc<Upstream>> {
        let backends = parse_backends(cx, &list, &path);
        if backends.len() != list.len() {
            return None;
        }
        if backends.is_empty() {
            cx.err(line, path, "needs at least one backend");
            return None;
        }
        let key = format!("{id}:{}", backend_list_key(&backends));
        Some(Arc::new(Upstream { key, backends, balance: layer.balance(), pool: layer.pool.clone() }))
    };
    let action = if let Some(b) = r.backend {
        Action::Proxy(inline(cx, vec![b], format!("{dot}backend"))?)
    } else if let Some(list) = r.backends {
        Action::Proxy(inline(cx, list, format!("{dot}backends"))?)
    } else if let Some(u) = &r.upstream {
        match named.get(&u.value) {
            Some(up) => Action::Proxy(up.clone()),
            None => {
                let hint = nearest(&u.value, named.keys().map(String::as_str))
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.err_at(u, format!("{dot}upstream"), format!("no upstream named {:?} in this site{hint}", u.value));
                return None;
            }
        }
    } else if let Some(dir) = &r.static_dir {
        let root = base.join(&dir.value);
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                cx.err_at(dir, format!("{dot}static"), format!("{} is not a directory", root.display()));
                return None;
            }
            Err(e) => {
                cx.err_at(dir, format!("{dot}static"), format!("cannot read {}: {e}", root.display()));
                return None;
            }
        }
        Action::Static(StaticDir { root, index: r.index.clone().unwrap_or_else(|| vec!["index.html".into()]) })
    } else if let Some(rd) = &r.redirect {
        let code = match &rd.code {
            None => StatusCode::FOUND,
            Some(c) => match c.value.trim().parse::<u16>() {
                Ok(n @ (301 | 302 | 303 | 307 | 308)) => StatusCode::from_u16(n).unwrap_or(StatusCode::FOUND),
                _ => {
                    cx.err_at(
                        c,
                        format!("{dot}redirect.code"),
                        format!("expected 301, 302, 303, 307 or 308, got {:?}", c.value),
                    );
                    return None;
                }
            },
        };
        if HeaderValue::from_str(&rd.to.value).is_err() || rd.to.value.is_empty() {
            cx.err_at(&rd.to, format!("{dot}redirect.to"), format!("invalid redirect target {:?}", rd.to.value));
            return None;
        }
        Action::Redirect { to: rd.to.value.clone(), code }
    } else {
        return None;
    };

    Some(Route { id, path, methods, priority, action, strip_prefix, rewrite, options: layer.opts })
}

/// The capture groups a replacement string refers to, read the way the regex crate reads
/// them: `$$` is a literal `$`; `${name}`; otherwise `$` then the longest run of letters,
/// digits and `_` (so `$1x` is the group named `1x`, not group 1 then `x`).
fn replacement_groups(replace: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = replace;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                out.push(&braced[..end]);
                rest = &braced[end + 1..];
            }
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end > 0 {
                out.push(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    out
}

fn named_groups(re: &Regex) -> String {
    let names: Vec<&str> = re.capture_names().flatten().collect();
    if names.is_empty() { String::new() } else { format!(" and named group(s) {}", names.join(", ")) }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn check_host_conflicts(sites: &[Site], errors: &mut Errors) {
    let mut seen: HashMap<String, &Site> = HashMap::new();
    for site in sites {
        for h in &site.hosts {
            let key = h.to_string();
            match seen.get(&key) {
                Some(other) if other.name != site.name => errors.push(Error::new(
                    &site.file,
                    None,
                    "hosts",
                    format!("host {key:?} is already served by {}", other.file.display()),
                )),
                _ => {
                    seen.insert(key, site);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        let c = load_from_str_for_tests("workers: 3\nlisten: {http: 127.0.0.1:0}\n", &[("a", "host: a.test\nbackend: http://x:1\noptions: {limits: {request_header_count: 20, request_body: 1000}}\n")], Path::new("."))
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
}
