//! Routes: how a path matches, what the route does (proxy, static files, redirect, a fixed
//! answer) and its options.

use super::*;

#[derive(Debug, Clone)]
pub struct Route {
    /// `site-name#index`, stable across reloads while the file keeps its shape.
    pub id: String,
    pub path: PathMatch,
    pub methods: Option<Vec<Method>>,
    /// Higher wins; ties go to the more specific match (exact > longer prefix > regex), then file order.
    pub priority: i32,
    pub action: Action,
    pub strip_prefix: Option<String>,
    pub rewrite: Option<Rewrite>,
    pub options: RouteOptions,
    /// This route's `logging` when it has one (unset keys from its site's, then the main
    /// file's).
    pub logging: Option<LoggingConfig>,
    /// This route's `data_retention` when it has one.
    pub retention: Option<RetentionConfig>,
    /// Traffic shared between upstreams (`split`); the action's upstream is its first pool.
    pub split: Option<Arc<Split>>,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Matches the prefix at a segment boundary: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    Regex(Regex),
}

impl std::fmt::Display for PathMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathMatch::Exact(p) => write!(f, "= {p}"),
            PathMatch::Prefix(p) => write!(f, "{p}"),
            PathMatch::Regex(r) => write!(f, "~ {}", r.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rewrite {
    pub pattern: Regex,
    pub replace: String,
}

#[derive(Debug, Clone)]
pub enum Action {
    Proxy(Arc<Upstream>),
    Static(StaticDir),
    Redirect {
        to: String,
        code: StatusCode,
    },
    /// A fixed answer: `status`, and `body` as `text/plain` (none when empty).
    Respond {
        status: StatusCode,
        body: String,
    },
}

#[derive(Debug, Clone)]
pub struct StaticDir {
    pub root: PathBuf,
    pub index: Vec<String>,
    /// Directories without an index file are answered with a listing (`browse: true`).
    pub browse: bool,
    /// The file (relative to `root`, already checked to stay inside it) that answers a path
    /// naming nothing (`fallback`).
    pub fallback: Option<String>,
    /// Names starting with `.` are served (`dotfiles`, default true); `.well-known` always is.
    pub dotfiles: bool,
}

/// Options after merging defaults <- site <- route.
#[derive(Debug, Clone)]
pub struct RouteOptions {
    pub connect_timeout: Duration,
    /// Time to the first response byte, and between response body chunks.
    pub read_timeout: Duration,
    /// Time allowed between two request body chunks from the client.
    pub write_timeout: Duration,
    pub max_request_body: Option<u64>,
    pub max_request_headers: u64,
    pub max_request_header_count: usize,
    pub max_uri_length: usize,
    pub max_response_body: Option<u64>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// Requests slower than this are logged as slow (`slow_request.warning`).
    pub slow_warning: Option<Duration>,
    /// ... and this, as critically slow (`slow_request.critical`).
    pub slow_critical: Option<Duration>,
    /// `rate_limit`, when set.
    pub rate_limit: Option<std::sync::Arc<RateLimit>>,
    /// `waf`, when set and enabled.
    pub waf: Option<std::sync::Arc<Waf>>,
    /// `auth`, when set.
    pub auth: Option<std::sync::Arc<Auth>>,
    /// `cors`, when set and enabled.
    pub cors: Option<std::sync::Arc<Cors>>,
    /// `ip`: client address allow/deny lists.
    pub ip: Option<std::sync::Arc<IpRules>>,
    pub user_agent: Option<std::sync::Arc<AgentRules>>,
    pub referer: Option<std::sync::Arc<RefererRules>>,
    pub csrf: Option<std::sync::Arc<Csrf>>,
    /// `geo`: country rules.
    pub geo: Option<std::sync::Arc<GeoRules>>,
    /// `failed_logins`: the application's answers that count towards bans.
    pub failed_logins: Option<std::sync::Arc<FailedLogins>>,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_request_body: Some(10_000_000),
            max_request_headers: 64 * 1024,
            max_request_header_count: 100,
            max_uri_length: 8192,
            max_response_body: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            slow_warning: None,
            slow_critical: None,
            rate_limit: None,
            waf: None,
            auth: None,
            cors: None,
            ip: None,
            user_agent: None,
            referer: None,
            csrf: None,
            geo: None,
            failed_logins: None,
        }
    }
}

/// Header edits applied in order: remove, then set (replace), then add (append).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}
