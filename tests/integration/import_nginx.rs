//! `gatehouse import nginx` against real nginx: each configuration in
//! tests/integration/import_nginx/ runs in nginx as written and in Gatehouse as imported,
//! side by side, with the same backends and files. The same requests must get the same
//! status, body (or, when proxied, the same backend and path) and Location. What the
//! import reports as not translated is asserted with its file and line, and left out of
//! the comparison.
//!
//! nginx runs as the user running the tests, with its prefix, pid file and temporary
//! files in a temporary directory and its log on stderr (kept in `nginx.log` there). As
//! root its workers run as `nobody`, so the test's files are made world-readable.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const NGINX: &str = "/usr/sbin/nginx";

/// The configurations, as the repository holds them.
fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/integration/import_nginx")
}

/// A port nobody listens on now (nginx cannot be given port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// nginx, running one configuration; stopped (TERM, then KILL) when dropped.
struct Nginx {
    child: Option<Child>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with `dir/site.conf` inside an http block, once `write_site(port)` has
    /// written it for a free port; tries another port if that one was taken meanwhile.
    fn start(dir: &Path, write_site: impl Fn(u16)) -> Nginx {
        assert!(Path::new(NGINX).exists(), "install nginx: apt-get install nginx");
        std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
        let main = "worker_processes 1;\nevents { worker_connections 256; }\nhttp {\n    access_log off;\n    include site.conf;\n}\n";
        std::fs::write(dir.join("nginx.conf"), main).expect("nginx.conf");
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            write_site(port);
            let mut child = Command::new(NGINX)
                .args(["-e", "stderr", "-p"])
                .arg(format!("{}/", dir.display()))
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-g")
                .arg(format!("daemon off; error_log stderr; pid {};", dir.join("nginx.pid").display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("nginx.log")).expect("nginx.log"))
                .spawn()
                .expect("spawn nginx");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let up = wait_until_blocking(NET_TIMEOUT, || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Nginx { child: Some(child), addr, dir: dir.to_path_buf() };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.join("nginx.log")).unwrap_or_default();
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx did not start; its log:\n{last_log}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nginx.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // TERM: nginx's master stops its workers too (a KILL would leave them running).
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let stopped = wait_until_blocking(Duration::from_secs(10), || matches!(child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// One configuration served by both.
struct Pair {
    nginx: Nginx,
    gh: Gatehouse,
    /// The configuration file as nginx and the import read it.
    conf: PathBuf,
    /// Its text (placeholders filled in).
    text: String,
    /// What the import printed on stderr, line by line.
    report: Vec<String>,
    _dir: tempfile::TempDir,
}

/// Files and directories under `dir` readable by everyone (nginx's workers run as
/// `nobody` when the tests run as root).
fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            open_up(&path);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
}

/// Serves `name` (a file of tests/integration/import_nginx/) in nginx and, imported, in
/// Gatehouse. `files` are written under the directory that `__ROOT__` names.
fn pair(name: &str, backends: &[&Backend], files: &[(&str, &str)]) -> Pair {
    let dir = tempfile::tempdir().expect("dir");
    let (ngx, root) = (dir.path().join("nginx"), dir.path().join("root"));
    std::fs::create_dir_all(ngx.join("snippets")).expect("nginx dir");
    std::fs::create_dir_all(&root).expect("root");
    for (file, body) in files {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, body).expect("file");
    }
    let snippet = std::fs::read_to_string(configs().join("snippets/headers.conf")).expect("snippet");
    std::fs::write(ngx.join("snippets/headers.conf"), snippet).expect("snippet");
    // nginx needs the file `include fastcgi_params` names; the import skips it by name.
    std::fs::write(ngx.join("fastcgi_params"), "").expect("fastcgi_params");
    open_up(dir.path());

    let template = std::fs::read_to_string(configs().join(name)).expect("configuration");
    let backend = |i: usize| backends.get(i).map(|b| b.addr.to_string()).unwrap_or_else(|| "127.0.0.1:9".into());
    let fill = |port: u16| {
        template
            .replace("__PORT__", &port.to_string())
            .replace("__BACKEND1__", &backend(0))
            .replace("__BACKEND2__", &backend(1))
            .replace("__ROOT__", &root.display().to_string())
    };
    let conf = ngx.join(name);
    std::fs::write(ngx.join("site.conf"), format!("include {name};\n")).expect("site.conf");
    let write_site = |port: u16| std::fs::write(&conf, fill(port)).expect("configuration");

    // Gatehouse: the main file the harness writes, the import into its sites directory.
    let gh_dir = tempfile::tempdir().expect("dir");
    write_config(gh_dir.path(), "", &[]);
    write_site(1);
    let out = output_within(
        Command::new(BIN).args(["import", "nginx"]).arg(&conf).arg("--out").arg(gh_dir.path().join("sites")),
        NET_TIMEOUT,
    )
    .expect("gatehouse import nginx");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "import failed:\n{stdout}{stderr}");
    assert!(stdout.contains("wrote ") && stdout.contains("next: gatehouse check"), "{stdout}");
    let (code, text) = check(gh_dir.path());
    assert_eq!(code, 0, "gatehouse check refused the import:\n{text}");
    let gh = Gatehouse::start_in(gh_dir);

    let nginx = Nginx::start(&ngx, write_site);
    let text = std::fs::read_to_string(&conf).expect("configuration");
    Pair { nginx, gh, conf, text, report: stderr.lines().map(str::to_string).collect(), _dir: dir }
}

/// How the two answers are compared.
#[derive(Clone, Copy)]
enum Want {
    /// Status and body.
    Same,
    /// Status, and the backend and path the JSON echo names.
    Backend,
    /// Status and Location (nginx's absolute form of a relative target made relative).
    Redirect,
    /// Status only (error pages differ).
    Status,
}

impl Pair {
    /// Asserts that the import reported the line of the configuration holding `needle`,
    /// with `reason` in the message: `FILE:LINE: DIRECTIVE: REASON`.
    fn assert_reported(&self, needle: &str, reason: &str) {
        let line =
            self.text.lines().position(|l| l.contains(needle)).map(|i| i + 1).expect("the needle is in the file");
        let prefix = format!("{}:{line}: ", self.conf.display());
        assert!(
            self.report.iter().any(|r| r.starts_with(&prefix) && r.contains(reason)),
            "no report of line {line} ({needle}) with {reason:?}; the import said:\n{}",
            self.report.join("\n")
        );
    }

    /// Asserts that the import did not report the line of the configuration holding
    /// `needle`.
    fn assert_translated(&self, needle: &str) {
        let line =
            self.text.lines().position(|l| l.contains(needle)).map(|i| i + 1).expect("the needle is in the file");
        let prefix = format!("{}:{line}: ", self.conf.display());
        assert!(
            !self.report.iter().any(|r| r.starts_with(&prefix)),
            "line {line} ({needle}) was reported:\n{}",
            self.report.join("\n")
        );
    }

    /// Both answers to GET `path` with `Host: host`, compared as `want` says, and the
    /// response headers `headers` compared too.
    async fn compare(&self, host: &str, path: &str, want: Want, headers: &[&str]) -> (Reply, Reply) {
        let n = get(self.nginx.addr, host, path).await;
        let g = get(self.gh.http, host, path).await;
        let what = format!("GET http://{host}{path}");
        assert_eq!(
            n.status,
            g.status,
            "{what}: nginx {} / gatehouse {}\n{}\n{}",
            n.text(),
            g.text(),
            self.nginx.log(),
            self.gh.log()
        );
        match want {
            Want::Same => assert_eq!(n.text(), g.text(), "{what}"),
            Want::Backend => {
                let (nj, gj) = (n.json(), g.json());
                assert_eq!((&nj["backend"], &nj["uri"]), (&gj["backend"], &gj["uri"]), "{what}");
            }
            Want::Redirect => {
                assert_eq!(self.location(&n, host), g.header("location").map(str::to_string), "{what}");
                assert!(g.header("location").is_some(), "{what}: no Location");
            }
            Want::Status => {}
        }
        for h in headers {
            assert_eq!(n.header(h), g.header(h), "{what}: header {h}");
        }
        (n, g)
    }

    /// nginx's Location with its own `http://host:port` taken off (nginx makes relative
    /// targets absolute; Gatehouse sends them as written).
    fn location(&self, r: &Reply, host: &str) -> Option<String> {
        let l = r.header("location")?;
        for origin in [format!("http://{host}:{}", self.nginx.addr.port()), format!("http://{host}")] {
            if let Some(rest) = l.strip_prefix(&origin).filter(|rest| rest.starts_with('/')) {
                return Some(rest.to_string());
            }
        }
        Some(l.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordpress_static_parts_and_redirects_match_and_php_is_reported() {
    let files = [
        ("readme.html", "<h1>readme</h1>\n"),
        ("favicon.ico", "icon"),
        (".htaccess", "Deny from all\n"),
        ("wp-content/themes/site/style.css", "body { color: #333 }\n"),
        ("wp-config.php", "<?php define('DB_PASSWORD', 'secret');\n"),
        ("index.php", "<?php require 'wp-blog-header.php';\n"),
    ];
    let p = pair("wordpress.conf", &[], &files);
    p.assert_reported("fastcgi_pass", "Gatehouse speaks HTTP to backends, not FastCGI");
    p.assert_reported("try_files $uri $uri/ /index.php?$args", "falls back to PHP");
    p.assert_reported("index index.php", "index.php left out");
    p.assert_reported("gzip on", "compression");

    p.compare("www.wp.test", "/2024/05/hello-world/?utm=x", Want::Redirect, &[]).await;
    p.compare("wp.test", "/wp-content/themes/site/style.css", Want::Same, &["cache-control"]).await;
    p.compare("wp.test", "/readme.html", Want::Same, &[]).await;
    p.compare("wp.test", "/favicon.ico", Want::Same, &[]).await;
    p.compare("wp.test", "/.htaccess", Want::Status, &[]).await;
    // nginx hands .php to PHP-FPM; Gatehouse refuses it rather than send the source.
    let config = get(p.gh.http, "wp.test", "/wp-config.php").await;
    assert_eq!(config.status, 403, "{}", config.text());
    assert!(!config.text().contains("secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_proxy_paths_backends_and_body_limit_match() {
    let (app, ws) = tokio::join!(Backend::start("app"), Backend::start("ws"));
    let p = pair("websocket.conf", &[&app, &ws], &[]);
    // What Gatehouse does itself is left out without a word; the rest is reported.
    assert!(!p.report.iter().any(|r| r.contains("Upgrade") || r.contains("Connection ")), "{:?}", p.report);
    p.assert_reported("map $http_upgrade", "not needed");
    p.assert_reported("proxy_send_timeout", "timeouts.read");

    for path in ["/ws/room?x=1", "/api/users?id=3", "/", "/page/a"] {
        p.compare("chat.test", path, Want::Backend, &[]).await;
    }
    // client_max_body_size 20m (20 MiB): a larger declared body is refused by both.
    let head = b"POST /upload HTTP/1.1\r\nHost: chat.test\r\nContent-Length: 22000000\r\nConnection: close\r\n\r\n";
    for addr in [p.nginx.addr, p.gh.http] {
        let answer = tokio::task::spawn_blocking(move || raw_until(addr, head, NET_TIMEOUT, Some("\r\n\r\n")))
            .await
            .expect("join");
        assert!(answer.starts_with("HTTP/1.1 413"), "{addr}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_page_app_files_alias_directories_fallback_and_health_match() {
    let files = [
        ("index.html", "<div id=app></div>\n"),
        ("app.js", "console.log('app')\n"),
        ("assets/logo.txt", "logo\n"),
        ("docs/index.html", "<h1>docs</h1>\n"),
        ("files/a.txt", "a\n"),
        ("files/sub/b.txt", "b\n"),
    ];
    let p = pair("spa.conf", &[], &files);
    for needle in ["try_files $uri $uri/ /index.html", "return 200", "autoindex on"] {
        p.assert_translated(needle);
    }

    p.compare("spa.test", "/", Want::Same, &[]).await;
    p.compare("spa.test", "/app.js", Want::Same, &[]).await;
    p.compare("spa.test", "/static/logo.txt", Want::Same, &["x-static", "cache-control"]).await;
    p.compare("spa.test", "/docs", Want::Redirect, &[]).await;
    p.compare("spa.test", "/docs/", Want::Same, &[]).await;
    // return 200 "ok": the same status and text (nginx's type is its default_type,
    // Gatehouse's text/plain; charset=utf-8).
    p.compare("spa.test", "/health", Want::Same, &[]).await;
    // try_files $uri $uri/ /index.html: what names no file gets the app's index.html,
    // a file asked for as a directory (`/app.js/`) too.
    for path in ["/deep/link", "/deep/link/", "/missing.js", "/app.js/", "/docs/missing?x=1"] {
        let (n, _) = p.compare("spa.test", path, Want::Same, &[]).await;
        assert_eq!(n.status, 200, "{path}");
        assert_eq!(n.text(), "<div id=app></div>\n", "{path}");
    }
    // autoindex on: both list the directory (in their own HTML); files and the slash
    // redirect as usual; no try_files in that location, so a missing file is a 404.
    for path in ["/files/", "/files/sub/"] {
        let (n, g) = p.compare("spa.test", path, Want::Status, &[]).await;
        assert_eq!(n.status, 200, "{path}");
        for listing in [n.text(), g.text()] {
            assert!(listing.contains(if path == "/files/" { "a.txt" } else { "b.txt" }), "{path}: {listing}");
        }
    }
    p.compare("spa.test", "/files/sub", Want::Redirect, &[]).await;
    p.compare("spa.test", "/files/a.txt", Want::Same, &[]).await;
    let (n, _) = p.compare("spa.test", "/files/missing.txt", Want::Status, &[]).await;
    assert_eq!(n.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_upstream_and_included_headers_match() {
    let (one, two) = tokio::join!(Backend::start("one"), Backend::start("two"));
    let p = pair("weights.conf", &[&one, &two], &[]);
    p.assert_reported("keepalive 32", "not needed");
    assert!(!p.report.iter().any(|r| r.contains("add_header")), "{:?}", p.report);

    let (mut seen_nginx, mut seen_gh) = (Vec::new(), Vec::new());
    for i in 0..8 {
        let path = format!("/item/{i}?page=2");
        let (n, g) = p
            .compare(
                "shop.test",
                &path,
                Want::Status,
                &["x-frame-options", "x-content-type-options", "referrer-policy"],
            )
            .await;
        let (nj, gj) = (n.json(), g.json());
        assert_eq!((nj["uri"].as_str(), gj["uri"].as_str()), (Some(path.as_str()), Some(path.as_str())));
        seen_nginx.push(nj["backend"].as_str().unwrap_or_default().to_string());
        seen_gh.push(gj["backend"].as_str().unwrap_or_default().to_string());
    }
    for seen in [&seen_nginx, &seen_gh] {
        assert!(seen.iter().all(|b| b == "one" || b == "two"), "{seen:?}");
        assert!(
            seen.iter().any(|b| b == "one") && seen.iter().any(|b| b == "two"),
            "both backends take requests: {seen:?}"
        );
    }
    // Sequential requests are all ties for least_conn: both break them by weight (3:1).
    for (name, addr) in [("nginx", p.nginx.addr), ("gatehouse", p.gh.http)] {
        let mut weighted = 0;
        for i in 0..40 {
            let r = get(addr, "shop.test", &format!("/w/{i}")).await;
            weighted += usize::from(r.json()["backend"].as_str() == Some("one"));
        }
        assert!((25..40).contains(&weighted), "{name} sent {weighted} of 40 to the weight-3 server");
    }
    assert_eq!(get(p.gh.http, "shop.test", "/").await.header("x-frame-options"), Some("SAMEORIGIN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_rewrites_match() {
    let app = Backend::start("app").await;
    let p = pair("redirects.conf", &[&app], &[]);
    assert!(!p.report.iter().any(|r| r.contains(": rewrite ") || r.contains(": return ")), "{:?}", p.report);

    p.compare("www.example.test", "/a/b?x=1", Want::Redirect, &[]).await;
    p.compare("example.test", "/old/a/b?q=1", Want::Redirect, &[]).await;
    p.compare("example.test", "/blog/42", Want::Redirect, &[]).await;
    p.compare("example.test", "/moved", Want::Redirect, &[]).await;
    p.compare("example.test", "/moved/sub", Want::Redirect, &[]).await;
    p.compare("example.test", "/gone", Want::Redirect, &[]).await;
    p.compare("example.test", "/new/x?y=2", Want::Backend, &[]).await;
    p.compare("example.test", "/old", Want::Backend, &[]).await;
    // A location's rewrite redirects only what that location takes.
    p.compare("example.test", "/old-page?a=1", Want::Redirect, &[]).await;
    p.compare("example.test", "/old-page/x", Want::Backend, &[]).await;
    p.compare("example.test", "/other", Want::Backend, &[]).await;
    // ^~ /assets/ answers, but the longer /assets/uploads/ wins for its paths; nginx
    // redirects /assets/uploads (no slash) of a proxied prefix to add it.
    p.compare("example.test", "/assets/x", Want::Same, &[]).await;
    p.compare("example.test", "/assets/uploads/y?z=1", Want::Backend, &[]).await;
    p.compare("example.test", "/assets/uploads?z=1", Want::Redirect, &[]).await;
    // limit_except GET: GET passes, DELETE gets 403 from both (not location /).
    p.compare("example.test", "/readonly/doc", Want::Backend, &[]).await;
    let head = b"DELETE /readonly/doc HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    for addr in [p.nginx.addr, p.gh.http] {
        let answer = tokio::task::spawn_blocking(move || raw_until(addr, head, NET_TIMEOUT, Some("\r\n\r\n")))
            .await
            .expect("join");
        assert!(answer.starts_with("HTTP/1.1 403"), "DELETE to {addr}: {answer}");
    }
}
