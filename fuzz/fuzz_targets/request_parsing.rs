//! Arbitrary bytes as raw HTTP/1.1 (or framed into a well-formed request) against in-process
//! `synapse` and `mas` servers: no panic, no 5xx without a fault, no trace entry left pending.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rotary_fuzz::request::exchange(data));
