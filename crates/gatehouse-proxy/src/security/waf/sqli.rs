//! SQL injection by tokens, not by a pile of regexes (the idea libinjection made known;
//! this is our own grammar).
//!
//! A value is read as SQL the way the backend's query would read it, in three contexts: as
//! written (a number or bare word spliced into the query), and as if it began inside a
//! single- or a double-quoted string (a value spliced between quotes). An injection is a
//! value that, in some context, *breaks out* of where it was spliced and goes on as SQL:
//! a closing quote followed by `OR 1=1`, `UNION SELECT`, a comment or a second statement.
//! Text that merely contains SQL words ("select a size from the list", "O'Brien and
//! friends") does not continue as SQL after the break, and is let through.
//!
//! Linear in the input: one pass per context, over at most `MAX_TOKENS` tokens.

use std::ops::Range;

/// Tokens read per context; injections show themselves well before this.
const MAX_TOKENS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A quoted string (`'...'`, `"..."`), closed or not.
    Str,
    Num,
    /// An identifier or a keyword that is not one of the kinds below.
    Word,
    /// `and`, `or`, `xor`, `&&`, `||`.
    Logic,
    /// `=`, `<>`, `like`, `in`, `between`, arithmetic...
    Op,
    Comma,
    Semi,
    Open,
    Close,
    /// `--`, `#`, `/* */`.
    Comment,
    /// `@x`, `@@version`.
    Var,
    /// A word followed at once by `(`.
    Func,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    at: Range<usize>,
}

/// Keywords that start a statement (after a `;`).
const STATEMENTS: &[&str] = &[
    "select", "insert", "update", "delete", "drop", "create", "alter", "exec", "execute", "declare", "shutdown",
    "waitfor", "truncate", "grant", "revoke", "call", "load", "copy", "rename", "replace", "handler", "if", "begin",
    "set", "merge", "show", "use", "desc", "describe", "lock", "union",
];

/// Words that act as comparison operators.
const OP_WORDS: &[&str] =
    &["like", "rlike", "regexp", "between", "in", "is", "div", "mod", "sounds", "glob", "match", "similar", "not"];

/// Functions and names only SQL (and injections) use: their call, or their mention, is
/// enough.
const SQL_NAMES: &[&str] = &[
    "sleep",
    "benchmark",
    "pg_sleep",
    "extractvalue",
    "updatexml",
    "load_file",
    "group_concat",
    "information_schema",
    "xp_cmdshell",
    "sp_executesql",
    "sp_password",
    "sysobjects",
    "syscolumns",
    "sysusers",
    "pg_catalog",
    "pg_shadow",
    "pg_user",
    "sqlite_master",
    "sqlite_version",
    "randomblob",
    "utl_inaddr",
    "utl_http",
    "dbms_pipe",
    "dbms_lock",
    "dbms_utility",
    "dbms_xmlgen",
    "ctxsys",
    "sys_context",
    "mysql.user",
    "master..",
    "openrowset",
    "opendatasource",
    "make_set",
    "gtid_subset",
    "json_keys",
    "exp(~(",
    "geometrycollection",
    "polygon(",
    "multipoint(",
    "procedure analyse",
    "into outfile",
    "into dumpfile",
    "waitfor delay",
    "waitfor time",
    "@@version",
    "@@datadir",
    "@@hostname",
    "version()",
    "current_user(",
    "database()",
    "schema()",
    "user()",
    "system_user(",
    "convert(int",
    "cast(",
    "char(",
    "chr(",
    "nchar(",
    "ascii(",
    "ord(",
    "hex(",
    "unhex(",
    "concat(",
    "concat_ws(",
    "substring(",
    "substr(",
    "mid(",
    "iif(",
    "elt(",
    "count(",
    "length(",
    "len(",
    "nvl(",
    "ifnull(",
    "isnull(",
    "coalesce(",
    "rawtohex(",
    "xmltype(",
    "regexp_substring(",
    "generate_series(",
    "lo_import(",
    "pg_read_file(",
    "query_to_xml(",
    "dblink(",
    "rand(",
    "floor(",
    "case when",
];

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.' || c >= 0x80
}

/// Reads `s` as SQL from `start`, beginning inside a string opened by `quote` when given.
fn tokens(s: &str, quote: Option<u8>) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(16);
    let mut i = 0;
    if let Some(q) = quote {
        // Everything up to the first unescaped closing quote is the string we started in.
        let end = string_end(b, 0, q);
        out.push(Token { kind: Kind::Str, at: 0..end });
        i = end;
    }
    while i < b.len() && out.len() < MAX_TOKENS {
        let c = b[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0 => {
                i += 1;
                continue;
            }
            b'\'' | b'"' | b'`' => {
                i = string_end(b, i + 1, c);
                if c == b'`' { Kind::Word } else { Kind::Str }
            }
            // A number, signed where an operand starts (`-1 OR 1=1`).
            b'0'..=b'9' | b'-' | b'+'
                if c.is_ascii_digit()
                    || b.get(i + 1).is_some_and(u8::is_ascii_digit)
                        && out.last().is_none_or(|t: &Token| {
                            matches!(t.kind, Kind::Open | Kind::Op | Kind::Logic | Kind::Comma)
                        }) =>
            {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                Kind::Num
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                Kind::Num
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b.len();
                Kind::Comment
            }
            b'#' => {
                i = b.len();
                Kind::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // A MySQL executable comment (`/*!50000select*/`) is code: read on inside it.
                if b.get(i + 2) == Some(&b'!') {
                    i += 3;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    continue;
                }
                i = match s[i + 2..].find("*/") {
                    Some(e) => i + 2 + e + 2,
                    None => b.len(),
                };
                // Inside the text a block comment is whitespace (`union/**/select`); at
                // its end it cuts off the rest of the query, as `--` does.
                if s[i..].trim().is_empty() { Kind::Comment } else { continue }
            }
            b'*' if b.get(i + 1) == Some(&b'/') => {
                // The end of an executable comment.
                i += 2;
                continue;
            }
            b'@' => {
                i += 1;
                while i < b.len() && (is_word_byte(b[i]) || b[i] == b'@') {
                    i += 1;
                }
                Kind::Var
            }
            b'(' | b')' | b',' | b';' => {
                i += 1;
                match c {
                    b'(' => Kind::Open,
                    b')' => Kind::Close,
                    b',' => Kind::Comma,
                    _ => Kind::Semi,
                }
            }
            b'&' | b'|' if b.get(i + 1) == Some(&c) => {
                i += 2;
                Kind::Logic
            }
            b'=' | b'<' | b'>' | b'!' | b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'~' | b'&' | b'|' | b':' => {
                i += 1;
                while i < b.len() && matches!(b[i], b'=' | b'<' | b'>' | b'!' | b':') {
                    i += 1;
                }
                Kind::Op
            }
            c if is_word_byte(c) => {
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                match &s[start..i] {
                    "and" | "or" | "xor" => Kind::Logic,
                    w if OP_WORDS.contains(&w) => Kind::Op,
                    // A call: the name then `(`, comments allowed between.
                    _ if next_significant(b, i) == Some(b'(') => Kind::Func,
                    _ => Kind::Word,
                }
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push(Token { kind, at: start..i });
    }
    out
}

/// The index after the string that starts at `i` (just past its opening quote) and is
/// closed by `q`; a doubled quote or a backslash escapes.
fn string_end(b: &[u8], mut i: usize, q: u8) -> usize {
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The next byte after spaces and comments, looking at most `LOOKAHEAD` bytes ahead (so a
/// value of many unclosed comments is not read again for every name in it).
fn next_significant(b: &[u8], i: usize) -> Option<u8> {
    const LOOKAHEAD: usize = 256;
    let b = &b[..b.len().min(i.saturating_add(LOOKAHEAD))];
    let mut i = i;
    loop {
        match b.get(i)? {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let rest = b.get(i + 2..)?;
                i += 2 + rest.windows(2).position(|w| w == b"*/")? + 2;
            }
            &c => return Some(c),
        }
    }
}

/// Why a value reads as an injection (the rule that fired), if it does.
pub fn detect(s: &str) -> Option<&'static str> {
    // A value SQL cannot be broken out of: no quote, comment, separator, operator or space.
    if !s.bytes().any(|c| b" '\"`;#()=<>|&-/*+@\t\n\r".contains(&c)) {
        return None;
    }
    if let Some(rule) = names(s) {
        return Some(rule);
    }
    let contexts: [Option<u8>; 3] = [None, Some(b'\''), Some(b'"')];
    for q in contexts {
        if q.is_some_and(|q| !s.as_bytes().contains(&q)) {
            continue;
        }
        let t = tokens(s, q);
        if let Some(rule) = grammar(s, &t, q.is_some()) {
            return Some(rule);
        }
    }
    None
}

/// SQL-only function and catalogue names, as whole words.
pub(super) fn names(s: &str) -> Option<&'static str> {
    // One pass for every name (a search per name cost more than the rest of the WAF).
    static NAMES: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| aho_corasick::AhoCorasick::new(SQL_NAMES).ok()).as_ref()?;
    for m in names.find_overlapping_iter(s) {
        let name = &SQL_NAMES[m.pattern().as_usize()];
        {
            let (at, end) = (m.start(), m.end());
            let before_ok = at == 0 || !is_word_byte(s.as_bytes()[at - 1]) || name.starts_with('@');
            let after = s.as_bytes().get(end).copied();
            let after_ok = name.ends_with(['(', '.']) || after.is_none_or(|c| !is_word_byte(c));
            // A call needs its `(` (comments and spaces allowed); a name does not.
            let call_ok = !name.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                || !matches!(
                    *name,
                    "sleep"
                        | "benchmark"
                        | "pg_sleep"
                        | "extractvalue"
                        | "updatexml"
                        | "load_file"
                        | "group_concat"
                        | "randomblob"
                        | "make_set"
                        | "gtid_subset"
                        | "json_keys"
                )
                || next_significant(s.as_bytes(), end) == Some(b'(')
                    && !s[end..].split_once('(').is_some_and(|(_, arg)| prose_argument(arg));
            let case_ok = *name != "case when" || {
                let t = tokens(&s[end..], None);
                match t.first().map(|t| t.kind) {
                    Some(Kind::Num | Kind::Open | Kind::Func | Kind::Var | Kind::Str) => true,
                    Some(Kind::Word) => t.get(1).is_some_and(|n| n.kind == Kind::Op),
                    _ => false,
                }
            };
            if before_ok && after_ok && call_ok && case_ok && sql_around(s, at, end) {
                return Some("sqli-function");
            }
        }
    }
    None
}

/// A function name counts only with SQL around it: its call's argument is SQL-ish (a
/// number, a select), or SQL punctuation precedes it. Keeps "char(s)" or "count (them)"
/// in prose from counting.
fn sql_around(s: &str, at: usize, end: usize) -> bool {
    let name = &s[at..end];
    if !name.ends_with('(') {
        return true;
    }
    let arg = s[end..].trim_start();
    let arg_sqlish = (arg.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '@' | '(' | '\'' | '"' | '-'))
        || arg.starts_with("select")
        || arg.starts_with("0x"))
        && !prose_argument(arg);
    let before = s[..at].trim_end();
    let punct_before = before.is_empty()
        || before.ends_with(['\'', '"', '(', ',', '=', '|', '&', ';', '+', '-', '*', '/', ')'])
        || before.ends_with(" and")
        || before.ends_with(" or")
        || before.ends_with("select");
    arg_sqlish && punct_before
}

/// A call's argument that reads as words, not SQL: a number or word followed by a word
/// ("sleep(5 hours)", "count (them all)").
fn prose_argument(arg: &str) -> bool {
    let mut cut = arg.find(')').unwrap_or(arg.len()).min(64);
    while !arg.is_char_boundary(cut) {
        cut -= 1;
    }
    let inside = &arg[..cut];
    let t = tokens(inside, None);
    t.windows(2).any(|p| {
        matches!(p[0].kind, Kind::Num | Kind::Word) && p[1].kind == Kind::Word && !is_keyword(word(inside, &p[1]))
    })
}

/// Words that may follow an operand in SQL.
fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "as" | "from"
            | "then"
            | "else"
            | "end"
            | "when"
            | "using"
            | "desc"
            | "asc"
            | "limit"
            | "where"
            | "null"
            | "collate"
            | "binary"
            | "unsigned"
            | "signed"
            | "char"
            | "int"
            | "integer"
            | "varchar"
            | "nvarchar"
    )
}

fn word<'a>(s: &'a str, t: &Token) -> &'a str {
    &s[t.at.clone()]
}

/// The token sequences that make an injection. `quoted`: the first token is the string
/// the value started in.
fn grammar(s: &str, t: &[Token], quoted: bool) -> Option<&'static str> {
    let k = |i: usize| t.get(i).map(|t| t.kind);
    let w = |i: usize| t.get(i).map_or("", |x| word(s, x));
    // UNION [ALL|DISTINCT] SELECT, anywhere.
    for i in 0..t.len() {
        if w(i) == "union" {
            let mut j = i + 1;
            if matches!(w(j), "all" | "distinct") {
                j += 1;
            }
            while k(j) == Some(Kind::Open) {
                j += 1;
            }
            if w(j) == "select" || k(j) == Some(Kind::Func) && w(j) == "select" {
                return Some("sqli-union");
            }
        }
        // A subquery: `(select x from`, `(select 1`, `(select @@...`.
        if k(i) == Some(Kind::Open) && matches!(w(i + 1), "select") && subquery_follows(s, t, i + 2) {
            return Some("sqli-subquery");
        }
    }
    // Where the spliced value ends its first part: after the string we started in (quoted),
    // or after its leading operand (a number, a word, closing parentheses).
    let mut i = 0;
    if quoted || matches!(k(0), Some(Kind::Num | Kind::Word | Kind::Str | Kind::Var)) {
        i = 1;
    } else if k(0) != Some(Kind::Logic) && k(0) != Some(Kind::Semi) && k(0) != Some(Kind::Close) {
        return None;
    }
    while k(i) == Some(Kind::Close) {
        i += 1;
    }
    let broke_paren = i > usize::from(quoted || matches!(k(0), Some(Kind::Num | Kind::Word | Kind::Str | Kind::Var)));
    match k(i) {
        // `' OR 1=1`, `1 AND SLEEP(5)`, `') OR ('a'='a`.
        Some(Kind::Logic) => {
            let mut j = i + 1;
            while k(j) == Some(Kind::Open) || w(j) == "not" || (k(j) == Some(Kind::Op) && w(j) == "!") {
                j += 1;
            }
            match k(j) {
                Some(Kind::Func) => return Some("sqli-boolean"),
                Some(Kind::Word) if w(j) == "select" => return Some("sqli-boolean"),
                Some(Kind::Num | Kind::Str | Kind::Word | Kind::Var) => {
                    if k(j + 1) == Some(Kind::Op) && w(j + 1) != "!" {
                        return Some("sqli-boolean");
                    }
                    // `' or true--`, `' or 1#`: only after a quote or parenthesis break.
                    if (quoted || broke_paren) && matches!(k(j + 1), None | Some(Kind::Comment | Kind::Semi)) {
                        return Some("sqli-boolean");
                    }
                }
                _ => {}
            }
        }
        // `admin'--`, `1)#`.
        Some(Kind::Comment) if quoted || broke_paren => return Some("sqli-comment"),
        // `'; DROP TABLE`, `1; SELECT`.
        Some(Kind::Semi) if quoted || broke_paren || matches!(k(0), Some(Kind::Num | Kind::Semi)) => {
            let stmt = w(i + 1);
            if STATEMENTS.contains(&stmt) && (k(i + 2).is_some() || matches!(stmt, "shutdown")) {
                return Some("sqli-stacked");
            }
        }
        // After a bare word (`books;SELECT COUNT(*) FROM …`), only a statement that goes on
        // as SQL ("sale; select one" is prose).
        Some(Kind::Semi) => {
            let stmt = w(i + 1);
            let goes_on = match (stmt, k(i + 2), w(i + 2)) {
                (_, Some(Kind::Func | Kind::Num | Kind::Var | Kind::Str), _) => true,
                (_, Some(Kind::Op), "*") => true,
                (
                    "drop" | "create" | "alter" | "truncate",
                    _,
                    "table" | "database" | "user" | "procedure" | "function",
                ) => true,
                ("insert" | "replace", _, "into") | ("delete", _, "from") => true,
                ("exec" | "execute", Some(Kind::Word), name) => {
                    name.starts_with("xp_") || name.starts_with("sp_") || name.starts_with("master.")
                }
                ("waitfor", _, "delay" | "time") => true,
                _ => false,
            };
            if STATEMENTS.contains(&stmt) && goes_on {
                return Some("sqli-stacked");
            }
        }
        // `' = '`, `' like '%`, `'||'`: an operator right after the quote breaks out.
        Some(Kind::Op) if quoted && t.len() > i + 1 => {
            // Comparisons and concatenation take any operand; arithmetic and `<`/`>` only
            // SQL-looking ones ("kids'-non-stick", "token '<'" are prose).
            let op = w(i);
            let strong = matches!(op, "=" | "<>" | "!=" | "||" | "like" | "rlike" | "regexp" | ":=");
            let next = k(i + 1);
            let sqlish = matches!(next, Some(Kind::Num | Kind::Func | Kind::Open | Kind::Var))
                || next == Some(Kind::Str) && t.len() > i + 2;
            if strong && matches!(next, Some(Kind::Str | Kind::Word)) || sqlish {
                return Some("sqli-operator");
            }
        }
        // `admin ORDER BY 3--`: a column count probe cut off by a comment, even after a word.
        Some(Kind::Word)
            if k(0) == Some(Kind::Word)
                && matches!(w(i), "order" | "group")
                && w(i + 1) == "by"
                && k(i + 2) == Some(Kind::Num)
                && k(i + 3) == Some(Kind::Comment) =>
        {
            return Some("sqli-order-by");
        }
        Some(Kind::Word) if quoted || broke_paren || k(0) == Some(Kind::Num) => {
            // `1 ORDER BY 3--`, `' GROUP BY x HAVING 1=1`, `' PROCEDURE ANALYSE`.
            match (w(i), w(i + 1)) {
                ("order" | "group", "by") if matches!(k(i + 2), Some(Kind::Num | Kind::Word)) => {
                    if matches!(k(i + 3), None | Some(Kind::Comment | Kind::Comma | Kind::Logic | Kind::Word)) {
                        return Some("sqli-order-by");
                    }
                }
                ("having", _) if matches!(k(i + 2), Some(Kind::Op)) => return Some("sqli-boolean"),
                ("limit" | "offset", _) if k(i + 1) == Some(Kind::Num) && k(i + 2) != Some(Kind::Word) => {
                    return Some("sqli-order-by");
                }
                ("into", "outfile" | "dumpfile") => return Some("sqli-function"),
                _ => {}
            }
        }
        _ => {}
    }
    None
}

/// After `(select`: something a query has (a number, `*`, a call, a variable, a string,
/// `null`, or `from` before the parenthesis closes).
fn subquery_follows(s: &str, t: &[Token], from: usize) -> bool {
    for x in t.iter().skip(from) {
        match x.kind {
            Kind::Num | Kind::Func | Kind::Var | Kind::Str => return true,
            Kind::Op if word(s, x) == "*" => return true,
            Kind::Word if matches!(word(s, x), "from" | "null" | "case" | "top" | "distinct") => return true,
            Kind::Close => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injections_in_each_context() {
        for attack in [
            "1 or 1=1",
            "' or '1'='1",
            "admin'--",
            "admin' #",
            "') or ('a'='a",
            "\" or \"\"=\"",
            "1 and sleep(5)",
            "1' and sleep(5) and '1'='1",
            "-1 union all select null,null--",
            "1 union/**/select 1,2",
            "1/*!50000union*/ /*!50000select*/ 1",
            "1; drop table users--",
            "'; exec master..xp_cmdshell 'dir'--",
            "1 order by 3--",
            "1' and extractvalue(1,concat(0x5c,version()))--",
            "1 and 1234=(select count(*) from information_schema.tables)",
            "1) and (select 1 from (select(sleep(5)))a)--",
            "' or true--",
            "1 rlike (select (case when (1=1) then 1 else 0x28 end))",
            "' || (select 1) || '",
            "1 and 1=1",
            "'='",
            "1' waitfor delay '0:0:5'--",
            "-7685) or 5106=5106 and (9975=9975",
            "-3378 or 3598=3598",
            "1 and sleep(5)",
            "1 and (case when (1=1) then 1 else 0 end)=1",
            "books;select count(*) from all_users t1,all_users t2--",
            "admin order by 4631-- dupm",
        ] {
            assert!(detect(attack).is_some(), "missed {attack:?}");
        }
    }

    #[test]
    fn prose_with_quotes_and_sql_words_passes() {
        for benign in [
            "o'brien",
            "rock 'n' roll",
            "select a size from the drop-down",
            "tom and jerry",
            "1 or 2 items",
            "i'm sure it's fine",
            "\"hello\" she said",
            "5' 10\" tall",
            "order by price",
            "fish & chips; salt",
            "the union of two sets",
            "it's 5 o'clock, or later",
            "don't select all",
            "a-b testing",
            "c'est la vie -- really",
            "sort by date (newest first)",
            "count the items (about 5)",
            "we'll see; update me later",
            "kids'-non-stick air fryer",
            "syntaxerror: unexpected token '<'",
            "sleep(5 hours) is not enough",
            "case when the delivery fails",
            "big sale; select one today",
            "sort order by 2 columns",
        ] {
            assert_eq!(detect(benign), None, "flagged {benign:?}");
        }
    }
}
