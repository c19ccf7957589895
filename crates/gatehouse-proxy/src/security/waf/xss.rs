//! Cross-site scripting: markup and script a browser would run if the value were echoed
//! into a page. Reads the normalised value with HTML character references decoded, and
//! looks for what runs, not for what merely looks like HTML: `<p>`, `<a href="https://…">`
//! and `<img src=…>` from a rich-text editor pass; `<script>`, an `on…=` handler, a
//! `javascript:` URL or a call to `alert` after a quote do not.
//!
//! Linear: a few `find`s and single passes over the value.

use super::normalise::html_decode;

/// Elements that run script or change where a page loads from, whatever their attributes.
const TAGS: &[&str] = &[
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "meta", "link", "style", "xml",
    "import", "vmlframe", "isindex", "svg", "math", "template", "portal", "noscript", "xss", "set", "animate",
    "handler", "listener", "bgsound", "layer", "ilayer",
];

/// Words that begin with "on" and are not event handlers, for `name=` checks.
const NOT_HANDLERS: &[&str] =
    &["one", "only", "once", "onto", "onset", "onion", "onions", "ongoing", "onward", "onwards"];

/// Script sinks and calls that show up in injected code.
const CALLS: &[&str] = &[
    "alert",
    "prompt",
    "confirm",
    "eval",
    "settimeout",
    "setinterval",
    "fromcharcode",
    "atob",
    "execscript",
    "document.cookie",
    "document.domain",
    "document.write",
    "document.location",
    "window.location",
    "location.href",
    "innerhtml",
    "outerhtml",
    "constructor",
    "import(",
    "top[",
    "window[",
    "self[",
    "this[",
];

/// Why `s` (normalised, lower case) reads as script injection, if it does.
pub fn detect(s: &str) -> Option<&'static str> {
    if !s.bytes().any(|c| matches!(c, b'<' | b':' | b'=' | b'(' | b'`' | b'&' | b'\\' | b'[' | b'"' | b'\'')) {
        return None;
    }
    let decoded = html_decode(s);
    let s = decoded.as_ref();
    if let Some(rule) = tags(s) {
        return Some(rule);
    }
    if handler(s) {
        return Some("xss-handler");
    }
    if script_url(s) {
        return Some("xss-url");
    }
    if s.contains("expression(") || s.contains("-moz-binding") || s.contains("behavior:") || s.contains("behaviour:") {
        return Some("xss-style");
    }
    if calls(s) {
        return Some("xss-script");
    }
    None
}

/// `<script`, `</script`, `<svg`…: the dangerous elements by name, right after `<`.
fn tags(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    for (at, _) in s.match_indices('<') {
        let mut i = at + 1;
        // `</script>` and `<!--`-less tricks such as `<%00script>` (NULs are gone by now).
        while i < b.len() && (b[i] == b'/' || b[i] == b'!') {
            i += 1;
        }
        let end = b[i..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b':' || *c == b'-'))
            .map_or(b.len(), |n| i + n);
        let name = &s[i..end];
        // A namespace prefix (`<x:script>`) does not change what runs.
        let local = name.rsplit(':').next().unwrap_or(name);
        if TAGS.contains(&local) {
            return Some("xss-tag");
        }
        // Any element carrying a handler is caught by `handler`; an element whose name is
        // followed by a script URL (`<a href=javascript:…`) by `script_url`.
    }
    None
}

/// An event handler attribute: `on` + letters + `=`, starting an attribute (after
/// whitespace, `/`, a quote or the tag name's end).
fn handler(s: &str) -> bool {
    let b = s.as_bytes();
    // Positions looked up once, not for every `on…=` (a value of many of them stays linear).
    let first_tag_or_quote = s.find(['<', '"', '\'', '`']).unwrap_or(usize::MAX);
    let last_call = s.rfind(['(', '`']);
    for (at, _) in s.match_indices("on") {
        let before_ok = at == 0
            || matches!(b[at - 1], b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'/' | b'"' | b'\'' | b'`' | b';' | b'+');
        if !before_ok {
            continue;
        }
        let mut i = at + 2;
        while i < b.len() && b[i].is_ascii_lowercase() {
            i += 1;
        }
        if i - at < 5 {
            continue;
        }
        if NOT_HANDLERS.contains(&&s[at..i]) {
            continue;
        }
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') {
            i += 1;
        }
        if b.get(i) == Some(&b'=') {
            // An attribute needs a tag or a quote that ended the previous attribute, or
            // (in an unquoted attribute) a handler that calls something.
            let calls = last_call.is_some_and(|c| c > i);
            if first_tag_or_quote < at || at == 0 || calls {
                return true;
            }
        }
    }
    false
}

/// `javascript:`, `vbscript:`, `livescript:` (tabs and newlines inside the scheme are
/// ignored by browsers), and `data:` URLs that carry a document.
fn script_url(s: &str) -> bool {
    let compact: String;
    let s = if s.bytes().any(|c| matches!(c, b'\t' | b'\n' | b'\r')) {
        compact = s.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
        &compact
    } else {
        s
    };
    for scheme in ["javascript:", "vbscript:", "livescript:"] {
        for (at, _) in s.match_indices(scheme) {
            let next = s.as_bytes().get(at + scheme.len());
            // "JavaScript: The Good Parts" is a book, not a URL.
            if next.is_some_and(|c| !c.is_ascii_whitespace()) {
                return true;
            }
        }
    }
    s.contains("data:text/html") || s.contains("data:image/svg") || s.contains("data:application/x")
}

/// A script call or sink right after a break out of a string or an attribute:
/// `";alert(1)//`, `'-prompt(1)-'`, `alert\`1\``, `document.cookie`.
fn calls(s: &str) -> bool {
    static NAMES: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> = std::sync::OnceLock::new();
    let Some(names) = NAMES.get_or_init(|| aho_corasick::AhoCorasick::new(CALLS).ok()).as_ref() else {
        return false;
    };
    let b = s.as_bytes();
    let first_angle = s.find(['<', '>']).unwrap_or(usize::MAX);
    for m in names.find_overlapping_iter(s) {
        let name = &CALLS[m.pattern().as_usize()];
        {
            let at = m.start();
            let end = at + name.len();
            if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
                continue;
            }
            if name.contains(['.', '(', '[']) || *name == "innerhtml" || *name == "outerhtml" {
                // Sinks: need an assignment or a call with it, or a break before.
                if s[end..].trim_start().starts_with(['=', '(', '[', '.', ')', ';', '+']) || broke_out(&s[..at]) {
                    return true;
                }
                continue;
            }
            let rest = s[end..].trim_start();
            let called = rest.starts_with('(') || rest.starts_with('`');
            if called && (at == 0 || broke_out(&s[..at]) || first_angle < at) {
                return true;
            }
        }
    }
    false
}

/// The text before a call ends like an escape from a string, attribute or statement.
fn broke_out(before: &str) -> bool {
    let t = before.trim_end();
    t.is_empty() || t.ends_with(['"', '\'', '`', ';', '>', '(', '{', '}', '-', '+', '*', '|', '&', ',', '=', ':', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_is_found() {
        for attack in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "\" onmouseover=\"alert(1)",
            "<svg/onload=alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"java\tscript:alert(1)\">x</a>",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "<iframe src=//evil.example>",
            "';alert(document.cookie)//",
            "\"-prompt`1`-\"",
            "<div style=\"width:expression(alert(1))\">",
            "<body onload=alert(1)>",
            "<x:script>alert(1)</x:script>",
            "data:text/html;base64,pgjvzhk+",
            "<details open ontoggle=alert(1)>",
            "y autofocus href onfocus=((x)=>(confirm)(x))(`w8e25dvtcm`)",
        ] {
            assert!(detect(attack).is_some(), "missed {attack:?}");
        }
    }

    #[test]
    fn rich_text_and_prose_pass() {
        for benign in [
            "<p><strong>hello</strong> <a href=\"https://example.com/x?a=1&amp;b=2\">link</a></p>",
            "<img src=\"https://cdn.example.com/cat.png\" alt=\"a cat\">",
            "javascript: the good parts",
            "turn it on = off?",
            "x < y and y > z",
            "one=two",
            "alert the team (asap)",
            "please confirm (by email) your address",
            "<ul><li>one</li><li>two</li></ul>",
            "i <3 you",
            "<p style=\"color: red\">hi</p>",
        ] {
            assert_eq!(detect(benign), None, "flagged {benign:?}");
        }
    }
}
