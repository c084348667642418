//! PKCE (RFC 7636): code verifiers and their S256 challenges, and the other random strings a login
//! makes (states, device ids).

use base64::Engine;
use rand::RngExt;
use sha2::{Digest, Sha256};

/// Length of the PKCE code verifiers made here (RFC 7636 allows 43 to 128).
pub const VERIFIER_LEN: usize = 64;

/// RFC 3986 "unreserved" characters: what a PKCE verifier may contain.
const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
/// What generated device ids are made of.
pub(super) const DEVICE_ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The S256 code challenge of a verifier: BASE64URL-NOPAD(SHA256(verifier)) (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is a valid PKCE code verifier: 43 to 128 unreserved characters.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len()) && verifier.bytes().all(|b| UNRESERVED.contains(&b))
}

/// `len` characters drawn from `alphabet` by the thread's CSPRNG.
pub(super) fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// A fresh PKCE code verifier.
pub(crate) fn new_verifier() -> String {
    random_string(VERIFIER_LEN, UNRESERVED)
}

/// A fresh device id for the device scope.
pub(crate) fn new_device_id() -> String {
    random_string(10, DEVICE_ID_CHARS)
}
