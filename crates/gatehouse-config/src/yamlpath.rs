//! Recovers a field path (`routes[1].backend`) for a line of a block-style YAML file.
//!
//! The YAML parser reports a line and column but not the path of keys that led there; the
//! path is what users search their file for, so we rebuild it from indentation. Flow-style
//! collections (`{a: 1}` / `[a, b]`) yield the path of the key that holds them.

enum Part {
    Key(String),
    Index(usize),
}

/// The field path of the key (or list item) on `line` (1-based) of `src`.
pub fn path_at_line(src: &str, line: u64) -> String {
    let mut stack: Vec<(usize, Part)> = Vec::new();
    for (i, text) in src.lines().enumerate() {
        if i as u64 >= line {
            break;
        }
        let trimmed = text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut col = text.len() - trimmed.len();
        let mut rest = trimmed;
        // One line may open several nested list items: "- - a".
        while rest == "-" || rest.starts_with("- ") {
            let mut next = 0;
            while let Some((indent, part)) = stack.last() {
                match part {
                    Part::Index(n) if *indent == col => {
                        next = n + 1;
                        stack.pop();
                        break;
                    }
                    _ if *indent > col => {
                        stack.pop();
                    }
                    _ => break,
                }
            }
            stack.push((col, Part::Index(next)));
            let after = rest[1..].trim_start();
            col += rest.len() - after.len();
            rest = after;
        }
        if let Some(key) = key_of(rest) {
            while stack.last().is_some_and(|(indent, _)| *indent >= col) {
                stack.pop();
            }
            stack.push((col, Part::Key(key)));
        }
    }
    let mut out = String::new();
    for (_, part) in &stack {
        match part {
            Part::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Part::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// The mapping key at the start of `s`, if `s` is `key: ...` or `key:`.
fn key_of(s: &str) -> Option<String> {
    if s.starts_with('{') || s.starts_with('[') {
        return None;
    }
    let mut end = None;
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            end = Some(i);
            break;
        }
    }
    let key = s[..end?].trim();
    Some(key.trim_matches(|c| c == '"' || c == '\'').to_string())
}

#[cfg(test)]
mod tests {
    use super::path_at_line;

    const SRC: &str = "\
hosts:
  - a.test
routes:
  - path: /
    backend: x
  - path: /api
    methods: [GET]
    options:
      timeouts:
        connect: 1s
- stray
";

    #[test]
    fn paths_follow_indentation_and_list_items() {
        assert_eq!(path_at_line(SRC, 1), "hosts");
        assert_eq!(path_at_line(SRC, 2), "hosts[0]");
        assert_eq!(path_at_line(SRC, 5), "routes[0].backend");
        assert_eq!(path_at_line(SRC, 6), "routes[1].path");
        assert_eq!(path_at_line(SRC, 7), "routes[1].methods");
        assert_eq!(path_at_line(SRC, 10), "routes[1].options.timeouts.connect");
    }

    #[test]
    fn compact_lists_at_parent_indent() {
        let src = "routes:\n- path: /\n  backend: a\n- path: /b\n  backend: b\n";
        assert_eq!(path_at_line(src, 5), "routes[1].backend");
    }
}
