//! The nginx configuration language as `gatehouse import nginx` reads it: a lexer and a
//! parser into a tree of directives that each know their file and line. It gives no
//! meaning to any directive (that is `translate`'s business); `include` is expanded by
//! `include.rs`, which calls [`parse_text`] for each file.
//!
//! The lexer follows nginx's own (`ngx_conf_read_token`), so a file nginx accepts reads the
//! same here: words end at whitespace, `;` or `{`; `#` starts a comment only where a word
//! could start; `"…"` and `'…'` quote; a backslash keeps the next character from ending a
//! word, and `\"`, `\'`, `\\`, `\t`, `\r`, `\n` are unescaped while any other `\x` stays
//! as written (so regexes such as `\.php$` arrive intact); `${var}` is one word.
//!
//! Nesting is bounded, so a deep or broken file ends in an error naming the line, never in
//! a crash.

use std::path::PathBuf;
use std::rc::Rc;

/// Blocks within blocks, at most (the parser recurses once per level).
const MAX_BLOCK_DEPTH: usize = 64;

/// One directive: `name args…;` or `name args… { block }`.
#[derive(Debug, Clone)]
pub(super) struct Directive {
    pub name: String,
    /// The arguments, unquoted and unescaped as nginx does.
    pub args: Vec<String>,
    /// The directives inside `{ … }`, for block directives (`server`, `location`, …).
    pub block: Option<Vec<Directive>>,
    /// The file the directive is written in (an included file for included directives).
    pub file: Rc<PathBuf>,
    /// The line of the directive's name.
    pub line: usize,
}

impl Directive {
    /// The `i`th argument, if there is one.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    /// The directives of its block (none for a simple directive).
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// `FILE:LINE`, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The directive as written (`listen 443 ssl`), shortened to about 60 characters, for
    /// messages and comments.
    pub fn label(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(char::is_whitespace) {
                s.push('"');
                s.push_str(a);
                s.push('"');
            } else {
                s.push_str(a);
            }
        }
        // One line: an escaped newline in an argument must not break a comment.
        let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if s.chars().count() > 60 { s.chars().take(57).chain("...".chars()).collect() } else { s }
    }
}

/// Parses one file's text (no include expansion). Errors read `FILE:LINE: message`.
pub(super) fn parse_text(text: &str, file: &Rc<PathBuf>) -> Result<Vec<Directive>, String> {
    let tokens = lex(text).map_err(|(line, msg)| format!("{}:{line}: {msg}", file.display()))?;
    let mut pos = 0;
    parse_block(&tokens, &mut pos, file, None, 0)
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

#[derive(Debug)]
struct Tok {
    kind: Token,
    line: usize,
}

/// The text as tokens, or the line and message of the first error.
fn lex(text: &str) -> Result<Vec<Tok>, (usize, String)> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut it = text.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            '\n' => {
                line += 1;
                it.next();
            }
            c if c.is_whitespace() => {
                it.next();
            }
            '#' => {
                while it.peek().is_some_and(|&c| c != '\n') {
                    it.next();
                }
            }
            ';' | '{' | '}' => {
                it.next();
                let kind = match c {
                    ';' => Token::Semicolon,
                    '{' => Token::Open,
                    _ => Token::Close,
                };
                out.push(Tok { kind, line });
            }
            '"' | '\'' => {
                let start = line;
                it.next();
                let mut raw = String::new();
                let mut closed = false;
                while let Some(ch) = it.next() {
                    if ch == '\n' {
                        line += 1;
                    }
                    if ch == '\\' {
                        raw.push('\\');
                        if let Some(next) = it.next() {
                            if next == '\n' {
                                line += 1;
                            }
                            raw.push(next);
                        }
                        continue;
                    }
                    if ch == c {
                        closed = true;
                        break;
                    }
                    raw.push(ch);
                }
                if !closed {
                    return Err((start, format!("the string opened here with {c} is never closed")));
                }
                // As in nginx: a quoted string must be followed by a space, `;`, `{` or `)`.
                if let Some(&next) = it.peek()
                    && !(next.is_whitespace() || matches!(next, ';' | '{' | ')'))
                {
                    return Err((line, format!("unexpected {next:?} right after a quoted string")));
                }
                out.push(Tok { kind: Token::Word(unescape(&raw)), line: start });
            }
            _ => {
                let start = line;
                let mut raw = String::new();
                let mut after_dollar = false;
                while let Some(&ch) = it.peek() {
                    if ch == '\\' {
                        it.next();
                        raw.push('\\');
                        if let Some(next) = it.next() {
                            if next == '\n' {
                                line += 1;
                            }
                            raw.push(next);
                        }
                        after_dollar = false;
                        continue;
                    }
                    // `${name}`: this `{` opens no block.
                    let variable_brace = ch == '{' && after_dollar;
                    if !variable_brace && (ch.is_whitespace() || ch == ';' || ch == '{') {
                        break;
                    }
                    after_dollar = ch == '$';
                    raw.push(ch);
                    it.next();
                }
                // `content_by_lua_block { ... }`: Lua, not nginx syntax: one opaque argument.
                let lua = raw.ends_with("_by_lua_block");
                out.push(Tok { kind: Token::Word(unescape(&raw)), line: start });
                if lua {
                    let body = lua_block(&mut it, &mut line)?;
                    out.push(Tok { kind: Token::Word(body), line: start });
                    out.push(Tok { kind: Token::Semicolon, line });
                }
            }
        }
    }
    Ok(out)
}

/// The body of a `*_by_lua_block` up to its matching `}` (consumed), read as Lua: braces
/// in strings (`'…'`, `"…"`, `[[…]]`) and comments (`--` to the end of the line) do not
/// count. Shortened to `{ … }` for messages.
fn lua_block(it: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) -> Result<String, (usize, String)> {
    let start = *line;
    while let Some(&c) = it.peek().filter(|c| c.is_whitespace()) {
        if c == '\n' {
            *line += 1;
        }
        it.next();
    }
    if it.next() != Some('{') {
        return Err((start, "a *_by_lua_block directive needs a { Lua block }".into()));
    }
    let mut depth = 1usize;
    while let Some(c) = it.next() {
        match c {
            '\n' => *line += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok("{ (Lua) }".into());
                }
            }
            '"' | '\'' => {
                while let Some(ch) = it.next() {
                    match ch {
                        '\\' if it.next() == Some('\n') => *line += 1,
                        '\n' => *line += 1,
                        _ if ch == c => break,
                        _ => {}
                    }
                }
            }
            '[' if it.peek() == Some(&'[') => {
                let mut prev = ' ';
                for ch in it.by_ref() {
                    if ch == '\n' {
                        *line += 1;
                    }
                    if prev == ']' && ch == ']' {
                        break;
                    }
                    prev = ch;
                }
            }
            '-' if it.peek() == Some(&'-') => {
                while it.peek().is_some_and(|&ch| ch != '\n') {
                    it.next();
                }
            }
            _ => {}
        }
    }
    Err((start, "the Lua block opened here is not closed with '}'".into()))
}

/// nginx's unescaping of a token: `\"`, `\'` and `\\` become the character, `\t`, `\r`
/// and `\n` the control character; any other `\x` is kept as it is.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some(q @ ('"' | '\'' | '\\')) => out.push(q),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Parser

/// The directives up to the end of the file (`opened` is `None`) or up to the `}` that
/// closes the block opened at `opened` (its line and name).
fn parse_block(
    toks: &[Tok],
    pos: &mut usize,
    file: &Rc<PathBuf>,
    opened: Option<(usize, &str)>,
    depth: usize,
) -> Result<Vec<Directive>, String> {
    let at = |line: usize| format!("{}:{line}", file.display());
    let mut out = Vec::new();
    loop {
        let Some(tok) = toks.get(*pos) else {
            return match opened {
                Some((line, name)) => Err(format!(
                    "{}: unexpected end of file: the `{name}` block opened here is not closed with '}}'",
                    at(line)
                )),
                None => Ok(out),
            };
        };
        *pos += 1;
        let name = match &tok.kind {
            Token::Word(w) => w.clone(),
            Token::Close if opened.is_some() => return Ok(out),
            Token::Close => return Err(format!("{}: unexpected '}}': no block is open here", at(tok.line))),
            Token::Semicolon => return Err(format!("{}: unexpected ';' with no directive before it", at(tok.line))),
            Token::Open => {
                return Err(format!("{}: unexpected '{{': a block needs a name (e.g. `server {{`)", at(tok.line)));
            }
        };
        let line = tok.line;
        let mut args: Vec<String> = Vec::new();
        loop {
            let Some(t) = toks.get(*pos) else {
                return Err(format!(
                    "{}: unexpected end of file: `{}` is not ended by ';' (or a block)",
                    at(line),
                    shown(&name, &args)
                ));
            };
            *pos += 1;
            match &t.kind {
                Token::Word(w) => args.push(w.clone()),
                Token::Semicolon => {
                    out.push(Directive { name, args, block: None, file: file.clone(), line });
                    break;
                }
                Token::Open => {
                    if depth >= MAX_BLOCK_DEPTH {
                        return Err(format!("{}: blocks nested more than {MAX_BLOCK_DEPTH} deep", at(t.line)));
                    }
                    let block = parse_block(toks, pos, file, Some((t.line, name.as_str())), depth + 1)?;
                    out.push(Directive { name, args, block: Some(block), file: file.clone(), line });
                    break;
                }
                Token::Close => {
                    return Err(format!(
                        "{}: `{}` is not ended by ';' (the '}}' on line {} comes first)",
                        at(line),
                        shown(&name, &args),
                        t.line
                    ));
                }
            }
        }
    }
}

/// `name args`, for error messages.
fn shown(name: &str, args: &[String]) -> String {
    let mut s = name.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    if s.chars().count() > 60 { s.chars().take(57).chain("...".chars()).collect() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Directive>, String> {
        parse_text(text, &Rc::new(PathBuf::from("t.conf")))
    }

    #[test]
    fn directives_blocks_and_lines() {
        let tree = parse("worker_processes 1;\nhttp {\n  server {\n    listen 80;\n  }\n}\n").expect("parses");
        assert_eq!(tree.len(), 2);
        assert_eq!(
            (tree[0].name.as_str(), tree[0].args.as_slice(), tree[0].line),
            ("worker_processes", &["1".to_string()][..], 1)
        );
        let server = &tree[1].children()[0];
        assert_eq!((server.name.as_str(), server.line), ("server", 3));
        let listen = &server.children()[0];
        assert_eq!((listen.name.as_str(), listen.arg(0), listen.line), ("listen", Some("80"), 4));
        assert_eq!(listen.at(), "t.conf:4");
    }

    #[test]
    fn quotes_escapes_comments_and_variables() {
        let text = r#"add_header X-A "a b\"c" always; # a comment; { }
add_header 'X-B' 'it\'s';
location ~ \.php$ { }
rewrite "^/a\\.b$" /c;
set $x ${host}s#not-a-comment;
return 200 "line\n";
server_name "";
"#;
        let tree = parse(text).expect("parses");
        assert_eq!(tree[0].args, ["X-A", "a b\"c", "always"]);
        assert_eq!(tree[1].args, ["X-B", "it's"]);
        assert_eq!((tree[2].args.as_slice(), tree[2].line), (&["~".to_string(), "\\.php$".to_string()][..], 3));
        assert_eq!(tree[3].args, ["^/a\\.b$", "/c"]);
        assert_eq!(tree[4].args, ["$x", "${host}s#not-a-comment"]);
        assert_eq!(tree[5].args, ["200", "line\n"]);
        assert_eq!(tree[6].args, [""]);
        // A quoted string may span lines; the next directive's line is still right.
        let tree = parse("return 200 \"a\nb\";\nlisten 80;").expect("parses");
        assert_eq!(tree[1].line, 3);
        assert!(tree[1].label() == "listen 80" && tree[0].label() == "return 200 \"a b\"", "{}", tree[0].label());
    }

    #[test]
    fn lua_blocks_are_read_whole() {
        let text = "server {\n  content_by_lua_block {\n    -- a } in a comment\n    local t = { a = \"}\" }\n    ngx.say('{')\n  }\n  listen 80;\n}\n";
        let tree = parse(text).expect("parses");
        let server = tree.first().expect("server");
        let lua = server.children().first().expect("lua");
        assert_eq!((lua.name.as_str(), lua.args.len(), lua.line), ("content_by_lua_block", 1, 2));
        let listen = server.children().get(1).expect("listen");
        assert_eq!((listen.name.as_str(), listen.line), ("listen", 7));
        assert!(parse("content_by_lua_block { x = 1").is_err());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            ("server {\n  listen 80\n}\n", "t.conf:2: `listen 80` is not ended by ';'"),
            ("server {\n  listen 80;\n", "t.conf:1: unexpected end of file: the `server` block"),
            ("listen 80;\n}\n", "t.conf:2: unexpected '}'"),
            ("listen 80", "t.conf:1: unexpected end of file: `listen 80`"),
            ("a;\n;", "t.conf:2: unexpected ';'"),
            ("{ }", "t.conf:1: unexpected '{'"),
            ("return 200 \"ok;\n", "t.conf:1: the string opened here"),
            ("return 200 \"ok\"x;", "t.conf:1: unexpected 'x' right after a quoted string"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
        let deep = "a {".repeat(200);
        assert!(parse(&deep).expect_err("too deep").contains("nested more than"));
    }
}
