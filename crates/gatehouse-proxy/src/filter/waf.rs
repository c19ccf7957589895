//! A route's web application firewall (`options.waf`): the request head is inspected as a
//! request filter, the first `body_limit` bytes of a form or JSON body as a body filter
//! (`security::waf` reads and decides). In `block` mode a finding answers 403 with the
//! request id; in `log` mode the request goes on. Either way the finding is logged with its
//! rule, place, a cut fragment of the value and the client's address, and counted by route
//! and rule.

use std::sync::Arc;

use http::{HeaderMap, Request};

use super::{BodyFilter, RequestFilter, Verdict};
use crate::body::Inbound;
use crate::pipeline::Ctx;
use crate::security::waf::{Engine, Finding};
use gatehouse_config::WafMode;

/// One engine serves the route's request filter and body filter (clones share it).
#[derive(Clone)]
pub struct Waf {
    engine: Arc<Engine>,
}

impl Waf {
    pub fn new(config: Arc<gatehouse_config::Waf>) -> Self {
        Waf { engine: Arc::new(Engine::new(config)) }
    }

    fn found(&self, cx: &Ctx<'_>, headers: &HeaderMap, f: Finding) -> Verdict {
        let route = cx.route.map_or("", |r| r.route.id.as_str());
        let group = match &f.message {
            Some(m) => format!("{}: {m}", f.group),
            None => f.group.to_string(),
        };
        let reason = format!("waf rule {} ({group}) in {}: {}", f.rule, f.place, f.fragment);
        match self.engine.config().mode {
            WafMode::Block => {
                tracing::warn!(target: "gatehouse::waf", client = %cx.client, route, rule = %f.rule, group = f.group, rule_message = f.message.as_deref().unwrap_or(""), place = %f.place, fragment = %f.fragment, "request blocked");
                let message = "The request was blocked by the web application firewall.";
                super::forbid(cx, headers, ("waf_blocked", &f.rule), reason, message)
            }
            WafMode::Log => {
                tracing::warn!(target: "gatehouse::waf", client = %cx.client, route, rule = %f.rule, group = f.group, rule_message = f.message.as_deref().unwrap_or(""), place = %f.place, fragment = %f.fragment, "request matched (log mode)");
                cx.flagged("waf_logged", &f.rule, reason);
                Verdict::Continue
            }
        }
    }
}

impl RequestFilter for Waf {
    fn name(&self) -> &'static str {
        "waf"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        match self.engine.head(req.uri().path(), req.uri().query(), req.headers(), path) {
            Some(f) => self.found(cx, req.headers(), f),
            None => Verdict::Continue,
        }
    }
}

impl BodyFilter for Waf {
    fn name(&self) -> &'static str {
        "waf"
    }

    fn wants(&self, req: &Request<Inbound>) -> Option<usize> {
        // A request already flagged in log mode is not read again.
        self.engine.wants_body(req.headers()).then_some(self.engine.config().body_limit)
    }

    fn body(&self, cx: &Ctx<'_>, req: &Request<Inbound>, body: &[u8], path: &str) -> Verdict {
        match self.engine.body(req.headers(), body, path) {
            Some(f) => self.found(cx, req.headers(), f),
            None => Verdict::Continue,
        }
    }
}
