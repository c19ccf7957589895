//! nginx values in Gatehouse's terms: times and sizes (nginx's `m` is MiB, Gatehouse's
//! `m` is MB), redirect targets with variables (`$host$request_uri` → `{host}{uri}`),
//! rewrite replacements (`$1` → `${1}`), and regexes (PCRE constructs Rust's `regex`
//! lacks are named, not passed on to fail at `gatehouse check`).
//!
//! Pure functions over strings: no I/O, no recording; callers decide what a refusal means.

/// An nginx time (`30s`, `1m30s`, `500ms`, `2h`, or a bare number of seconds) in
/// milliseconds. `None` for what nginx would not accept either.
pub(super) fn nginx_time_ms(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok()?.checked_mul(1000);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if c == ' ' {
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        let unit: u64 = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            'M' => 30 * 86_400_000,
            'y' => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    // A number left without its unit (`1m30`) is an error in nginx too.
    if number.is_empty() { Some(total) } else { None }
}

/// Milliseconds as a Gatehouse duration: `30s`, or `1500ms` when not whole seconds.
pub(super) fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// Gatehouse's largest size (1 TiB).
pub(super) const MAX_SIZE: u64 = 1 << 40;

/// An nginx size (`512`, `64k`, `10m`, `1g`; powers of 1024) as a Gatehouse size
/// (`512`, `64KiB`, `10MiB`, `1GiB`). nginx's `0` (no limit) is `unlimited`.
pub(super) fn nginx_size(s: &str) -> Option<String> {
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (s.get(..i)?, Some(c.to_ascii_lowercase())),
        _ => (s, None),
    };
    let n: u64 = number.parse().ok()?;
    if n == 0 {
        return Some("unlimited".into());
    }
    let scale: u64 = match unit {
        None => 1,
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some(_) => return None,
    };
    if n.checked_mul(scale).is_none_or(|bytes| bytes > MAX_SIZE) {
        return None;
    }
    match unit {
        None => Some(n.to_string()),
        Some('k') => Some(format!("{n}KiB")),
        Some('m') => Some(format!("{n}MiB")),
        Some('g') => Some(format!("{n}GiB")),
        Some(_) => None,
    }
}

/// A literal text as a Rust regex (the characters `regex::escape` escapes).
pub(super) fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The first construct of a PCRE regex that Rust's `regex` does not have (or reads
/// differently), named for a message; `None` when the regex can be used as it is.
pub(super) fn pcre_only(re: &str) -> Option<&'static str> {
    for (needle, what) in [
        ("(?=", "a lookahead"),
        ("(?!", "a negative lookahead"),
        ("(?<=", "a lookbehind"),
        ("(?<!", "a negative lookbehind"),
        ("(?>", "an atomic group"),
        ("(?|", "a branch reset"),
        ("(?R)", "recursion"),
    ] {
        if re.contains(needle) {
            return Some(what);
        }
    }
    let mut chars = re.chars();
    let mut in_class = false;
    // The previous character outside classes and escapes, and the one before it.
    let (mut prev, mut before): (Option<char>, Option<char>) = (None, None);
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('1'..='9') if !in_class => return Some("a back-reference"),
                Some('<' | '>') => return Some(r"\< or \> (a word boundary in Rust's syntax)"),
                Some('h' | 'H' | 'R' | 'K' | 'G' | 'Z' | 'Q' | 'E' | 'X' | 'C' | 'N') => {
                    return Some(r"an escape such as \h, \R, \K, \G, \Z or \Q");
                }
                _ => {}
            }
            (prev, before) = (None, prev);
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
                (prev, before) = (Some(']'), None);
            }
            continue;
        }
        if c == '[' {
            in_class = true;
            continue;
        }
        // `a*+`, `a++`, `a?+`, `a{2}+`: possessive quantifiers (`(?+` is not one).
        if c == '+' && (matches!(prev, Some('*' | '+' | '}')) || (prev == Some('?') && before != Some('('))) {
            return Some("a possessive quantifier");
        }
        (prev, before) = (Some(c), prev);
    }
    None
}

/// A rewrite replacement's path part in Gatehouse's syntax: `$1` and `${1}` become
/// `${1}`, `$name` becomes `${name}` when the regex has that named group. Any other
/// variable is refused (with the reason).
pub(super) fn replacement(path: &str, re: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('$') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i + 1..).unwrap_or("");
        let (name, len) = variable(after)?;
        if name.is_empty() {
            out.push_str("$$");
            rest = after;
            continue;
        }
        let group = match name.parse::<usize>() {
            Ok(n) => n <= groups(re),
            Err(_) => re.contains(&format!("(?<{name}>")) || re.contains(&format!("(?P<{name}>")),
        };
        if !group {
            return Err(format!("${name} in the replacement: the regex has no such group"));
        }
        out.push_str(&format!("${{{name}}}"));
        rest = after.get(len..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// The characters of a regex that give it its structure (outside character classes, not
/// escaped), each with the group depth it stands at and the text after it.
pub(super) fn structure(re: &str) -> Vec<(char, usize, &str)> {
    let mut out = Vec::new();
    let (mut depth, mut in_class) = (0usize, false);
    let mut chars = re.char_indices();
    while let Some((i, c)) = chars.next() {
        let rest = &re[i + c.len_utf8()..];
        match c {
            '\\' => {
                chars.next();
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '(' => {
                out.push((c, depth, rest));
                depth += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                out.push((c, depth, rest));
            }
            _ => out.push((c, depth, rest)),
        }
    }
    out
}

/// How many capture groups a regex has: its `(` that open a group, named ones included
/// (`(?<name>`, `(?P<name>`), not `(?:`, `(?i)`, look-arounds and the like.
pub(super) fn groups(re: &str) -> usize {
    structure(re)
        .iter()
        .filter(|(c, _, rest)| {
            *c == '('
                && (!rest.starts_with('?')
                    || rest.starts_with("?P<")
                    || (rest.starts_with("?<") && !rest.starts_with("?<=") && !rest.starts_with("?<!")))
        })
        .count()
}

/// A redirect target with nginx variables as Gatehouse placeholders, and notes on what
/// differs. `$uri$is_args$args` and `$request_uri` are `{uri}`; `$host` is `{host}`;
/// `$server_name` is the server's first name. Other variables are refused.
pub(super) fn target(url: &str, names: &[String]) -> Result<(String, Vec<String>), String> {
    let url = url
        .replace("$uri$is_args$args", "$request_uri")
        .replace("${uri}${is_args}${args}", "$request_uri")
        .replace("$uri?$args", "$request_uri")
        .replace("$uri?$query_string", "$request_uri");
    let mut out = String::new();
    let mut notes = Vec::new();
    let mut rest = url.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i + 1..).unwrap_or("");
        let (name, len) = variable(after)?;
        let text = match name {
            "" => "$".to_string(),
            "host" => "{host}".to_string(),
            "http_host" => {
                notes.push("$http_host: Gatehouse's {host} has no port".to_string());
                "{host}".to_string()
            }
            "request_uri" => "{uri}".to_string(),
            "uri" | "document_uri" => {
                notes.push("$uri: Gatehouse's {uri} keeps the query string".to_string());
                "{uri}".to_string()
            }
            "server_name" => {
                names.first().cloned().ok_or("$server_name: this server block has no plain name to put there")?
            }
            "scheme" => {
                return Err(
                    "$scheme: Gatehouse's redirect targets have no scheme placeholder; write http:// or https://"
                        .into(),
                );
            }
            n if n.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(format!(
                    "${n}: a regex capture; Gatehouse's redirect targets take only {{host}} and {{uri}}"
                ));
            }
            n => {
                return Err(format!(
                    "${n} has no Gatehouse equivalent in a redirect target (only {{host}} and {{uri}})"
                ));
            }
        };
        out.push_str(&text);
        rest = after.get(len..).unwrap_or("");
    }
    out.push_str(rest);
    Ok((out, notes))
}

/// The variable name at the start of `after` (the text after a `$`): `name` or `{name}`,
/// and how many bytes it takes. An empty name for a `$` that starts none.
fn variable(after: &str) -> Result<(&str, usize), String> {
    if let Some(braced) = after.strip_prefix('{') {
        let end = braced.find('}').ok_or("an unclosed ${")?;
        return Ok((braced.get(..end).unwrap_or(""), end + 2));
    }
    let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
    Ok((after.get(..end).unwrap_or(""), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes() {
        assert_eq!(nginx_time_ms("60"), Some(60_000));
        assert_eq!(nginx_time_ms("1m30s"), Some(90_000));
        assert_eq!(nginx_time_ms("500ms"), Some(500));
        assert_eq!(nginx_time_ms("1w"), Some(604_800_000));
        assert_eq!(nginx_time_ms("1m30"), None);
        assert_eq!(nginx_time_ms("10x"), None);
        assert_eq!(nginx_time_ms("99999999999999999999"), None);
        assert_eq!((duration(90_000), duration(1500)), ("90s".to_string(), "1500ms".to_string()));
        assert_eq!(nginx_size("10m").as_deref(), Some("10MiB"));
        assert_eq!(nginx_size("512K").as_deref(), Some("512KiB"));
        assert_eq!(nginx_size("1024").as_deref(), Some("1024"));
        assert_eq!(nginx_size("0").as_deref(), Some("unlimited"));
        assert_eq!(nginx_size("5x"), None);
        assert_eq!(nginx_size("1024g").as_deref(), Some("1024GiB"));
        assert_eq!(nginx_size("1025g"), None);
        assert_eq!(nginx_size("99999999999999999999k"), None);
        assert_eq!(nginx_size(""), None);
    }

    #[test]
    fn regexes() {
        assert_eq!(pcre_only(r"\.php$"), None);
        assert_eq!(pcre_only(r"^/(?<year>\d{4})/[a-z]+?$"), None);
        assert_eq!(pcre_only(r"\++[+*]+"), None);
        assert_eq!(pcre_only(r"/\.(?!well-known)"), Some("a negative lookahead"));
        assert_eq!(pcre_only(r"(a)\1"), Some("a back-reference"));
        assert_eq!(pcre_only(r"a++"), Some("a possessive quantifier"));
        assert_eq!(pcre_only(r"\bx\Z"), Some(r"an escape such as \h, \R, \K, \G, \Z or \Q"));
        assert_eq!(escape_regex("/a.b-c/"), r"/a\.b\-c/");
    }

    #[test]
    fn replacements_and_targets() {
        assert_eq!(replacement("/new/$1", "^/old/(.*)$").as_deref(), Ok("/new/${1}"));
        assert_eq!(replacement("/y/${2}x", "(a)(b)").as_deref(), Ok("/y/${2}x"));
        assert_eq!(replacement("/u/$id", "^/(?<id>[0-9]+)$").as_deref(), Ok("/u/${id}"));
        assert!(replacement("/u/$host", "^/x$").is_err());
        assert!(replacement("/p/$1", "^/x$").is_err());
        assert_eq!(groups(r"^/(a)(?:b)(?<n>c)(?P<m>d)\(e\)[(]$"), 3);
        assert_eq!(groups(r"(?<=x)(?<!y)(?i)(z)"), 1);
        let bars = |re: &str| structure(re).iter().filter(|(c, d, _)| *c == '|' && *d == 0).count();
        assert_eq!((bars("^/a|/b$"), bars("^/(a|b)$"), bars(r"^/[|]\|$")), (1, 0, 0));
        let names = vec!["example.test".to_string()];
        let t = |u: &str| target(u, &names).map(|(to, _)| to);
        assert_eq!(t("https://$host$request_uri").as_deref(), Ok("https://{host}{uri}"));
        assert_eq!(t("https://example.test$uri$is_args$args").as_deref(), Ok("https://example.test{uri}"));
        assert_eq!(t("https://${server_name}/x").as_deref(), Ok("https://example.test/x"));
        assert_eq!(t("/elsewhere").as_deref(), Ok("/elsewhere"));
        assert!(t("$scheme://$host$request_uri").is_err_and(|e| e.contains("$scheme")));
        assert!(t("https://$http_x_forwarded_host/").is_err());
        assert!(t("https://x/${unclosed").is_err());
    }
}
