//! Latency samples and medians.

/// Every request's latency in microseconds, unsorted until a percentile is asked for.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    samples: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    /// Adds samples.
    pub fn extend(&mut self, more: Vec<u32>) {
        if self.samples.is_empty() {
            self.samples = more;
        } else {
            self.samples.extend(more);
        }
        self.sorted = false;
    }

    /// Hands the samples over, leaving none.
    pub fn take(&mut self) -> Vec<u32> {
        self.sorted = false;
        std::mem::take(&mut self.samples)
    }

    /// The `p`-th percentile (0–100) in milliseconds (nearest rank); 0 without samples.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let n = self.samples.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let i = rank.clamp(1, n) - 1;
        f64::from(self.samples[i]) / 1000.0
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
        assert_eq!(l.percentile_ms(50.0), 50.0);
        assert_eq!(l.percentile_ms(99.0), 99.0);
        assert_eq!(l.percentile_ms(100.0), 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
