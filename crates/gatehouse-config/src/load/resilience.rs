//! The resilience keys: health and passive checks, circuit breakers and retries of
//! upstreams, traffic splits of routes, error and maintenance pages of sites.

use super::*;

/// `health_check` of an upstream (or, in the proxy-manager's layout, of a site). `None`
/// when it says `enabled: false`.
pub(super) fn health_check(cx: &mut Ctx<'_>, h: &raw::HealthCheck, at: &str) -> Option<HealthCheck> {
    if !cx.flag(h.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let tcp = match h.kind.as_ref().map(|k| (k, k.value.trim())) {
        None | Some((_, "http")) => false,
        Some((_, "tcp")) => true,
        Some((k, other)) => {
            cx.err_at(k, format!("{at}.type"), format!("unknown check type {other:?}; expected http or tcp"));
            false
        }
    };
    let interval = cx.timeout(h.interval.as_ref(), &format!("{at}.interval"), Duration::from_secs(10));
    let timeout = cx.timeout(h.timeout.as_ref(), &format!("{at}.timeout"), Duration::from_secs(2));
    if let Some(v) = &h.interval
        && interval < Duration::from_millis(100)
    {
        cx.err_at(v, format!("{at}.interval"), "check at most ten times a second (at least 100ms)");
    }
    let unhealthy_after = cx.count(h.unhealthy_after.as_ref(), &format!("{at}.unhealthy_after"), 3, 1000).max(1) as u32;
    let healthy_after = cx.count(h.healthy_after.as_ref(), &format!("{at}.healthy_after"), 2, 1000).max(1) as u32;
    let window = cx.count(h.window.as_ref(), &format!("{at}.window"), 10, 64).max(1) as u32;
    let degraded_below = cx.share(h.degraded_below.as_ref(), &format!("{at}.degraded_below"), 0.9, false);
    let down_below = cx.share(h.down_below.as_ref(), &format!("{at}.down_below"), 0.0, false);
    if let Some(v) = &h.down_below
        && down_below > degraded_below
    {
        cx.err_at(v, format!("{at}.down_below"), "must not be above degraded_below");
    }
    let http = (!tcp).then(|| {
        let path = h.path.as_ref().map_or("/".to_string(), |p| p.value.trim().to_string());
        if (!path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
            && let Some(p) = &h.path
        {
            cx.err_at(p, format!("{at}.path"), "expected a path starting with / (no spaces)");
        }
        let method = h.method.as_ref().map_or("GET".to_string(), |m| m.value.trim().to_ascii_uppercase());
        if !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS")
            && let Some(m) = &h.method
        {
            cx.err_at(m, format!("{at}.method"), "a check must not change anything: use GET, HEAD or OPTIONS");
        }
        let host = h.host.as_ref().map(|v| v.value.trim().to_string());
        if let Some(v) = &h.host
            && v.value.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            cx.err_at(v, format!("{at}.host"), "a host name has no spaces or control characters");
        }
        let expect = match h.expect_status.as_ref().map(|v| (v, v.value.trim())) {
            None => (200, 399),
            Some((v, text)) => match parse_status_range(text) {
                Some(r) => r,
                None => {
                    cx.err_at(
                        v,
                        format!("{at}.expect_status"),
                        format!("expected a status, a range (200-399) or a class (2xx), got {text:?}"),
                    );
                    (200, 399)
                }
            },
        };
        let body = h.expect_body.as_ref().map(|b| b.value.clone()).filter(|b| !b.is_empty());
        if method == "HEAD"
            && let Some(b) = &h.expect_body
        {
            cx.err_at(b, format!("{at}.expect_body"), "a HEAD answer has no body to match");
        }
        HttpCheck { method, path, host, expect, body }
    });
    if tcp && (h.path.is_some() || h.method.is_some() || h.expect_status.is_some() || h.expect_body.is_some()) {
        cx.err(
            None,
            format!("{at}.type"),
            "a tcp check only connects: path, method, expect_status and expect_body need type: http",
        );
    }
    Some(HealthCheck { http, interval, timeout, unhealthy_after, healthy_after, window, degraded_below, down_below })
}

/// `200`, `200-399` or `2xx` as an inclusive range.
fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let ok = |n: u16| (100..=599).contains(&n);
    if let Some(class) = text.strip_suffix("xx") {
        let c: u16 = class.parse().ok()?;
        return (1..=5).contains(&c).then_some((c * 100, c * 100 + 99));
    }
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (ok(a) && ok(b) && a <= b).then_some((a, b))
        }
        None => text.parse().ok().filter(|n| ok(*n)).map(|n| (n, n)),
    }
}

/// `passive_check` of an upstream.
pub(super) fn passive_check(cx: &mut Ctx<'_>, p: &raw::PassiveCheck, at: &str) -> PassiveCheck {
    let failures = cx.count(p.failures.as_ref(), &format!("{at}.failures"), 5, 10_000).max(1) as u32;
    let ejection = cx.timeout(p.ejection.as_ref(), &format!("{at}.ejection"), Duration::from_secs(10));
    let max_ejection = cx.timeout(p.max_ejection.as_ref(), &format!("{at}.max_ejection"), Duration::from_secs(300));
    if let Some(v) = &p.max_ejection
        && max_ejection < ejection
    {
        cx.err_at(v, format!("{at}.max_ejection"), "must be at least passive_check.ejection");
    }
    let count_5xx = cx.flag(p.count_5xx.as_ref(), &format!("{at}.count_5xx"), false);
    PassiveCheck { failures, ejection, max_ejection: max_ejection.max(ejection), count_5xx }
}

/// `retries` of an upstream.
pub(super) fn retries(cx: &mut Ctx<'_>, r: &raw::Retries, at: &str) -> RetryPolicy {
    let attempts = cx.count(r.attempts.as_ref(), &format!("{at}.attempts"), 2, 10) as u32;
    if let Some(v) = &r.attempts
        && attempts < 1
    {
        cx.err_at(v, format!("{at}.attempts"), "attempts counts every try, the first included: at least 1");
    }
    let backoff = cx.duration(r.backoff.as_ref(), &format!("{at}.backoff"), Duration::from_millis(25));
    let budget = cx.share(r.budget.as_ref(), &format!("{at}.budget"), 0.2, false);
    let mut statuses = Vec::new();
    for (i, s) in r.statuses.iter().flatten().enumerate() {
        match s.value.trim().parse::<u16>() {
            Ok(n) if (500..=599).contains(&n) || n == 429 || n == 408 => statuses.push(n),
            _ => cx.err_at(
                s,
                format!("{at}.statuses[{i}]"),
                format!("expected a status that says \"try again\" (408, 429 or 5xx), got {:?}", s.value),
            ),
        }
    }
    let mut methods = Vec::new();
    for (i, m) in r.methods.iter().flatten().enumerate() {
        match Method::from_bytes(m.value.trim().to_ascii_uppercase().as_bytes()) {
            Ok(method) if method == Method::CONNECT => {
                cx.err_at(m, format!("{at}.methods[{i}]"), "CONNECT tunnels cannot be retried")
            }
            Ok(method) => methods.push(method),
            Err(_) => cx.err_at(m, format!("{at}.methods[{i}]"), format!("invalid method {:?}", m.value)),
        }
    }
    let max_body = cx.size_in(r.max_body.as_ref(), &format!("{at}.max_body"), 64 * 1024, (0, 16 << 20));
    RetryPolicy { attempts: attempts.max(1), backoff, budget, statuses, methods, max_body }
}

/// `circuit_breaker` of an upstream (or of a site). `None` when it says `enabled: false`.
pub(super) fn circuit_breaker(cx: &mut Ctx<'_>, c: &raw::CircuitBreaker, at: &str) -> Option<CircuitBreaker> {
    if !cx.flag(c.enabled.as_ref(), &format!("{at}.enabled"), true) {
        return None;
    }
    let failures = cx.count(c.failures.as_ref(), &format!("{at}.failures"), 5, 100_000).max(1) as u32;
    let ratio = c.ratio.as_ref().map(|_| cx.share(c.ratio.as_ref(), &format!("{at}.ratio"), 0.5, true));
    let window = cx.timeout(c.window.as_ref(), &format!("{at}.window"), Duration::from_secs(10));
    let min_requests = cx.count(c.min_requests.as_ref(), &format!("{at}.min_requests"), 20, 1_000_000).max(1) as u32;
    let open_for = cx.timeout(c.open_for.as_ref(), &format!("{at}.open_for"), Duration::from_secs(30));
    let probes = cx.count(c.probes.as_ref(), &format!("{at}.probes"), 1, 10_000).max(1) as u32;
    let successes = cx.count(c.successes.as_ref(), &format!("{at}.successes"), 1, 10_000).max(1) as u32;
    if let Some(v) = &c.successes
        && successes > probes
    {
        cx.err_at(v, format!("{at}.successes"), "cannot be more than the probes let through (probes)");
    }
    let count_5xx = cx.flag(c.count_5xx.as_ref(), &format!("{at}.count_5xx"), true);
    Some(CircuitBreaker { failures, ratio, window, min_requests, open_for, probes, successes, count_5xx })
}

/// A route's `split` over the site's named upstreams.
pub(super) fn split(
    cx: &mut Ctx<'_>,
    s: &raw::Split,
    at: &str,
    named: &BTreeMap<String, Arc<Upstream>>,
) -> Option<Split> {
    let mut pools = Vec::new();
    for (i, p) in s.pools.iter().enumerate() {
        let here = format!("{at}.pools[{i}]");
        let Some(up) = named.get(p.upstream.value.trim()) else {
            let hint = nearest(&p.upstream.value, named.keys().map(String::as_str))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            cx.err_at(
                &p.upstream,
                format!("{here}.upstream"),
                format!("no upstream named {:?}{hint}", p.upstream.value),
            );
            continue;
        };
        let weight = cx.count(p.weight.as_ref(), &format!("{here}.weight"), 1, 1_000_000) as u32;
        let when = match &p.when {
            None => None,
            Some(w) => match HeaderName::from_str(w.header.value.trim()) {
                Ok(h) => Some((h, w.value.value.clone())),
                Err(_) => {
                    cx.err_at(
                        &w.header,
                        format!("{here}.when.header"),
                        format!("invalid header name {:?}", w.header.value),
                    );
                    None
                }
            },
        };
        if pools.iter().any(|q: &SplitPool| q.upstream.id == up.id) {
            cx.err_at(&p.upstream, format!("{here}.upstream"), "this upstream is already a pool of this split");
        }
        pools.push(SplitPool {
            name: up.id.rsplit('/').next().unwrap_or(&up.id).to_string(),
            upstream: up.clone(),
            weight,
            when,
        });
    }
    if s.pools.len() < 2 {
        cx.err(None, format!("{at}.pools"), "a split needs at least two pools");
    }
    if !pools.is_empty() && pools.iter().all(|p| p.weight == 0 && p.when.is_none()) {
        cx.err(None, format!("{at}.pools"), "every pool has weight 0: no request could be served");
    }
    let sticky = match &s.sticky {
        None => None,
        Some(st) => match (&st.cookie, &st.header) {
            (Some(c), None) => {
                let name = c.value.trim();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                    cx.err_at(c, format!("{at}.sticky.cookie"), "a cookie name of letters, digits, - _ and .");
                }
                Some(Sticky::Cookie(name.to_string()))
            }
            (None, Some(h)) => match HeaderName::from_str(h.value.trim()) {
                Ok(n) => Some(Sticky::Header(n)),
                Err(_) => {
                    cx.err_at(h, format!("{at}.sticky.header"), format!("invalid header name {:?}", h.value));
                    None
                }
            },
            _ => {
                cx.err(None, format!("{at}.sticky"), "give one of cookie or header");
                None
            }
        },
    };
    (pools.len() == s.pools.len() && pools.len() >= 2).then_some(Split { pools, sticky })
}

/// The largest page file read (a page is sent on every error it covers).
const MAX_PAGE: u64 = 256 * 1024;

fn page(cx: &mut Ctx<'_>, base: &Path, file: &S<String>, at: &str) -> Option<Arc<str>> {
    let path = base.join(file.value.trim());
    let meta = std::fs::metadata(&path);
    if let Ok(m) = &meta
        && m.len() > MAX_PAGE
    {
        cx.err_at(file, at, format!("{} is larger than {} KiB", path.display(), MAX_PAGE / 1024));
        return None;
    }
    match crate::file::read_regular_text(&path) {
        Ok(text) => Some(text.into()),
        Err(e) => {
            cx.err_at(file, at, format!("cannot read page {}: {e}", path.display()));
            None
        }
    }
}

/// `error_pages`: status -> template file.
pub(super) fn error_pages(cx: &mut Ctx<'_>, base: &Path, raw: &raw::ErrorPages, at: &str) -> ErrorPages {
    let mut pages = BTreeMap::new();
    for (status, file) in &raw.value {
        let here = format!("{at}.{status}");
        match status.trim().parse::<u16>() {
            Ok(code) if (400..=599).contains(&code) => {
                if let Some(text) = page(cx, base, file, &here) {
                    pages.insert(code, text);
                }
            }
            _ => cx.err_at(file, here, format!("expected an error status (400 to 599), got {status:?}")),
        }
    }
    ErrorPages { pages }
}

/// A site's `maintenance`.
pub(super) fn maintenance(cx: &mut Ctx<'_>, base: &Path, m: &raw::Maintenance, at: &str) -> Maintenance {
    let enabled = cx.flag(m.enabled.as_ref(), &format!("{at}.enabled"), false);
    let mut windows = Vec::new();
    for (i, w) in m.windows.iter().flatten().enumerate() {
        let here = format!("{at}.windows[{i}]");
        let start =
            crate::units::parse_time(&w.start.value).map_err(|e| cx.err_at(&w.start, format!("{here}.start"), e));
        let end = crate::units::parse_time(&w.end.value).map_err(|e| cx.err_at(&w.end, format!("{here}.end"), e));
        if let (Ok(start), Ok(end)) = (start, end) {
            if end <= start {
                cx.err_at(&w.end, format!("{here}.end"), "the window ends before it starts");
            } else {
                windows.push((start, end));
            }
        }
    }
    let page = m.page.as_ref().and_then(|p| page(cx, base, p, &format!("{at}.page")));
    let mut allow = Vec::new();
    for (i, a) in m.allow.iter().flatten().enumerate() {
        match super::parse_cidr(&a.value) {
            Some(net) => allow.push(net),
            None => {
                cx.err_at(a, format!("{at}.allow[{i}]"), format!("expected an address or network, got {:?}", a.value))
            }
        }
    }
    let retry_after = cx.duration(m.retry_after.as_ref(), &format!("{at}.retry_after"), Duration::from_secs(300));
    Maintenance { enabled, windows, page, allow, retry_after }
}

/// A site's `websocket`.
pub(super) fn websocket(cx: &mut Ctx<'_>, w: &raw::WebSocket, at: &str) -> WebSocket {
    let enabled = cx.flag(w.enabled.as_ref(), &format!("{at}.enabled"), true);
    let max_connections = cx.count(w.max_connections.as_ref(), &format!("{at}.max_connections"), 0, 10_000_000);
    let max_duration = w
        .max_duration
        .as_ref()
        .map(|_| cx.timeout(w.max_duration.as_ref(), &format!("{at}.max_duration"), Duration::from_secs(86_400)));
    WebSocket { enabled, max_connections, max_duration }
}

/// The main file's `registry`.
pub(super) fn registry(cx: &mut Ctx<'_>, r: Option<&raw::Registry>) -> RegistryConfig {
    let d = RegistryConfig::default();
    let Some(r) = r else { return d };
    let listen = r.listen.as_ref().map(|v| {
        let value = Value { text: v.value.clone(), line: Some(v.referenced.line()), env: None };
        super::socket_addr(cx, Some(value), "registry.listen", "127.0.0.1:8500")
    });
    let ttl = cx.timeout(r.ttl.as_ref(), "registry.ttl", d.ttl);
    let max_ttl = cx.timeout(r.max_ttl.as_ref(), "registry.max_ttl", d.max_ttl);
    if ttl > max_ttl {
        let at = r.ttl.as_ref().or(r.max_ttl.as_ref()).map(|v| v.referenced.line());
        cx.err(
            at,
            "registry.ttl",
            format!("{ttl:?} (the default TTL) must not be longer than registry.max_ttl ({max_ttl:?})"),
        );
    }
    RegistryConfig { listen, ttl, max_ttl }
}
