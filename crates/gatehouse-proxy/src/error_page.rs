//! The body of Gatehouse's own answers (errors, maintenance): JSON for clients that ask for
//! it, the site's page for the status when it has one (`error_pages`), plain text
//! otherwise. Pages are templates: `{{status}}`, `{{reason}}`, `{{message}}`,
//! `{{request_id}}` and `{{time}}` are replaced, HTML-escaped.
//!
//! The message is Gatehouse's own words: a backend's address, error text or body never
//! reaches the client through here.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Outgoing;

/// What an answer says, and to whom.
pub struct Page<'a> {
    pub status: StatusCode,
    pub message: &'a str,
    pub request_id: &'a HeaderValue,
    /// The template for this answer, if the site has one.
    pub template: Option<&'a str>,
}

/// How the client wants its error: JSON only when it asks for JSON and not for HTML (a
/// browser's `Accept` names both, and gets the page).
pub fn wants_json(accept: Option<&HeaderValue>) -> bool {
    let (mut json, mut html) = (false, false);
    if let Some(v) = accept.and_then(|v| v.to_str().ok()) {
        for item in v.split(',') {
            let media = item.split(';').next().unwrap_or("").trim();
            json |= media.eq_ignore_ascii_case("application/json") || media.to_ascii_lowercase().ends_with("+json");
            html |= media.eq_ignore_ascii_case("text/html");
        }
    }
    json && !html
}

/// Replaces the body and content type of `resp` with the answer `page` describes.
pub fn fill(resp: &mut Response<Outgoing>, page: &Page<'_>, json: bool) {
    let reason = page.status.canonical_reason().unwrap_or("Error");
    let id = page.request_id.to_str().unwrap_or("");
    let (body, kind) = if json {
        let body = format!(
            "{{\"error\":{{\"status\":{},\"reason\":{},\"message\":{},\"request_id\":{}}}}}\n",
            page.status.as_u16(),
            json_string(reason),
            json_string(page.message),
            json_string(id),
        );
        (body, "application/json")
    } else if let Some(t) = page.template {
        let time = httpdate::fmt_http_date(std::time::SystemTime::now());
        let body = render(
            t,
            &[
                ("status", page.status.as_str()),
                ("reason", reason),
                ("message", page.message),
                ("request_id", id),
                ("time", &time),
            ],
        );
        (body, "text/html; charset=utf-8")
    } else {
        return;
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    *resp.body_mut() = Outgoing::full(Bytes::from(body));
}

/// Fills `{{name}}` fields; unknown names stay as written.
fn render(template: &str, fields: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = after[..close].trim();
        match fields.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => escape_html(v, &mut out),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_known_fields_escaped_and_keep_the_rest() {
        let out = render(
            "<h1>{{status}} {{ reason }}</h1>{{message}} {{nope}} {{",
            &[("status", "503"), ("reason", "Service Unavailable"), ("message", "<script>")],
        );
        assert_eq!(out, "<h1>503 Service Unavailable</h1>&lt;script&gt; {{nope}} {{");
    }

    #[test]
    fn json_is_for_clients_that_ask_for_it_and_not_for_html() {
        let h = HeaderValue::from_static;
        assert!(wants_json(Some(&h("application/json"))));
        assert!(wants_json(Some(&h("application/problem+json, */*;q=0.1"))));
        assert!(!wants_json(Some(&h("text/html,application/xhtml+xml,application/json;q=0.9"))));
        assert!(!wants_json(Some(&h("*/*"))));
        assert!(!wants_json(None));
        assert_eq!(json_string("a\"b\\\n"), r#""a\"b\\\u000a""#);
    }
}
