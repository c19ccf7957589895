//! Static files: content types, validators, ranges, index files and traversal attempts.

use std::time::Duration;

use crate::harness::*;

fn setup() -> Gatehouse {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("public");
    std::fs::create_dir_all(root.join("docs")).expect("mkdir");
    std::fs::write(root.join("index.html"), "<h1>home</h1>").expect("write");
    std::fs::write(root.join("app.js"), "console.log(1)").expect("write");
    std::fs::write(root.join("data.json"), "{\"a\":1}").expect("write");
    std::fs::write(root.join("logo.png"), [0x89u8, b'P', b'N', b'G']).expect("write");
    std::fs::write(root.join("docs/index.html"), "docs index").expect("write");
    std::fs::write(root.join("digits.txt"), "0123456789").expect("write");
    std::fs::write(root.join("with space.txt"), "spaced").expect("write");
    // A secret next to the root, and symlinks pointing at it from inside: to the file, and
    // to its directory.
    std::fs::write(dir.path().join("secret.txt"), "top secret").expect("write");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).expect("symlink");
    std::os::unix::fs::symlink(dir.path(), root.join("up")).expect("symlink");
    // Symlinks that stay inside the root: absolute and relative, to a file and a directory.
    std::os::unix::fs::symlink(root.join("digits.txt"), root.join("alias.txt")).expect("symlink");
    std::os::unix::fs::symlink("../digits.txt", root.join("docs/relative.txt")).expect("symlink");
    std::os::unix::fs::symlink("docs", root.join("manual")).expect("symlink");
    write_config(dir.path(), "", &[("files", "host: files.test\nstatic: public\n")]);
    Gatehouse::start_in(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_types_validators_and_ranges() {
    let gh = setup();
    let a = gh.http;
    let r = get(a, "files.test", "/").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    for (path, ct) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/logo.png", "image/png"),
    ] {
        assert_eq!(get(a, "files.test", path).await.header("content-type"), Some(ct), "{path}");
    }
    assert_eq!(get(a, "files.test", "/with%20space.txt").await.text(), "spaced");

    // Directory index, and a redirect to add the slash.
    assert_eq!(get(a, "files.test", "/docs/").await.text(), "docs index");
    let r = get(a, "files.test", "/docs").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/"));

    // Validators.
    let r = get(a, "files.test", "/digits.txt").await;
    let etag = r.header("etag").expect("etag").to_string();
    let lm = r.header("last-modified").expect("last-modified").to_string();
    assert_eq!(get_with(a, "files.test", "/digits.txt", &[("if-none-match", &etag)]).await.status, 304);
    assert_eq!(get_with(a, "files.test", "/digits.txt", &[("if-modified-since", &lm)]).await.status, 304);
    assert_eq!(get_with(a, "files.test", "/digits.txt", &[("if-none-match", "\"other\"")]).await.status, 200);

    // Ranges.
    let r = get_with(a, "files.test", "/digits.txt", &[("range", "bytes=2-5")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "2345");
    assert_eq!(r.header("content-range"), Some("bytes 2-5/10"));
    assert_eq!(get_with(a, "files.test", "/digits.txt", &[("range", "bytes=-3")]).await.text(), "789");
    let r = get_with(a, "files.test", "/digits.txt", &[("range", "bytes=50-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    // If-Range with a stale validator: the whole file.
    let r = get_with(a, "files.test", "/digits.txt", &[("range", "bytes=2-5"), ("if-range", "\"stale\"")]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "0123456789"));

    // HEAD has headers, no body.
    let head = http::Request::head("/digits.txt")
        .header("host", "files.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let r = send(a, head).await;
    assert_eq!(r.header("content-length"), Some("10"));
    assert!(r.body.is_empty());
    let post = http::Request::post("/digits.txt")
        .header("host", "files.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let r = send(a, post).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

/// Symbolic links are followed while their target stays inside the root (documented in
/// docs/configuration.md, "Static files"); one that leads out is a 404, as if missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_follow_symlinks_only_inside_the_root() {
    let gh = setup();
    let a = gh.http;
    let r = get(a, "files.test", "/alias.txt").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "0123456789"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(get(a, "files.test", "/docs/relative.txt").await.text(), "0123456789");
    assert_eq!(get(a, "files.test", "/manual/").await.text(), "docs index");
    assert_eq!(get(a, "files.test", "/manual/index.html").await.text(), "docs index");
    // What counts is where the whole path finally resolves: out through `up` and back in
    // is inside.
    assert_eq!(get(a, "files.test", "/up/public/digits.txt").await.text(), "0123456789");
    for outside in ["/leak.txt", "/up/secret.txt"] {
        let r = get(a, "files.test", outside).await;
        assert_eq!(r.status, 404, "{outside}: {}", r.text());
        assert!(!r.text().contains("top secret"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_refuse_traversal() {
    let gh = setup();
    let attempts: &[&[u8]] = &[
        b"GET /../secret.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /docs/../../secret.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /..%2fsecret.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /docs/..%2f..%2fsecret.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /%252e%252e/secret.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /leak.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /digits.txt%00.html HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
        b"GET /..\\secret.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
    ];
    for req in attempts {
        let out = raw_async(gh.http, req, Duration::from_secs(3)).await;
        assert!(!out.contains("top secret"), "{} leaked: {out}", String::from_utf8_lossy(req));
        let status: u16 = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(status == 404 || status == 400, "{} -> {out}", String::from_utf8_lossy(req));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_under_a_stripped_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("site/guide")).expect("mkdir");
    std::fs::write(dir.path().join("site/guide/index.html"), "guide").expect("write");
    write_config(
        dir.path(),
        "",
        &[("docs", "host: docs.test\nroutes:\n  - path: /docs\n    strip_prefix: true\n    static: site\n")],
    );
    let gh = Gatehouse::start_in(dir);
    assert_eq!(get(gh.http, "docs.test", "/docs/guide/").await.text(), "guide");
    // The slash redirect points at the public path, not the stripped one.
    let r = get(gh.http, "docs.test", "/docs/guide").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/guide/"));
}

/// `fallback`: an app's `index.html` answers every path that names no file (nginx's
/// `try_files $uri $uri/ /index.html`); `respond` answers with a fixed status and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_file_answers_missing_paths_and_respond_answers_fixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("app");
    std::fs::create_dir_all(root.join("assets")).expect("mkdir");
    std::fs::write(root.join("index.html"), "<div id=app>").expect("write");
    std::fs::write(root.join("assets/app.js"), "run()").expect("write");
    let key = crate::auth::hash_password("k-123456", true);
    let site = format!(
        "host: app.test\nroutes:\n  - path: /health\n    match: exact\n    respond: {{status: 200, body: \"ok\\n\"}}\n  - path: /gone\n    respond: {{status: 410}}\n  - path: /secret\n    respond: {{status: 200, body: \"for members\"}}\n    options:\n      auth: {{api_key: {{keys: {{ci: '{key}'}}}}}}\n  - path: /\n    static: app\n    fallback: /index.html\n"
    );
    write_config(dir.path(), "", &[("app", &site)]);
    let gh = Gatehouse::start_in(dir);
    let a = gh.http;
    for path in ["/", "/users/42", "/deep/link/x.html"] {
        let r = get(a, "app.test", path).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "<div id=app>"), "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
    }
    // Files that exist are themselves. A dot-segment path is normalised first (nginx does
    // the same), so it names a missing file inside the root and gets the app; an encoded
    // slash that would step out is refused, not answered with the app.
    assert_eq!(get(a, "app.test", "/assets/app.js").await.text(), "run()");
    assert_eq!(get(a, "app.test", "/assets/%2e%2e/%2e%2e/etc/passwd").await.text(), "<div id=app>");
    let out = get(a, "app.test", "/assets/..%2f..%2f..%2fetc/passwd").await;
    assert_eq!(out.status, 404, "{}", out.text());

    let r = get(a, "app.test", "/health").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = get(a, "app.test", "/gone/page").await;
    assert_eq!((r.status.as_u16(), r.body.len()), (410, 0));
    // A fixed answer is the route's action: its auth comes first.
    assert_eq!(get(a, "app.test", "/secret").await.status, 401);
    let r = get_with(a, "app.test", "/secret", &[("x-api-key", "k-123456")]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "for members"));
    let head = request_with(a, http::Method::HEAD, "app.test", "/health", &[]).await;
    assert_eq!((head.status.as_u16(), head.header("content-length"), head.body.len()), (200, Some("3"), 0));
}
