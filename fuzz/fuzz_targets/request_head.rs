//! The own HTTP/1.1 loop's request-head parser (http/server.rs).
//! The properties checked are in `gatehouse_proxy::fuzzing::request_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_proxy::fuzzing::request_head(data));
