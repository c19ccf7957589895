//! Response header rules (`headers.response`: remove, set, add; presets such as
//! `security-basic` arrive here as rules, expanded by the configuration loader). Edits the
//! head only; must not touch the body or its framing fields.

use gatehouse_config::HeaderRules;
use http::Response;

use super::ResponseFilter;
use crate::body::Outgoing;
use crate::pipeline::Ctx;

pub struct ResponseHeaders {
    rules: HeaderRules,
}

impl ResponseHeaders {
    pub fn new(rules: HeaderRules) -> Self {
        ResponseHeaders { rules }
    }
}

impl ResponseFilter for ResponseHeaders {
    fn name(&self) -> &'static str {
        "response_headers"
    }

    fn response(&self, _cx: &Ctx<'_>, resp: &mut Response<Outgoing>) {
        crate::http::header::apply_rules(resp.headers_mut(), &self.rules);
    }
}
