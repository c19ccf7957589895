//! Forward authentication (`auth.forward`), as Authelia, Authentik and oauth2-proxy expect
//! it from nginx's `auth_request` or Traefik's ForwardAuth: for each request, a `GET` to
//! the service with the request's own headers (cookies, `Authorization`) and where it was
//! going (`X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`, `-For`, and `X-Original-URL`).
//! A 2xx answer lets the request go on, with the service's `copy_headers` (`Remote-User`,
//! `Remote-Groups`…) added; any other answer is what the client gets (a redirect to the
//! login portal, a 401), with its `Location`, `Set-Cookie`, `WWW-Authenticate` and body.
//!
//! One HTTP/1.1 connection per question (TLS for `https://`, verified against the system's
//! roots), within `timeout`; a service that cannot be asked is a 502, never a pass.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_config::ForwardAuth as Config;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use crate::body::Outgoing;

/// The most of a service's refusal body passed on (a login redirect's page is small).
const MAX_BODY: usize = 64 * 1024;

/// Fields of a refusal passed to the client.
const PASSED: [HeaderName; 6] = [
    header::LOCATION,
    header::SET_COOKIE,
    header::WWW_AUTHENTICATE,
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
];

/// What the service said.
pub enum Answer {
    /// Go on, with these fields for the backend.
    Pass(Vec<(HeaderName, HeaderValue)>),
    /// The client gets this instead.
    Refuse(Response<Outgoing>),
    /// The service could not be asked (and why).
    Unreachable(String),
}

/// What the service is told about the request.
pub struct Asked<'a> {
    pub method: &'a Method,
    /// The normalised path the request was routed by (what the backend gets), and the
    /// query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub client: IpAddr,
    pub tls: bool,
    pub host: &'a str,
}

pub struct Forward {
    config: Config,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Forward {
    pub fn new(config: Config) -> Self {
        let tls = (config.url.scheme_str() == Some("https")).then(|| {
            crate::upstream::tls::client_config(&gatehouse_config::UpstreamTls::default()).map(|mut c| {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                tokio_rustls::TlsConnector::from(Arc::new(c))
            })
        });
        let tls = match tls {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                tracing::error!(error = %e, "forward auth over HTTPS has no trusted roots; every request will get 502");
                None
            }
            None => None,
        };
        Forward { config, tls }
    }

    /// The fields the service's answer may set: removed from the client's request first.
    pub fn copied(&self) -> &[HeaderName] {
        &self.config.copy_headers
    }

    pub async fn ask(&self, asked: Asked<'_>) -> Answer {
        match tokio::time::timeout(self.config.timeout, self.exchange(asked)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => Answer::Unreachable(e),
            Err(_) => Answer::Unreachable(format!("no answer within {:?}", self.config.timeout)),
        }
    }

    async fn exchange(&self, asked: Asked<'_>) -> Result<Answer, String> {
        let url = &self.config.url;
        let host = url.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let https = url.scheme_str() == Some("https");
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let req = self.question(&asked)?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let resp = if https {
            let tls = self.tls.as_ref().ok_or("no TLS configuration")?;
            let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
            send(TokioIo::new(stream), req).await?
        } else {
            send(TokioIo::new(tcp), req).await?
        };
        let (parts, body) = resp.into_parts();
        if parts.status.is_success() {
            let copied = self
                .config
                .copy_headers
                .iter()
                .filter_map(|name| parts.headers.get(name).map(|v| (name.clone(), v.clone())))
                .collect();
            return Ok(Answer::Pass(copied));
        }
        let body = Limited::new(body, MAX_BODY).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let mut r = Response::new(Outgoing::full(body));
        *r.status_mut() = parts.status;
        for name in &PASSED {
            for v in parts.headers.get_all(name) {
                r.headers_mut().append(name.clone(), v.clone());
            }
        }
        Ok(Answer::Refuse(r))
    }

    /// The request to the service: the client's fields (not its body, nor the fields of
    /// its connection), and where the request was going.
    fn question(&self, a: &Asked<'_>) -> Result<Request<Full<Bytes>>, String> {
        let url = &self.config.url;
        let mut req = Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let h = req.headers_mut();
        for (name, value) in a.headers {
            let skip = matches!(
                name.as_str(),
                "host"
                    | "content-length"
                    | "transfer-encoding"
                    | "connection"
                    | "keep-alive"
                    | "upgrade"
                    | "te"
                    | "trailer"
                    | "proxy-connection"
                    | "expect"
            ) || name.as_str().starts_with("x-forwarded-");
            if !skip {
                h.append(name.clone(), value.clone());
            }
        }
        if let Some(authority) = url.authority()
            && let Ok(v) = HeaderValue::from_str(authority.as_str())
        {
            h.insert(header::HOST, v);
        }
        let proto = if a.tls { "https" } else { "http" };
        let target = match a.query {
            Some(q) => format!("{}?{q}", a.path),
            None => a.path.to_string(),
        };
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set("x-forwarded-method", a.method.to_string());
        set("x-forwarded-proto", proto.to_string());
        set("x-forwarded-host", a.host.to_string());
        set("x-forwarded-uri", target.to_string());
        set("x-forwarded-for", a.client.to_string());
        set("x-original-url", format!("{proto}://{}{target}", a.host));
        set("x-original-method", a.method.to_string());
        Ok(req)
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}
