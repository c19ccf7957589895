//! A route's own redirect (`redirect: {to, code}`): `{uri}` in the target becomes the
//! request's path (after `strip_prefix` and `rewrite`) and query, `{host}` its host. Must
//! not read the request body: a redirect answers before any of it is read.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::{RequestFilter, Verdict};
use crate::body::{Inbound, Outgoing};
use crate::pipeline::Ctx;

pub struct Redirect {
    to: String,
    code: StatusCode,
}

impl Redirect {
    pub fn new(to: String, code: StatusCode) -> Self {
        Redirect { to, code }
    }
}

impl RequestFilter for Redirect {
    fn name(&self) -> &'static str {
        "redirect"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        let target = match cx.route {
            Some(route) => crate::route::rewrite_path(route, path),
            None => path.into(),
        };
        let pq = match req.uri().query() {
            Some(q) => format!("{target}?{q}"),
            None => target.into_owned(),
        };
        let location = self.to.replace("{uri}", &pq).replace("{host}", cx.host);
        let mut r = Response::new(Outgoing::Empty);
        *r.status_mut() = self.code;
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Verdict::Respond(r)
    }
}
