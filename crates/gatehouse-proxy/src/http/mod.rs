//! HTTP on the client side: the own HTTP/1.1 loop (`server`), wire helpers, framing and
//! header handling, early request checks, and the proxy action. The phases themselves are
//! ordered in `crate::pipeline`.

pub mod framing;
pub mod header;
pub(crate) mod proxy;
pub(crate) mod request;
pub mod server;
pub(crate) mod spare;
pub(crate) mod streams;
pub mod trace;
pub mod wire;
