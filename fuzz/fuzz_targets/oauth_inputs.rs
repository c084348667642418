//! OAuth 2.0 inputs and token strings: scopes, redirect URIs, PKCE verifiers, client metadata,
//! token shapes and presented tokens a store never issued.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rotary_fuzz::checks::oauth_input(data));
