//! nginx `location` blocks (and a server's own content) as Gatehouse routes.
//!
//! nginx picks a location in this order: an exact `=` match; else the longest prefix, and
//! if that is a `^~` prefix it is used; else the first regex (`~`, `~*`) in file order that
//! matches; else the longest prefix. Gatehouse tries routes by `priority`, then exact
//! before prefix (longest first) before regex, then file order. So the importer gives:
//!
//! | nginx                                               | priority            |
//! |-----------------------------------------------------|---------------------|
//! | server-level redirect `rewrite` (before any location) | 3                 |
//! | `location = /x`, `location ^~ /x`                   | 2                   |
//! | `location /x/y` under a `location ^~ /x`            | 2                   |
//! | `location ~ re`, `location ~* re`                   | 1                   |
//! | `location /x`                                       | 0                   |
//! | a redirect `rewrite` inside a location              | the location's + 1  |
//! | a 403 stand-in for a nested location                | 3                   |
//!
//! which is nginx's order except that regex locations no longer pre-empt a plain prefix
//! under a `^~` prefix (reported where the server has any). Location rewrites, stand-ins
//! and nginx's `/x` → `/x/` redirect are `scope`'s business.
//!
//! A location whose content cannot be translated (FastCGI, `return 444`, a backend chosen
//! by variables) becomes a route that refuses everyone (`respond: {status: 403}`), never
//! one that silently serves something else: with PHP skipped, a static route would send
//! PHP sources as files. Files (`root`, `alias`, `try_files`) are `statics`' business.

use std::collections::BTreeMap;

use super::options::{access, auth, limit_except, proxy_options, response_headers};
use super::parse::Directive;
use super::reasons::{self, Level};
use super::redirect::{Ret, Rewrite, respond_route, return_of, rewrite_of};
use super::scope;
use super::site::{Action, Match, Route};
use super::statics;
use super::translate::Cx;
use super::values::{escape_regex, pcre_only};

/// Exact and `^~` locations: nginx takes them before any regex.
pub(super) const PRIO_FIRST: i64 = 2;
/// Regex locations: before plain prefixes, in file order.
const PRIO_REGEX: i64 = 1;

/// The directives in force in one location: its own, then its server's, then http's.
pub(super) struct Chain<'a> {
    levels: [&'a [Directive]; 3],
}

impl<'a> Chain<'a> {
    /// The directives in force at server level (outside any location).
    pub fn server(srv: &Srv<'a>) -> Chain<'a> {
        Chain { levels: [srv.http, srv.server, &[]] }
    }

    /// A single-valued directive (`root`, `client_max_body_size`): the innermost one.
    pub fn last(&self, name: &str) -> Option<&'a Directive> {
        self.levels.into_iter().rev().find_map(|l| l.iter().rev().find(|d| d.name == name))
    }

    /// An array directive (`add_header`, `proxy_set_header`, `allow`/`deny`): nginx takes
    /// all of them from the innermost level that has any, and none from the levels above.
    pub fn list(&self, names: &[&str]) -> Vec<&'a Directive> {
        for level in self.levels.into_iter().rev() {
            let found: Vec<&'a Directive> = level.iter().filter(|d| names.contains(&d.name.as_str())).collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }
}

/// A server block as its locations see it.
pub(super) struct Srv<'a> {
    pub http: &'a [Directive],
    pub server: &'a [Directive],
    /// Exact names, for `$server_name`.
    pub names: &'a [String],
    upstreams: &'a BTreeMap<String, &'a Directive>,
    /// Upstreams used: nginx name, scheme, name in the site file.
    pub used: Vec<(String, String, String)>,
    /// Notes for the top of the site file (each once).
    pub notes: Vec<String>,
    /// nginx's default `proxy_redirect` has been reported for this server.
    proxy_redirect_reported: bool,
}

impl<'a> Srv<'a> {
    pub fn new(
        http: &'a [Directive],
        server: &'a [Directive],
        names: &'a [String],
        upstreams: &'a BTreeMap<String, &'a Directive>,
    ) -> Srv<'a> {
        Srv { http, server, names, upstreams, used: Vec::new(), notes: Vec::new(), proxy_redirect_reported: false }
    }

    /// A note for the top of the site file (each once).
    pub(super) fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// The site-file name of upstream `name` spoken to with `scheme`; an upstream used
    /// with two schemes becomes two upstreams.
    fn use_upstream(&mut self, name: &str, scheme: &str) -> String {
        if let Some((_, _, ours)) = self.used.iter().find(|(n, s, _)| n == name && s == scheme) {
            return ours.clone();
        }
        let ours =
            if self.used.iter().any(|(n, _, _)| n == name) { format!("{name}-{scheme}") } else { name.to_string() };
        self.used.push((name.to_string(), scheme.to_string(), ours.clone()));
        ours
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Prefix,
    /// `^~`: a prefix that stops the regex search.
    Stop,
    Exact,
    Regex {
        caseless: bool,
    },
    Named,
}

/// A location's modifier and path, as nginx reads them (`= /x` or `=/x`, `~* re`, …).
pub(super) fn kind_of(d: &Directive) -> Option<(Kind, String)> {
    match d.args.as_slice() {
        [m, p] => {
            let kind = match m.as_str() {
                "=" => Kind::Exact,
                "^~" => Kind::Stop,
                "~" => Kind::Regex { caseless: false },
                "~*" => Kind::Regex { caseless: true },
                _ => return None,
            };
            Some((kind, p.clone()))
        }
        [p] => Some(if let Some(rest) = p.strip_prefix('=') {
            (Kind::Exact, rest.to_string())
        } else if let Some(rest) = p.strip_prefix("~*") {
            (Kind::Regex { caseless: true }, rest.to_string())
        } else if let Some(rest) = p.strip_prefix('~') {
            (Kind::Regex { caseless: false }, rest.to_string())
        } else if p.starts_with('@') {
            (Kind::Named, p.clone())
        } else {
            (Kind::Prefix, p.clone())
        }),
        _ => None,
    }
}

/// `location /` (or `^~ /`): the server then needs no catch-all route of its own.
pub(super) fn is_root(d: &Directive) -> bool {
    matches!(kind_of(d), Some((Kind::Prefix | Kind::Stop, p)) if p == "/")
}

/// What the routes of one location are built from.
pub(super) struct Loc<'a> {
    /// The location directive (the server directive for a server's own content).
    pub d: &'a Directive,
    pub kind: Kind,
    pub path: String,
    pub own: &'a [Directive],
    pub route_path: String,
    pub m: Match,
    pub priority: i64,
    pub label: String,
}

/// The routes of one `location` block (none when it cannot be matched the same way).
pub(super) fn routes(cx: &mut Cx, srv: &mut Srv<'_>, d: &Directive) -> Vec<Route> {
    let Some((kind, path)) = kind_of(d) else {
        cx.skip(d, "cannot read this location's match");
        return Vec::new();
    };
    let own = d.children();
    if kind == Kind::Named {
        cx.skip(d, "a named location is reached only through try_files or error_page, which are not translated");
        return Vec::new();
    }
    let (route_path, m, priority) = match kind {
        Kind::Exact | Kind::Prefix | Kind::Stop if !path.starts_with('/') => {
            cx.skip(d, "a path that does not start with '/': it never matches in Gatehouse");
            return Vec::new();
        }
        Kind::Exact => (path.clone(), Match::Exact, PRIO_FIRST),
        Kind::Stop => (path.clone(), Match::Prefix, PRIO_FIRST),
        Kind::Prefix => match scope::extended_stop(srv, &path) {
            Some(stop) => {
                if srv.server.iter().any(|l| matches!(kind_of(l), Some((Kind::Regex { .. }, _)))) {
                    cx.skip(
                        d,
                        format!(
                            "priority {PRIO_FIRST} like `location {}` ({}), which it extends, so that it keeps \
                             precedence as the longer prefix; nginx would still try the regex locations for its \
                             paths, Gatehouse no longer does",
                            stop.args.join(" "),
                            stop.at()
                        ),
                    );
                }
                (path.clone(), Match::Prefix, PRIO_FIRST)
            }
            None => (path.clone(), Match::Prefix, 0),
        },
        Kind::Regex { caseless } => {
            let flagged = |re: &str| if caseless { format!("(?i){re}") } else { re.to_string() };
            let why = match pcre_only(&path) {
                Some(what) => format!("the regex uses {what}, which Gatehouse's regex syntax (Rust `regex`) lacks"),
                None if !scope::regex_ok(&flagged(&path)) => {
                    "the regex is not valid in Gatehouse's regex syntax (Rust `regex`)".to_string()
                }
                None => String::new(),
            };
            if !why.is_empty() {
                let broad = scope::broader(&path).map(|re| flagged(&re)).filter(|re| scope::regex_ok(re));
                return scope::stand_in(cx, d, &why, broad.map(|re| (re, Match::Regex)), PRIO_REGEX)
                    .into_iter()
                    .collect();
            }
            (flagged(&path), Match::Regex, PRIO_REGEX)
        }
        Kind::Named => return Vec::new(),
    };
    let label = format!("location {} ({})", d.args.join(" "), d.at());
    if own.iter().any(|c| c.name == "internal") {
        cx.skip(
            d,
            "an internal location: clients get 404 here, as from nginx; nginx's own redirects to it (error_page, \
             try_files, X-Accel-Redirect from a backend) are not translated",
        );
        let mut r = Route::new(&route_path, m, priority, Action::Respond { status: 404, body: String::new() });
        r.notes.push(label);
        r.notes.push("internal in nginx: requests from clients get 404".into());
        return vec![r];
    }
    let mut out = Vec::new();
    for c in own {
        if c.name == "location" {
            out.extend(scope::nested(cx, c));
        } else if !reasons::handled(Level::Location, &c.name) {
            cx.skip(c, reasons::reason(c));
        }
    }
    if matches!(kind, Kind::Prefix | Kind::Stop) && path != "/" && !path.ends_with('/') {
        srv.note(
            "nginx's prefix locations match any path starting with the text (location /app also takes /apple); \
             Gatehouse's prefix routes match whole segments (/app, /app/...)",
        );
    }
    let base = path.trim_end_matches('/').to_string();
    let slash = matches!(kind, Kind::Prefix | Kind::Stop)
        && path.len() > 1
        && path.ends_with('/')
        && !scope::has_location(srv, &base, d);
    let proxied = own.iter().any(|c| c.name == "proxy_pass" || c.name == "grpc_pass");
    if slash && !proxied {
        srv.note(format!(
            "nginx's `location {path}` does not take {base} (another location answers it); Gatehouse's prefix \
             route {path} also answers {base}: add an exact route for {base} if that matters"
        ));
    }
    let loc = Loc { d, kind, path, own, route_path, m, priority, label };
    if slash && proxied {
        out.push(scope::slash_redirect(&loc));
        srv.note(
            "nginx makes relative redirect targets absolute (http://host:port/...); Gatehouse sends them \
             as written, which browsers resolve the same way",
        );
    }
    out.extend(build(cx, srv, loc, None));
    out
}

/// The route for requests no location matches: the server's own `root` (and `try_files`).
pub(super) fn catch_all(cx: &mut Cx, srv: &mut Srv<'_>, server: &Directive) -> Vec<Route> {
    let server_level: &[Directive] = srv.server;
    let try_files = server_level.iter().find(|d| d.name == "try_files");
    let loc = Loc {
        d: server,
        kind: Kind::Prefix,
        path: "/".into(),
        own: &[],
        route_path: "/".into(),
        m: Match::Prefix,
        priority: 0,
        label: "the server's own content (it has no `location /`)".into(),
    };
    build(cx, srv, loc, try_files)
}

/// A route that refuses everyone (`respond: {status: 403}`): the stand-in for content
/// that is not translated.
pub(super) fn fail_closed(path: &str, m: Match, priority: i64, label: &str, what: &str) -> Route {
    let mut r = Route::new(path, m, priority, Action::Respond { status: 403, body: String::new() });
    r.notes.push(label.to_string());
    r.notes.push(format!("{what} is not translated: this route answers 403 to everyone until you replace it"));
    r
}

/// What a location's content becomes: nothing (reported), the 403 stand-in for `what`
/// was not translated, or a route.
pub(super) enum Content {
    None,
    FailClosed(String),
    /// A fixed status (after the location's access rules): what stands in for content
    /// nginx would serve from somewhere Gatehouse cannot.
    Refuse(u16),
    Route(Box<Route>),
}

fn build(cx: &mut Cx, srv: &mut Srv<'_>, loc: Loc<'_>, server_try_files: Option<&Directive>) -> Vec<Route> {
    let chain = Chain { levels: [srv.http, srv.server, loc.own] };
    let mut out = Vec::new();
    // Rewrites run before the content: redirects become routes of their own, tried first.
    let mut inner_rewrite = None;
    for r in loc.own.iter().filter(|c| c.name == "rewrite") {
        match rewrite_of(cx, r, srv.names) {
            Some(Rewrite::Redirect(route)) => {
                let scoped = scope::scoped_redirect(cx, &loc, r, route);
                // On an exact location it redirects every request: no content is reached.
                if loc.kind == Kind::Exact && scoped.is_some() {
                    out.extend(scoped);
                    return out;
                }
                out.extend(scoped);
            }
            Some(Rewrite::Break(pattern, replace)) if inner_rewrite.is_none() => {
                inner_rewrite = Some((pattern, replace, r))
            }
            Some(Rewrite::Break(..)) => cx.skip(r, "a second rewrite ... break: a Gatehouse route has one rewrite"),
            None => {}
        }
    }
    let mut route = match content(cx, srv, &loc, &chain, server_try_files) {
        Content::None => return out,
        Content::FailClosed(what) => {
            out.push(fail_closed(&loc.route_path, loc.m, loc.priority, &loc.label, &what));
            return out;
        }
        Content::Refuse(status) => {
            Route::new(&loc.route_path, loc.m, loc.priority, Action::Respond { status, body: String::new() })
        }
        Content::Route(r) => *r,
    };
    route.notes.insert(0, loc.label.clone());
    if let Some((pattern, replace, d)) = inner_rewrite {
        if route.rewrite.is_some() || route.strip_prefix || returns(&route) {
            cx.skip(d, "rewrite ... break together with a proxy_pass URI or a return: not translated");
        } else {
            route.rewrite = Some((pattern, replace));
        }
    }
    response_headers(cx, srv, &chain, &mut route);
    // `return` runs before nginx's access checks; everything else passes them first.
    let mut refuse_others = None;
    if !loc.own.iter().any(|c| c.name == "return") {
        access(cx, &chain, &mut route);
        auth(cx, srv, &chain, &mut route);
        if let Some(le) = loc.own.iter().find(|c| c.name == "limit_except")
            && limit_except(cx, le, &mut route)
        {
            // Right after it, same path and priority: Gatehouse tries it next (file order)
            // for the methods the route does not take, which nginx refuses.
            let mut r = Route::new(
                &route.path,
                route.kind,
                route.priority,
                Action::Respond { status: 403, body: String::new() },
            );
            r.notes.push(format!("{}: the methods limit_except does not list get 403, as from nginx", loc.label));
            refuse_others = Some(r);
        }
    }
    out.push(route);
    out.extend(refuse_others);
    out
}

/// A route made from a `return` (a redirect or a fixed answer).
fn returns(route: &Route) -> bool {
    matches!(route.action, Action::Redirect { .. } | Action::Respond { .. })
}

/// The route that does what the location's content handler does.
fn content(cx: &mut Cx, srv: &mut Srv<'_>, loc: &Loc<'_>, chain: &Chain<'_>, try_files: Option<&Directive>) -> Content {
    let own = |name: &str| loc.own.iter().find(|c| c.name == name);
    if let Some(r) = own("return") {
        return match return_of(cx, srv, r) {
            Ret::Redirect(to, code, notes) => {
                let mut route = Route::new(&loc.route_path, loc.m, loc.priority, Action::Redirect { to, code });
                route.notes = notes;
                Content::Route(Box::new(route))
            }
            Ret::Respond(status, body) => {
                Content::Route(Box::new(respond_route(chain, &loc.route_path, loc.m, loc.priority, status, body)))
            }
            // Includes `return 444`: nginx closes the connection, a route must answer;
            // refusing (403) gives the client no more than nginx did.
            Ret::Other => Content::FailClosed(format!("`{}`", r.label())),
        };
    }
    for (name, grpc) in [("proxy_pass", false), ("grpc_pass", true)] {
        if let Some(d) = own(name) {
            return match proxy(cx, srv, loc, d, grpc) {
                Some((mut route, host, tls)) => {
                    proxy_options(cx, chain, &mut route, &host, tls);
                    if !srv.proxy_redirect_reported && chain.last("proxy_redirect").is_none() {
                        srv.proxy_redirect_reported = true;
                        cx.skip(
                            d,
                            "nginx's default `proxy_redirect default` rewrites a backend's `Location: \
                             http://BACKEND/...` to this server's own URL; Gatehouse passes Location headers as the \
                             backend sent them (said once per server block, for all its proxied locations; write \
                             `proxy_redirect off;` in nginx to compare like with like)",
                        );
                    }
                    Content::Route(Box::new(route))
                }
                None => Content::FailClosed(format!("`{}`", d.label())),
            };
        }
    }
    for name in ["fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass"] {
        if let Some(d) = own(name) {
            let proto = name.trim_end_matches("_pass");
            let why = if proto == "fastcgi" {
                "Gatehouse speaks HTTP to backends, not FastCGI; run php-fpm behind an HTTP server or point the route at one".to_string()
            } else {
                format!("Gatehouse speaks HTTP to backends, not {proto}; point the route at an HTTP server instead")
            };
            cx.skip(d, why);
            return Content::FailClosed(format!("`{}`", d.label()));
        }
    }
    statics::static_content(cx, srv, loc, chain, try_files)
}

/// `proxy_pass` (or `grpc_pass`): the route, the `Host` nginx would send by default, and
/// whether the backend speaks TLS.
fn proxy(cx: &mut Cx, srv: &mut Srv<'_>, loc: &Loc<'_>, d: &Directive, grpc: bool) -> Option<(Route, String, bool)> {
    let url = d.arg(0).unwrap_or("");
    if url.is_empty() || url.contains('$') {
        cx.skip(d, "a backend chosen by variables: Gatehouse needs a fixed address or an upstream");
        return None;
    }
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", r)) if !grpc => ("http", r),
        Some(("https", r)) if !grpc => ("https", r),
        Some(("grpc", r)) if grpc => ("h2c", r),
        Some(("grpcs", r)) if grpc => ("https", r),
        None if grpc => ("h2c", url),
        _ => {
            cx.skip(d, "an address Gatehouse cannot use as a backend");
            return None;
        }
    };
    let (action, host, uri) = if let Some(socket) = rest.strip_prefix("unix:") {
        if scheme != "http" {
            cx.skip(d, "a unix socket with TLS or gRPC: Gatehouse speaks HTTP/1.1 over unix sockets only");
            return None;
        }
        let (path, uri) = match socket.split_once(':') {
            Some((p, u)) => (p, Some(u).filter(|u| !u.is_empty())),
            None => (socket, None),
        };
        (Action::Backend(format!("unix:{path}")), "localhost".to_string(), uri)
    } else {
        let (authority, uri) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            cx.skip(d, "an address without a host");
            return None;
        }
        let action = if !authority.contains(':') && srv.upstreams.contains_key(authority) {
            Action::Upstream(srv.use_upstream(authority, scheme))
        } else {
            Action::Backend(format!("{scheme}://{authority}"))
        };
        (action, authority.to_string(), Some(uri).filter(|u| !u.is_empty()))
    };
    let mut route = Route::new(&loc.route_path, loc.m, loc.priority, action);
    match uri {
        None => {}
        Some(_) if matches!(loc.kind, Kind::Regex { .. }) => {
            cx.skip(d, "a URI part in a regex location (nginx refuses it): the path is passed unchanged");
        }
        // The location's prefix is replaced by `/`: what strip_prefix does.
        Some("/") => route.strip_prefix = loc.route_path != "/",
        // The prefix is replaced by the URI part, exactly as nginx does.
        Some(u) => route.rewrite = Some((format!("^{}", escape_regex(&loc.path)), u.replace('$', "$$"))),
    }
    Some((route, host, scheme == "https"))
}

/// The site's `error_pages`: nginx's `error_page` for 5xx statuses, with the file its URI
/// names (found through an exact location's `root`, or the server's).
pub(super) fn error_pages(cx: &mut Cx, srv: &Srv<'_>, locations: &[&Directive]) -> Vec<(u16, String)> {
    let chain = Chain::server(srv);
    let mut pages: BTreeMap<u16, String> = BTreeMap::new();
    for d in chain.list(&["error_page"]) {
        let Some((uri, codes)) = d.args.split_last() else { continue };
        if codes.is_empty() || codes.iter().any(|c| c.starts_with('=')) || !uri.starts_with('/') {
            cx.skip(d, "an error_page that changes the status, or names a location or a URL: not translated");
            continue;
        }
        let exact = locations.iter().find(|l| matches!(kind_of(l), Some((Kind::Exact, p)) if p == *uri));
        let root =
            exact.and_then(|l| l.children().iter().rev().find(|c| c.name == "root")).or_else(|| chain.last("root"));
        let Some(root) = root.and_then(|r| r.arg(0)).filter(|r| !r.contains('$')) else {
            cx.skip(d, "no root to find the page in: not translated");
            continue;
        };
        let file = format!("{}{uri}", root.trim_end_matches('/'));
        let mut left_out = Vec::new();
        for c in codes {
            match c.parse::<u16>() {
                Ok(n) if (500..=599).contains(&n) => {
                    pages.insert(n, file.clone());
                }
                _ => left_out.push(c.as_str()),
            }
        }
        if !left_out.is_empty() {
            let why = format!(
                "{}: Gatehouse's error pages replace only its own error answers (502, 503, 504...); a backend's or a file's error passes as it is",
                left_out.join(" ")
            );
            cx.skip(d, why);
        }
    }
    pages.into_iter().collect()
}
