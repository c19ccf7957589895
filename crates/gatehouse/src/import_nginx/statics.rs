//! A location's files as a `static` route: `root` or `alias`, `index`, `autoindex on`
//! (`browse: true`) and `try_files` (`fallback`).
//!
//! nginx's `try_files $uri $uri/ /index.html` ends in a URI that nginx runs through its
//! locations again; Gatehouse's `fallback` is a file of the route's own directory. The
//! importer writes `fallback` when the two name the same file: a plain file path (no
//! variables, query, PHP or named location), inside the alias's prefix for `alias`, and
//! not taken by another exact or prefix location that serves it otherwise (a backend, an
//! alias, a `return`...). Regex locations are not run against it; a site comment says
//! when another location without content of its own serves it in nginx (its headers then
//! differ).

use super::location::{Chain, Content, Kind, Loc, Srv, kind_of};
use super::options::denies_everyone;
use super::parse::Directive;
use super::site::{Action, Route};
use super::translate::Cx;

/// Directives that make a location serve a URI otherwise than a static route with the
/// server's root would.
const OWN_CONTENT: &[&str] = &[
    "proxy_pass",
    "grpc_pass",
    "fastcgi_pass",
    "uwsgi_pass",
    "scgi_pass",
    "memcached_pass",
    "return",
    "rewrite",
    "alias",
    "root",
    "try_files",
];

/// The `static` route of a location (or of a server's own content).
pub(super) fn static_content(
    cx: &mut Cx,
    srv: &mut Srv<'_>,
    loc: &Loc<'_>,
    chain: &Chain<'_>,
    try_files: Option<&Directive>,
) -> Content {
    let (dir, strip, alias) = if let Some(a) = loc.own.iter().find(|c| c.name == "alias") {
        let dir = a.arg(0).unwrap_or("");
        let why = match loc.kind {
            _ if dir.is_empty() || dir.contains('$') => Some("alias with variables (regex captures): not translated"),
            Kind::Regex { .. } => Some("alias in a regex location: not translated"),
            Kind::Exact if !dir.ends_with('/') => {
                Some("alias of a single file: Gatehouse serves directories; not translated")
            }
            _ => None,
        };
        if let Some(why) = why {
            cx.skip(a, why);
            return Content::FailClosed(format!("`{}`", a.label()));
        }
        (dir.to_string(), loc.route_path != "/", true)
    } else if let Some(r) = chain.last("root") {
        let dir = r.arg(0).unwrap_or("");
        if dir.is_empty() || dir.contains('$') {
            cx.skip(r, "a root chosen by variables: not translated");
            return Content::FailClosed(format!("`{}`", r.label()));
        }
        (dir.to_string(), false, false)
    } else if loc.d.name != "location" {
        // The server's own content: no other route would take these requests anyway.
        let why = "no root here: nginx would serve files from its own html directory; Gatehouse answers 404 instead";
        cx.skip(loc.d, why);
        return Content::None;
    } else if denies_everyone(chain) {
        return Content::Refuse(403);
    } else {
        let why = "no content here (no root, alias, proxy_pass or return): nginx would serve files from its own \
                   html directory; this location's route answers 404 (after its access rules), so no other route \
                   serves these paths";
        cx.skip(loc.d, why);
        return Content::Refuse(404);
    };
    let mut route = Route::new(&loc.route_path, loc.m, loc.priority, Action::Static(dir.clone()));
    route.strip_prefix = strip;
    if !dir.starts_with('/') {
        route.notes.push(format!(
            "{dir}: a relative path; Gatehouse reads it under the main file's directory (nginx under its prefix): write it absolute"
        ));
    }
    if let Some(ix) = chain.last("index") {
        route.index = index(cx, ix);
    }
    if let Some(tf) = loc.own.iter().find(|c| c.name == "try_files").or(try_files) {
        try_files_of(cx, srv, loc, tf, alias, &mut route);
    }
    route.browse = chain.last("autoindex").is_some_and(|d| d.arg(0) == Some("on"));
    if chain.last("expires").is_some() {
        srv.note("expires: Gatehouse sends the Cache-Control: max-age header only (no Expires date)");
    }
    Content::Route(Box::new(route))
}

/// The index files, without PHP ones (Gatehouse would send their source). `None` when
/// it is Gatehouse's default (`index.html`).
fn index(cx: &mut Cx, d: &Directive) -> Option<Vec<String>> {
    let mut list = Vec::new();
    for a in &d.args {
        if a.contains('$') {
            cx.skip(d, "an index file named by variables: not translated");
        } else if a.ends_with(".php") {
            let why = format!(
                "{a} left out: PHP runs under FastCGI, which Gatehouse does not speak; as a static index it would send the PHP source"
            );
            cx.skip(d, why);
        } else {
            list.push(a.clone());
        }
    }
    if list == ["index.html"] { None } else { Some(list) }
}

/// `try_files`: `$uri $uri/ /FILE` (or `$uri /FILE`) sets the route's `fallback`;
/// `$uri $uri/ =404` is what a static route does anyway; any other shape is reported.
fn try_files_of(cx: &mut Cx, srv: &mut Srv<'_>, loc: &Loc<'_>, d: &Directive, alias: bool, route: &mut Route) {
    let Some((last, tries)) = d.args.split_last() else { return };
    let tries: Vec<&str> = tries.iter().map(String::as_str).collect();
    let plain = tries.iter().all(|t| *t == "$uri" || *t == "$uri/");
    if plain && last == "=404" {
        return;
    }
    let why = if last.starts_with('@') {
        "falls back to a named location: a Gatehouse static route cannot hand a missing file to another route; not translated".to_string()
    } else if last.contains(".php") {
        format!(
            "falls back to PHP ({last}): Gatehouse speaks HTTP to backends, not FastCGI; a missing file is a 404 (and `/` gets the index file)"
        )
    } else if let Some(code) = last.strip_prefix('=') {
        format!("answers {code} for a missing file: Gatehouse answers 404")
    } else if !plain {
        format!(
            "tries {}: a Gatehouse static route serves the path itself (or a directory's index), then its `fallback` file",
            tries.join(" ")
        )
    } else if !matches!(tries.as_slice(), ["$uri", "$uri/"] | ["$uri"]) {
        format!(
            "tries {}: only `try_files $uri $uri/ FILE` and `try_files $uri FILE` are translated (as `fallback`)",
            tries.join(" ")
        )
    } else {
        match fallback(srv, loc, last, alias) {
            Ok((file, notes)) => {
                route.fallback = Some(file);
                route.notes.extend(notes);
                if tries == ["$uri"] {
                    route.notes.push(format!(
                        "try_files without $uri/: nginx answers a directory with {last} too; Gatehouse serves the \
                         directory's index file (after redirecting /dir to /dir/)"
                    ));
                }
                return;
            }
            Err(why) => why,
        }
    };
    cx.skip(d, why);
}

/// The `fallback` file (relative to the route's directory) for nginx's fallback URI
/// `uri`, with notes, or why there is none.
fn fallback(srv: &Srv<'_>, loc: &Loc<'_>, uri: &str, alias: bool) -> Result<(String, Vec<String>), String> {
    let falls_back = format!("falls back to {uri} for a missing file");
    if uri.contains(['$', '?', '#']) {
        return Err(format!(
            "{falls_back}: a URI with variables or a query; Gatehouse's `fallback` is a fixed file; not translated"
        ));
    }
    if !uri.starts_with('/') || uri.ends_with('/') {
        return Err(format!(
            "{falls_back}: Gatehouse's `fallback` is a file of the route's directory (such as /index.html); not translated"
        ));
    }
    let inside = uri.split('/').skip(1).all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !inside || uri.contains(['\\', '\0']) {
        return Err(format!("{falls_back}: a path Gatehouse refuses as a fallback; not translated"));
    }
    let file = if alias {
        // nginx maps the location's prefix to the alias: the file is what follows it.
        match uri.strip_prefix(loc.path.as_str()) {
            Some(rest) if !rest.is_empty() => format!("/{}", rest.trim_start_matches('/')),
            _ => {
                return Err(format!(
                    "{falls_back}: outside this alias location, so nginx serves it through another one; not translated"
                ));
            }
        }
    } else {
        uri.to_string()
    };
    let mut notes = Vec::new();
    if let Some(other) = taken_by(srv, loc, uri) {
        let at = format!("`location {}` ({})", other.args.join(" "), other.at());
        if other.children().iter().any(|c| OWN_CONTENT.contains(&c.name.as_str())) {
            return Err(format!(
                "{falls_back}, which nginx then serves through {at}: a Gatehouse fallback is a file of this route; not translated"
            ));
        }
        notes.push(format!(
            "a missing file gets {uri}, which nginx serves through {at} with that location's settings (headers...); \
             Gatehouse serves it from this route"
        ));
    }
    Ok((file, notes))
}

/// The exact or prefix location other than `loc` that nginx picks for `uri`, if any.
/// Regex locations are not run (a `^~` prefix or an exact match would stop them anyway).
fn taken_by<'a>(srv: &Srv<'a>, loc: &Loc<'_>, uri: &str) -> Option<&'a Directive> {
    let mut best: Option<(&'a Directive, usize)> = None;
    for d in srv.server.iter().filter(|d| d.name == "location") {
        match kind_of(d) {
            Some((Kind::Exact, p)) if p == uri => {
                best = Some((d, usize::MAX));
                break;
            }
            Some((Kind::Prefix | Kind::Stop, p))
                if uri.starts_with(&p) && best.is_none_or(|(_, len)| p.len() > len) =>
            {
                best = Some((d, p.len()));
            }
            _ => {}
        }
    }
    best.map(|(d, _)| d).filter(|d| !std::ptr::eq(*d, loc.d))
}
