//! The PROXY protocol header parser (proxy_protocol.rs).
//! The properties checked are in `gatehouse_proxy::fuzzing::proxy_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_proxy::fuzzing::proxy_header(data));
