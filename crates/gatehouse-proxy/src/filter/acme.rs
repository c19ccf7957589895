//! ACME HTTP-01: answers `/.well-known/acme-challenge/TOKEN` with the pending key
//! authorisation, before routing and for any host. Owns no state: the pending challenges
//! belong to the connection's listener (`ConnInfo::challenges`), filled by the ACME client.

use http::header::{self, HeaderValue};
use http::{Request, Response};

use super::{RequestFilter, Verdict};
use crate::body::{Inbound, Outgoing};
use crate::pipeline::Ctx;

pub const PREFIX: &str = "/.well-known/acme-challenge/";

pub struct AcmeHttp01;

impl RequestFilter for AcmeHttp01 {
    fn name(&self) -> &'static str {
        "acme_http01"
    }

    fn request(&self, cx: &Ctx<'_>, _req: &mut Request<Inbound>, path: &str) -> Verdict {
        let (Some(c), Some(token)) = (&cx.conn.challenges, path.strip_prefix(PREFIX)) else {
            return Verdict::Continue;
        };
        match c.http01(token) {
            Some(key_auth) => {
                let mut r = Response::new(Outgoing::full(key_auth));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                Verdict::Respond(r)
            }
            None => Verdict::Continue,
        }
    }
}
