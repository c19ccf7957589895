//! Static files: content types, ETag / Last-Modified validation, single byte ranges,
//! index files, directory listings when asked for (`listing`), and no way out of the root directory (`..`, encoded slashes, symlinks).
//!
//! File reads go through tokio's blocking pool; this module never blocks a worker.

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::TryStreamExt;
use gatehouse_config::StaticDir;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::body::{BoxError, Outgoing};

mod listing;

/// Serves `rel` (a normalised, still percent-encoded path) from `dir`. `public` is the path
/// the client asked for (before strip_prefix/rewrite), used for the trailing-slash redirect.
pub async fn serve(
    dir: &StaticDir,
    rel: &str,
    public: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Outgoing> {
    if method != Method::GET && method != Method::HEAD {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, HEAD")
            .body(Outgoing::Empty)
            .unwrap_or_else(|_| plain(StatusCode::METHOD_NOT_ALLOWED));
    }
    let Some(relative) = safe_relative(rel) else {
        return plain(StatusCode::NOT_FOUND);
    };
    if !dir.dotfiles && hidden(&relative) {
        return plain(StatusCode::NOT_FOUND);
    }
    let Ok(root) = tokio::fs::canonicalize(&dir.root).await else {
        return plain(StatusCode::NOT_FOUND);
    };
    let mut path = root.join(&relative);
    let mut found = tokio::fs::metadata(&path).await.ok();
    if found.as_ref().is_some_and(|m| !m.is_dir() && rel.ends_with('/')) {
        // `/file.bin/` names a directory that does not exist (nginx: 404).
        found = None;
    }
    // A path that names nothing gets the fallback file (an app's index.html), as nginx's
    // `try_files $uri $uri/ /index.html`; the fallback's own absence is a 404.
    if let (None, Some(fallback)) = (&found, &dir.fallback) {
        path = root.join(fallback);
        found = tokio::fs::metadata(&path).await.ok().filter(|m| m.is_file());
    }
    let Some(mut meta) = found else {
        return plain(StatusCode::NOT_FOUND);
    };
    if meta.is_dir() {
        if !rel.ends_with('/') {
            // Like nginx: a directory without its slash redirects, so relative links work.
            return redirect(&format!("{public}/"));
        }
        let mut found = None;
        for name in &dir.index {
            let candidate = path.join(name);
            if let Ok(m) = tokio::fs::metadata(&candidate).await
                && m.is_file()
            {
                found = Some((candidate, m));
                break;
            }
        }
        let Some((p, m)) = found else {
            if dir.browse {
                // Only a directory that resolves inside the root is listed.
                return match tokio::fs::canonicalize(&path).await {
                    Ok(real) if real.starts_with(&root) => {
                        listing::render(&real, &root, public, method == Method::HEAD).await
                    }
                    _ => plain(StatusCode::NOT_FOUND),
                };
            }
            return plain(StatusCode::NOT_FOUND);
        };
        path = p;
        meta = m;
    }
    if !meta.is_file() {
        return plain(StatusCode::NOT_FOUND);
    }
    // Symlinks may point anywhere; only serve what resolves inside the root.
    match tokio::fs::canonicalize(&path).await {
        Ok(real) if real.starts_with(&root) => {}
        _ => return plain(StatusCode::NOT_FOUND),
    }

    let len = meta.len();
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let secs = mtime.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let etag = format!("\"{secs:x}-{len:x}\"");
    let last_modified = httpdate::fmt_http_date(mtime);

    if not_modified(headers, &etag, secs) {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &etag)
            .header(header::LAST_MODIFIED, &last_modified)
            .body(Outgoing::Empty)
            .unwrap_or_else(|_| plain(StatusCode::NOT_MODIFIED));
    }

    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if if_range_ok(headers, &etag, secs) => match parse_range(r, len) {
            RangeSpec::Whole => None,
            RangeSpec::Part(a, b) => Some((a, b)),
            RangeSpec::Unsatisfiable => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .body(Outgoing::Empty)
                    .unwrap_or_else(|_| plain(StatusCode::RANGE_NOT_SATISFIABLE));
            }
        },
        _ => None,
    };

    let (status, start, count) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, len),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(&path))
        .header(header::CONTENT_LENGTH, count)
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some((a, b)) = range {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
    }
    if method == Method::HEAD || count == 0 {
        return builder.body(Outgoing::Empty).unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return plain(StatusCode::NOT_FOUND);
    };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return plain(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let stream = ReaderStream::with_capacity(file.take(count), 64 * 1024)
        .map_ok(http_body::Frame::data)
        .map_err(|e| -> BoxError { Box::new(e) });
    let body = StreamBody::new(stream).boxed_unsync();
    builder.body(Outgoing::Boxed(body)).unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

fn plain(status: StatusCode) -> Response<Outgoing> {
    let mut r = Response::new(Outgoing::full(Bytes::from(format!("{status}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn redirect(to: &str) -> Response<Outgoing> {
    let mut r = plain(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Decodes the request path into a relative file path, refusing anything that could step
/// outside the root once decoded (`..`, NUL, encoded separators producing those).
fn safe_relative(rel: &str) -> Option<PathBuf> {
    let decoded = percent_decode(rel.trim_start_matches('/'))?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let p = Path::new(&decoded);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// A path with a file or directory name starting with `.` (`.git/config`, `.env`), other
/// than `.well-known` (RFC 8615: meant to be public).
fn hidden(relative: &Path) -> bool {
    relative.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name.starts_with('.') && name != ".well-known"
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (h, l) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml" | "svg+xml" | "manifest+json");
    let value = if text { format!("{mime}; charset=utf-8") } else { mime.to_string() };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag
    })
}

fn not_modified(h: &HeaderMap, etag: &str, mtime_secs: u64) -> bool {
    if let Some(inm) = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return etag_matches(inm, etag);
    }
    if let Some(ims) = h.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok())
        && let Ok(t) = httpdate::parse_http_date(ims)
    {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        return mtime_secs <= since;
    }
    false
}

/// `If-Range` lets a client resume only if the file is unchanged.
fn if_range_ok(h: &HeaderMap, etag: &str, mtime_secs: u64) -> bool {
    match h.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) => httpdate::parse_http_date(v)
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .is_some_and(|d| d.as_secs() == mtime_secs),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One byte range (`a-b`, `a-`, `-n`). Several ranges are answered with the whole file,
/// which RFC 9110 allows.
/// A byte position: ASCII digits only; a number past u64 is as good as u64::MAX (a range
/// end past the file is clamped to it, a start past it is unsatisfiable).
fn position(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

fn parse_range(v: &str, len: u64) -> RangeSpec {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeSpec::Whole;
    };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = if a.is_empty() {
        match position(b) {
            None => return RangeSpec::Whole,
            Some(0) => return RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => return RangeSpec::Unsatisfiable,
            Some(n) => (len.saturating_sub(n), len - 1),
        }
    } else {
        let Some(start) = position(a) else {
            return RangeSpec::Whole;
        };
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            match position(b) {
                Some(e) if e >= start => e.min(len.saturating_sub(1)),
                _ => return RangeSpec::Whole,
            }
        };
        if start >= len {
            return RangeSpec::Unsatisfiable;
        }
        (start, end)
    };
    RangeSpec::Part(parsed.0, parsed.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), RangeSpec::Part(0, 4));
        assert_eq!(parse_range("bytes=5-", 10), RangeSpec::Part(5, 9));
        assert_eq!(parse_range("bytes=-3", 10), RangeSpec::Part(7, 9));
        assert_eq!(parse_range("bytes=-30", 10), RangeSpec::Part(0, 9));
        assert_eq!(parse_range("bytes=3-100", 10), RangeSpec::Part(3, 9));
        assert_eq!(parse_range("bytes=10-", 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), RangeSpec::Whole);
        assert_eq!(parse_range("items=0-1", 10), RangeSpec::Whole);
        // Positions past u64 are clamped, not taken for garbage (which served the whole
        // file with 200).
        assert_eq!(parse_range("bytes=0-99999999999999999999999", 10), RangeSpec::Part(0, 9));
        assert_eq!(parse_range("bytes=-99999999999999999999999", 10), RangeSpec::Part(0, 9));
        assert_eq!(parse_range("bytes=99999999999999999999999-", 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=+1-2", 10), RangeSpec::Whole);
        assert_eq!(parse_range("bytes=1-2x", 10), RangeSpec::Whole);
    }

    #[test]
    fn traversal_is_refused_after_decoding() {
        assert_eq!(safe_relative("/a/b.txt"), Some(PathBuf::from("a/b.txt")));
        assert_eq!(safe_relative("/..%2f..%2fetc/passwd"), None);
        assert_eq!(safe_relative("/a%00b"), None);
        assert_eq!(safe_relative("/%2e%2e/x"), None);
    }
}
