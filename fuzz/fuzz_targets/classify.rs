//! Request paths and methods through `rotary_server::classify` under every profile and knob mix.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rotary_fuzz::checks::classify_input(data));
