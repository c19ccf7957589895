//! The engine over whole requests: places, exclusions, custom rules, bodies.

use super::*;
use gatehouse_config::{WafExclusion, WafGroups, WafMode, WafRule};
use http::HeaderValue;

fn engine(custom: Vec<WafRule>, exclusions: Vec<WafExclusion>) -> Engine {
    Engine::new(Arc::new(Waf { mode: WafMode::Block, groups: WafGroups::all(), custom, exclusions, body_limit: 1024 }))
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).expect("header"));
    }
    h
}

#[test]
fn each_place_is_read() {
    let e = engine(vec![], vec![]);
    let none = HeaderMap::new();
    let f = e.head("/search", Some("q=1%27%20or%20%271%27%3D%271"), &none, "/search").expect("query");
    assert_eq!((&*f.rule, f.group, f.place.as_str()), ("sqli-boolean", "sql_injection", "query:q"));
    let f = e.head("/files/..%2f..%2fetc%2fpasswd", None, &none, "/files").expect("path");
    assert_eq!(f.group, "path_traversal");
    let f = e.head("/", None, &headers(&[("cookie", "a=1; session=<script>alert(1)</script>")]), "/").expect("cookie");
    assert_eq!(f.place, "cookie:session");
    let f = e.head("/", None, &headers(&[("user-agent", "sqlmap/1.8")]), "/").expect("scanner");
    assert_eq!(f.group, "scanner_user_agents");
    let f = e.head("/", None, &headers(&[("x-api-version", "${jndi:ldap://x/a}")]), "/").expect("jndi");
    assert_eq!(&*f.rule, "header-jndi");
    let f = e.head("/", None, &headers(&[("x-original-url", "/admin")]), "/").expect("override");
    assert_eq!(&*f.rule, "header-override");
    let f = e
        .head("/", None, &headers(&[("referer", "https://x.test/s?a=1&q=1%27%20or%20%271%27%3D%271")]), "/")
        .expect("referer");
    assert_eq!(f.place, "header:referer:q");
    let f = e.head("/", None, &headers(&[("user-agent", "Mozilla/5.0' AND SLEEP(5)#")]), "/").expect("agent");
    assert_eq!((f.group, f.place.as_str()), ("sql_injection", "header:user-agent"));
    let f =
        e.head("/", None, &headers(&[("user-agent", "Mozilla/5.0 AND SLEEP(5)")]), "/").expect("agent without quotes");
    assert_eq!(f.group, "sql_injection");
    let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    assert_eq!(
        e.head("/", None, &headers(&[("user-agent", browser), ("referer", "https://www.google.com/")]), "/"),
        None
    );
    assert_eq!(e.head("/blog/2024/o'brien-wins", Some("q=rock+%27n%27+roll&page=2"), &none, "/blog"), None);
}

#[test]
fn bodies_by_kind() {
    let e = engine(vec![], vec![]);
    let form = headers(&[("content-type", "application/x-www-form-urlencoded; charset=utf-8")]);
    let json = headers(&[("content-type", "application/json")]);
    assert!(e.wants_body(&form) && e.wants_body(&json));
    assert!(!e.wants_body(&headers(&[("content-type", "image/png")])));
    let f = e.body(&form, b"name=bob&comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/").expect("form");
    assert_eq!(f.place, "body:comment");
    let f = e.body(&json, br#"{"user":{"name":"x","bio":"\u003csvg onload=alert(1)\u003e"}}"#, "/").expect("json");
    assert_eq!(f.place, "body:bio");
    // A document cut at the limit is read as far as it goes.
    let f = e.body(&json, br#"{"a":"ok","b":"1 union select password from users"#, "/").expect("truncated");
    assert_eq!(f.place, "body:b");
    assert_eq!(e.body(&json, br#"{"title":"Rock 'n' roll","tags":["music","1970s"],"n":5}"#, "/"), None);
}

#[test]
fn exclusions_and_custom_rules() {
    let rule = WafRule {
        id: "no-wp".into(),
        message: "WordPress probe".into(),
        target: WafTarget::Path,
        pattern: regex::RegexBuilder::new("^/wp-(admin|login)").case_insensitive(true).build().expect("regex"),
    };
    let e = engine(
        vec![rule],
        vec![
            WafExclusion { rule: "xss".into(), path: Some("/editor".into()), field: None },
            WafExclusion { rule: "sqli-boolean".into(), path: None, field: Some("filter".into()) },
        ],
    );
    let none = HeaderMap::new();
    assert_eq!(&*e.head("/WP-Login.php", None, &none, "/wp-login.php").expect("custom").rule, "no-wp");
    assert_eq!(e.head("/editor/save", Some("html=%3Cscript%3Ex%3C/script%3E"), &none, "/editor/save"), None);
    assert!(e.head("/other", Some("html=%3Cscript%3Ex%3C/script%3E"), &none, "/other").is_some());
    assert!(
        e.head("/editorial", Some("html=%3Cscript%3Ex%3C/script%3E"), &none, "/editorial").is_some(),
        "an exclusion's path covers whole segments"
    );
    assert_eq!(e.head("/api", Some("filter=1%20or%201%3D1"), &none, "/api"), None);
    // A secret's value stays out of the finding.
    let f = e.head("/login", Some("password=%27%20or%201%3D1--"), &none, "/login").expect("finding");
    assert_eq!((f.place.as_str(), f.fragment.as_str()), ("query:password", "[REDACTED]"));
    assert!(e.head("/api", Some("q=1%20or%201%3D1"), &none, "/api").is_some());
}

/// Where the time of a browser-like request goes (run with `--ignored --nocapture`, best
/// in release: `cargo test --release -p gatehouse-proxy --lib waf_cost -- --ignored --nocapture`).
#[test]
#[ignore]
fn waf_cost() {
    let e = engine(vec![], vec![]);
    let h = headers(&[
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("cookie", "session=9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60; theme=dark"),
        ("referer", "https://shop.example.com/search?q=red+shoes"),
    ]);
    let q = "q=o%27brien+boots&size=42&sort=price_asc&page=2";
    let n = 20_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(e.head("/products/search", Some(q), &h, "/products/search").is_none());
    }
    println!("head: {:?} per request", t.elapsed() / n);
    let parts: [(&str, &str, Option<&str>, HeaderMap); 5] = [
        ("path only", "/products/search", None, HeaderMap::new()),
        ("query only", "/", Some(q), HeaderMap::new()),
        (
            "ua only",
            "/",
            None,
            headers(&[("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")]),
        ),
        ("referer only", "/", None, headers(&[("referer", "https://shop.example.com/search?q=red+shoes")])),
        (
            "cookie+accept",
            "/",
            None,
            headers(&[
                ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("cookie", "session=9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60; theme=dark"),
            ]),
        ),
    ];
    for (what, path, query, h) in &parts {
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(e.head(path, *query, h, path));
        }
        println!("  {what}: {:?}", t.elapsed() / n);
    }
    for v in [
        "o'brien boots",
        "mozilla/5.0 (x11; linux x86_64; rv:133.0) gecko/20100101 firefox/133.0",
        "https://shop.example.com/search?q=red shoes",
    ] {
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(sqli::detect(v));
        }
        let a = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(xss::detect(v));
        }
        let b = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(rules::command(v));
            std::hint::black_box(rules::traversal(v, false));
        }
        println!("{v:.30}: sqli {a:?} xss {b:?} cmd+traversal {:?}", t.elapsed() / n);
    }
}

/// Whatever bytes a client sends, in any place, the engine answers and never panics
/// (byte offsets in the detectors must stay on character boundaries).
#[test]
fn arbitrary_input_never_panics() {
    let e = engine(vec![], vec![]);
    let json = headers(&[("content-type", "application/json")]);
    let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
    // Pieces attacks and odd encodings are made of, to reach deep into the detectors.
    let pieces: &[&[u8]] = &[
        b"'",
        b"\"",
        b"`",
        b"(",
        b")",
        b";",
        b"--",
        b"#",
        b"/*",
        b"*/",
        b"/*!",
        b"union",
        b"select",
        b" or ",
        b"=",
        b"<",
        b">",
        b"script",
        b"on",
        b"load",
        b"javascript:",
        b"&#x",
        b"&lt",
        b"..",
        b"/",
        b"\\",
        b"%",
        b"%2",
        b"%u00",
        b"%c0",
        b"\xc0\xaf",
        b"\xe0\x80",
        b"\xff",
        b"\xef\xbc\x9c",
        b"\xc3\xa9",
        b"\0",
        b"$(",
        b"${",
        b"|",
        b"&",
        b"sleep",
        b"(1",
        b"1",
        b"@@",
        b"case when",
        b"char(",
        b"\\u00",
        b"\"k\":",
        b"{",
        b"}",
        b"[",
        b",",
        b" ",
        b"\t",
        b"\n",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let mut v = Vec::new();
        for _ in 0..rng.usize(0..24) {
            if rng.bool() {
                v.extend_from_slice(pieces[rng.usize(0..pieces.len())]);
            } else {
                v.push(rng.u8(..));
            }
        }
        let _ = e.body(&json, &v, "/");
        let _ = e.body(&form, &v, "/");
        let text = String::from_utf8_lossy(&v);
        let _ = sqli::detect(&text);
        let _ = xss::detect(&text);
        let _ = rules::command(&text);
        let _ = rules::traversal(&text, false);
        let _ = normalise(&v, true);
        if let Ok(value) = HeaderValue::from_bytes(&v) {
            let mut h = HeaderMap::new();
            h.insert(http::header::COOKIE, value.clone());
            h.insert(http::header::USER_AGENT, value.clone());
            h.insert(http::header::REFERER, value);
            let _ = e.head("/", None, &h, "/");
        }
        let q: String = text.chars().filter(|c| c.is_ascii_graphic() && *c != '#').collect();
        let _ = e.head(&format!("/{q}"), Some(&q), &HeaderMap::new(), "/");
    }
}

/// Inputs found by review: a cut inside a multi-byte character (a panic, so a dead
/// process in release builds), and values that made detectors quadratic (one request
/// holding a worker for seconds). Each must finish, in debug builds too, well within the
/// test runner's time limit.
#[test]
fn review_inputs_neither_panic_nor_take_quadratic_time() {
    let e = engine(vec![], vec![]);
    let none = HeaderMap::new();
    let crash = format!("sleep(a{}", "%C3%A9".repeat(40));
    let _ = e.head("/", Some(&format!("q={crash}")), &none, "/");
    let _ = sqli::detect(&format!("sleep(a{}", "é".repeat(40)));
    let _ = sqli::detect(&format!("char(1{}", "é".repeat(40)));
    let big = 200_000;
    for v in [
        "|".repeat(big),
        ".".repeat(big),
        "\" onabc=\"".repeat(big / 10),
        "\"!alert(".repeat(big / 8),
        "sleep/*".repeat(big / 7),
        ";".repeat(big),
        "a/..".repeat(big / 4),
    ] {
        let _ = sqli::detect(&v);
        let _ = xss::detect(&v);
        let _ = rules::command(&v);
        let _ = rules::traversal(&v, false);
    }
}
