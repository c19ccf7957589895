//! A route's fixed answer (`respond: {status, body}`): a health check's `ok`, a `410` for
//! what is gone, a `403` for what must never be served. It is the route's action, so it
//! comes after the route's policies (auth, rate limits, the WAF), as a file or a backend
//! would; the request's body is not read.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::Outgoing;

/// The answer: `status`, and `body` as `text/plain` (headers only for `HEAD`).
pub fn answer(status: StatusCode, body: &str, method: &Method) -> Response<Outgoing> {
    let mut r = match body.is_empty() || method == Method::HEAD {
        true => Response::new(Outgoing::Empty),
        false => Response::new(Outgoing::full(Bytes::copy_from_slice(body.as_bytes()))),
    };
    *r.status_mut() = status;
    if !body.is_empty() {
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    r
}
