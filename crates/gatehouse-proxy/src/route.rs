//! Routing: host -> site -> route, on a normalised path.
//!
//! Built once per configuration load; lookups allocate nothing unless the path needs
//! normalising. Must not do I/O.

use std::borrow::Cow;
use std::sync::Arc;

use gatehouse_config::{Action, ErrorPages, HostPattern, PathMatch, Route, Site};
use http::Method;

use crate::filter::{self, Chain};
use crate::hash::FxHashMap;
use crate::upstream::Group;
use crate::upstream::split::Splitter;

/// A route ready to serve: its configuration plus the live upstream group it proxies to.
pub struct Compiled {
    pub route: Route,
    pub site: Arc<str>,
    pub group: Option<Arc<Group>>,
    /// The groups of a `split` route (`group` is its first pool's).
    pub split: Option<Splitter>,
    /// The site's pages for Gatehouse's own errors.
    pub pages: Arc<ErrorPages>,
    /// The site's maintenance page, also shown when every backend is out.
    pub maintenance_page: Option<Arc<str>>,
    /// The site's `websocket` settings and its open-tunnel counter.
    pub websocket: Option<(Arc<gatehouse_config::WebSocket>, Arc<std::sync::atomic::AtomicUsize>)>,
    /// The route's filters, compiled with it.
    pub chain: Chain,
    /// The site's own logging settings, for its records.
    pub log: Option<crate::observe::SiteLog>,
}

impl Compiled {
    /// The upstream groups this route sends to: its own, and its split's pools.
    pub fn groups(&self) -> Vec<&Arc<Group>> {
        let mut out: Vec<&Arc<Group>> = self.group.iter().collect();
        for g in self.split.iter().flat_map(|s| s.groups.iter()) {
            if !out.iter().any(|o| Arc::ptr_eq(o, g)) {
                out.push(g);
            }
        }
        out
    }
}

pub struct Router {
    exact: FxHashMap<String, usize>,
    /// `(".example.test", site)`, longest suffix first.
    wildcard: Vec<(String, usize)>,
    any: Option<usize>,
    sites: Vec<Vec<Compiled>>,
    /// Each site's error pages, for errors before a route is found.
    pages: Vec<Arc<ErrorPages>>,
    /// Filters that run before routing, for every host.
    pub before: Chain,
}

/// The methods a route without a method list answers, for `Allow` (every method but
/// CONNECT; extension methods pass too but are not listed).
const ORDINARY: [Method; 8] = [
    Method::DELETE,
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::POST,
    Method::PUT,
    Method::TRACE,
];

/// What routing decided.
pub enum Lookup<'a> {
    Found(&'a Compiled),
    NoSite,
    NoRoute,
    /// The path matched, but not for this method; carries the `Allow` list.
    MethodNotAllowed(String),
}

impl Router {
    /// `group_for` finds the live group of an upstream by its key.
    pub fn new(
        sites: &[Site],
        group_for: impl Fn(&str) -> Option<Arc<Group>>,
        env: &filter::Env,
        shared: &crate::state::Shared,
    ) -> Self {
        let mut exact = FxHashMap::default();
        let mut wildcard = Vec::new();
        let mut any = None;
        let mut tables = Vec::new();
        let mut pages = Vec::new();
        for (i, site) in sites.iter().enumerate() {
            pages.push(site.error_pages.clone());
            let websocket = site.websocket.as_ref().map(|w| (w.clone(), shared.tunnels(&site.name)));
            for h in &site.hosts {
                match h {
                    HostPattern::Exact(name) => {
                        exact.entry(name.clone()).or_insert(i);
                    }
                    HostPattern::Wildcard(suffix) => wildcard.push((suffix.clone(), i)),
                    HostPattern::Any => any = any.or(Some(i)),
                }
            }
            let name: Arc<str> = Arc::from(site.name.as_str());
            let mut routes: Vec<(usize, Compiled)> = site
                .routes
                .iter()
                .enumerate()
                .map(|(order, r)| {
                    let group = match &r.action {
                        Action::Proxy(up) => group_for(&up.key),
                        _ => None,
                    };
                    let split = r.split.as_ref().and_then(|s| {
                        let groups: Option<Vec<_>> = s.pools.iter().map(|p| group_for(&p.upstream.key)).collect();
                        groups.map(|g| Splitter::new(s.clone(), g))
                    });
                    let c = Compiled {
                        route: r.clone(),
                        site: name.clone(),
                        group,
                        split,
                        pages: site.error_pages.clone(),
                        maintenance_page: site.maintenance.as_ref().and_then(|m| m.page.clone()),
                        websocket: websocket.clone(),
                        chain: filter::chain_for(r, site, env, shared),
                        log: r
                            .logging
                            .as_ref()
                            .or(site.logging.as_ref())
                            .map(|l| crate::observe::SiteLog { requests: l.requests, mask_ip: l.mask_ip }),
                    };
                    (order, c)
                })
                .collect();
            routes.sort_by(|(oa, a), (ob, b)| {
                b.route
                    .priority
                    .cmp(&a.route.priority)
                    .then_with(|| specificity(&b.route.path).cmp(&specificity(&a.route.path)))
                    .then_with(|| oa.cmp(ob))
            });
            tables.push(routes.into_iter().map(|(_, c)| c).collect());
        }
        wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        Router { exact, wildcard, any, sites: tables, pages, before: filter::before_routing(env) }
    }

    /// The error pages of the site serving `host`, if a site does.
    pub fn pages_for(&self, host: &str) -> Option<&Arc<ErrorPages>> {
        self.site_index(host).and_then(|i| self.pages.get(i))
    }

    /// Routes a request. `host` is lower-case without port; `path` is normalised.
    pub fn lookup(&self, host: &str, path: &str, method: &Method) -> Lookup<'_> {
        let Some(site) = self.site_index(host) else {
            return Lookup::NoSite;
        };
        let mut allowed: Vec<&Method> = Vec::new();
        for c in &self.sites[site] {
            if !path_matches(&c.route.path, path) {
                continue;
            }
            match &c.route.methods {
                Some(list) if !list.contains(method) => allowed.extend(list.iter()),
                // CONNECT asks for a tunnel, which a reverse proxy does not open: a route
                // without a method list takes every other method (configuration refuses
                // CONNECT in a list).
                None if *method == Method::CONNECT => allowed.extend(ORDINARY.iter()),
                _ => return Lookup::Found(c),
            }
        }
        if allowed.is_empty() {
            Lookup::NoRoute
        } else {
            let mut names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            Lookup::MethodNotAllowed(names.join(", "))
        }
    }

    fn site_index(&self, host: &str) -> Option<usize> {
        self.exact
            .get(host)
            .copied()
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.any)
    }

    /// Every compiled route, for the admin API.
    pub fn routes(&self) -> impl Iterator<Item = &Compiled> {
        self.sites.iter().flatten()
    }
}

/// Exact beats prefix beats regex; among prefixes the longer wins.
fn specificity(p: &PathMatch) -> (u8, usize) {
    match p {
        PathMatch::Exact(s) => (3, s.len()),
        PathMatch::Prefix(s) => (2, s.len()),
        PathMatch::Regex(_) => (1, 0),
    }
}

pub fn path_matches(m: &PathMatch, path: &str) -> bool {
    match m {
        PathMatch::Exact(p) => path == p,
        PathMatch::Prefix(p) => has_prefix(path, p),
        PathMatch::Regex(re) => re.is_match(path),
    }
}

/// Whether `path` is `prefix` or under it, by whole segments: `/hooks` covers `/hooks`
/// and `/hooks/x`, not `/hooks-admin`; a prefix ending in `/` covers what follows it.
pub fn under(path: &str, prefix: &str) -> bool {
    prefix.ends_with('/') && path.starts_with(prefix) || has_prefix(path, prefix)
}

/// Prefix match on a segment boundary; `p` has no trailing slash (`""` is the root).
pub fn has_prefix(path: &str, p: &str) -> bool {
    path.starts_with(p) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/' || p.is_empty())
}

/// Applies the route's `strip_prefix` and `rewrite` to the normalised path.
pub fn rewrite_path<'a>(route: &Compiled, path: &'a str) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(path);
    if let Some(prefix) = &route.route.strip_prefix
        && has_prefix(path, prefix)
    {
        let rest = &path[prefix.len()..];
        out = if rest.starts_with('/') { Cow::Borrowed(rest) } else { Cow::Owned(format!("/{rest}")) };
    }
    if let Some(rw) = &route.route.rewrite
        && let Cow::Owned(s) = rw.pattern.replace(&out, rw.replace.as_str())
    {
        out = Cow::Owned(if s.starts_with('/') { s } else { format!("/{s}") });
    }
    out
}

/// Normalises a request path before routing, so that `/a/./b`, `/a//b`, `/a/x/../b` and
/// `/%61/b` all route (and reach the backend) as `/a/b`:
/// percent-encoded unreserved characters are decoded, other escapes get upper-case hex,
/// empty segments collapse, and dot segments are resolved without climbing above `/`.
pub fn normalise_path(path: &str) -> Cow<'_, str> {
    let clean = path.starts_with('/') && !path.contains("//") && !path.contains("/.") && !path.contains('%');
    if clean {
        return Cow::Borrowed(path);
    }
    // 1. Percent-decoding of unreserved characters.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(c as char);
                } else {
                    decoded.push('%');
                    decoded.push(bytes[i + 1].to_ascii_uppercase() as char);
                    decoded.push(bytes[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // Safe: we only split at ASCII bytes, so multi-byte characters are copied whole.
        let ch_len = utf8_len(bytes[i]);
        decoded.push_str(&path[i..(i + ch_len).min(path.len())]);
        i += ch_len;
    }
    // 2. Segments: drop empty and ".", pop on "..".
    let mut out: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if result.is_empty() || (trailing && !result.ends_with('/')) {
        result.push('/');
    }
    Cow::Owned(result)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise_path("/a/b"), "/a/b");
        assert_eq!(normalise_path("/a//b"), "/a/b");
        assert_eq!(normalise_path("/a/./b/../c"), "/a/c");
        assert_eq!(normalise_path("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalise_path("/%61pi/%2e%2e/x"), "/x");
        assert_eq!(normalise_path("/a%2fb"), "/a%2Fb");
        assert_eq!(normalise_path("/dir/"), "/dir/");
        assert_eq!(normalise_path("/dir/.."), "/");
        assert_eq!(normalise_path("/caf\u{e9}//x"), "/caf\u{e9}/x");
        assert_eq!(normalise_path("/%"), "/%");
        assert_eq!(normalise_path("/%4"), "/%4");
    }

    #[test]
    fn prefixes_respect_segments() {
        assert!(has_prefix("/api", "/api"));
        assert!(has_prefix("/api/x", "/api"));
        assert!(!has_prefix("/apix", "/api"));
        assert!(has_prefix("/anything", ""));
        assert!(under("/hooks/github", "/hooks/") && under("/hooks", "/hooks") && under("/hooks/x", "/hooks"));
        assert!(!under("/hooks-admin", "/hooks") && !under("/hooksx", "/hooks/"));
    }
}
