//! Routes and backends: a route's match, action, path rewriting and options; backend URLs.

use super::*;

pub(super) fn backend_list_key(backends: &[Backend]) -> String {
    backends.iter().map(|b| format!("{}*{}", b.url(), b.weight)).collect::<Vec<_>>().join(",")
}

pub(super) fn parse_backends(cx: &mut Ctx<'_>, list: &[S<String>], at: &str) -> Vec<Backend> {
    parse_backends_with(cx, list, at, parse_backend)
}

/// Each entry of `list` through `parse`, its errors located at the entry.
pub(super) fn parse_backends_with(
    cx: &mut Ctx<'_>,
    list: &[S<String>],
    at: &str,
    parse: fn(&str) -> Result<Backend, String>,
) -> Vec<Backend> {
    let mut out = Vec::new();
    for (i, b) in list.iter().enumerate() {
        match parse(&b.value) {
            Ok(be) => out.push(be),
            Err(e) => cx.err_at(b, format!("{at}[{i}]"), e),
        }
    }
    out
}

/// `http://host:port`, `h2c://host:port`, `unix:/path.sock`, each optionally followed by
/// ` weight=N`.
pub(super) fn parse_backend(spec: &str) -> Result<Backend, String> {
    let mut parts = spec.split_whitespace();
    let url = parts.next().ok_or("empty backend")?;
    let mut weight = 1;
    for extra in parts {
        match extra.strip_prefix("weight=").map(str::parse::<u32>) {
            Some(Ok(w)) if w >= 1 => weight = w,
            _ => {
                return Err(format!("unexpected {extra:?} after the backend URL; only `weight=N` (N >= 1) may follow"));
            }
        }
    }
    if let Some(path) = url.strip_prefix("unix:") {
        let path = path.trim_start_matches("//");
        if !path.starts_with('/') {
            return Err(format!("unix socket backend needs an absolute path: unix:/run/app.sock, got {url:?}"));
        }
        return Ok(Backend { addr: BackendAddr::Unix(PathBuf::from(path)), weight, h2c: false, tls: false });
    }
    let (h2c, tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, false, r)
    } else if let Some(r) = url.strip_prefix("h2c://") {
        (true, false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, true, r)
    } else {
        return Err(format!(
            "invalid backend {url:?}: expected http://host:port, https://host:port, h2c://host:port or unix:/path.sock"
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') {
        return Err(format!(
            "backend {url:?} has a path; backends are addresses only (use `rewrite` or `strip_prefix` to change paths)"
        ));
    }
    let (host, port) = split_host_port(rest).ok_or_else(|| format!("invalid backend address {url:?}"))?;
    if host.is_empty() {
        return Err(format!("backend {url:?} has no host"));
    }
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    Ok(Backend { addr: BackendAddr::Tcp { host, port }, weight, h2c, tls })
}

pub(super) fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((s.to_string(), None)),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_route(
    cx: &mut Ctx<'_>,
    base: &Path,
    site: &str,
    idx: usize,
    r: raw::Route,
    at: &str,
    site_layer: &Layered,
    named: &BTreeMap<String, Arc<Upstream>>,
    inherit: (&LoggingConfig, &RetentionConfig),
) -> Option<Route> {
    let dot = if at.is_empty() { String::new() } else { format!("{at}.") };
    let logging = r.logging.as_ref().map(|l| super::data::logging(cx, l, &format!("{dot}logging"), Some(inherit.0)));
    let retention = r
        .data_retention
        .as_ref()
        .map(|d| super::data::retention(cx, d, &format!("{dot}data_retention"), Some(inherit.1)));
    let mut layer = site_layer.clone();
    if let Some(o) = &r.options {
        layer.apply(cx, o, &format!("{dot}options"));
    }

    let kind = r.match_kind.as_ref().map(|m| m.value.as_str()).unwrap_or("prefix");
    let raw_path = r.path.as_ref().map(|p| p.value.clone()).unwrap_or_else(|| "/".into());
    let path = match kind {
        "prefix" | "exact" => {
            if !raw_path.starts_with('/') {
                if let Some(p) = &r.path {
                    cx.err_at(p, format!("{dot}path"), format!("path must start with '/', got {raw_path:?}"));
                }
                return None;
            }
            if kind == "exact" {
                PathMatch::Exact(raw_path.clone())
            } else {
                PathMatch::Prefix(raw_path.trim_end_matches('/').to_string())
            }
        }
        "regex" => match Regex::new(&raw_path) {
            Ok(re) => PathMatch::Regex(re),
            Err(e) => {
                let line = r.path.as_ref().map(|p| p.referenced.line());
                cx.err(line, format!("{dot}path"), format!("invalid regex: {}", one_line(&e.to_string())));
                return None;
            }
        },
        other => {
            if let Some(m) = &r.match_kind {
                let hint = nearest(other, ["prefix", "exact", "regex"])
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.err_at(
                    m,
                    format!("{dot}match"),
                    format!("unknown match kind {other:?}{hint}; expected prefix, exact or regex"),
                );
            }
            return None;
        }
    };

    let mut methods = None;
    if let Some(list) = &r.methods {
        let mut out = Vec::new();
        for (i, m) in list.iter().enumerate() {
            let upper = m.value.trim().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(Method::CONNECT) => cx.err_at(
                    m,
                    format!("{dot}methods[{i}]"),
                    "CONNECT opens a tunnel, which Gatehouse does not proxy (use an L4 route for raw TCP)".to_string(),
                ),
                Ok(method) => out.push(method),
                Err(_) => cx.err_at(m, format!("{dot}methods[{i}]"), format!("invalid method {:?}", m.value)),
            }
        }
        methods = Some(out);
    }

    let priority = match &r.priority {
        None => 0,
        Some(p) => p.value.trim().parse().unwrap_or_else(|_| {
            cx.err_at(p, format!("{dot}priority"), format!("expected an integer, got {:?}", p.value));
            0
        }),
    };

    let strip_prefix = match &r.strip_prefix {
        None => None,
        Some(s) => match s.value.trim() {
            "false" => None,
            "true" => match &path {
                PathMatch::Prefix(p) | PathMatch::Exact(p) => Some(p.trim_end_matches('/').to_string()),
                PathMatch::Regex(_) => {
                    cx.err_at(
                        s,
                        format!("{dot}strip_prefix"),
                        "strip_prefix: true needs a prefix or exact path; give the prefix to strip instead",
                    );
                    None
                }
            },
            p if p.starts_with('/') => Some(p.trim_end_matches('/').to_string()),
            p => {
                cx.err_at(
                    s,
                    format!("{dot}strip_prefix"),
                    format!("expected true, false or a path starting with '/', got {p:?}"),
                );
                None
            }
        },
    };

    let rewrite = match &r.rewrite {
        None => None,
        Some(rw) => match Regex::new(&rw.pattern.value) {
            Ok(pattern) => {
                for group in replacement_groups(&rw.replace) {
                    let exists = match group.parse::<usize>() {
                        Ok(n) => n < pattern.captures_len(),
                        Err(_) => pattern.capture_names().flatten().any(|n| n == group),
                    };
                    if !exists {
                        cx.err_at(
                            &rw.pattern,
                            format!("{dot}rewrite.replace"),
                            format!(
                                "`{}` names capture group `{group}`, which the pattern does not have (it has {} numbered group(s){}); write ${{1}}x, not $1x, when letters follow, and $$ for a literal $",
                                rw.replace,
                                pattern.captures_len() - 1,
                                named_groups(&pattern),
                            ),
                        );
                    }
                }
                Some(Rewrite { pattern, replace: rw.replace.clone() })
            }
            Err(e) => {
                cx.err_at(
                    &rw.pattern,
                    format!("{dot}rewrite.pattern"),
                    format!("invalid regex: {}", one_line(&e.to_string())),
                );
                None
            }
        },
    };

    if let (Some(b), None) = (&r.browse, &r.static_dir) {
        cx.err_at(
            b,
            format!("{dot}browse"),
            "browse lists directories of a `static` route; this route has no `static`",
        );
    }
    if let (Some(d), None) = (&r.dotfiles, &r.static_dir) {
        cx.err_at(d, format!("{dot}dotfiles"), "dotfiles is for a `static` route; this route has no `static`");
    }
    if let (Some(f), None) = (&r.fallback, &r.static_dir) {
        let msg = "fallback is the file a `static` route answers missing paths with; this route has no `static`";
        cx.err_at(f, format!("{dot}fallback"), msg);
    }
    // Exactly one action.
    let given: Vec<&str> = [
        ("backend", r.backend.is_some()),
        ("backends", r.backends.is_some()),
        ("upstream", r.upstream.is_some()),
        ("split", r.split.is_some()),
        ("static", r.static_dir.is_some()),
        ("redirect", r.redirect.is_some()),
        ("respond", r.respond.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    let line = r.path.as_ref().map(|p| p.referenced.line());
    if given.len() != 1 {
        let msg = if given.is_empty() {
            "a route needs one of backend, backends, upstream, split, static, redirect or respond".to_string()
        } else {
            format!(
                "a route takes only one of backend, backends, upstream, split, static, redirect, respond; found {}",
                given.join(" and ")
            )
        };
        cx.err(line, at.to_string(), msg);
        return None;
    }

    let id = format!("{site}#{idx}");
    // An upstream of this route alone (inline backends, or a registry service's
    // instances): the site's checks and breaker, no retries.
    let own = |backends: Vec<Backend>, service: Option<String>| {
        let (health, breaker) = (layer.health.clone(), layer.breaker.clone());
        let what = match &service {
            Some(name) => format!("service:{name}"),
            None => backend_list_key(&backends),
        };
        Arc::new(Upstream {
            key: format!("{id}:{what}:{health:?}:{breaker:?}"),
            id: id.clone(),
            backends,
            balance: layer.balance(),
            pool: layer.pool.clone(),
            health,
            passive: None,
            retries: None,
            breaker,
            service,
        })
    };
    let inline = |cx: &mut Ctx<'_>, list: Vec<S<String>>, path: String| -> Option<Arc<Upstream>> {
        let backends = parse_backends(cx, &list, &path);
        if backends.len() != list.len() {
            return None;
        }
        if backends.is_empty() {
            cx.err(line, path, "needs at least one backend");
            return None;
        }
        Some(own(backends, None))
    };
    let mut split = None;
    let action = if let Some(sp) = &r.split {
        let built = super::resilience::split(cx, sp, &format!("{dot}split"), named)?;
        let first = built.pools[0].upstream.clone();
        split = Some(Arc::new(built));
        Action::Proxy(first)
    } else if let Some(b) = r.backend {
        Action::Proxy(inline(cx, vec![b], format!("{dot}backend"))?)
    } else if let Some(list) = r.backends {
        Action::Proxy(inline(cx, list, format!("{dot}backends"))?)
    } else if let Some(S { value: raw::UpstreamRef::Service(sref), referenced, .. }) = &r.upstream {
        let name = service_name(cx, &sref.service, referenced.line(), &format!("{dot}upstream.service"))?;
        Action::Proxy(own(Vec::new(), Some(name)))
    } else if let Some(S { value: raw::UpstreamRef::Name(u), referenced, .. }) = &r.upstream {
        match named.get(u) {
            Some(up) => Action::Proxy(up.clone()),
            None => {
                let hint = nearest(u, named.keys().map(String::as_str))
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                let message = format!("no upstream named {u:?} in this site{hint}");
                cx.err(Some(referenced.line()), format!("{dot}upstream"), message);
                return None;
            }
        }
    } else if let Some(dir) = &r.static_dir {
        let root = base.join(&dir.value);
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                cx.err_at(dir, format!("{dot}static"), format!("{} is not a directory", root.display()));
                return None;
            }
            Err(e) => {
                cx.err_at(dir, format!("{dot}static"), format!("cannot read {}: {e}", root.display()));
                return None;
            }
        }
        let index = r.index.clone().unwrap_or_else(|| vec!["index.html".into()]);
        let browse = cx.flag(r.browse.as_ref(), &format!("{dot}browse"), false);
        let fallback = r.fallback.as_ref().and_then(|f| static_fallback(cx, f, &dot));
        let dotfiles = cx.flag(r.dotfiles.as_ref(), &format!("{dot}dotfiles"), true);
        Action::Static(StaticDir { root, index, browse, fallback, dotfiles })
    } else if let Some(rd) = &r.redirect {
        let code = match &rd.code {
            None => StatusCode::FOUND,
            Some(c) => match c.value.trim().parse::<u16>() {
                Ok(n @ (301 | 302 | 303 | 307 | 308)) => StatusCode::from_u16(n).unwrap_or(StatusCode::FOUND),
                _ => {
                    cx.err_at(
                        c,
                        format!("{dot}redirect.code"),
                        format!("expected 301, 302, 303, 307 or 308, got {:?}", c.value),
                    );
                    return None;
                }
            },
        };
        if HeaderValue::from_str(&rd.to.value).is_err() || rd.to.value.is_empty() {
            cx.err_at(&rd.to, format!("{dot}redirect.to"), format!("invalid redirect target {:?}", rd.to.value));
            return None;
        }
        Action::Redirect { to: rd.to.value.clone(), code }
    } else if let Some(rs) = &r.respond {
        let status = match rs.status.value.trim().parse::<u16>().ok().filter(|n| (200..=599).contains(n)) {
            Some(n) => StatusCode::from_u16(n).unwrap_or(StatusCode::OK),
            None => {
                let msg = format!("expected a status from 200 to 599, got {:?}", rs.status.value);
                cx.err_at(&rs.status, format!("{dot}respond.status"), msg);
                return None;
            }
        };
        let body = rs.body.as_ref().map(|b| b.value.clone()).unwrap_or_default();
        if body.len() > MAX_RESPOND_BODY {
            let at = rs.body.as_ref().unwrap_or(&rs.status);
            let msg = format!(
                "the body has {} bytes; at most {MAX_RESPOND_BODY} (serve a file with `static` instead)",
                body.len()
            );
            cx.err_at(at, format!("{dot}respond.body"), msg);
            return None;
        }
        if !body.is_empty() && matches!(status.as_u16(), 204 | 205 | 304) {
            let msg = format!("a {} answer has no body", status.as_u16());
            cx.err_at(&rs.status, format!("{dot}respond.body"), msg);
            return None;
        }
        Action::Respond { status, body }
    } else {
        return None;
    };

    Some(Route {
        id,
        path,
        methods,
        priority,
        action,
        strip_prefix,
        rewrite,
        options: layer.opts,
        logging,
        retention,
        split,
    })
}

/// The capture groups a replacement string refers to, read the way the regex crate reads
/// them: `$$` is a literal `$`; `${name}`; otherwise `$` then the longest run of letters,
/// digits and `_` (so `$1x` is the group named `1x`, not group 1 then `x`).
pub(super) fn replacement_groups(replace: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = replace;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                out.push(&braced[..end]);
                rest = &braced[end + 1..];
            }
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end > 0 {
                out.push(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    out
}

pub(super) fn named_groups(re: &Regex) -> String {
    let names: Vec<&str> = re.capture_names().flatten().collect();
    if names.is_empty() { String::new() } else { format!(" and named group(s) {}", names.join(", ")) }
}

/// A registry service name: letters, digits, `.`, `_` and `-`, at most 64.
pub(super) fn service_name(cx: &mut Ctx<'_>, name: &str, line: u64, at: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        cx.err(Some(line), at, format!("invalid service name {name:?}: letters, digits, '.', '_' and '-', at most 64"));
        return None;
    }
    Some(name.to_string())
}

/// The most a `respond` body may hold: a short message, not a page to serve (that is what
/// `static` is for).
const MAX_RESPOND_BODY: usize = 64 * 1024;

/// A `fallback` file: a path inside the static directory (`/index.html`, `app.html`). Its
/// existence is not checked here; a missing one answers 404, as any missing file does.
fn static_fallback(cx: &mut Ctx<'_>, f: &S<String>, dot: &str) -> Option<String> {
    let rel = f.value.trim().trim_start_matches('/');
    let inside = !rel.is_empty()
        && !rel.contains('\\')
        && !rel.contains('\0')
        && std::path::Path::new(rel).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside {
        let msg = format!("expected a file inside the static directory, such as /index.html, got {:?}", f.value);
        cx.err_at(f, format!("{dot}fallback"), msg);
        return None;
    }
    Some(rel.to_string())
}
