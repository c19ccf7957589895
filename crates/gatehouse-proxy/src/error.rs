//! The one place where proxy failures become HTTP status codes.

use std::fmt;

/// Why a request could not be proxied. Every variant maps to one status in `status()`.
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
    #[error("connect to {backend} timed out")]
    ConnectTimeout { backend: String },
    #[error("upstream {backend} did not answer in time")]
    ReadTimeout { backend: String },
    #[error("upstream {backend} failed: {reason}")]
    Upstream { backend: String, reason: String },
    #[error("upstream response too large ({size} bytes > {limit})")]
    ResponseTooLarge { size: u64, limit: u64 },
    #[error("all {0} connections to the backend are busy")]
    PoolExhausted(usize),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("client sent the request body too slowly")]
    ClientTimeout,
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
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ProxyError::NoSite | ProxyError::NoRoute => S::NOT_FOUND,
            ProxyError::MethodNotAllowed(_) => S::METHOD_NOT_ALLOWED,
            ProxyError::Misdirected => S::MISDIRECTED_REQUEST,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } | ProxyError::ResponseTooLarge { .. } => {
                S::BAD_GATEWAY
            }
            ProxyError::ConnectTimeout { .. } | ProxyError::ReadTimeout { .. } => S::GATEWAY_TIMEOUT,
            ProxyError::PoolExhausted(_) => S::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge(_) => S::PAYLOAD_TOO_LARGE,
            ProxyError::ClientTimeout => S::REQUEST_TIMEOUT,
            ProxyError::HeadersTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UriTooLong => S::URI_TOO_LONG,
            ProxyError::BadRequest(_) => S::BAD_REQUEST,
            ProxyError::NotImplemented(_) => S::NOT_IMPLEMENTED,
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
        )
    }
}

/// Errors raised inside streaming bodies (request or response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The request body went past the route's limit.
    TooLarge(u64),
    /// No body data within the allowed time.
    Timeout,
    /// The response body went past the route's limit.
    ResponseTooLarge(u64),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(n) => write!(f, "request body larger than {n} bytes"),
            BodyError::Timeout => f.write_str("body timed out"),
            BodyError::ResponseTooLarge(n) => write!(f, "response body larger than {n} bytes"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Finds a `BodyError` anywhere in an error's source chain (hyper wraps body errors).
pub fn find_body_error(e: &(dyn std::error::Error + 'static)) -> Option<BodyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return Some(*b);
        }
        cur = err.source();
    }
    None
}
