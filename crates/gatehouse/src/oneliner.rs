//! `gatehouse proxy` and `gatehouse serve`: a reverse proxy or a file server from one
//! command, with no configuration file to write.
//!
//! Both turn their flags into an ordinary configuration (a main file and one site file),
//! write it into a directory of their own under the storage directory, and run it exactly
//! as `gatehouse run -c` would: every default, check and message is the one a file gets,
//! SIGHUP reloads it, and the user can keep going from that file once a one-liner is not
//! enough (`--print-config` shows it without running).
//!
//! TLS follows the address: a public host name gets an ACME certificate (`--email`),
//! `localhost` and IP addresses get the self-signed certificate, and `http://` (or
//! `--http-only`) serves plain HTTP. `proxy` defaults to HTTPS, `serve` to plain HTTP on
//! 127.0.0.1:8000 unless its `--listen` names a public host or says `https://`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::init::yaml_quote as quote;

/// Flags both one-liners take.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Plain HTTP only, whatever the address (the same as writing `http://` before it).
    #[arg(long)]
    http_only: bool,
    /// E-mail address for the ACME account; needed when the address is a public host name.
    #[arg(long)]
    email: Option<String>,
    /// ACME CA: letsencrypt, letsencrypt-staging, zerossl or a directory URL.
    #[arg(long, value_name = "CA", default_value = "letsencrypt")]
    acme_ca: String,
    /// Extra trust anchor (PEM) for a private ACME server.
    #[arg(long, value_name = "FILE")]
    acme_ca_root: Option<PathBuf>,
    /// The IP address to listen on. Default: the address given, 127.0.0.1 for localhost,
    /// every interface (0.0.0.0) for a name.
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// The port for plain HTTP beside HTTPS (ACME's HTTP-01 challenge and the redirect to
    /// HTTPS). Default: 80 for a public name or HTTPS on 443, else a free port.
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// Also serve the admin API and /metrics on ADDR (beyond loopback, set GATEHOUSE_ADMIN_TOKEN).
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Where the generated configuration, the database and certificates are kept.
    /// Default: $XDG_DATA_HOME/gatehouse, else ~/.local/share/gatehouse.
    #[arg(long, value_name = "DIR")]
    storage: Option<PathBuf>,
    /// Print the generated configuration and exit without serving.
    #[arg(long)]
    print_config: bool,
}

/// `gatehouse proxy`.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// What to serve: HOST[:PORT], optionally with http:// or https:// before it. A public
    /// name gets an ACME certificate; localhost and IP addresses a self-signed one.
    #[arg(long, value_name = "ADDRESS")]
    from: String,
    /// A backend: PORT, HOST:PORT, http(s)://HOST[:PORT] or unix:/PATH. Repeat to
    /// balance over several.
    #[arg(long = "to", value_name = "URL", required = true)]
    to: Vec<String>,
    #[command(flatten)]
    common: Common,
}

/// `gatehouse serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The directory to serve (default: the current directory).
    dir: Option<PathBuf>,
    /// Where to listen: ADDR:PORT (plain HTTP), https://HOST[:PORT], or a public host name
    /// (HTTPS with an ACME certificate).
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8000")]
    listen: String,
    /// List the files of directories that have no index.html.
    #[arg(long)]
    browse: bool,
    /// Also serve files whose names start with `.` (.env, .git/…): off by default, since
    /// `serve .` in a project directory would hand them out.
    #[arg(long)]
    dotfiles: bool,
    #[command(flatten)]
    common: Common,
}

/// A parsed `--from` / `--listen`.
#[derive(Debug, PartialEq, Eq)]
struct Address {
    /// `Some(true)` for `https://`, `Some(false)` for `http://`.
    scheme: Option<bool>,
    /// The host as written (no brackets), empty for `:PORT`.
    host: String,
    port: Option<u16>,
}

impl Address {
    fn parse(text: &str) -> Result<Address, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("an empty address: give HOST[:PORT], :PORT or a URL".into());
        }
        let (scheme, rest) = match t.split_once("://").map(|(s, r)| (s.to_ascii_lowercase(), r)) {
            Some((s, r)) if s == "http" => (Some(false), r),
            Some((s, r)) if s == "https" => (Some(true), r),
            Some((other, _)) => return Err(format!("{text:?}: unknown scheme {other:?} (use http:// or https://)")),
            None => (None, t),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!("{text:?}: give a host and port, not a path (e.g. example.com or localhost:8443)"));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (ip, tail) = inner.split_once(']').ok_or_else(|| format!("{text:?}: missing `]`"))?;
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{text:?}: only an IPv6 address goes in brackets"));
            }
            let port = match tail {
                "" => None,
                _ => Some(tail.strip_prefix(':').ok_or_else(|| format!("{text:?}: expected `:PORT` after `]`"))?),
            };
            (ip.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
                Some(_) => return Err(format!("{text:?}: write an IPv6 address in brackets, as [::1]:8443")),
                None if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) => (String::new(), Some(rest)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| format!("{text:?}: {p:?} is not a port"))?),
        };
        let host = host.to_ascii_lowercase();
        let name_ok = host
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !host.is_empty() && host.parse::<IpAddr>().is_err() && !name_ok {
            return Err(format!("{text:?}: {host:?} is not a host name or IP address"));
        }
        // No top-level domain is all digits: `999.1.1.1` is a mistyped address, not a name.
        if host.parse::<IpAddr>().is_err()
            && host.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
            && !host.is_empty()
        {
            return Err(format!("{text:?}: {host:?} is not a valid IP address"));
        }
        Ok(Address { scheme, host, port })
    }

    /// localhost, `*.localhost`, an IP address or no host: no public CA certifies these.
    fn is_local(&self) -> bool {
        self.host.is_empty() || gatehouse_proxy::tls::is_local(&self.host)
    }

    /// The address to bind: the IP when one is given, loopback for `localhost`, every
    /// interface for a name or no host.
    fn bind_ip(&self) -> IpAddr {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if self.host == "localhost" || self.host.ends_with(".localhost") => Ipv4Addr::LOCALHOST.into(),
            Err(_) => Ipv4Addr::UNSPECIFIED.into(),
        }
    }
}

/// What either command serves, before it becomes YAML.
struct Plan {
    /// `proxy` or `serve`: names the generated directory and the site.
    kind: &'static str,
    https: bool,
    http: SocketAddr,
    https_addr: Option<SocketAddr>,
    /// The site's hosts.
    hosts: Vec<String>,
    /// ACME for these hosts (a public name over HTTPS).
    acme: bool,
    /// The site's one route, as YAML lines under `routes:` (already indented).
    route: String,
    /// What the user reads before the startup line.
    summary: String,
}

/// Runs `gatehouse proxy`.
pub fn proxy(args: ProxyArgs) -> Result<Option<Generated>, String> {
    let from = Address::parse(&args.from)?;
    let https = from.scheme.unwrap_or(true) && !args.common.http_only;
    let mut backends = Vec::new();
    for to in &args.to {
        backends.push(backend(to)?);
    }
    let list: Vec<String> = backends.iter().map(|b| quote(b)).collect();
    let route = format!("  - path: /\n    backends: [{}]\n", list.join(", "));
    let summary = format!("proxying {} to {}", shown(&from, https), backends.join(", "));
    let plan = plan("proxy", &from, https, route, summary, &args.common)?;
    generate(plan, &args.common)
}

/// Runs `gatehouse serve`.
pub fn serve(args: ServeArgs) -> Result<Option<Generated>, String> {
    let listen = Address::parse(&args.listen)?;
    // Plain HTTP for an address; HTTPS when asked for, or for a public name (that is what
    // a certificate is for).
    let https = listen.scheme.unwrap_or(!listen.is_local()) && !args.common.http_only;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let dir = std::fs::canonicalize(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let text = dir.to_str().ok_or_else(|| format!("{}: the path is not UTF-8", dir.display()))?;
    let mut route = format!("  - path: /\n    static: {}\n", quote(text));
    if args.browse {
        route.push_str("    browse: true\n");
    }
    if !args.dotfiles {
        route.push_str("    dotfiles: false\n");
    }
    let summary = format!("serving {} on {}", dir.display(), shown(&listen, https));
    let plan = plan("serve", &listen, https, route, summary, &args.common)?;
    generate(plan, &args.common)
}

/// Listeners, hosts and TLS for an address.
fn plan(
    kind: &'static str,
    at: &Address,
    https: bool,
    route: String,
    summary: String,
    common: &Common,
) -> Result<Plan, String> {
    let ip = common.bind.unwrap_or_else(|| at.bind_ip());
    let acme = https && !at.is_local();
    if acme && common.email.is_none() {
        return Err(format!(
            "{} is a public name: its certificate comes from ACME, which needs --email (or serve plain HTTP with --http-only)",
            at.host
        ));
    }
    if !https && common.http_port.is_some() {
        return Err(
            "--http-port is the plain-HTTP port beside HTTPS; for plain HTTP only, give the port in the address".into(),
        );
    }
    let (http, https_addr) = if https {
        let port = at.port.unwrap_or(443);
        // ACME's HTTP-01 challenge comes to port 80, and so do browsers typing the bare
        // name (redirected to HTTPS); on a private port HTTP gets whatever port is free.
        let default_http = if acme || port == 443 { 80 } else { 0 };
        let http_port = common.http_port.unwrap_or(default_http);
        (SocketAddr::new(ip, http_port), Some(SocketAddr::new(ip, port)))
    } else {
        (SocketAddr::new(ip, at.port.unwrap_or(80)), None)
    };
    // A public name is the site's host; a local address answers any Host (browsers send
    // 127.0.0.1:8443, localhost:8443 or the machine's name), and the self-signed
    // certificate also names the host given.
    let hosts = match at.is_local() {
        false => vec![at.host.clone()],
        true if at.host.is_empty() || at.host.parse::<IpAddr>().is_ok_and(|i| i.is_unspecified()) => {
            vec!["*".to_string()]
        }
        true => vec![at.host.clone(), "*".to_string()],
    };
    Ok(Plan { kind, https, http, https_addr, hosts, acme, route, summary })
}

/// `PORT`, `:PORT`, `HOST:PORT` or a URL, as a backend the configuration accepts.
fn backend(to: &str) -> Result<String, String> {
    let t = to.trim();
    if t.is_empty() {
        return Err("--to: empty backend".into());
    }
    if t.contains("://") || t.starts_with("unix:") {
        return Ok(t.to_string());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(format!("http://127.0.0.1:{t}"));
    }
    if let Some(port) = t.strip_prefix(':') {
        return Ok(format!("http://127.0.0.1:{port}"));
    }
    Ok(format!("http://{t}"))
}

fn shown(at: &Address, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    let host = match at.host.as_str() {
        "" => "*".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    match at.port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

/// The storage directory: `--storage`, `$XDG_DATA_HOME/gatehouse`, `~/.local/share/gatehouse`.
fn storage_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = given {
        return Ok(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("gatehouse"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/gatehouse")),
        None => Err("neither XDG_DATA_HOME nor HOME is set: give --storage DIR".into()),
    }
}

/// The main file's and the site file's text.
fn files(plan: &Plan, common: &Common) -> (String, String) {
    let mut main = format!(
        "# Generated by `gatehouse {}`, and again each time it runs: to go on from here,\n# copy this directory and `gatehouse run -c` the copy.\n",
        plan.kind
    );
    main.push_str(&format!("listen:\n  http: {}\n", quote(&plan.http.to_string())));
    if let Some(a) = plan.https_addr {
        main.push_str(&format!("  https: {}\n", quote(&a.to_string())));
    }
    let admin = common.admin.as_deref().unwrap_or("off");
    main.push_str(&format!("admin:\n  listen: {}\n", quote(admin)));
    main.push_str("sites_dir: sites\nstorage:\n  path: gatehouse.db\n");
    if plan.acme {
        main.push_str("tls:\n  acme:\n");
        main.push_str(&format!("    email: {}\n", quote(common.email.as_deref().unwrap_or(""))));
        main.push_str(&format!("    ca: {}\n", quote(&common.acme_ca)));
        if let Some(root) = &common.acme_ca_root {
            main.push_str(&format!("    ca_root: {}\n", quote(&root.to_string_lossy())));
        }
    }
    // A one-liner stops soon after Ctrl-C: open requests get 5 s.
    main.push_str("shutdown_timeout: 5s\n");
    let hosts: Vec<String> = plan.hosts.iter().map(|h| quote(h)).collect();
    let mut site = format!("hosts: [{}]\n", hosts.join(", "));
    if plan.https && !plan.acme && plan.http.port() == 0 {
        // The HTTP port is a free one nobody types: no point redirecting it.
        site.push_str("https_redirect: false\n");
    }
    site.push_str("routes:\n");
    site.push_str(&plan.route);
    (main, site)
}

/// A configuration written for a one-liner, ready to run.
pub struct Generated {
    /// The main file.
    pub path: PathBuf,
    /// What to show before starting.
    pub note: String,
    /// The database the files were written for, and its lock, taken before they were
    /// written and held until `run` (which would otherwise take it itself), so a second
    /// one-liner cannot rewrite them in between.
    pub db: (PathBuf, gatehouse_store::backup::DbLock),
}

/// Writes the configuration into `<storage>/<kind>-<port>/` (or prints it, and returns
/// `None`).
fn generate(plan: Plan, common: &Common) -> Result<Option<Generated>, String> {
    let (main, site) = files(&plan, common);
    if common.print_config {
        print!("# gatehouse.yaml\n{main}\n# sites/{}.yaml\n{site}", plan.kind);
        return Ok(None);
    }
    let port = plan.https_addr.unwrap_or(plan.http).port();
    let dir = storage_dir(common.storage.as_deref())?.join(format!("{}-{port}", plan.kind));
    let sites = dir.join("sites");
    std::fs::create_dir_all(&sites).map_err(|e| format!("cannot create {}: {e}", sites.display()))?;
    // Another one-liner running from this directory would reload the rewritten files:
    // refuse before touching them.
    let db = dir.join("gatehouse.db");
    let lock = match gatehouse_store::backup::DbLock::take(&db) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            return Err(format!(
                "another gatehouse runs from {} (the same command and port?); stop it first",
                dir.display()
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let main_path = dir.join("gatehouse.yaml");
    std::fs::write(&main_path, main).map_err(|e| format!("cannot write {}: {e}", main_path.display()))?;
    let site_path = sites.join(format!("{}.yaml", plan.kind));
    std::fs::write(&site_path, site).map_err(|e| format!("cannot write {}: {e}", site_path.display()))?;
    let mut note = format!("gatehouse: {} (configuration: {})", plan.summary, main_path.display());
    if plan.https && !plan.acme {
        note.push_str("\ngatehouse: the certificate is self-signed: browsers warn, and curl needs -k");
    }
    Ok(Some(Generated { path: main_path, note, db: (db, lock) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_written() {
        let a = Address::parse("example.com").expect("name");
        assert_eq!((a.scheme, a.host.as_str(), a.port), (None, "example.com", None));
        assert!(!a.is_local());
        let a = Address::parse("http://LocalHost:8080/").expect("url");
        assert_eq!((a.scheme, a.host.as_str(), a.port), (Some(false), "localhost", Some(8080)));
        assert_eq!(a.bind_ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
        let a = Address::parse("[::1]:8443").expect("v6");
        assert_eq!((a.host.as_str(), a.port), ("::1", Some(8443)));
        assert!(a.is_local());
        let a = Address::parse(":9000").expect("port");
        assert_eq!((a.host.as_str(), a.port), ("", Some(9000)));
        assert_eq!(Address::parse("9000").expect("bare port").port, Some(9000));
        assert_eq!(Address::parse("HTTPS://a.test").expect("scheme").scheme, Some(true));
        assert_eq!(shown(&Address::parse("[::1]:8443").expect("v6"), true), "https://[::1]:8443");
        for bad in [
            "",
            " ",
            "ftp://x",
            "example.com/app",
            "::1",
            "host:99999",
            "exa mple.com",
            "[::1",
            "[::1]junk",
            "[a.test]:1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backends_get_a_scheme_and_loopback_when_left_out() {
        assert_eq!(backend("3000").expect("port"), "http://127.0.0.1:3000");
        assert_eq!(backend(":3000").expect("port"), "http://127.0.0.1:3000");
        assert_eq!(backend("app:8080").expect("host"), "http://app:8080");
        assert_eq!(backend("https://app").expect("url"), "https://app");
        assert_eq!(backend("unix:/run/app.sock").expect("unix"), "unix:/run/app.sock");
        assert!(backend(" ").is_err());
    }
}
