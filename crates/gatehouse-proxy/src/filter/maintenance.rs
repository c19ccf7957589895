//! Maintenance mode of a site: while it is on (the site file's `maintenance.enabled`, one
//! of its scheduled `windows`, or a switch through the admin API), requests get a 503 with
//! the maintenance page and `Retry-After`, except from the `allow` networks. Must not read
//! the request body.
//!
//! Every route carries this filter, since the API can switch any site; a site that is not
//! in maintenance costs one atomic load (`Shared::switched`) and, with windows, a clock read.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::{RequestFilter, Verdict};
use crate::body::{Inbound, Outgoing};
use crate::error_page::{self, Page};
use crate::pipeline::Ctx;

/// A site's maintenance as switched through the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceSwitch {
    /// On or off, whatever the site file says.
    pub on: bool,
    /// When the switch lapses (back to the site file's settings).
    pub until: Option<SystemTime>,
    /// Shown on the page as `{{message}}`.
    pub message: Option<String>,
}

/// The page when the site has none of its own.
const BUILT_IN: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Down for maintenance</title></head>\n<body><h1>Down for maintenance</h1><p>{{message}}</p><p><small>Request {{request_id}}</small></p></body></html>\n";

const DEFAULT_MESSAGE: &str = "This site is down for maintenance and will be back shortly.";

pub struct Maintenance {
    site: Arc<str>,
    config: Option<Arc<gatehouse_config::Maintenance>>,
}

/// Whether maintenance applies now, and until when (if known).
pub struct Active {
    pub until: Option<SystemTime>,
    pub message: Option<String>,
}

impl Maintenance {
    pub fn new(site: Arc<str>, config: Option<Arc<gatehouse_config::Maintenance>>) -> Self {
        Maintenance { site, config }
    }

    /// Whether the site is in maintenance at `now`: an API switch in force wins; else the
    /// site file's `enabled`, else a window that holds `now`.
    pub fn active(&self, shared: &crate::state::Shared, now: SystemTime) -> Option<Active> {
        if shared.switched.load(Ordering::Relaxed) != 0
            && let Some(s) = shared.maintenance.load().get(&*self.site)
            && s.until.is_none_or(|u| now < u)
        {
            return s.on.then(|| Active { until: s.until, message: s.message.clone() });
        }
        let c = self.config.as_ref()?;
        if c.enabled {
            return Some(Active { until: None, message: None });
        }
        c.windows
            .iter()
            .find(|(start, end)| *start <= now && now < *end)
            .map(|(_, end)| Active { until: Some(*end), message: None })
    }
}

impl RequestFilter for Maintenance {
    fn name(&self) -> &'static str {
        "maintenance"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, _path: &str) -> Verdict {
        if self.config.is_none() && cx.state.shared.switched.load(Ordering::Relaxed) == 0 {
            return Verdict::Continue;
        }
        let now = SystemTime::now();
        let Some(active) = self.active(&cx.state.shared, now) else { return Verdict::Continue };
        if self.config.as_ref().is_some_and(|c| c.allow.iter().any(|n| n.contains(&cx.client))) {
            return Verdict::Continue;
        }
        let retry = active
            .until
            .and_then(|u| u.duration_since(now).ok())
            .unwrap_or_else(|| self.config.as_ref().map_or(Duration::from_secs(300), |c| c.retry_after));
        let template = self.config.as_ref().and_then(|c| c.page.as_deref()).unwrap_or(BUILT_IN);
        let message = active.message.as_deref().unwrap_or(DEFAULT_MESSAGE);
        Verdict::Respond(answer(cx, req.headers().get(header::ACCEPT), template, message, retry))
    }
}

/// A 503 maintenance answer with `template`.
pub fn answer(
    cx: &Ctx<'_>,
    accept: Option<&HeaderValue>,
    template: &str,
    message: &str,
    retry: Duration,
) -> Response<Outgoing> {
    let mut r = Response::new(Outgoing::Empty);
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let page = Page { status: StatusCode::SERVICE_UNAVAILABLE, message, request_id: &cx.id, template: Some(template) };
    error_page::fill(&mut r, &page, error_page::wants_json(accept));
    let secs = retry.as_secs().max(1);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
