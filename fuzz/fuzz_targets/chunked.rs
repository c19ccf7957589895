//! The inline client's chunked-body decoder (upstream/h1.rs).
//! The properties checked are in `gatehouse_proxy::fuzzing::chunked`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_proxy::fuzzing::chunked(data));
