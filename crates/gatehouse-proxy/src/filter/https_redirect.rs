//! HTTP -> HTTPS: a plain-HTTP request to a site with `https_redirect` gets a 308 to the
//! same URI on the HTTPS port (308 keeps the method and body, unlike 301). ACME HTTP-01
//! paths stay on HTTP: the validation server follows no redirect to a certificate that
//! does not exist yet. Must not redirect requests that arrived over TLS.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::{RequestFilter, Verdict};
use crate::body::{Inbound, Outgoing};
use crate::pipeline::Ctx;

pub struct HttpsRedirect {
    port: u16,
}

impl HttpsRedirect {
    pub fn new(port: u16) -> Self {
        HttpsRedirect { port }
    }
}

impl RequestFilter for HttpsRedirect {
    fn name(&self) -> &'static str {
        "https_redirect"
    }

    fn request(&self, cx: &Ctx<'_>, req: &mut Request<Inbound>, path: &str) -> Verdict {
        if cx.conn.tls.is_some() || path.starts_with(super::acme::PREFIX) {
            return Verdict::Continue;
        }
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let host = if cx.host.contains(':') { format!("[{}]", cx.host) } else { cx.host.to_string() };
        let location =
            if self.port == 443 { format!("https://{host}{pq}") } else { format!("https://{host}:{}{pq}", self.port) };
        let mut r = Response::new(Outgoing::Empty);
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Verdict::Respond(r)
    }
}
