//! `return` and `rewrite`, nginx's rewrite phase, as Gatehouse redirects, fixed answers
//! (`respond`) and rewrites.
//!
//! nginx runs a server's `rewrite`s before it picks a location, and a location's before
//! its content: redirect rewrites become regex routes tried before the routes they would
//! have pre-empted (priority 3 at server level, one above their location's inside one,
//! where `scope` keeps them within the location).
//! A rewrite's replacement is split into the redirect target's origin (`https://host`)
//! and the path that Gatehouse's `rewrite` produces, so `{uri}` carries it and the query.

use super::location::{Chain, Srv};
use super::parse::Directive;
use super::site::{Action, Match, Route};
use super::translate::Cx;
use super::values::{pcre_only, replacement, target};

/// Server-level rewrites go first: nginx runs them before choosing a location.
const PRIO_REWRITE: i64 = 3;

/// A server-level `rewrite`: runs before any location is chosen.
pub(super) fn server_rewrite(cx: &mut Cx, srv: &Srv<'_>, d: &Directive) -> Option<Route> {
    match rewrite_of(cx, d, srv.names)? {
        Rewrite::Redirect(route) => Some(Route { priority: PRIO_REWRITE, ..route }),
        Rewrite::Break(..) => {
            cx.skip(
                d,
                "rewrite ... break outside a location: nginx then picks a location for the new path; not translated",
            );
            None
        }
    }
}

/// What a `return` becomes.
pub(super) enum Ret {
    Redirect(String, u16, Vec<String>),
    /// `return CODE ["text"]`: a `respond` route (status, body).
    Respond(u16, String),
    /// Not translated (recorded).
    Other,
}

/// The most a `respond` body may hold (Gatehouse's limit).
const MAX_BODY: usize = 64 * 1024;

/// A `return`: a redirect with its notes, a fixed answer, or nothing (recorded as skipped).
pub(super) fn return_of(cx: &mut Cx, srv: &mut Srv<'_>, d: &Directive) -> Ret {
    let is_url = |u: &str| u.starts_with("http://") || u.starts_with("https://") || u.starts_with("$scheme");
    let (code, url) = match d.args.as_slice() {
        [url] if is_url(url.as_str()) => (302, url),
        [code, rest @ ..] if rest.len() <= 1 => match code.parse::<u16>() {
            Ok(c @ (301 | 302 | 303 | 307 | 308)) => match rest.first() {
                Some(url) => (c, url),
                None => {
                    cx.skip(d, format!("return {c} without a target: not translated"));
                    return Ret::Other;
                }
            },
            // 444 closes the connection unanswered. A request that reached a Gatehouse
            // route is always answered, so the caller refuses it instead (403), which
            // gives the client nothing more than nginx did.
            Ok(444) => {
                cx.skip(d, "444 closes the connection unanswered: no Gatehouse equivalent (a host no site serves gets 404; a location refuses with 403)");
                return Ret::Other;
            }
            Ok(c) => return respond_of(cx, d, c, rest.first().map_or("", String::as_str)),
            Err(_) => {
                cx.skip(d, "cannot read this return");
                return Ret::Other;
            }
        },
        _ => {
            cx.skip(d, "cannot read this return");
            return Ret::Other;
        }
    };
    match target(url, srv.names) {
        Ok((to, notes)) => {
            if to.starts_with('/') {
                srv.note(
                    "nginx makes relative redirect targets absolute (http://host:port/...); Gatehouse sends them \
                     as written, which browsers resolve the same way",
                );
            }
            Ret::Redirect(to, code, notes)
        }
        Err(why) => {
            cx.skip(d, why);
            Ret::Other
        }
    }
}

/// `return CODE ["text"]` for a status that is not a redirect: `respond`. nginx sends no
/// body with 204 and 304 whatever the text, so neither does the route.
fn respond_of(cx: &mut Cx, d: &Directive, code: u16, text: &str) -> Ret {
    let why = if !(200..=599).contains(&code) {
        format!("return {code}: Gatehouse answers with a status from 200 to 599 only")
    } else if text.contains('$') {
        "a text with variables: Gatehouse answers with fixed text only".to_string()
    } else if text.len() > MAX_BODY {
        format!("a text of {} bytes: Gatehouse's respond body holds at most 64 KiB; serve a file instead", text.len())
    } else {
        let body = if matches!(code, 204 | 304) { String::new() } else { text.to_string() };
        return Ret::Respond(code, body);
    };
    cx.skip(d, why);
    Ret::Other
}

/// The route for `return CODE ["text"]`, with what nginx sends differently noted: its
/// own error page for an error status without text, and a text's type where
/// `default_type` names one (Gatehouse sends `text/plain; charset=utf-8`).
pub(super) fn respond_route(
    chain: &Chain<'_>,
    path: &str,
    m: Match,
    priority: i64,
    status: u16,
    body: String,
) -> Route {
    let mut notes = Vec::new();
    if body.is_empty() && status >= 400 {
        notes.push(format!(
            "nginx sends its own error page (or the error_page for {status}) with this answer; Gatehouse sends no body"
        ));
    }
    let default_type = chain.last("default_type").and_then(|d| d.arg(0));
    if let Some(t) = default_type.filter(|t| !body.is_empty() && !t.eq_ignore_ascii_case("text/plain")) {
        notes.push(format!("nginx sends this text as {t} (default_type); Gatehouse as text/plain; charset=utf-8"));
    }
    let mut route = Route::new(path, m, priority, Action::Respond { status, body });
    route.notes = notes;
    route
}

/// What a `rewrite` becomes.
pub(super) enum Rewrite {
    /// `permanent`, `redirect` or an absolute replacement: a redirect route.
    Redirect(Route),
    /// `break`: the location's route rewrites the path (pattern, replacement).
    Break(String, String),
}

pub(super) fn rewrite_of(cx: &mut Cx, d: &Directive, names: &[String]) -> Option<Rewrite> {
    let (Some(re), Some(rep)) = (d.arg(0), d.arg(1)) else {
        cx.skip(d, "needs a regex and a replacement");
        return None;
    };
    let absolute = rep.starts_with("http://") || rep.starts_with("https://") || rep.starts_with("$scheme");
    let code = match d.arg(2).unwrap_or("") {
        "permanent" => 301,
        "redirect" => 302,
        _ if absolute => 302,
        "break" => 0,
        "last" | "" => {
            cx.skip(
                d,
                "rewrite ... last (or without a flag): nginx then picks a location for the new path; Gatehouse \
                 rewrites within a route only: put a `rewrite` on the route that serves the new path",
            );
            return None;
        }
        other => {
            cx.skip(d, format!("unknown flag {other}"));
            return None;
        }
    };
    if let Some(what) = pcre_only(re) {
        cx.skip(d, format!("the regex uses {what}, which Gatehouse's regex syntax (Rust `regex`) lacks"));
        return None;
    }
    if rep.contains('?') {
        cx.skip(d, "a query string in the replacement: Gatehouse's rewrite changes the path only");
        return None;
    }
    // `https://host/path/$1`: the origin goes into the redirect target, the path into the rewrite.
    let split = if absolute {
        let start = rep.find("://").map_or(0, |i| i + 3);
        rep.get(start..).and_then(|after| after.find('/')).map_or(rep.len(), |i| start + i)
    } else {
        0
    };
    let (origin, path) = rep.split_at(split);
    let to = match target(origin, names) {
        Ok((origin, _)) => format!("{origin}{{uri}}"),
        Err(why) => {
            cx.skip(d, why);
            return None;
        }
    };
    let replace = match replacement(path, re) {
        Ok(r) if r.is_empty() => "/".to_string(),
        Ok(r) => r,
        Err(why) => {
            cx.skip(d, why);
            return None;
        }
    };
    // nginx replaces the whole path; Gatehouse the part the pattern matched.
    let whole = re.starts_with('^') && re.ends_with('$') && !re.ends_with("\\$");
    let pattern = if whole { re.to_string() } else { format!("^.*?(?:{re}).*$") };
    if !super::scope::regex_ok(re) || !super::scope::regex_ok(&pattern) {
        cx.skip(d, "the regex is not valid in Gatehouse's regex syntax (Rust `regex`): not translated");
        return None;
    }
    if code == 0 {
        return Some(Rewrite::Break(pattern, replace));
    }
    let mut route = Route::new(re, Match::Regex, PRIO_REWRITE, Action::Redirect { to, code });
    route.rewrite = Some((pattern, replace));
    route.notes.push(format!("{} ({})", d.label(), d.at()));
    Some(Rewrite::Redirect(route))
}
