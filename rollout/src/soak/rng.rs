//! A small seeded random generator, so that the same seed gives the same soak.

use std::time::Duration;

/// A small seeded random generator (SplitMix64): the same seed gives the same sequence on every
/// platform and version, which reproducible soaks need.
///
/// ```
/// use rotary_rollout::soak::SeededRng;
/// let (mut a, mut b) = (SeededRng::new(7), SeededRng::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!((0.0..1.0).contains(&a.unit()));
/// ```
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed)
    }

    /// A generator derived from this seed and a stream number (one per session, phase, …).
    pub fn derive(seed: u64, stream: u64) -> SeededRng {
        let mut r = SeededRng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// `d` scaled by a factor drawn in `lo..hi`.
    pub fn jitter(&mut self, d: Duration, lo: f64, hi: f64) -> Duration {
        d.mul_f64(lo + (hi - lo) * self.unit())
    }

    /// `k` distinct indices of `0..n`, chosen at random, in increasing order.
    pub fn pick(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let span = (n - i) as u64;
            let j = i + (self.next_u64() % span) as usize;
            all.swap(i, j);
        }
        let mut chosen = all[..k].to_vec();
        chosen.sort_unstable();
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_is_reproducible_and_picks_distinct_indices() {
        let mut a = SeededRng::derive(42, 3);
        let mut b = SeededRng::derive(42, 3);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SeededRng::derive(42, 4).next_u64(), xs[0]);
        let picked = SeededRng::new(1).pick(10, 4);
        assert_eq!(picked.len(), 4);
        assert!(picked.windows(2).all(|w| w[0] < w[1]) && picked.iter().all(|&i| i < 10));
        assert_eq!(SeededRng::new(1).pick(3, 9), vec![0, 1, 2]);
        let j = SeededRng::new(5).jitter(Duration::from_secs(2), 0.5, 1.5);
        assert!(j >= Duration::from_secs(1) && j <= Duration::from_secs(3));
    }
}
