//! Latency histograms and medians.

/// Values below this are counted exactly (µs).
const EXACT: u32 = 2048;
/// Sub-buckets per power of two above [`EXACT`]: about 0.4 % resolution.
const SUB_BITS: u32 = 8;
/// Octaves above `EXACT` up to `u32::MAX`.
const OCTAVES: u32 = 32 - EXACT.trailing_zeros();
const BUCKETS: usize = EXACT as usize + (OCTAVES as usize) * (1 << SUB_BITS);

/// Request latencies in microseconds, as a log-linear histogram of fixed size (exact below
/// 2 ms, 0.4 % buckets above), so that a long benchmark's memory does not grow with its
/// request count: the RSS it reports per round is the servers' and their traces'.
#[derive(Clone, Debug)]
pub struct Latencies {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

fn bucket(v: u32) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let octave = 31 - v.leading_zeros(); // >= 11
    let shift = octave - SUB_BITS;
    let sub = (v >> shift) & ((1 << SUB_BITS) - 1);
    EXACT as usize + ((octave - EXACT.trailing_zeros()) as usize) * (1 << SUB_BITS) + sub as usize
}

/// The smallest value of a bucket.
fn lower_bound(i: usize) -> u32 {
    if i < EXACT as usize {
        return i as u32;
    }
    let j = i - EXACT as usize;
    let octave = (j >> SUB_BITS) as u32 + EXACT.trailing_zeros();
    let sub = (j & ((1 << SUB_BITS) - 1)) as u32;
    (1 << octave) | (sub << (octave - SUB_BITS))
}

impl Latencies {
    /// Adds samples (µs).
    pub fn extend(&mut self, more: Vec<u32>) {
        for v in more {
            self.counts[bucket(v)] += 1;
            self.total += 1;
        }
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `p`-th percentile (0–100) in milliseconds (nearest rank, the bucket's lower bound);
    /// 0 without samples.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return f64::from(lower_bound(i)) / 1000.0;
            }
        }
        0.0
    }
}

/// The median of some numbers (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let mut l = Latencies::default();
        l.extend((1..=100).map(|x| x * 1000).collect());
        for (p, want) in [(50.0, 50.0), (99.0, 99.0), (100.0, 100.0), (1.0, 1.0)] {
            let got = l.percentile_ms(p);
            assert!(got <= want && got >= want * 0.995, "p{p}: {got} for {want}");
        }
        let mut other = Latencies::default();
        other.extend(vec![0, 1, u32::MAX]);
        l.merge(&other);
        assert_eq!(l.percentile_ms(0.5), 0.0);
        assert!(l.percentile_ms(100.0) > 4_000_000.0);
        for v in [0, 1, 2047, 2048, 2049, 4095, 4096, 1 << 20, u32::MAX] {
            assert!(
                lower_bound(bucket(v)) <= v && f64::from(lower_bound(bucket(v))) >= f64::from(v) * 0.995,
                "{v}"
            );
        }
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
