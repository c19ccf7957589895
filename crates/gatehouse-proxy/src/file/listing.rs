//! Directory listings for `static` routes with `browse: true` (and `gatehouse serve
//! --browse`): an HTML page of the directory's entries, directories first, each a relative
//! link. Names starting with `.` are left out of the listing (files the route serves by
//! name are a separate choice, `dotfiles`), and so are symbolic links that lead out of the
//! root, which the file server would refuse anyway.

use std::fmt::Write;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Outgoing;

/// At most this many entries are listed; a larger directory says how many were left out,
/// so one request cannot make a page of unbounded size.
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    name: String,
    dir: bool,
    len: u64,
    modified: SystemTime,
}

/// The listing of `dir` (inside `root`, both canonical), for the request path `public`
/// (which ends with `/`). `head` leaves the body out.
pub(super) async fn render(dir: &Path, root: &Path, public: &str, head: bool) -> Response<Outgoing> {
    let (entries, left_out) = match read(dir, root).await {
        Ok(found) => found,
        Err(_) => return super::plain(StatusCode::NOT_FOUND),
    };
    let page = page(public, &entries, left_out);
    let len = page.len();
    let body = if head { Outgoing::Empty } else { Outgoing::full(Bytes::from(page)) };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // A listing changes whenever the directory does; never reuse a cached one unchecked.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The entries to list, sorted (directories first, then by name), and how many were left
/// out past `MAX_ENTRIES`. One blocking task reads the whole directory (a request costs one
/// trip to the blocking pool, not one per entry); past the cap, entries are only counted.
async fn read(dir: &Path, root: &Path) -> std::io::Result<(Vec<Entry>, usize)> {
    let (dir, root) = (dir.to_path_buf(), root.to_path_buf());
    tokio::task::spawn_blocking(move || read_blocking(&dir, &root))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

fn read_blocking(dir: &Path, root: &Path) -> std::io::Result<(Vec<Entry>, usize)> {
    let mut entries = Vec::new();
    let mut left_out = 0;
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let Ok(name) = e.file_name().into_string() else { continue };
        if name.starts_with('.') {
            continue;
        }
        if entries.len() == MAX_ENTRIES {
            left_out += 1;
            continue;
        }
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_symlink() {
            match std::fs::canonicalize(e.path()) {
                Ok(real) if real.starts_with(root) => {}
                _ => continue,
            }
        }
        // Through symbolic links: a link to a directory is listed as one.
        let Ok(meta) = std::fs::metadata(e.path()) else { continue };
        entries.push(Entry {
            name,
            dir: meta.is_dir(),
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
    Ok((entries, left_out))
}

fn page(public: &str, entries: &[Entry], left_out: usize) -> String {
    let title = html_escape(&decoded(public));
    let mut out = String::with_capacity(512 + entries.len() * 160);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:0 1.5em 0 0}}td.n{{text-align:right}}</style>\
         </head><body>\n<h1>Index of {title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n"
    );
    if public != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let slash = if e.dir { "/" } else { "" };
        let size = if e.dir { String::new() } else { human_size(e.len) };
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{href}{slash}\">{name}{slash}</a></td><td class=\"n\">{size}</td><td>{modified}</td></tr>",
            href = percent_encode(&e.name),
            name = html_escape(&e.name),
            modified = httpdate::fmt_http_date(e.modified),
        );
    }
    out.push_str("</table>\n");
    if left_out > 0 {
        let _ = writeln!(out, "<p>{left_out} more entries not shown (at most {MAX_ENTRIES} are listed).</p>");
    }
    out.push_str("</body></html>\n");
    out
}

/// The request path as a reader would write it, for the page title.
fn decoded(public: &str) -> String {
    super::percent_decode(public).unwrap_or_else(|| public.to_string())
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A file name as one path segment of a link: everything but RFC 3986's unreserved
/// characters is percent-encoded, so `#`, `?`, `%` and spaces in names link correctly.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_in_text_and_encoded_in_links() {
        let e = Entry { name: "<a&b> #1?.txt".into(), dir: false, len: 1536, modified: SystemTime::UNIX_EPOCH };
        let page = page("/docs%20x/", &[e], 0);
        assert!(page.contains("Index of /docs x/"), "{page}");
        assert!(page.contains("href=\"%3Ca%26b%3E%20%231%3F.txt\""), "{page}");
        assert!(page.contains(">&lt;a&amp;b&gt; #1?.txt</a>"), "{page}");
        assert!(page.contains("1.5 KiB") && page.contains("href=\"../\""), "{page}");
        assert!(!page.contains("<a&b>"), "{page}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024 * 1024 * 3), "3.0 MiB");
        assert_eq!(human_size(u64::MAX), "16777216.0 TiB");
    }
}
