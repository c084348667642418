//! Token randomness: tokens carry at least 128 random bits (100,000 of them: unique, uniform overall,
//! at every position and in neighbouring pairs), drawn from the thread's CSPRNG.

use rotary_server::{Dialect, TokenKind, generate_oauth_token, generate_token};
use std::collections::{BTreeMap, HashSet};

/// The random part of a token: the segment of random letters.
fn random_part(token: &str) -> &str {
    let parts: Vec<&str> = token.split('_').collect();
    // syt_<base64 localpart>_<random>_<crc>, mct_<random>_<crc>, mat_<random>_<crc>
    parts[parts.len() - 2]
}

/// Pearson's chi-square statistic of `counts` against a uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn tokens_carry_at_least_128_random_bits_from_a_csprng() {
    const N: usize = 100_000;
    let mut tokens: Vec<String> = Vec::with_capacity(2 * N + 20_000);
    for i in 0..N {
        let kind = if i % 2 == 0 {
            TokenKind::Access
        } else {
            TokenKind::Refresh
        };
        tokens.push(generate_token(Dialect::Synapse, kind, "alice"));
        tokens.push(generate_oauth_token(kind));
        if i % 10 == 0 {
            tokens.push(generate_token(Dialect::Mas, kind, "alice"));
        }
    }
    let randoms: Vec<&str> = tokens.iter().map(|t| random_part(t)).collect();
    let unique: HashSet<&str> = randoms.iter().copied().collect();
    assert_eq!(
        unique.len(),
        randoms.len(),
        "a random part repeated among {} tokens",
        randoms.len()
    );
    let full: HashSet<&String> = tokens.iter().collect();
    assert_eq!(full.len(), tokens.len());

    let len = randoms[0].len();
    assert!(
        randoms.iter().all(|r| r.len() == len),
        "random parts of different lengths"
    );
    let mut alphabet: BTreeMap<char, usize> = BTreeMap::new();
    for r in &randoms {
        for c in r.chars() {
            *alphabet.entry(c).or_default() += 1;
        }
    }
    assert!(
        alphabet.len() <= 62 && alphabet.keys().all(char::is_ascii_alphanumeric),
        "{alphabet:?}"
    );
    let bits = len as f64 * (alphabet.len() as f64).log2();
    eprintln!(
        "random part: {len} characters of {} = {bits:.1} bits",
        alphabet.len()
    );
    assert!(bits >= 128.0, "only {bits:.1} random bits per token");

    // Uniform over the alphabet, overall and at every position. With df = |alphabet| - 1 (51 for
    // 52 letters), the statistic averages df with a standard deviation of √(2·df) ≈ 10; df + 12 √(2·df)
    // is beyond any chance (p < 1e-20) yet far below what a modulo bias or a stuck position gives.
    let index: BTreeMap<char, usize> = alphabet.keys().enumerate().map(|(i, c)| (*c, i)).collect();
    let df = (alphabet.len() - 1) as f64;
    let bound = df + 12.0 * (2.0 * df).sqrt();
    let mut overall = vec![0u64; alphabet.len()];
    let mut per_position = vec![vec![0u64; alphabet.len()]; len];
    for r in &randoms {
        for (pos, c) in r.chars().enumerate() {
            overall[index[&c]] += 1;
            per_position[pos][index[&c]] += 1;
        }
    }
    let chi = chi_square(&overall);
    eprintln!(
        "chi-square over {} characters: {chi:.1} (df {df}, bound {bound:.1})",
        randoms.len() * len
    );
    assert!(
        chi < bound,
        "character frequencies are not uniform: chi-square {chi:.1}"
    );
    for (pos, counts) in per_position.iter().enumerate() {
        let chi = chi_square(counts);
        assert!(chi < bound, "position {pos} is not uniform: chi-square {chi:.1}");
    }
    // Neighbouring characters are independent: pairs of the first two positions are uniform over
    // all |alphabet|² pairs (df ≈ 2,700 here).
    let k = alphabet.len();
    let mut pairs = vec![0u64; k * k];
    for r in &randoms {
        let mut cs = r.chars();
        if let (Some(a), Some(b)) = (cs.next(), cs.next()) {
            pairs[index[&a] * k + index[&b]] += 1;
        }
    }
    let df_pairs = (k * k - 1) as f64;
    let chi = chi_square(&pairs);
    assert!(
        chi < df_pairs + 12.0 * (2.0 * df_pairs).sqrt(),
        "pairs are not uniform: {chi:.1}"
    );
}

/// A statistical test cannot tell a CSPRNG from a merely good generator, so the source is
/// checked too: token generation draws from `rand::rng()` (ChaCha12, seeded and reseeded by the
/// OS) and never from a seeded or non-cryptographic generator. Changing that must change this test.
#[test]
fn tokens_are_drawn_from_the_thread_csprng() {
    let source = include_str!("../../server/src/token.rs");
    assert!(
        source.contains("rand::rng()"),
        "token.rs no longer uses rand::rng()"
    );
    for weak in [
        "seed_from_u64",
        "SmallRng",
        "StdRng",
        "from_seed",
        "thread_rng",
        "fastrand",
        "SystemTime",
    ] {
        assert!(
            !source.contains(weak),
            "token.rs mentions {weak}: is the generator still a CSPRNG?"
        );
    }
}
