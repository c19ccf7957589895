//! The Host / authority parser the routing host comes from (http/proxy.rs).
//! The properties checked are in `gatehouse_proxy::fuzzing::host`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_proxy::fuzzing::host(data));
