//! The inline client's response-head parser, both modes (upstream/h1.rs).
//! The properties checked are in `gatehouse_proxy::fuzzing::response_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_proxy::fuzzing::response_head(data));
