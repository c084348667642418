//! Token strings: CSPRNG generation in Synapse's (`syt_…`), MAS's compat (`mct_…`) and MAS's OAuth
//! 2.0 (`mat_…`) shapes, and their checks.

use crate::config::Dialect;
use base64::Engine;
use rand::Rng;

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

/// `n` in base 62, at least `min_width` (at most 8) digits, zero-padded: the digits and their count.
fn base62_digits(mut n: u32, min_width: usize) -> ([u8; 8], usize) {
    // u32::MAX has 6 base-62 digits.
    let mut reversed = [b'0'; 8];
    let mut len = 0;
    while n > 0 {
        reversed[len] = BASE62[(n % 62) as usize];
        n /= 62;
        len += 1;
    }
    let len = len.max(min_width.min(8));
    let mut digits = [0u8; 8];
    for (d, r) in digits.iter_mut().zip(reversed[..len].iter().rev()) {
        *d = *r;
    }
    (digits, len)
}

/// Writes `n` in base 62, at least `min_width` digits (zero-padded), into `out`.
fn push_base62(out: &mut String, n: u32, min_width: usize) {
    let (digits, len) = base62_digits(n, min_width);
    out.extend(digits[..len].iter().map(|&d| char::from(d)));
}

/// Whether `crc` is the 6-digit base-62 checksum of `base` (no allocation).
fn checksum_matches(base: &str, crc: &str) -> bool {
    let (digits, len) = base62_digits(crc32fast::hash(base.as_bytes()), 6);
    &digits[..len] == crc.as_bytes()
}

/// Appends `bytes` in unpadded base64, encoded on the stack and appended at once (base64's
/// string sink appends piece by piece).
fn push_base64(out: &mut String, bytes: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut buf = [0u8; 512];
    match engine.encode_slice(bytes, &mut buf) {
        Ok(n) => out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default()),
        // A localpart too long for the buffer (Synapse allows 255 bytes; 512 covers 384).
        Err(_) => engine.encode_string(bytes, out),
    }
}

/// Appends the checksum (`_` + 6 base-62 digits of the CRC-32 of what `token` holds so far).
fn push_checksum(token: &mut String) {
    let crc = crc32fast::hash(token.as_bytes());
    token.push('_');
    push_base62(token, crc, 6);
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
    // Built in one buffer: prefix, (base64 localpart, `_`), random letters, `_` checksum.
    let mut token = String::with_capacity(4 + localpart.len() * 4 / 3 + 4 + RANDOM_LETTERS + 8);
    token.push_str(prefix(dialect, kind));
    if dialect != Dialect::Mas {
        push_base64(&mut token, localpart.as_bytes());
        token.push('_');
    }
    push_random_letters(&mut token);
    push_checksum(&mut token);
    token
}

fn oauth_prefix(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => "mat_",
        TokenKind::Refresh => "mar_",
    }
}

/// Appends [`RANDOM_LETTERS`] letters, uniform over the 52 (bytes of 208 and above, where
/// `% 52` would be biased, are drawn again).
fn push_random_letters(out: &mut String) {
    let mut rng = rand::rng();
    let mut pushed = 0;
    let mut bytes = [0u8; 2 * RANDOM_LETTERS];
    while pushed < RANDOM_LETTERS {
        rng.fill_bytes(&mut bytes);
        for &b in bytes.iter().filter(|&&b| b < 208).take(RANDOM_LETTERS - pushed) {
            out.push(char::from(LETTERS[usize::from(b) % LETTERS.len()]));
            pushed += 1;
        }
    }
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
    let mut token = String::with_capacity(4 + RANDOM_LETTERS + 8);
    token.push_str(oauth_prefix(kind));
    push_random_letters(&mut token);
    push_checksum(&mut token);
    token
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
    rest.split('_').count() == 2 && checksum_matches(base, crc)
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
    parts == expected_parts && checksum_matches(base, crc)
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

    /// The old construction (`format!` and a `String` per part), kept as the reference.
    fn base62_reference(mut n: u32, min_width: usize) -> String {
        let mut digits = Vec::new();
        while n > 0 {
            digits.push(BASE62[(n % 62) as usize]);
            n /= 62;
        }
        while digits.len() < min_width {
            digits.push(b'0');
        }
        digits.reverse();
        String::from_utf8(digits).unwrap()
    }

    #[test]
    fn base62_is_what_it_was() {
        for n in [0, 1, 61, 62, 3843, 3844, 0xDEAD_BEEF, u32::MAX] {
            let mut s = String::new();
            push_base62(&mut s, n, 6);
            assert_eq!(s, base62_reference(n, 6), "{n}");
        }
        let t = generate_token(Dialect::Synapse, TokenKind::Access, "alice");
        let (base, crc) = t.rsplit_once('_').unwrap();
        assert_eq!(crc, base62_reference(crc32fast::hash(base.as_bytes()), 6));
        assert_eq!(t.len(), "syt_YWxpY2U_".len() + RANDOM_LETTERS + 7);
        assert!(
            t["syt_YWxpY2U_".len()..][..RANDOM_LETTERS]
                .bytes()
                .all(|b| LETTERS.contains(&b))
        );
        for len in [0, 1, 2, 3, 200, 384, 385, 1000] {
            let input = vec![b'z'; len];
            let mut got = String::new();
            push_base64(&mut got, &input);
            assert_eq!(
                got,
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input),
                "{len}"
            );
        }
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
