//! Banned addresses get 403 on every site, before routing (`security::ban`). The address is
//! the client's as `trusted_proxies` makes it: a spoofed `X-Forwarded-For` from an
//! untrusted peer changes nothing. Costs one atomic load while nobody is banned.

use std::time::SystemTime;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::{RequestFilter, Verdict};
use crate::body::{Inbound, Outgoing};
use crate::pipeline::Ctx;

pub struct BanCheck;

impl RequestFilter for BanCheck {
    fn name(&self) -> &'static str {
        "ban"
    }

    fn request(&self, cx: &Ctx<'_>, _req: &mut Request<Inbound>, _path: &str) -> Verdict {
        if cx.state.shared.bans.check(cx.client, SystemTime::now()).is_none() {
            return Verdict::Continue;
        }
        cx.answered_by("banned", "ban", "banned address".into());
        let mut r = Response::new(Outgoing::full("403 Forbidden\n"));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        Verdict::Respond(r)
    }
}
