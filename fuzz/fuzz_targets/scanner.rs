//! The raw-byte smuggling scanner behind hyper (http/framing.rs).
//! The properties checked are in `gatehouse_proxy::fuzzing::scanner`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_proxy::fuzzing::scanner(data));
