//! The HTTP client for what Gatehouse itself sends out (webhooks, OTLP spans): HTTP/1.1,
//! HTTPS verified against the system's root certificates (rustls, aws-lc-rs).

use bytes::Bytes;
use http_body_util::Full;

pub type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// A client, or `None` (logged) when the system has no usable root certificates.
pub fn client() -> Option<Client> {
    let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(e) => {
            tracing::error!(error = %e, "no trusted root certificates; webhooks and OTLP export are not sent");
            return None;
        }
    };
    Some(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}

/// The host of a URL, for logs (the rest may be a secret).
pub fn host(url: &str) -> String {
    http::Uri::try_from(url).ok().and_then(|u| u.host().map(str::to_string)).unwrap_or_else(|| "?".into())
}
