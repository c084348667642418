//! Token strings: CSPRNG generation in Synapse's (`syt_…`), MAS's compat (`mct_…`) and MAS's OAuth
//! 2.0 (`mat_…`) shapes, and their checks.

use crate::config::Dialect;
use base64::Engine;
use rand::RngExt;

/// Which kind of token a string is meant to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An access token.
    Access,
    /// A refresh token.
    Refresh,
}

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random letters per token: 24 × log2(52) ≈ 136 bits (Synapse uses 20 ≈ 114 bits; we want ≥ 128).
const RANDOM_LETTERS: usize = 24;

fn prefix(dialect: Dialect, kind: TokenKind) -> &'static str {
    match (dialect, kind) {
        (Dialect::Mas, TokenKind::Access) => "mct_",
        (Dialect::Mas, TokenKind::Refresh) => "mcr_",
        (_, TokenKind::Access) => "syt_",
        (_, TokenKind::Refresh) => "syr_",
    }
}

fn base62(mut n: u32, min_width: usize) -> String {
    let mut digits = Vec::with_capacity(min_width);
    while n > 0 {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while digits.len() < min_width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

/// Generates a fresh token for `localpart`, e.g. `syt_YWxpY2U_<24 letters>_<crc>`.
///
/// ```
/// use rotary_server::{generate_token, check_token_shape, Dialect, TokenKind};
/// let t = generate_token(Dialect::Synapse, TokenKind::Refresh, "alice");
/// assert!(t.starts_with("syr_YWxpY2U_"));
/// assert!(check_token_shape(Dialect::Synapse, TokenKind::Refresh, &t));
/// ```
pub fn generate_token(dialect: Dialect, kind: TokenKind, localpart: &str) -> String {
    let random = random_letters();
    let base = match dialect {
        Dialect::Mas => format!("{}{}", prefix(dialect, kind), random),
        _ => {
            let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(localpart.as_bytes());
            format!("{}{}_{}", prefix(dialect, kind), b64, random)
        }
    };
    let crc = crc32fast::hash(base.as_bytes());
    format!("{base}_{}", base62(crc, 6))
}

fn oauth_prefix(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => "mat_",
        TokenKind::Refresh => "mar_",
    }
}

fn random_letters() -> String {
    let mut rng = rand::rng();
    (0..RANDOM_LETTERS)
        .map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())]))
        .collect()
}

/// Generates a fresh OAuth 2.0 token in MAS's shape, whatever the dialect: `mat_<24 letters>_<crc>`
/// (access) or `mar_…` (refresh).
///
/// ```
/// use rotary_server::{generate_oauth_token, check_oauth_token_shape, TokenKind};
/// let t = generate_oauth_token(TokenKind::Access);
/// assert!(t.starts_with("mat_"));
/// assert!(check_oauth_token_shape(TokenKind::Access, &t));
/// assert!(!check_oauth_token_shape(TokenKind::Refresh, &t));
/// ```
pub fn generate_oauth_token(kind: TokenKind) -> String {
    let base = format!("{}{}", oauth_prefix(kind), random_letters());
    let crc = crc32fast::hash(base.as_bytes());
    format!("{base}_{}", base62(crc, 6))
}

/// Whether `token` has the shape and checksum of an OAuth 2.0 token of this kind.
pub fn check_oauth_token_shape(kind: TokenKind, token: &str) -> bool {
    let Some(rest) = token.strip_prefix(oauth_prefix(kind)) else {
        return false;
    };
    let Some((_, crc)) = rest.rsplit_once('_') else {
        return false;
    };
    let base = &token[..token.len() - crc.len() - 1];
    rest.split('_').count() == 2 && base62(crc32fast::hash(base.as_bytes()), 6) == crc
}

/// Whether `token` has the shape and checksum of a token this dialect issues (Synapse answers
/// "invalid refresh token" before any lookup when it does not).
pub fn check_token_shape(dialect: Dialect, kind: TokenKind, token: &str) -> bool {
    let Some(rest) = token.strip_prefix(prefix(dialect, kind)) else {
        return false;
    };
    let Some((_, crc)) = rest.rsplit_once('_') else {
        return false;
    };
    let base = &token[..token.len() - crc.len() - 1];
    let parts = rest.split('_').count();
    let expected_parts = if dialect == Dialect::Mas { 2 } else { 3 };
    parts == expected_parts && base62(crc32fast::hash(base.as_bytes()), 6) == crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_well_formed() {
        let a = generate_token(Dialect::Synapse, TokenKind::Access, "alice");
        let b = generate_token(Dialect::Synapse, TokenKind::Access, "alice");
        assert_ne!(a, b);
        assert!(a.starts_with("syt_YWxpY2U_"));
        assert!(check_token_shape(Dialect::Synapse, TokenKind::Access, &a));
        assert!(!check_token_shape(Dialect::Synapse, TokenKind::Refresh, &a));
        let m = generate_token(Dialect::Mas, TokenKind::Refresh, "alice");
        assert!(m.starts_with("mcr_"));
        assert!(check_token_shape(Dialect::Mas, TokenKind::Refresh, &m));
        let o = generate_oauth_token(TokenKind::Refresh);
        assert!(o.starts_with("mar_"));
        assert!(check_oauth_token_shape(TokenKind::Refresh, &o));
        assert!(!check_token_shape(Dialect::Mas, TokenKind::Refresh, &o));
        assert!(!check_oauth_token_shape(TokenKind::Refresh, &m));
        assert!(!check_oauth_token_shape(TokenKind::Refresh, "mar_x"));
    }

    #[test]
    fn a_flipped_character_fails_the_checksum() {
        let t = generate_token(Dialect::Synapse, TokenKind::Refresh, "bob");
        let mut chars: Vec<char> = t.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let broken: String = chars.into_iter().collect();
        assert!(!check_token_shape(Dialect::Synapse, TokenKind::Refresh, &broken));
        assert!(!check_token_shape(Dialect::Synapse, TokenKind::Refresh, "syr_x"));
        assert!(!check_token_shape(Dialect::Synapse, TokenKind::Refresh, ""));
    }
}
