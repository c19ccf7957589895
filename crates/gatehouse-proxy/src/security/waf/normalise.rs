//! What the WAF's detectors read: a value decoded the ways a backend or a browser might
//! decode it, so an encoding cannot hide an attack.
//!
//! - percent-decoding, repeated while it changes (double and triple encoding), with IIS's
//!   `%uXXXX` and `+` as a space in query strings and forms;
//! - overlong UTF-8 forms of ASCII (`%c0%af` for `/`), which lenient decoders accept;
//! - full-width forms (`＜script＞`) folded to ASCII, zero-width characters dropped: the
//!   part of Unicode compatibility normalisation (NFKC) that attacks use;
//! - NUL bytes dropped (and reported: a NUL in a path or parameter is an attack of its own);
//! - ASCII lower case.
//!
//! Linear in the input; allocates only when a value needs decoding.

use std::borrow::Cow;

/// Percent-decoding rounds at most: three catch triple encoding; more would let a client
/// make the WAF work without bound.
const ROUNDS: usize = 3;

/// A value as the detectors see it.
pub struct Normalised<'a> {
    /// Decoded and lower-cased.
    pub text: Cow<'a, str>,
    /// The value held a NUL byte once decoded.
    pub nul: bool,
}

/// Whether `b` needs no decoding or folding at all (the common case: plain words, numbers,
/// paths).
fn plain(b: &[u8], plus: bool) -> bool {
    b.iter().all(|&c| c.is_ascii() && c != b'%' && !(plus && c == b'+') && !c.is_ascii_uppercase() && c != 0)
}

/// Decodes `raw` for inspection. `plus`: `+` means a space (query strings and form bodies).
pub fn normalise(raw: &[u8], plus: bool) -> Normalised<'_> {
    if plain(raw, plus) {
        // ASCII without escapes: already its own normal form.
        if let Ok(s) = std::str::from_utf8(raw) {
            return Normalised { text: Cow::Borrowed(s), nul: false };
        }
    }
    let mut bytes: Cow<'_, [u8]> = Cow::Borrowed(raw);
    for round in 0..ROUNDS {
        let escaped = bytes.contains(&b'%') || plus && round == 0 && bytes.contains(&b'+');
        if !escaped {
            break;
        }
        let decoded = percent_decode(&bytes, plus && round == 0);
        if decoded == *bytes {
            break;
        }
        bytes = Cow::Owned(decoded);
    }
    let bytes = fold_overlong(&bytes);
    let nul = bytes.contains(&0);
    // ASCII (the usual case): lower-cased in place of the character-by-character fold.
    if bytes.is_ascii() {
        let mut lower = bytes.into_owned();
        lower.make_ascii_lowercase();
        lower.retain(|&c| c != 0);
        return Normalised { text: Cow::Owned(String::from_utf8(lower).unwrap_or_default()), nul };
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\0' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{00ad}' => {}
            // Full-width ASCII forms, and the ideographic space.
            '\u{ff01}'..='\u{ff5e}' => out.push(char::from_u32(c as u32 - 0xfee0).unwrap_or(c).to_ascii_lowercase()),
            '\u{3000}' => out.push(' '),
            c => out.extend(c.to_lowercase()),
        }
    }
    Normalised { text: Cow::Owned(out), nul }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// One round of percent-decoding; malformed escapes stay as they are.
pub fn percent_decode(b: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if let (Some(h), Some(l)) = (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            // IIS's %uXXXX.
            if matches!(b.get(i + 1), Some(b'u' | b'U'))
                && let Some(v) = b
                    .get(i + 2..i + 6)
                    .and_then(|d| d.iter().try_fold(0u32, |acc, &c| hex(c).map(|h| acc << 4 | u32::from(h))))
            {
                let ch = char::from_u32(v).unwrap_or('\u{fffd}');
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 6;
                continue;
            }
        }
        out.push(if plus && c == b'+' { b' ' } else { c });
        i += 1;
    }
    out
}

/// Overlong two- and three-byte UTF-8 encodings of ASCII, turned into the ASCII byte
/// (`c0 af` -> `/`); strict UTF-8 would make them U+FFFD, but some decoders accept them.
fn fold_overlong(b: &[u8]) -> Cow<'_, [u8]> {
    if !b.iter().any(|&c| c == 0xc0 || c == 0xc1 || c == 0xe0) {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let cont = |j: usize| b.get(j).filter(|&&x| x & 0xc0 == 0x80).map(|&x| x & 0x3f);
        if (c == 0xc0 || c == 0xc1)
            && let Some(x) = cont(i + 1)
        {
            out.push((c & 0x1f) << 6 | x);
            i += 2;
            continue;
        }
        if c == 0xe0
            && let (Some(y), Some(x)) = (cont(i + 1), cont(i + 2))
            && y < 0x02
        {
            out.push(y << 6 | x);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

/// HTML character references, decoded for the XSS detector: numeric (`&#60;`, `&#x3c;`,
/// with or without the `;`) and the named ones attacks use. Input is lower case.
pub fn html_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    const NAMED: [(&str, char); 14] = [
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("amp", '&'),
        ("colon", ':'),
        ("tab", '\t'),
        ("newline", '\n'),
        ("lpar", '('),
        ("rpar", ')'),
        ("sol", '/'),
        ("bsol", '\\'),
        ("grave", '`'),
        ("equals", '='),
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (ch, used) = if let Some(num) = after.strip_prefix('#') {
            let (digits, radix, skip) = match num.strip_prefix('x') {
                Some(h) => (h, 16, 2),
                None => (num, 10, 1),
            };
            let n = digits.bytes().take_while(|c| c.is_ascii_hexdigit() && (radix == 16 || c.is_ascii_digit())).count();
            // Leading zeros are allowed and unbounded in browsers; the value is not.
            let value = digits[..n].trim_start_matches('0');
            match (n, u32::from_str_radix(if value.is_empty() { "0" } else { value }, radix)) {
                (1.., Ok(v)) if value.len() <= 7 => {
                    let semi = usize::from(digits[n..].starts_with(';'));
                    (char::from_u32(v), skip + n + semi)
                }
                _ => (None, 0),
            }
        } else {
            NAMED.iter().find(|(name, _)| after.starts_with(name)).map_or((None, 0), |(name, c)| {
                (Some(*c), name.len() + usize::from(after[name.len()..].starts_with(';')))
            })
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalise(s.as_bytes(), true).text.into_owned()
    }

    #[test]
    fn decodes_what_backends_decode() {
        assert_eq!(n("plain-path/x.js"), "plain-path/x.js");
        assert_eq!(n("UNION+SELECT"), "union select");
        assert_eq!(n("%2527%20OR"), "' or", "double encoding");
        assert_eq!(n("%252e%252e%252f"), "../");
        assert_eq!(n("%u003cscript%u003e"), "<script>", "IIS %u");
        assert_eq!(n("%c0%ae%c0%ae%c0%af"), "../", "overlong UTF-8");
        assert_eq!(n("\u{ff1c}SCRIPT\u{ff1e}"), "<script>", "full-width forms");
        assert_eq!(n("sc\u{200b}ript"), "script", "zero-width characters");
        assert_eq!(n("%zz%4"), "%zz%4", "malformed escapes stay");
        let x = normalise(b"a%00b", false);
        assert!(x.nul);
        assert_eq!(x.text, "ab");
        assert_eq!(normalise(b"a+b", false).text, "a+b", "+ is a space only in query strings");
    }

    #[test]
    fn html_references() {
        assert_eq!(html_decode("&lt;script&gt;"), "<script>");
        assert_eq!(html_decode("java&#x73;cript&colon;"), "javascript:");
        assert_eq!(html_decode("&#0000106avascript"), "javascript");
        assert_eq!(html_decode("fish &amp; chips & co"), "fish & chips & co");
        assert_eq!(html_decode("&#99999999999;"), "&#99999999999;");
    }
}
