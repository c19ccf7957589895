//! Why a request failed, who is to blame, and what the client is told.
//!
//! Every failure on the request path is a `ProxyError`. Each one knows its **side**
//! (the client, a backend, or Gatehouse itself) and whether trying again is safe; `status`
//! is the only place that picks a status code, and `answer` the only place that builds the
//! error response. Passive health checks and breakers (later) count only `Side::Backend`:
//! a client that sends garbage can never make a healthy backend look broken.

use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Outgoing;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request itself: malformed, too large, too slow, cut off.
    Client,
    /// A backend: refused, reset, timed out, answered with something unusable.
    Backend,
    /// Gatehouse: a limit of its own (connection pool full) or a fault of its own.
    Gatehouse,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Gatehouse => "gatehouse",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a failed attempt may be made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    No,
    /// Nothing reached a backend (the connection failed): safe for every method, on
    /// another backend.
    Safe,
    /// A pooled connection turned out to be closed by the backend as the request went out,
    /// so no application saw it: safe for a bodiless idempotent request, on a new
    /// connection to the same backend.
    Stale,
}

/// Why a request could not be served. Every variant maps to one status in `status()` and
/// one side in `side()`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no site serves this host")]
    NoSite,
    #[error("no route matches")]
    NoRoute,
    #[error("this connection's certificate does not serve the requested host")]
    Misdirected,
    #[error("method not allowed")]
    MethodNotAllowed(String),
    #[error("connect to {backend} failed: {reason}")]
    Connect { backend: String, reason: String },
    /// The backend's host name resolved to no address (at build time and since).
    #[error("{backend}: host name does not resolve")]
    Unresolved { backend: String },
    #[error("connect to {backend} timed out")]
    ConnectTimeout { backend: String },
    #[error("upstream {backend} did not answer in time")]
    ReadTimeout { backend: String },
    #[error("upstream {backend} failed: {reason}")]
    Upstream { backend: String, reason: String },
    /// `Upstream`, on a reused connection, before any byte of an answer (see `Retry::Stale`).
    #[error("upstream {backend} closed a pooled connection: {reason}")]
    Stale { backend: String, reason: String },
    #[error("upstream response too large ({size} bytes > {limit})")]
    ResponseTooLarge { size: u64, limit: u64 },
    #[error("all {0} connections to the backend are busy")]
    PoolExhausted(usize),
    /// Health checks took every backend of the upstream out of rotation.
    #[error("no healthy backend: every backend failed its health checks")]
    NoHealthyBackend,
    /// Every backend left is behind an open circuit breaker; one lets a probe through in
    /// `retry_after` seconds.
    #[error("every backend's circuit breaker is open")]
    CircuitOpen { retry_after: u64 },
    /// The site's `websocket.max_connections` tunnels are open.
    #[error("all {0} WebSocket connections of this site are in use")]
    TunnelsFull(usize),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("client sent the request body too slowly")]
    ClientTimeout,
    /// The request body's average rate stayed under `server.request_body_min_rate`.
    #[error("request body slower than {0} bytes per second")]
    BodyTooSlow(u64),
    /// The client's request body broke off or was malformed (bad chunk framing, a reset
    /// stream, a closed connection).
    #[error("client request body failed: {0}")]
    ClientBody(String),
    #[error("request header section too large")]
    HeadersTooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        use StatusCode as S;
        match self {
            ProxyError::NoSite | ProxyError::NoRoute => S::NOT_FOUND,
            ProxyError::MethodNotAllowed(_) => S::METHOD_NOT_ALLOWED,
            ProxyError::Misdirected => S::MISDIRECTED_REQUEST,
            ProxyError::Connect { .. }
            | ProxyError::Unresolved { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::Stale { .. }
            | ProxyError::ResponseTooLarge { .. } => S::BAD_GATEWAY,
            ProxyError::ConnectTimeout { .. } | ProxyError::ReadTimeout { .. } => S::GATEWAY_TIMEOUT,
            ProxyError::PoolExhausted(_)
            | ProxyError::NoHealthyBackend
            | ProxyError::CircuitOpen { .. }
            | ProxyError::TunnelsFull(_) => S::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge(_) => S::PAYLOAD_TOO_LARGE,
            ProxyError::ClientTimeout | ProxyError::BodyTooSlow(_) => S::REQUEST_TIMEOUT,
            ProxyError::HeadersTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UriTooLong => S::URI_TOO_LONG,
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => S::BAD_REQUEST,
            ProxyError::NotImplemented(_) => S::NOT_IMPLEMENTED,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::ReadTimeout { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::Stale { .. }
            | ProxyError::ResponseTooLarge { .. }
            | ProxyError::NoHealthyBackend
            | ProxyError::CircuitOpen { .. } => Side::Backend,
            // Nothing was asked of the backend: its name did not resolve (DNS or the
            // configuration), or Gatehouse's own connection limit was reached.
            ProxyError::PoolExhausted(_) | ProxyError::Unresolved { .. } | ProxyError::TunnelsFull(_) => {
                Side::Gatehouse
            }
            _ => Side::Client,
        }
    }

    pub fn retry(&self) -> Retry {
        match self {
            // Nothing was sent: no connection, or none free under `max_connections_per_host`.
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::Unresolved { .. }
            | ProxyError::PoolExhausted(_) => Retry::Safe,
            ProxyError::Stale { .. } => Retry::Stale,
            _ => Retry::No,
        }
    }

    /// A short stable name for logs and records (`connect_timeout`, `client_body`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoSite => "no_site",
            ProxyError::NoRoute => "no_route",
            ProxyError::Misdirected => "misdirected",
            ProxyError::MethodNotAllowed(_) => "method_not_allowed",
            ProxyError::Connect { .. } => "connect",
            ProxyError::Unresolved { .. } => "unresolved",
            ProxyError::ConnectTimeout { .. } => "connect_timeout",
            ProxyError::ReadTimeout { .. } => "read_timeout",
            ProxyError::Upstream { .. } => "upstream",
            ProxyError::Stale { .. } => "stale_connection",
            ProxyError::ResponseTooLarge { .. } => "response_too_large",
            ProxyError::PoolExhausted(_) => "pool_exhausted",
            ProxyError::NoHealthyBackend => "no_healthy_backend",
            ProxyError::CircuitOpen { .. } => "circuit_open",
            ProxyError::TunnelsFull(_) => "websocket_limit",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::ClientTimeout => "client_timeout",
            ProxyError::BodyTooSlow(_) => "body_too_slow",
            ProxyError::ClientBody(_) => "client_body",
            ProxyError::HeadersTooLarge => "headers_too_large",
            ProxyError::UriTooLong => "uri_too_long",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::NotImplemented(_) => "not_implemented",
        }
    }

    /// Whether the client connection should be closed after this answer: framing
    /// problems and unread bodies leave the byte stream in an unknown state.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::NotImplemented(_)
                | ProxyError::BodyTooLarge(_)
                | ProxyError::ClientTimeout
                | ProxyError::BodyTooSlow(_)
                | ProxyError::ClientBody(_)
        )
    }

    /// The error response: the status line's text as a plain-text body, `Allow` on 405,
    /// `Connection: close` where the connection cannot go on.
    pub fn answer(&self) -> Response<Outgoing> {
        let status = self.status();
        let mut r = Response::new(Outgoing::full(Bytes::from(format!("{status}\n"))));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if let ProxyError::MethodNotAllowed(allow) = self
            && let Ok(v) = HeaderValue::from_str(allow)
        {
            h.insert(header::ALLOW, v);
        }
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self {
            // Checks run every few seconds: worth trying again soon.
            ProxyError::NoHealthyBackend => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ProxyError::CircuitOpen { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from((*retry_after).max(1)));
            }
            _ => {}
        }
        r
    }

    /// What the client is told about the failure: its own request's fault in full; a
    /// backend's or Gatehouse's only in general words (never an address, an error text
    /// from a backend, or anything else about the inside).
    pub fn public_message(&self) -> std::borrow::Cow<'static, str> {
        if self.side() == Side::Client {
            return self.to_string().into();
        }
        match self.status() {
            StatusCode::GATEWAY_TIMEOUT => "The server behind this site took too long to answer.".into(),
            StatusCode::SERVICE_UNAVAILABLE => {
                "No server behind this site is available right now. Please try again shortly.".into()
            }
            _ => "The server behind this site could not answer this request.".into(),
        }
    }

    /// Every backend of the route is out (health checks, breakers): the site's maintenance
    /// page, when it has one, says it better than an error page.
    pub fn all_backends_out(&self) -> bool {
        matches!(self, ProxyError::NoHealthyBackend | ProxyError::CircuitOpen { .. })
    }
}

/// Errors raised inside streaming bodies (request or response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The request body went past the route's limit.
    TooLarge(u64),
    /// No body data within the allowed time.
    Timeout,
    /// The response body went past the route's limit.
    ResponseTooLarge(u64),
    /// The client's request body failed (malformed framing, reset, closed early).
    Client(String),
    /// The request body came in slower than the minimum rate (bytes per second).
    TooSlow(u64),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(n) => write!(f, "request body larger than {n} bytes"),
            BodyError::Timeout => f.write_str("body timed out"),
            BodyError::ResponseTooLarge(n) => write!(f, "response body larger than {n} bytes"),
            BodyError::Client(reason) => write!(f, "client request body failed: {reason}"),
            BodyError::TooSlow(rate) => write!(f, "request body slower than {rate} bytes per second"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Finds a `BodyError` anywhere in an error's source chain (hyper wraps body errors).
pub fn find_body_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyError> {
    let mut cur: Option<&'e (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

/// A request-side body error as the proxy error it stands for; `None` for errors of the
/// response side, which belong to the backend.
pub fn client_body_error(e: &BodyError) -> Option<ProxyError> {
    match e {
        BodyError::TooLarge(n) => Some(ProxyError::BodyTooLarge(*n)),
        BodyError::Timeout => Some(ProxyError::ClientTimeout),
        BodyError::Client(reason) => Some(ProxyError::ClientBody(reason.clone())),
        BodyError::TooSlow(rate) => Some(ProxyError::BodyTooSlow(*rate)),
        BodyError::ResponseTooLarge(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_fault_is_never_the_backends() {
        let client = [
            ProxyError::ClientBody("bad chunk".into()),
            ProxyError::ClientTimeout,
            ProxyError::BodyTooLarge(1),
            ProxyError::BadRequest("x"),
        ];
        for e in &client {
            assert_eq!(e.side(), Side::Client, "{e}");
            assert!(e.status().is_client_error(), "{e}");
            assert!(e.closes_connection(), "{e}");
            assert_eq!(e.retry(), Retry::No, "{e}");
        }
        let backend = ProxyError::Connect { backend: "b".into(), reason: "refused".into() };
        assert_eq!(
            (backend.side(), backend.retry(), backend.status()),
            (Side::Backend, Retry::Safe, StatusCode::BAD_GATEWAY)
        );
        let timeout = ProxyError::ReadTimeout { backend: "b".into() };
        assert_eq!((timeout.side(), timeout.retry()), (Side::Backend, Retry::No));
        assert_eq!(ProxyError::PoolExhausted(4).side(), Side::Gatehouse);
        // A body under `server.request_body_min_rate` is the client's: 408, connection closed.
        let slow = client_body_error(&BodyError::TooSlow(100)).expect("a request-side error");
        assert_eq!(
            (slow.status(), slow.side(), slow.closes_connection()),
            (StatusCode::REQUEST_TIMEOUT, Side::Client, true)
        );
        // A name that does not resolve never reached the backend: not its failure, and the
        // next backend may still serve the request.
        let unresolved = ProxyError::Unresolved { backend: "http://app.internal:80".into() };
        assert_eq!((unresolved.side(), unresolved.retry()), (Side::Gatehouse, Retry::Safe));
    }
}
