//! Keeping a location's effects inside what the location matched in nginx:
//!
//! - a redirect `rewrite` inside a location runs only for requests nginx gave that
//!   location, so its route must not match more (an exact route on an exact location's
//!   path; a regex anchored inside a prefix location's prefix; anything else is reported);
//! - a location the importer cannot match the same way (a regex with look-around, a
//!   nested location) whose content refuses (`deny`, a 4xx `return`, FastCGI) becomes a
//!   403 route with a broader pattern: matching too much is the safe side;
//! - a plain prefix under a `^~` prefix keeps nginx's longest-prefix rule;
//! - nginx's `location /x/` does not match `/x` (it redirects there for proxied
//!   locations); Gatehouse's prefix `/x/` does.

use super::location::{Kind, Loc, Srv, kind_of};
use super::parse::Directive;
use super::site::{Action, Match, Route};
use super::translate::Cx;
use super::values::{escape_regex, pcre_only};

/// The priority of the 403 stand-ins for nested locations: above every location's own
/// routes, since nginx tries nested locations before the rest.
pub(super) const PRIO_NESTED: i64 = 3;

/// The route for a redirect `rewrite` of location `loc` (`route` as `rewrite_of` made it,
/// whose path is the rewrite's regex), scoped to what the location matches; `None` (with
/// the reason recorded) when it cannot be.
pub(super) fn scoped_redirect(cx: &mut Cx, loc: &Loc<'_>, d: &Directive, route: Route) -> Option<Route> {
    let re = route.path.clone();
    match loc.kind {
        Kind::Exact => match regex_matches(&re, &loc.path) {
            Some(true) => {
                Some(Route { path: loc.path.clone(), kind: Match::Exact, priority: loc.priority + 1, ..route })
            }
            Some(false) => {
                cx.skip(d, "not needed: its regex never matches this exact location's path");
                None
            }
            None => {
                cx.skip(d, "its regex is not valid in Gatehouse's syntax (Rust `regex`): not translated");
                None
            }
        },
        Kind::Prefix | Kind::Stop if literal_start(&re).starts_with(loc.path.as_str()) => {
            Some(Route { priority: loc.priority + 1, ..route })
        }
        _ => {
            cx.skip(
                d,
                "a redirect rewrite whose regex is not anchored (^) inside this location's path: as a Gatehouse \
                 route it would redirect requests nginx gives other locations; not translated (the location's own \
                 content is)",
            );
            None
        }
    }
}

/// The text every match of `re` starts with: the literal characters after a leading `^`
/// (`^/old/(.*)$` → `/old/`); empty when not anchored or with a top-level alternation.
pub(super) fn literal_start(re: &str) -> String {
    let Some(body) = re.strip_prefix('^') else { return String::new() };
    if top_level_alternation(body) {
        return String::new();
    }
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // `\/`, `\.`, `\-`: an escaped punctuation character is literal.
            match chars.peek() {
                Some(&n) if n.is_ascii_punctuation() => {
                    chars.next();
                    if quantified(chars.peek()) {
                        return out;
                    }
                    out.push(n);
                    continue;
                }
                _ => return out,
            }
        }
        if "\\.+*?()|[]{}^$".contains(c) {
            return out;
        }
        if quantified(chars.peek()) {
            return out;
        }
        out.push(c);
    }
    out
}

/// Whether a quantifier follows (the character before it is then optional or repeated).
fn quantified(next: Option<&char>) -> bool {
    matches!(next, Some('?' | '*' | '+' | '{'))
}

/// Whether `re` has a `|` outside any group or class.
fn top_level_alternation(re: &str) -> bool {
    super::values::structure(re).iter().any(|(c, depth, _)| *c == '|' && *depth == 0)
}

/// What makes a location's content refuse requests, for a 403 stand-in: `deny`, a 4xx
/// `return` (444 too), or a handler Gatehouse lacks (`fastcgi_pass`, ...).
pub(super) fn refusing(own: &[Directive]) -> Option<String> {
    own.iter().find_map(|c| {
        let refuses = match c.name.as_str() {
            "deny" | "fastcgi_pass" | "uwsgi_pass" | "scgi_pass" => true,
            "return" => c.arg(0).and_then(|a| a.parse::<u16>().ok()).is_some_and(|s| (400..=499).contains(&s)),
            _ => false,
        };
        refuses.then(|| format!("`{}`", c.label()))
    })
}

/// A regex that matches at least everything PCRE regex `re` matches, in Rust's syntax:
/// look-around assertions are dropped, atomic groups become plain groups and
/// back-references any text. `None` when something else stays untranslatable.
pub(super) fn broader(re: &str) -> Option<String> {
    let mut out = String::new();
    let chars: Vec<char> = re.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while let Some(&c) = chars.get(i) {
        let rest: String =
            chars.get(i..i + 4).map(|s| s.iter().collect()).unwrap_or_else(|| chars[i..].iter().collect());
        if c == '\\' {
            match chars.get(i + 1) {
                Some('1'..='9') if !in_class => out.push_str("(?s:.*)"),
                Some(&n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
            i += 2;
            continue;
        }
        if in_class {
            in_class = c != ']';
            out.push(c);
            i += 1;
            continue;
        }
        if c == '[' {
            in_class = true;
            out.push(c);
            // `[]...]` and `[^]...]`: a `]` right after the opening is literal.
            if let Some(&n) = chars.get(i + 1).filter(|n| **n == '^') {
                out.push(n);
                i += 1;
            }
            if let Some(&n) = chars.get(i + 1).filter(|n| **n == ']') {
                out.push(n);
                i += 1;
            }
            i += 1;
            continue;
        }
        if ["(?=", "(?!", "(?<=", "(?<!"].iter().any(|p| rest.starts_with(p)) {
            i = group_end(&chars, i)?;
            continue;
        }
        if rest.starts_with("(?>") {
            out.push_str("(?:");
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    let out = if out.is_empty() || out == "^" { "^/".to_string() } else { out };
    if pcre_only(&out).is_some() { None } else { Some(out) }
}

/// The index just past the `)` that closes the group opened at `start`.
fn group_end(chars: &[char], start: usize) -> Option<usize> {
    let (mut depth, mut in_class, mut i) = (0usize, false, start);
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 1,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The 403 stand-in for a location that cannot be matched as nginx does (`why`), when
/// its content refuses requests: a route whose `pattern` matches at least what the
/// location did. Records the location either way.
pub(super) fn stand_in(
    cx: &mut Cx,
    d: &Directive,
    why: &str,
    pattern: Option<(String, Match)>,
    priority: i64,
) -> Option<Route> {
    let refuses = refusing(d.children());
    let (Some(what), Some((path, m))) = (refuses, pattern) else {
        cx.skip(d, format!("{why}; the requests it took now go to other routes"));
        return None;
    };
    cx.skip(d, format!("{why}; it refused them ({what}), so a route refusing a broader set ({path}) stands in for it"));
    let mut r = Route::new(&path, m, priority, Action::Respond { status: 403, body: String::new() });
    r.notes.push(format!("location {} ({})", d.args.join(" "), d.at()));
    r.notes.push(format!(
        "{why}: this route answers 403 to every path it matches, a broader set than nginx's location (which \
         refused with {what}); write the exceptions as routes of their own"
    ));
    Some(r)
}

/// A nested location (inside `parent`): reported, with a 403 stand-in when it refuses.
pub(super) fn nested(cx: &mut Cx, d: &Directive) -> Option<Route> {
    let why = "a nested location: not translated (write it as a route of its own)";
    let pattern = match kind_of(d) {
        Some((Kind::Regex { caseless }, re)) => {
            let re = if pcre_only(&re).is_some() { broader(&re) } else { Some(re) };
            re.map(|re| (if caseless { format!("(?i){re}") } else { re }, Match::Regex))
        }
        Some((Kind::Exact, p)) if p.starts_with('/') => Some((p, Match::Exact)),
        Some((Kind::Prefix | Kind::Stop, p)) if p.starts_with('/') => Some((p, Match::Prefix)),
        _ => None,
    };
    stand_in(cx, d, why, pattern, PRIO_NESTED)
}

/// The `^~` location whose Gatehouse prefix route would take the requests of plain prefix
/// `path` (nginx gives them to the longer plain prefix).
pub(super) fn extended_stop<'a>(srv: &Srv<'a>, path: &str) -> Option<&'a Directive> {
    srv.server.iter().filter(|d| d.name == "location").find(|d| match kind_of(d) {
        Some((Kind::Stop, p)) if p != path => {
            let base = p.trim_end_matches('/');
            base.is_empty() || path == base || path.starts_with(&format!("{base}/"))
        }
        _ => false,
    })
}

/// Whether the server has a location (other than `except`) for exactly `path`.
pub(super) fn has_location(srv: &Srv<'_>, path: &str, except: &Directive) -> bool {
    srv.server
        .iter()
        .filter(|d| d.name == "location" && !std::ptr::eq(*d, except))
        .any(|d| matches!(kind_of(d), Some((Kind::Exact | Kind::Prefix | Kind::Stop, p)) if p == path))
}

/// nginx's redirect of `/x` to `/x/` for a proxied `location /x/`: an exact route.
pub(super) fn slash_redirect(loc: &Loc<'_>) -> Route {
    let base = loc.path.trim_end_matches('/');
    let mut r =
        Route::new(base, Match::Exact, super::location::PRIO_FIRST, Action::Redirect { to: "{uri}".into(), code: 301 });
    r.rewrite = Some((format!("^{}$", escape_regex(base)), loc.path.clone()));
    r.notes.push(format!(
        "nginx answers {base} with a 301 to {} for {} (a proxied prefix ending in /)",
        loc.path, loc.label
    ));
    r
}

/// Whether Gatehouse's regex syntax accepts `re`, and if so whether it matches `path`:
/// compiled as the configuration loader compiles route paths (`regex::Regex::new`).
pub(super) fn regex_matches(re: &str, path: &str) -> Option<bool> {
    regex::Regex::new(re).ok().map(|r| r.is_match(path))
}

/// Whether Gatehouse's regex syntax accepts `re`.
pub(super) fn regex_ok(re: &str) -> bool {
    regex_matches(re, "/").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_starts_and_broader_regexes() {
        assert_eq!(literal_start("^/old/(.*)$"), "/old/");
        assert_eq!(literal_start(r"^\/old\/x"), "/old/x");
        assert_eq!(literal_start("^/olds?/"), "/old");
        assert_eq!(literal_start("^/a|/b"), "");
        assert_eq!(literal_start("/old/"), "");
        assert_eq!(broader(r"^(?!/static/).+\.php$").as_deref(), Some(r"^.+\.php$"));
        assert_eq!(broader(r"/\.(?!well-known)").as_deref(), Some(r"/\."));
        assert_eq!(broader(r"^/(a)/\1$").as_deref(), Some("^/(a)/(?s:.*)$"));
        assert_eq!(broader(r"(?>a+)b").as_deref(), Some("(?:a+)b"));
        assert_eq!(broader(r"a\Kb"), None);
    }
}
