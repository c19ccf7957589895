//! The filter seam: per-route policy as small modules instead of branches in the request
//! function.
//!
//! A **request filter** looks at a routed request and either lets it go on (`Continue`) or
//! answers it (`Respond`). A **response filter** edits the response on its way out; it
//! gets the whole response, so a body filter (compression, to come) is a response filter
//! that wraps the body in a streaming transform (and fixes the framing fields it changes).
//! Each route's filters are compiled once per configuration load into its `Chain`, in the
//! order DESIGN.md §4 gives; a route without filters pays one branch per request. The
//! pipeline (`crate::pipeline`) is the only caller and the only place the phases are
//! ordered; filters never call each other.
//!
//! Filters run on worker threads: no blocking calls, no locks shared between workers, and
//! nothing per request that could be done when the chain is built.

mod acme;
mod agent;
pub mod auth;
mod ban;
mod cors;
mod csrf;
mod failed_logins;
mod forward_auth;
mod geo;
mod headers;
mod https_redirect;
mod ip;
mod maintenance;
pub mod ratelimit;
mod redirect;
mod waf;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};

use crate::body::{Inbound, Outgoing};
use crate::pipeline::Ctx;

pub use acme::AcmeHttp01;
pub use ban::BanCheck;
pub use headers::ResponseHeaders;
pub use https_redirect::HttpsRedirect;
pub use maintenance::{Maintenance, MaintenanceSwitch};
pub use redirect::Redirect;

/// What a request filter decided.
pub enum Verdict {
    Continue,
    Respond(Response<Outgoing>),
}

/// Looks at a request before it is served. `path` is the normalised path the route
/// matched on.
pub trait RequestFilter: Send + Sync {
    /// For logs and the admin API.
    fn name(&self) -> &'static str;
    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict;
}

/// Reads the first bytes of a request's body before it goes on (the WAF). The pipeline
/// reads them ahead once for every body filter, and the backend still gets the whole body.
pub trait BodyFilter: Send + Sync {
    fn name(&self) -> &'static str;
    /// How many bytes of this request's body the filter reads, if it reads it.
    fn wants(&self, req: &Request<Inbound>) -> Option<usize>;
    fn body(&self, cx: &Ctx<'_>, req: &Request<Inbound>, body: &[u8], path: &str) -> Verdict;
}

/// Edits a response head on its way to the client (responses the route produced: its
/// backend's, its static files', its filters'; not Gatehouse's own error answers).
pub trait ResponseFilter: Send + Sync {
    fn name(&self) -> &'static str;
    fn response(&self, cx: &Ctx<'_>, resp: &mut Response<Outgoing>);
}

/// One route's filters, in the order they run.
#[derive(Default)]
pub struct Chain {
    request: Box<[Box<dyn RequestFilter>]>,
    /// Authentication, which may wait (a password hash on the blocking pool): run by the
    /// pipeline after the request filters.
    auth: Option<Box<auth::Auth>>,
    /// Request filters that need to know who `auth` let in (limits keyed by user).
    after_auth: Box<[Box<dyn RequestFilter>]>,
    body: Box<[Box<dyn BodyFilter>]>,
    response: Box<[Box<dyn ResponseFilter>]>,
}

impl Chain {
    pub fn new(request: Vec<Box<dyn RequestFilter>>, response: Vec<Box<dyn ResponseFilter>>) -> Self {
        Chain {
            request: request.into(),
            auth: None,
            after_auth: Box::new([]),
            body: Box::new([]),
            response: response.into(),
        }
    }

    pub fn with_auth(mut self, auth: Option<auth::Auth>, after: Vec<Box<dyn RequestFilter>>) -> Self {
        self.auth = auth.map(Box::new);
        self.after_auth = after.into();
        self
    }

    /// Runs the filters that follow `auth` until one answers.
    pub fn on_after_auth(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        for f in self.after_auth.iter() {
            if let Verdict::Respond(r) = f.request(cx, req, path) {
                return Verdict::Respond(r);
            }
        }
        Verdict::Continue
    }

    /// The route's authentication, if it has one.
    #[inline]
    pub fn auth(&self) -> Option<&auth::Auth> {
        self.auth.as_deref()
    }

    pub fn with_body(mut self, body: Vec<Box<dyn BodyFilter>>) -> Self {
        self.body = body.into();
        self
    }

    /// Bytes of this request's body that some body filter reads (the most any asks for).
    #[inline]
    pub fn body_wanted(&self, req: &Request<Inbound>) -> Option<usize> {
        if self.body.is_empty() {
            return None;
        }
        self.body.iter().filter_map(|f| f.wants(req)).max()
    }

    /// Runs the body filters over the body's first bytes until one answers.
    pub fn on_body(&self, cx: &Ctx<'_>, req: &Request<Inbound>, body: &[u8], path: &str) -> Verdict {
        for f in self.body.iter() {
            if let Verdict::Respond(r) = f.body(cx, req, body, path) {
                tracing::debug!(target: "gatehouse::filter", filter = f.name(), status = r.status().as_u16(), "request answered by a body filter");
                return Verdict::Respond(r);
            }
        }
        Verdict::Continue
    }

    /// Runs the request filters until one answers.
    #[inline]
    pub fn on_request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        if self.request.is_empty() {
            return Verdict::Continue;
        }
        self.run_request(cx, req, path)
    }

    fn run_request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        for f in self.request.iter() {
            if let Verdict::Respond(r) = f.request(cx, req, path) {
                tracing::debug!(target: "gatehouse::filter", filter = f.name(), status = r.status().as_u16(), "request answered by a filter");
                return Verdict::Respond(r);
            }
        }
        Verdict::Continue
    }

    #[inline]
    pub fn on_response(&self, cx: &Ctx<'_>, resp: &mut Response<Outgoing>) {
        for f in self.response.iter() {
            f.response(cx, resp);
        }
    }

    /// Whether any response filter edits heads: a route whose chain has none can let the
    /// own HTTP/1.1 loop copy a backend's field lines as they came (see
    /// `upstream::h1::Wanted::verbatim`).
    pub fn edits_responses(&self) -> bool {
        !self.response.is_empty()
    }

    /// The filters' names in order, for the admin API.
    pub fn names(&self) -> Vec<&'static str> {
        let body = self.body.iter().map(|f| f.name()).filter(|n| !self.request.iter().any(|r| r.name() == *n));
        let auth = self.auth.as_ref().map(|_| "auth");
        self.request
            .iter()
            .map(|f| f.name())
            .chain(auth)
            .chain(self.after_auth.iter().map(|f| f.name()))
            .chain(body)
            .chain(self.response.iter().map(|f| f.name()))
            .collect()
    }
}

/// For a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) that
/// found no route for OPTIONS: the route of the method it asks about, if that route has a
/// CORS policy (its filter then answers the preflight).
pub fn cors_preflight_route<'r>(
    router: &'r crate::route::Router,
    host: &str,
    path: &str,
    req: &Request<Inbound>,
) -> Option<&'r crate::route::Compiled> {
    if req.method() != http::Method::OPTIONS || !req.headers().contains_key(header::ORIGIN) {
        return None;
    }
    let wanted = req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let method = http::Method::from_bytes(wanted.as_bytes()).ok()?;
    match router.lookup(host, path, &method) {
        crate::route::Lookup::Found(c) if c.route.options.cors.is_some() => Some(c),
        _ => None,
    }
}

/// What a policy says about a request: go on, or refuse it by `rule` (the metrics'
/// label) for `reason` (the log's and the request record's).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Refuse { rule: &'static str, reason: String },
}

impl Decision {
    /// `Pass` goes on; `Refuse` is a 403 saying `message`, recorded as `kind`.
    pub fn verdict(self, cx: &Ctx<'_>, headers: &HeaderMap, kind: &'static str, message: &str) -> Verdict {
        match self {
            Decision::Pass => Verdict::Continue,
            Decision::Refuse { rule, reason } => forbid(cx, headers, (kind, rule), reason, message),
        }
    }
}

/// A policy's 403: recorded as `kind` by `rule` with `reason`, answered with `message`.
pub fn forbid(
    cx: &Ctx<'_>,
    headers: &HeaderMap,
    (kind, rule): (&'static str, &str),
    reason: String,
    message: &str,
) -> Verdict {
    cx.answered_by(kind, rule, reason);
    Verdict::Respond(refusal(cx, headers, StatusCode::FORBIDDEN, message))
}

/// A client's value for a log line or a reason: at most 120 characters.
pub fn shown(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX { s.to_string() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}

/// A filter's own refusal (403 for the WAF, a ban…): the site's page for the status, JSON
/// for a client that asks for it, or plain text; each names the request id, so a user who
/// was refused by mistake can report it.
pub fn refusal(cx: &Ctx<'_>, headers: &HeaderMap, status: StatusCode, message: &str) -> Response<Outgoing> {
    let id = cx.id.to_str().unwrap_or("");
    let reason = status.canonical_reason().unwrap_or("");
    let mut r = Response::new(Outgoing::full(format!("{} {reason}\n{message}\nrequest id: {id}\n", status.as_u16())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    let json = crate::error_page::wants_json(headers.get(header::ACCEPT));
    let template = cx.route.and_then(|route| route.pages.pages.get(&status.as_u16())).map(|p| &**p);
    if json || template.is_some() {
        let page = crate::error_page::Page { status, message, request_id: &cx.id, template };
        crate::error_page::fill(&mut r, &page, json);
    }
    r
}

/// What building a route's chain needs beyond the route itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env {
    /// The bound HTTPS port, for HTTP -> HTTPS redirects.
    pub https_port: Option<u16>,
    /// ACME validates over HTTP-01, so its answers are given before routing.
    pub acme_http01: bool,
}

/// Compiles a route's chain, in DESIGN.md §4 order: HTTPS redirect, IP, User-Agent and
/// Referer rules, maintenance, CORS preflights, rate limits, WAF, CSRF, the route's own
/// redirect; then (run by the pipeline) auth; body filters: the WAF; response filters:
/// header rules, CORS fields. CSRF comes before auth: a forged request is refused before a
/// password hash is spent on it. Bans are checked before routing (`before_routing`).
pub fn chain_for(
    route: &gatehouse_config::Route,
    site: &gatehouse_config::Site,
    env: &Env,
    shared: &crate::state::Shared,
) -> Chain {
    let mut request: Vec<Box<dyn RequestFilter>> = Vec::new();
    let mut response: Vec<Box<dyn ResponseFilter>> = Vec::new();
    if site.https_redirect
        && let Some(port) = env.https_port
    {
        request.push(Box::new(HttpsRedirect::new(port)));
    }
    // Access rules first: a refused client sees no maintenance page and uses no quota.
    if let Some(rules) = &route.options.ip {
        request.push(Box::new(ip::IpCheck::new(rules.clone())));
    }
    if let Some(rules) = &route.options.geo {
        request.push(Box::new(geo::GeoCheck::new(rules.clone())));
    }
    if let Some(rules) = &route.options.user_agent {
        request.push(Box::new(agent::UserAgent::new(rules.clone())));
    }
    if let Some(rules) = &route.options.referer {
        request.push(Box::new(agent::Referer::new(rules.clone())));
    }
    request.push(Box::new(Maintenance::new(site.name.as_str().into(), site.maintenance.clone())));
    // Preflights are answered before rate limits and the WAF see them.
    if let Some(c) = &route.options.cors {
        request.push(Box::new(cors::Cors::new(c.clone())));
    }
    // The site's own limits (the proxy-manager's site-level `rate_limit`): one table per
    // rule for the whole site, whichever route serves the request.
    for (i, l) in site.rate_limits.iter().enumerate() {
        let state = shared.limiter(&format!("{}/rate_limit[{i}]", site.name), &l.limit);
        let name = format!("site {}", site.name);
        request.push(Box::new(ratelimit::RateLimit::new(&name, l.limit.clone(), state).under(l.prefix.clone())));
    }
    let mut after_auth: Vec<Box<dyn RequestFilter>> = Vec::new();
    if let Some(limit) = &route.options.rate_limit {
        let state = shared.limiter(&route.id, limit);
        let filter = ratelimit::RateLimit::new(&route.id, limit.clone(), state);
        match (limit.by_user, &route.options.auth) {
            // By user: after `auth`, keyed by the header it sets (checked: a route limited
            // by user has `auth`).
            (true, Some(a)) => after_auth.push(Box::new(filter.by_user(a.user_header.clone()))),
            _ => request.push(Box::new(filter)),
        }
    }
    let mut body: Vec<Box<dyn BodyFilter>> = Vec::new();
    if let Some(w) = &route.options.waf {
        let waf = waf::Waf::new(w.clone());
        request.push(Box::new(waf.clone()));
        body.push(Box::new(waf));
    }
    if let Some(c) = &route.options.csrf {
        request.push(Box::new(csrf::Csrf::new(c.clone())));
    }
    if let gatehouse_config::Action::Redirect { to, code } = &route.action {
        request.push(Box::new(Redirect::new(to.clone(), *code)));
    }
    if !route.options.response_headers.is_empty() {
        response.push(Box::new(ResponseHeaders::new(route.options.response_headers.clone())));
    }
    if let Some(f) = &route.options.failed_logins {
        response.push(Box::new(failed_logins::FailedLogins::new(f.clone())));
    }
    // Last, so the CORS fields follow the policy whatever the header rules did.
    if let Some(c) = &route.options.cors {
        response.push(Box::new(cors::Cors::new(c.clone())));
    }
    let auth = route.options.auth.as_ref().map(|a| auth::Auth::new(a.clone()));
    Chain::new(request, response).with_auth(auth, after_auth).with_body(body)
}

/// The filters that run before routing, for every host (a validation request may name a
/// host no site serves yet).
pub fn before_routing(env: &Env) -> Chain {
    let mut request: Vec<Box<dyn RequestFilter>> = Vec::new();
    if env.acme_http01 {
        request.push(Box::new(AcmeHttp01));
    }
    // A ban covers every site, so it is checked before routing.
    request.push(Box::new(BanCheck));
    Chain::new(request, Vec::new())
}
