//! A route's User-Agent and Referer rules (`options.user_agent`, `options.referer`), as
//! Pingap's plugins have them: `empty` decides for a request without the header (or with
//! it empty), then `deny` (a match is refused), then `allow` (when given, a request must
//! match one). Refusals are 403 with the request id.
//!
//! User-agent patterns are whole-string globs (ASCII case-insensitive) or `~regex`
//! searches; referer patterns match the host of the `Referer` URL (`*.example.com`:
//! subdomains only). These are filters against casual abuse (hotlinking, lazy scrapers):
//! both headers are the client's to choose, so they must not be relied on to protect
//! anything.

use std::borrow::Cow;
use std::sync::Arc;

use gatehouse_config::{AgentRules, HostPattern, IfEmpty, Origin, RefererRules};
use http::header::{self, HeaderName};
use http::{HeaderMap, Request};

use super::{Decision, RequestFilter, Verdict, shown};
use crate::body::Inbound;
use crate::pipeline::Ctx;

/// The header's value, unless it is missing or blank.
fn value(headers: &HeaderMap, name: HeaderName) -> Option<Cow<'_, str>> {
    let v = headers.get(name)?;
    let text = String::from_utf8_lossy(v.as_bytes());
    (!text.trim().is_empty()).then_some(text)
}

fn empty(policy: IfEmpty, what: &str) -> Decision {
    match policy {
        IfEmpty::Allow => Decision::Pass,
        IfEmpty::Deny => Decision::Refuse { rule: "empty", reason: format!("no {what}") },
    }
}

pub struct UserAgent {
    config: Arc<AgentRules>,
}

impl UserAgent {
    pub fn new(config: Arc<AgentRules>) -> Self {
        UserAgent { config }
    }

    pub fn decide(&self, headers: &HeaderMap) -> Decision {
        let Some(ua) = value(headers, header::USER_AGENT) else {
            return empty(self.config.empty, "User-Agent");
        };
        if let Some(p) = self.config.deny.iter().find(|p| p.matches(&ua)) {
            return Decision::Refuse {
                rule: "deny",
                reason: format!("User-Agent {:?} matches deny rule {p}", shown(&ua)),
            };
        }
        if !self.config.allow.is_empty() && !self.config.allow.iter().any(|p| p.matches(&ua)) {
            return Decision::Refuse {
                rule: "allow",
                reason: format!("User-Agent {:?} matches no allow rule", shown(&ua)),
            };
        }
        Decision::Pass
    }
}

impl RequestFilter for UserAgent {
    fn name(&self) -> &'static str {
        "user_agent"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, _path: &str) -> Verdict {
        let message = "Requests from this client are not allowed.";
        self.decide(req.headers()).verdict(cx, req.headers(), "user_agent_denied", message)
    }
}

pub struct Referer {
    config: Arc<RefererRules>,
}

/// Whether a host (lower-case, IPv6 without brackets, as `Origin` keeps it) is one a
/// pattern names; `*.example.com` is the subdomains of example.com, not example.com.
fn host_matches(p: &HostPattern, host: &str) -> bool {
    match p {
        HostPattern::Exact(h) => h == host,
        HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        HostPattern::Any => true,
    }
}

impl Referer {
    pub fn new(config: Arc<RefererRules>) -> Self {
        Referer { config }
    }

    pub fn decide(&self, headers: &HeaderMap) -> Decision {
        let Some(text) = value(headers, header::REFERER) else {
            return empty(self.config.empty, "Referer");
        };
        // A Referer that is not an absolute URL has no host: it matches no rule, so it is
        // refused only where an allow list is given.
        let host = Origin::of_url(&text).map(|o| o.host);
        if let Some(h) = &host
            && let Some(p) = self.config.deny.iter().find(|p| host_matches(p, h))
        {
            return Decision::Refuse { rule: "deny", reason: format!("Referer host {h} matches deny rule {p}") };
        }
        if self.config.allow.is_empty() {
            return Decision::Pass;
        }
        match &host {
            Some(h) if self.config.allow.iter().any(|p| host_matches(p, h)) => Decision::Pass,
            Some(h) => Decision::Refuse { rule: "allow", reason: format!("Referer host {h} matches no allow rule") },
            None => Decision::Refuse { rule: "allow", reason: format!("Referer {:?} is not a URL", shown(&text)) },
        }
    }
}

impl RequestFilter for Referer {
    fn name(&self) -> &'static str {
        "referer"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, _path: &str) -> Verdict {
        let message = "Requests from the referring page are not allowed.";
        self.decide(req.headers()).verdict(cx, req.headers(), "referer_denied", message)
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_config::{AgentPattern, Glob};
    use http::HeaderValue;

    use super::*;

    fn headers(name: HeaderName, v: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(name, HeaderValue::from_static(v));
        }
        h
    }

    fn ua(rules: &UserAgent, v: Option<&'static str>) -> Option<&'static str> {
        match rules.decide(&headers(header::USER_AGENT, v)) {
            Decision::Pass => None,
            Decision::Refuse { rule, .. } => Some(rule),
        }
    }

    fn referer(rules: &Referer, v: Option<&'static str>) -> Option<&'static str> {
        match rules.decide(&headers(header::REFERER, v)) {
            Decision::Pass => None,
            Decision::Refuse { rule, .. } => Some(rule),
        }
    }

    fn regex(r: &str) -> AgentPattern {
        AgentPattern::Regex(regex::Regex::new(r).expect("regex"))
    }

    #[test]
    fn user_agents_by_glob_and_regex() {
        let rules = UserAgent::new(Arc::new(AgentRules {
            allow: vec![],
            deny: vec![AgentPattern::Glob(Glob::new("curl/*")), regex("(?i)python-requests")],
            empty: IfEmpty::Deny,
        }));
        assert_eq!(ua(&rules, Some("curl/8.4.0")), Some("deny"));
        assert_eq!(ua(&rules, Some("Curl/7")), Some("deny"), "globs ignore case");
        assert_eq!(ua(&rules, Some("Python-Requests/2.31")), Some("deny"));
        assert_eq!(ua(&rules, Some("Mozilla/5.0 (curl/8)")), None, "a glob matches the whole value");
        assert_eq!(ua(&rules, Some("Mozilla/5.0")), None);
        assert_eq!(ua(&rules, None), Some("empty"));
        assert_eq!(ua(&rules, Some("  ")), Some("empty"));

        let only = UserAgent::new(Arc::new(AgentRules {
            allow: vec![AgentPattern::Glob(Glob::new("Mozilla/*"))],
            deny: vec![regex("HeadlessChrome")],
            empty: IfEmpty::Allow,
        }));
        assert_eq!(ua(&only, Some("Mozilla/5.0 Firefox")), None);
        assert_eq!(ua(&only, Some("Mozilla/5.0 HeadlessChrome")), Some("deny"), "deny wins");
        assert_eq!(ua(&only, Some("Wget/1.21")), Some("allow"));
        assert_eq!(ua(&only, None), None, "empty: allow decides for a missing header");
    }

    #[test]
    fn referers_by_host() {
        let rules = Referer::new(Arc::new(RefererRules {
            allow: vec![HostPattern::Wildcard(".example.com".into()), HostPattern::Exact("example.com".into())],
            deny: vec![HostPattern::Exact("spam.example.com".into())],
            empty: IfEmpty::Allow,
        }));
        assert_eq!(referer(&rules, Some("https://example.com/page")), None);
        assert_eq!(referer(&rules, Some("https://WWW.Example.com:8443/a?b")), None);
        assert_eq!(referer(&rules, Some("https://spam.example.com/")), Some("deny"));
        assert_eq!(referer(&rules, Some("https://evilexample.com/")), Some("allow"));
        assert_eq!(referer(&rules, Some("https://example.com.evil.test/")), Some("allow"));
        assert_eq!(referer(&rules, Some("/relative/path")), Some("allow"), "not a URL: matches no allow rule");
        assert_eq!(referer(&rules, None), None);

        let deny_only = Referer::new(Arc::new(RefererRules {
            allow: vec![],
            deny: vec![HostPattern::Wildcard(".spam.test".into())],
            empty: IfEmpty::Deny,
        }));
        assert_eq!(referer(&deny_only, Some("http://a.spam.test/")), Some("deny"));
        assert_eq!(referer(&deny_only, Some("http://spam.test/")), None, "subdomains only");
        assert_eq!(referer(&deny_only, Some("garbage")), None);
        assert_eq!(referer(&deny_only, Some("")), Some("empty"));
    }
}
