//! A route's country rules (`options.geo`): the client's country by the GeoIP database
//! (`security::geo`), against `allow`, `deny` and `unknown`. Refusals answer 403.

use std::sync::Arc;

use gatehouse_config::GeoRules;
use http::Request;

use super::{RequestFilter, Verdict};
use crate::body::Inbound;
use crate::pipeline::Ctx;

pub struct GeoCheck {
    rules: Arc<GeoRules>,
}

impl GeoCheck {
    pub fn new(rules: Arc<GeoRules>) -> Self {
        GeoCheck { rules }
    }
}

impl RequestFilter for GeoCheck {
    fn name(&self) -> &'static str {
        "geo"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, _path: &str) -> Verdict {
        let country = cx.country;
        match self.rules.decide(country) {
            Ok(()) => Verdict::Continue,
            Err(rule) => {
                let shown = country
                    .map_or_else(|| "an unknown country".to_string(), |c| String::from_utf8_lossy(&c).into_owned());
                let reason = format!("requests from {shown} are not allowed");
                super::forbid(
                    cx,
                    req.headers(),
                    ("geo_denied", rule),
                    reason,
                    "Access from your location is not allowed.",
                )
            }
        }
    }
}
