//! The web application firewall's inspection: which parts of a request are read, how they
//! are decoded (`normalise`), and which detectors read them (`sqli`, `xss`, `rules`, and
//! the administrator's own rules). The filter that answers for it is `filter::waf`.
//!
//! Read: the path (as a whole for traversal, segment by segment for injections), each
//! query parameter's name and value, each cookie's value, the User-Agent and Referer, every
//! header's value for server attacks (Shellshock, Log4Shell), and the first `body_limit`
//! bytes of a form or JSON body (each field, each JSON string). Nothing here allocates for
//! a value that is plain ASCII without escapes, and every detector is linear in its input.

mod normalise;
mod rules;
mod sqli;
mod xss;

use std::sync::Arc;

use gatehouse_config::{Waf, WafTarget};
use http::HeaderMap;
use http::header;

pub use normalise::{normalise, percent_decode};

/// What the WAF found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule that fired (`sqli-union`, `xss-tag`, a custom rule's id).
    pub rule: Arc<str>,
    /// Its group (`sql_injection`, …, `custom`).
    pub group: &'static str,
    /// Where: `path`, `query:NAME`, `cookie:NAME`, `header:NAME`, `body:NAME`.
    pub place: String,
    /// The decoded value, cut to `FRAGMENT` characters, control characters escaped.
    pub fragment: String,
    /// A custom rule's `message`.
    pub message: Option<String>,
}

/// Characters of the offending value kept for logs and the request record.
const FRAGMENT: usize = 80;

/// Which detectors read a place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    PathSegment,
    Query,
    Cookie,
    Header,
    Body,
}

/// A route's WAF, built once per configuration load.
pub struct Engine {
    config: Arc<Waf>,
}

impl Engine {
    pub fn new(config: Arc<Waf>) -> Self {
        Engine { config }
    }

    /// The route has rules of its own.
    fn custom_any(&self) -> bool {
        !self.config.custom.is_empty()
    }

    pub fn config(&self) -> &Waf {
        &self.config
    }

    /// Inspects a request's head: path, query, cookies and headers. `route_path` is the
    /// normalised path (for exclusions).
    pub fn head(&self, path: &str, query: Option<&str>, headers: &HeaderMap, route_path: &str) -> Option<Finding> {
        let g = &self.config.groups;
        // The path: traversal over the whole, injections per segment.
        let n = normalise(path.as_bytes(), false);
        if g.path_traversal
            && let Some(rule) = rules::traversal(&n.text, n.nul)
            && let Some(f) = self.finding(rule, "path_traversal", "path", "", &n.text, route_path)
        {
            return Some(f);
        }
        for segment in n.text.split('/').filter(|s| !s.is_empty()) {
            if let Some(f) = self.injections(Place::PathSegment, "path", "", segment, false, route_path) {
                return Some(f);
            }
        }
        if let Some(f) = self.custom(WafTarget::Path, "path", "", &n.text, route_path) {
            return Some(f);
        }
        if let Some(q) = query
            && let Some(f) = self.form(Place::Query, q.as_bytes(), route_path)
        {
            return Some(f);
        }
        for v in headers.get_all(header::COOKIE) {
            for pair in v.as_bytes().split(|&c| c == b';') {
                let pair = pair.trim_ascii();
                let (name, value) = split_pair(pair);
                let n = normalise(value, false);
                let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                if let Some(f) = self.injections(Place::Cookie, "cookie", &name, &n.text, n.nul, route_path) {
                    return Some(f);
                }
                if let Some(f) = self.custom(WafTarget::Cookie, "cookie", &name, &n.text, route_path) {
                    return Some(f);
                }
            }
        }
        self.headers(headers, route_path)
    }

    fn headers(&self, headers: &HeaderMap, route_path: &str) -> Option<Finding> {
        let g = &self.config.groups;
        if g.suspicious_headers {
            for name in ["x-original-url", "x-rewrite-url"] {
                if headers.contains_key(name)
                    && let Some(f) =
                        self.finding("header-override", "suspicious_headers", "header", name, "", route_path)
                {
                    return Some(f);
                }
            }
        }
        for (name, value) in headers {
            let bytes = value.as_bytes();
            let (ua, referer) = (name == header::USER_AGENT, name == header::REFERER);
            // Server attacks hide in any header; they all need `(` or `$`.
            let server_attack = g.suspicious_headers && memchr::memchr2(b'(', b'$', bytes).is_some();
            if !ua && !referer && !server_attack && !self.custom_any() {
                continue;
            }
            let n = normalise(bytes, false);
            if ua
                && g.scanner_user_agents
                && let Some(rule) = rules::scanner(&n.text)
                && let Some(f) = self.finding(rule, "scanner_user_agents", "header", "user-agent", &n.text, route_path)
            {
                return Some(f);
            }
            if server_attack
                && let Some(rule) = rules::header_value(&n.text)
                && let Some(f) = self.finding(rule, "suspicious_headers", "header", name.as_str(), &n.text, route_path)
            {
                return Some(f);
            }
            // A Referer is a URL: its query's values are read as parameters are, its path
            // as a whole. A User-Agent is read when it has what an injection needs that
            // browsers' agents never have (every agent has spaces, `(`, `;` and `/`).
            if referer {
                let (path, query) = n.text.split_once('?').unwrap_or((&n.text, ""));
                if suspicious(path)
                    && let Some(f) = self.injections(Place::Header, "header", "referer", path, false, route_path)
                {
                    return Some(f);
                }
                if !query.is_empty()
                    && let Some(f) = self.form(Place::Header, query.as_bytes(), route_path)
                {
                    return Some(f);
                }
            }
            if ua
                && (suspicious(&n.text) || sqli::names(&n.text).is_some())
                && let Some(f) = self.injections(Place::Header, "header", name.as_str(), &n.text, false, route_path)
            {
                return Some(f);
            }
            if self.custom_any()
                && let Some(f) =
                    self.custom(WafTarget::Header(name.clone()), "header", name.as_str(), &n.text, route_path)
            {
                return Some(f);
            }
        }
        None
    }

    /// Whether a request's body is read: a form or JSON body, with something to read it.
    pub fn wants_body(&self, headers: &HeaderMap) -> bool {
        self.config.body_limit > 0 && body_kind(headers).is_some()
    }

    /// Inspects the first bytes of a form or JSON body.
    pub fn body(&self, headers: &HeaderMap, body: &[u8], route_path: &str) -> Option<Finding> {
        let body = &body[..body.len().min(self.config.body_limit)];
        match body_kind(headers)? {
            BodyKind::Form => self.form(Place::Body, body, route_path),
            BodyKind::Json => {
                let mut found = None;
                json_strings(body, |key, value| {
                    let n = normalise(value, false);
                    let key = String::from_utf8_lossy(key).to_ascii_lowercase();
                    found = self
                        .injections(Place::Body, "body", &key, &n.text, n.nul, route_path)
                        .or_else(|| self.custom(WafTarget::Body, "body", &key, &n.text, route_path));
                    found.is_none()
                });
                found
            }
        }
    }

    /// `a=1&b=2` pairs: a query string or a form body.
    fn form(&self, place: Place, raw: &[u8], route_path: &str) -> Option<Finding> {
        let (label, target) = match place {
            Place::Query => ("query", WafTarget::Query),
            Place::Header => ("header:referer", WafTarget::Header(header::REFERER)),
            _ => ("body", WafTarget::Body),
        };
        for pair in raw.split(|&c| c == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = split_pair(pair);
            let name_n = normalise(name, true);
            let value_n = normalise(value, true);
            let field = &*name_n.text;
            if let Some(f) = self.injections(place, label, field, &value_n.text, value_n.nul, route_path) {
                return Some(f);
            }
            // Names are read for injections too (`?<script>=1`, `?1' or '1'='1`).
            if !name.is_empty()
                && let Some(f) = self.injections(place, label, field, field, name_n.nul, route_path)
            {
                return Some(f);
            }
            if let Some(f) = self.custom(target.clone(), label, field, &value_n.text, route_path) {
                return Some(f);
            }
        }
        None
    }

    /// The injection detectors a place gets, in order; the first finding not excluded.
    fn injections(
        &self,
        place: Place,
        label: &str,
        field: &str,
        text: &str,
        nul: bool,
        route_path: &str,
    ) -> Option<Finding> {
        let g = &self.config.groups;
        // Most values are words, numbers, tokens and plain paths: nothing any injection
        // needs (a quote, a bracket, an operator, a space…) is in them.
        if !nul && text.bytes().all(|c| PLAIN[usize::from(c)]) {
            return if g.path_traversal && matches!(place, Place::Query | Place::Body) && text.contains(['.', '/']) {
                rules::traversal(text, false)
                    .and_then(|rule| self.finding(rule, "path_traversal", label, field, text, route_path))
            } else {
                None
            };
        }
        if g.sql_injection
            && let Some(rule) = sqli::detect(text)
            && let Some(f) = self.finding(rule, "sql_injection", label, field, text, route_path)
        {
            return Some(f);
        }
        if g.xss
            && let Some(rule) = xss::detect(text)
            && let Some(f) = self.finding(rule, "xss", label, field, text, route_path)
        {
            return Some(f);
        }
        if place == Place::Header {
            return None;
        }
        if g.command_injection
            && let Some(rule) = rules::command(text)
            && let Some(f) = self.finding(rule, "command_injection", label, field, text, route_path)
        {
            return Some(f);
        }
        // Traversal is read in values that name files: the path (as a whole, in `head`),
        // parameters and fields; cookies name no files.
        if g.path_traversal
            && matches!(place, Place::Query | Place::Body)
            && let Some(rule) = rules::traversal(text, nul)
            && let Some(f) = self.finding(rule, "path_traversal", label, field, text, route_path)
        {
            return Some(f);
        }
        None
    }

    fn custom(&self, target: WafTarget, label: &str, field: &str, text: &str, route_path: &str) -> Option<Finding> {
        if !self.custom_any() {
            return None;
        }
        for r in &self.config.custom {
            let applies = r.target == target || (r.target == WafTarget::Any && !matches!(target, WafTarget::Header(_)));
            if applies
                && r.pattern.is_match(text)
                && let Some(mut f) = self.finding(&r.id, "custom", label, field, text, route_path)
            {
                f.message = Some(r.message.clone());
                return Some(f);
            }
        }
        None
    }

    /// A finding, unless an exclusion covers it.
    fn finding(
        &self,
        rule: &str,
        group: &'static str,
        label: &str,
        field: &str,
        text: &str,
        route_path: &str,
    ) -> Option<Finding> {
        let excluded = self.config.exclusions.iter().any(|e| {
            (e.rule == rule || e.rule == group)
                && e.path.as_deref().is_none_or(|p| crate::route::under(route_path, p))
                && e.field.as_deref().is_none_or(|f| f == field)
        });
        if excluded {
            return None;
        }
        let place = if field.is_empty() { label.to_string() } else { format!("{label}:{field}") };
        // A secret's value stays out of logs and the request log, even when it matched.
        let secret = ["pass", "secret", "token", "key", "auth", "session", "pwd"].iter().any(|s| field.contains(s));
        let fragment = if secret { "[REDACTED]".to_string() } else { fragment(text) };
        Some(Finding { rule: rule.into(), group, place, fragment, message: None })
    }
}

/// Whether a header value has a byte an injection needs that browsers' User-Agent and
/// Referer paths never carry: quotes, angle brackets, `=`, `|`, `&`, `$`, `{`, `}`, `\`,
/// `#`, `*`, `@`, `` ` ``, or a `--` comment.
fn suspicious(text: &str) -> bool {
    text.bytes().any(|c| {
        matches!(
            c,
            b'\'' | b'"' | b'`' | b'<' | b'>' | b'=' | b'|' | b'&' | b'$' | b'{' | b'}' | b'\\' | b'#' | b'*' | b'@'
        )
    }) || text.contains("--")
}

/// Bytes no injection detector needs: letters, digits, `_`, `-`, `.`, `~`, `/`, `,`.
/// Multi-byte characters are not plain (full-width forms are folded before this).
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~' | b'/' | b',');
        c += 1;
    }
    t
};

enum BodyKind {
    Form,
    Json,
}

fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/x-www-form-urlencoded" {
        Some(BodyKind::Form)
    } else if media == "application/json" || media.ends_with("+json") {
        Some(BodyKind::Json)
    } else {
        None
    }
}

fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&c| c == b'=') {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (&[], pair),
    }
}

/// `text` cut to `FRAGMENT` characters, control characters escaped, for a log line.
fn fragment(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(FRAGMENT) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Calls `each(key, value)` for every string value of a JSON text (the key it belongs to,
/// empty inside arrays), with escapes decoded; stops when `each` returns false. A
/// truncated or malformed document is read as far as it goes. One pass, no tree built.
fn json_strings(b: &[u8], mut each: impl FnMut(&[u8], &[u8]) -> bool) {
    let mut key: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let (s, end) = json_string(b, i + 1);
                i = end;
                // A key is followed by `:`.
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if b.get(j) == Some(&b':') {
                    key = s;
                    i = j + 1;
                } else if !each(&key, &s) {
                    return;
                }
            }
            _ => i += 1,
        }
    }
}

/// A JSON string starting after its opening quote: its decoded bytes, and the index after
/// its closing quote.
fn json_string(b: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b'"' => return (out, i + 1),
            b'\\' => {
                let esc = b.get(i + 1).copied();
                i += 2;
                match esc {
                    Some(b'n') => out.push(b'\n'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b'b' | b'f') => out.push(b' '),
                    Some(b'u') => {
                        let v = b
                            .get(i..i + 4)
                            .and_then(|d| std::str::from_utf8(d).ok())
                            .and_then(|d| u32::from_str_radix(d, 16).ok());
                        if let Some(v) = v {
                            let c = char::from_u32(v).unwrap_or('\u{fffd}');
                            let mut buf = [0; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            i += 4;
                        }
                    }
                    Some(c) => out.push(c),
                    None => {}
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, b.len())
}

#[cfg(test)]
mod tests;
