//! A route's fixed answer (`respond: {status, body}`): a health check's `ok`, a `410` for
//! what is gone, a `403` for what must never be served. Must not read the request body,
//! like a redirect.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::{RequestFilter, Verdict};
use crate::body::{Inbound, Outgoing};
use crate::pipeline::Ctx;

pub struct Respond {
    status: StatusCode,
    body: Bytes,
}

impl Respond {
    pub fn new(status: StatusCode, body: &str) -> Self {
        Respond { status, body: Bytes::copy_from_slice(body.as_bytes()) }
    }
}

impl RequestFilter for Respond {
    fn name(&self) -> &'static str {
        "respond"
    }

    fn request(&self, _: &Ctx<'_>, req: &mut Request<Inbound>, _: &str) -> Verdict {
        let mut r = match self.body.is_empty() || req.method() == Method::HEAD {
            true => Response::new(Outgoing::Empty),
            false => Response::new(Outgoing::full(self.body.clone())),
        };
        *r.status_mut() = self.status;
        if !self.body.is_empty() {
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        Verdict::Respond(r)
    }
}
