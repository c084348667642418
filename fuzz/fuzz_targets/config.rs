//! Config files (TOML), config patches (JSON) and durations: parse, validate, round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rotary_fuzz::checks::duration_input(data);
    rotary_fuzz::checks::config_input(data);
});
