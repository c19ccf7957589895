//! The HTTP request pipeline shared by HTTP/1.1 and HTTP/2:
//! early checks -> route -> action (proxy, static, redirect) -> response headers -> access log.

pub mod framing;
pub mod header;
pub(crate) mod proxy;
pub mod server;
pub(crate) mod streams;

pub use proxy::{ConnInfo, TlsInfo, handle};
