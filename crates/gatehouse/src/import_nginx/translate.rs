//! From nginx's directive tree to Gatehouse sites: finds the server and upstream blocks,
//! works out each server's hosts, listeners and certificate, folds the usual
//! HTTP-to-HTTPS redirect server into its HTTPS site, lets `location.rs` build the routes,
//! and records every directive it does not translate, with the reason and the server
//! block it belongs to.
//!
//! Gatehouse's listeners are global (the main file's `listen.http` and `listen.https`),
//! so a site cannot choose ports: the ports nginx used are noted, and a host served by two
//! server blocks (one per port) is given to one site, the HTTPS one first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::Skipped;
use super::location::{self, Chain, Srv};
use super::options;
use super::parse::Directive;
use super::reasons::{self, Level};
use super::redirect::{self, Ret};
use super::site::{Match, Site};
use super::upstream::upstream;
use hosts::{defaults, port, redirects_to_https, valid_host};

/// The sites, and everything not translated (each once, in the order met).
pub(super) struct Output {
    pub sites: Vec<Site>,
    pub skipped: Vec<Skipped>,
}

/// The record of what was not translated, and of the server block each entry concerns
/// (for the comments at the top of its site file).
pub(super) struct Cx {
    skipped: Vec<Skipped>,
    seen: HashMap<Skipped, usize>,
    /// (server, index into `skipped`).
    by_server: BTreeSet<(usize, usize)>,
    /// The server block being looked at, if any.
    server: Option<usize>,
}

impl Cx {
    /// Records that `d` is not translated, and why.
    pub fn skip(&mut self, d: &Directive, reason: impl Into<String>) {
        self.record(Skipped { file: (*d.file).clone(), line: d.line, directive: d.label(), reason: reason.into() });
    }

    fn record(&mut self, s: Skipped) {
        let i = match self.seen.get(&s) {
            Some(&i) => i,
            None => {
                let i = self.skipped.len();
                self.seen.insert(s.clone(), i);
                self.skipped.push(s);
                i
            }
        };
        if let Some(server) = self.server {
            self.by_server.insert((server, i));
        }
    }

    /// The entries of server `from` now belong to server `to` (whose file will list them).
    fn move_skips(&mut self, from: usize, to: usize) {
        let moved: Vec<usize> = self.by_server.iter().filter(|(s, _)| *s == from).map(|(_, i)| *i).collect();
        for i in moved {
            self.by_server.remove(&(from, i));
            self.by_server.insert((to, i));
        }
    }
}

/// What the importer knows about one server block before building its site.
struct Server<'a> {
    d: &'a Directive,
    http: &'a [Directive],
    /// Exact names, for `$server_name`.
    names: Vec<String>,
    hosts: Vec<String>,
    /// The first name as written, for the file name (`None` for `_`, `""` or none).
    stem: Option<String>,
    ssl: bool,
    plain: bool,
    /// Only redirects plain HTTP to HTTPS (`return 301 https://$host$request_uri`).
    to_https: bool,
    /// Not translated as a site of its own: folded into another, or not needed.
    dropped: bool,
    /// Another server block served the same names over plain HTTP.
    plain_elsewhere: bool,
    notes: Vec<String>,
    /// `server_name _`, `""` or none.
    unnamed: bool,
    /// The status of its redirect to HTTPS, when `to_https`.
    https_code: Option<u16>,
    /// `listen ... default_server` on some port.
    default: bool,
    /// The ports it listens on.
    ports: Vec<u16>,
}

/// Translates the files' directive trees (one per file given).
pub(super) fn translate(trees: &[Vec<Directive>], early: Vec<Skipped>) -> Result<Output, String> {
    let mut cx = Cx { skipped: Vec::new(), seen: HashMap::new(), by_server: BTreeSet::new(), server: None };
    for s in early {
        cx.record(s);
    }
    let mut found: Vec<(&Directive, &[Directive])> = Vec::new();
    let mut upstreams: BTreeMap<String, &Directive> = BTreeMap::new();
    for tree in trees {
        walk(&mut cx, tree, tree, &mut found, &mut upstreams);
    }
    if found.is_empty() {
        return Err(
            "no server blocks found: give site files (server { ... }) or an nginx.conf whose http block has them"
                .into(),
        );
    }
    let mut servers: Vec<Server<'_>> = Vec::new();
    for (i, (d, http)) in found.into_iter().enumerate() {
        cx.server = Some(i);
        servers.push(describe(&mut cx, d, http));
    }
    cx.server = None;
    defaults(&mut cx, &mut servers);
    fold(&mut cx, &mut servers);
    claim_hosts(&mut cx, &mut servers);

    let mut sites: Vec<(usize, Site)> = Vec::new();
    let mut stems = HashSet::new();
    for (i, s) in servers.iter().enumerate() {
        if s.dropped || s.hosts.is_empty() {
            continue;
        }
        cx.server = Some(i);
        if let Some(mut site) = build(&mut cx, s, &upstreams) {
            site.stem = unique(sanitize(s.stem.as_deref()), &mut stems);
            sites.push((i, site));
        }
    }
    cx.server = None;
    if !sites.iter().any(|(_, s)| s.hosts.iter().any(|h| h == "*"))
        && let Some((_, first)) = sites.first_mut()
    {
        first.notes.push(
            "nginx sends requests for unknown hosts to the first server block of a port (or its default_server); \
             Gatehouse answers them 404: add \"*\" to hosts to keep nginx's behaviour"
                .into(),
        );
    }
    // In file and line order, for reading beside the configuration.
    let by_place = |a: &&Skipped, b: &&Skipped| (&a.file, a.line).cmp(&(&b.file, b.line));
    for (i, site) in &mut sites {
        let mut mine: Vec<&Skipped> =
            cx.by_server.iter().filter(|(s, _)| *s == *i).filter_map(|(_, k)| cx.skipped.get(*k)).collect();
        mine.sort_by(by_place);
        site.skipped = mine.iter().map(ToString::to_string).collect();
    }
    let mut skipped = cx.skipped;
    skipped.sort_by(|a, b| by_place(&a, &b));
    Ok(Output { sites: sites.into_iter().map(|(_, s)| s).collect(), skipped })
}

/// Finds the server and upstream blocks in `list`; `http` is the list whose directives
/// the servers inherit (the `http` block, or the file itself for a bare site file).
fn walk<'a>(
    cx: &mut Cx,
    list: &'a [Directive],
    http: &'a [Directive],
    servers: &mut Vec<(&'a Directive, &'a [Directive])>,
    upstreams: &mut BTreeMap<String, &'a Directive>,
) {
    for d in list {
        match d.name.as_str() {
            "http" => walk(cx, d.children(), d.children(), servers, upstreams),
            "server" => servers.push((d, http)),
            "upstream" => match d.arg(0) {
                Some(name) if !upstreams.contains_key(name) => {
                    upstreams.insert(name.to_string(), d);
                }
                _ => cx.skip(d, "a second upstream of this name (or one without a name): left out"),
            },
            name if reasons::handled(Level::Http, name) => {}
            _ => cx.skip(d, reasons::reason(d)),
        }
    }
}

fn describe<'a>(cx: &mut Cx, d: &'a Directive, http: &'a [Directive]) -> Server<'a> {
    let mut s = Server {
        d,
        http,
        names: Vec::new(),
        hosts: Vec::new(),
        stem: None,
        ssl: false,
        plain: false,
        to_https: false,
        dropped: false,
        plain_elsewhere: false,
        notes: Vec::new(),
        unnamed: true,
        https_code: None,
        default: false,
        ports: Vec::new(),
    };
    let mut unnamed = true;
    for sn in d.children().iter().filter(|c| c.name == "server_name") {
        for written in &sn.args {
            let name = written.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() || name == "_" {
                continue;
            }
            unnamed = false;
            let (hosts, stem) = match name.strip_prefix('.') {
                Some(rest) => (vec![rest.to_string(), format!("*.{rest}")], rest.to_string()),
                None => (vec![name.clone()], name.clone()),
            };
            let why = if name.starts_with('~') {
                Some("regular-expression names have no Gatehouse equivalent; list the names (or *.domain)")
            } else if name.contains('$') {
                Some("a name with variables: not translated")
            } else if hosts.iter().any(|h| !valid_host(h)) {
                Some("Gatehouse's host patterns are names, *.domain or IP addresses; not translated")
            } else {
                None
            };
            if let Some(why) = why {
                cx.skip(sn, format!("{written}: {why}"));
                continue;
            }
            if !stem.contains('*') {
                s.names.push(stem.clone());
            }
            if s.stem.is_none() {
                s.stem = Some(stem);
            }
            for h in hosts {
                if !s.hosts.contains(&h) {
                    s.hosts.push(h);
                }
            }
        }
    }
    let ssl_on = d.children().iter().any(|c| c.name == "ssl" && c.arg(0) == Some("on"));
    let mut listens = Vec::new();
    let mut default = false;
    for l in d.children().iter().filter(|c| c.name == "listen") {
        listens.push(l.args.join(" "));
        let addr = l.arg(0).unwrap_or("");
        let flags = l.args.get(1..).unwrap_or(&[]);
        let has = |flag: &str| flags.iter().any(|f| f == flag);
        if addr.starts_with("unix:") {
            cx.skip(
                l,
                "a unix socket: Gatehouse listens on TCP addresses (listen.http, listen.https in the main file)",
            );
            continue;
        }
        // QUIC is TLS too (HTTP/3).
        if ssl_on || has("ssl") || has("quic") {
            s.ssl = true;
        } else {
            s.plain = true;
        }
        default |= has("default_server") || has("default");
        if has("proxy_protocol") {
            cx.skip(l, "proxy_protocol: set server.proxy_protocol (the load balancers' addresses) in the main file");
        }
        if has("quic") {
            cx.skip(l, "quic: set http3: true in the main file");
        }
        if let Some(p) = port(addr)
            && !s.ports.contains(&p)
        {
            s.ports.push(p);
        }
        match port(addr) {
            Some(80 | 443) => {}
            Some(p) => {
                cx.skip(l, format!("port {p}: Gatehouse listens on the main file's listen.http/https; set them there"))
            }
            None => cx.skip(l, "cannot read the address"),
        }
    }
    if listens.is_empty() {
        s.plain = true;
        s.ports.push(80);
        listens.push("80 (nginx's default)".into());
    }
    // An unnamed server gets "*" only as the default server of a port (see `defaults`).
    if default {
        s.hosts.push("*".into());
    }
    (s.unnamed, s.default) = (unnamed, default);
    if s.hosts.is_empty() && !s.unnamed {
        cx.skip(d, "none of its names can be a Gatehouse host; no site written");
    }
    s.notes.push(format!(
        "nginx listened on {}; Gatehouse's listeners are global (listen.http, listen.https in the main file)",
        listens.join(", ")
    ));
    if s.ssl {
        s.notes.push("nginx served this site over HTTPS: the main file needs listen.https".into());
    }
    s.https_code = if s.ssl { None } else { redirects_to_https(d) };
    s.to_https = s.https_code.is_some();
    s
}

/// Folds each HTTP-to-HTTPS redirect server into the HTTPS server with its names: in
/// Gatehouse the site redirects plain HTTP itself (`https_redirect`, on with listen.https).
fn fold(cx: &mut Cx, servers: &mut [Server<'_>]) {
    for i in 0..servers.len() {
        let Some(s) = servers.get(i) else { continue };
        if !s.to_https {
            continue;
        }
        let (at, hosts) = (s.d.at(), s.hosts.clone());
        let code = match s.https_code {
            Some(308) | None => String::new(),
            Some(c) => format!(" instead of nginx's {c}"),
        };
        let note = format!(
            "the server block at {at} only redirected plain HTTP to HTTPS: Gatehouse does that itself for every \
             site when the main file has listen.https (https_redirect, with 308 Permanent Redirect{code})"
        );
        if hosts.iter().all(|h| h == "*") {
            cx.server = Some(i);
            cx.skip(s.d, format!("not needed: {note}"));
            servers[i].dropped = true;
            continue;
        }
        let target = (0..servers.len()).find(|&j| {
            j != i && servers.get(j).is_some_and(|t| t.ssl && !t.to_https && hosts.iter().all(|h| t.hosts.contains(h)))
        });
        if let Some(j) = target {
            servers[i].dropped = true;
            servers[j].notes.push(note);
            cx.move_skips(i, j);
        }
    }
    cx.server = None;
}

/// Gives each host to one server block, HTTPS ones first: Gatehouse serves a host from one
/// site, on both listeners.
fn claim_hosts(cx: &mut Cx, servers: &mut [Server<'_>]) {
    let n = servers.len();
    let order: Vec<usize> = (0..n).filter(|&i| servers[i].ssl).chain((0..n).filter(|&i| !servers[i].ssl)).collect();
    let mut owner: HashMap<String, usize> = HashMap::new();
    for i in order {
        if servers[i].dropped {
            continue;
        }
        cx.server = Some(i);
        let d = servers[i].d;
        let named = d.children().iter().find(|c| c.name == "server_name").unwrap_or(d);
        let mut kept = Vec::new();
        let hosts = std::mem::take(&mut servers[i].hosts);
        let had_hosts = !hosts.is_empty();
        for h in hosts {
            match owner.get(&h) {
                Some(&j) => {
                    let why = format!(
                        "{h}: also served by the server block at {}; Gatehouse serves a host from one site, on both \
                         listeners: left out here",
                        servers[j].d.at()
                    );
                    cx.skip(named, why);
                    if servers[i].plain && !servers[i].to_https {
                        servers[j].plain_elsewhere = true;
                    }
                }
                None => {
                    owner.insert(h.clone(), i);
                    kept.push(h);
                }
            }
        }
        if had_hosts && kept.is_empty() {
            cx.skip(d, "all of its names are served by other server blocks; no site written");
        }
        servers[i].hosts = kept;
    }
    cx.server = None;
}

/// The site of one server block, or `None` when nothing in it can be served.
fn build(cx: &mut Cx, s: &Server<'_>, ups: &BTreeMap<String, &Directive>) -> Option<Site> {
    let own = s.d.children();
    for d in own {
        if !reasons::handled(Level::Server, &d.name) {
            cx.skip(d, reasons::reason(d));
        }
    }
    let mut site = Site { source: s.d.at(), hosts: s.hosts.clone(), notes: s.notes.clone(), ..Site::default() };
    if (s.plain && !s.to_https) || s.plain_elsewhere {
        // nginx served these names over plain HTTP: keep doing so when listen.https is added.
        site.https_redirect = Some(false);
    }
    if s.to_https {
        site.notes.push(
            "this server block only redirects plain HTTP to HTTPS, and no HTTPS server block with its names was \
             imported: import that one too (this one then folds into it). With listen.https, Gatehouse redirects \
             plain HTTP itself, and this site would answer HTTPS requests with a redirect to themselves"
                .into(),
        );
    }
    tls(cx, s, &mut site);
    let mut srv = Srv::new(s.http, own, &s.names, ups);
    let locations: Vec<&Directive> = own.iter().filter(|d| d.name == "location").collect();
    for d in own.iter().filter(|d| d.name == "rewrite") {
        if let Some(r) = redirect::server_rewrite(cx, &srv, d) {
            site.routes.push(r);
        }
    }
    if let Some(ret) = own.iter().find(|d| d.name == "return") {
        for l in &locations {
            cx.skip(l, "unreachable: the server's `return` answers every request before a location is chosen");
        }
        match redirect::return_of(cx, &mut srv, ret) {
            Ret::Redirect(to, code, notes) => {
                site.redirect = Some((to, code));
                site.notes.extend(notes);
            }
            Ret::Respond(status, body) => {
                let chain = Chain::server(&srv);
                let mut route = redirect::respond_route(&chain, "/", Match::Prefix, 0, status, body);
                route.notes.insert(0, format!("{} ({})", ret.label(), ret.at()));
                options::response_headers(cx, &mut srv, &chain, &mut route);
                site.routes.push(route);
            }
            // `return 444` among them: no site, so Gatehouse answers these hosts 404.
            Ret::Other => {}
        }
    } else {
        for l in &locations {
            site.routes.extend(location::routes(cx, &mut srv, l));
        }
        if !locations.iter().any(|l| location::is_root(l)) {
            site.routes.extend(location::catch_all(cx, &mut srv, s.d));
        }
    }
    site.error_pages = location::error_pages(cx, &srv, &locations);
    for (nginx_name, scheme, name) in &srv.used {
        if let Some(d) = ups.get(nginx_name) {
            site.upstreams.push(upstream(cx, d, scheme, name, &mut site.notes));
        }
    }
    site.notes.extend(srv.notes);
    if site.routes.is_empty() && site.redirect.is_none() {
        cx.skip(s.d, "nothing in it that Gatehouse can serve (see its other lines); no site written");
        return None;
    }
    site.hoist_options();
    Some(site)
}

/// The site's certificate: `ssl_certificate` and `ssl_certificate_key` of the server (or
/// of the http block), when the server listens with TLS.
fn tls(cx: &mut Cx, s: &Server<'_>, site: &mut Site) {
    // As an array directive: all of them from the innermost level that has any.
    fn all<'a>(levels: [&'a [Directive]; 2], name: &str) -> Vec<&'a Directive> {
        for level in levels.into_iter().rev() {
            let found: Vec<&'a Directive> = level.iter().filter(|d| d.name == name).collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }
    let levels = [s.http, s.d.children()];
    let (certs, keys) = (all(levels, "ssl_certificate"), all(levels, "ssl_certificate_key"));
    if !s.ssl {
        for d in certs.iter().chain(&keys) {
            if s.d.children().iter().any(|c| std::ptr::eq(c, *d)) {
                cx.skip(d, "not needed: this server block has no ssl listener");
            }
        }
        return;
    }
    for extra in certs.iter().skip(1).chain(keys.iter().skip(1)) {
        cx.skip(extra, "a second certificate (such as ECDSA beside RSA): Gatehouse takes one pair per site; left out");
    }
    match (certs.first(), keys.first()) {
        (Some(c), Some(k)) => {
            let (cert, key) = (c.arg(0).unwrap_or(""), k.arg(0).unwrap_or(""));
            if [cert, key].iter().any(|p| p.is_empty() || p.contains('$') || p.starts_with("data:")) {
                cx.skip(c, "a certificate chosen by variables (or inline data): not translated; see tls.cert_dir");
                return;
            }
            if !cert.starts_with('/') || !key.starts_with('/') {
                site.notes.push(
                    "relative certificate paths: Gatehouse reads them under the main file's directory (nginx under \
                     its configuration directory): write them absolute"
                        .into(),
                );
            }
            site.tls = Some((cert.to_string(), key.to_string()));
        }
        (None, None) => {
            site.notes.push("no certificate here: give one with tls.cert_dir or tls.acme in the main file".into());
        }
        (Some(d), None) | (None, Some(d)) => cx.skip(d, "needs both ssl_certificate and ssl_certificate_key"),
    }
}

/// A file name from a server name: `*.example.com` → `wildcard.example.com`; no name →
/// `default`.
fn sanitize(name: Option<&str>) -> String {
    let Some(name) = name else { return "default".into() };
    let name = match name.strip_prefix("*.") {
        Some(rest) => format!("wildcard.{rest}"),
        None => name.to_string(),
    };
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    let clean = clean.trim_start_matches('.');
    if clean.is_empty() { "site".into() } else { clean.to_string() }
}

/// `stem`, or `stem-2`, `stem-3`… when taken.
fn unique(stem: String, used: &mut HashSet<String>) -> String {
    if used.insert(stem.clone()) {
        return stem;
    }
    for n in 2..=u32::MAX {
        let candidate = format!("{stem}-{n}");
        if used.insert(candidate.clone()) {
            return candidate;
        }
    }
    stem
}

#[path = "translate_hosts.rs"]
mod hosts;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
