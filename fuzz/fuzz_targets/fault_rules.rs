//! Fault rules (TOML and JSON) and path globs: parse, validate, round-trip, match.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rotary_fuzz::checks::fault_input(data);
    rotary_fuzz::checks::glob_input(data);
});
