//! Request heads: our verdict against hyper's HTTP/1 server on the same bytes.
//! The properties checked are in `gatehouse_proxy::fuzzing::request_differential`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_proxy::fuzzing::request_differential(data));
