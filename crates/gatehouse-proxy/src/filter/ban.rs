//! Banned addresses get 403 on every site, before routing (`security::ban`). The address is
//! the client's as `trusted_proxies` makes it: a spoofed `X-Forwarded-For` from an
//! untrusted peer changes nothing. Costs one atomic load while nobody is banned.

use std::time::SystemTime;

use http::Request;

use super::{RequestFilter, Verdict};
use crate::body::Inbound;
use crate::pipeline::Ctx;

pub struct BanCheck;

impl RequestFilter for BanCheck {
    fn name(&self) -> &'static str {
        "ban"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, _path: &str) -> Verdict {
        if cx.state.shared.bans.check(cx.client, SystemTime::now()).is_none() {
            return Verdict::Continue;
        }
        let message = "Your address is banned.";
        super::forbid(cx, req.headers(), ("banned", "ban"), "banned address".into(), message)
    }
}
