//! The time axis: idle stretches collapsed, ticks, and the width of text.

use super::style::*;

/// A "nice" tick step (1, 2 or 5 × 10ⁿ ms) giving about `target` ticks over `span` ms.
pub(super) fn tick_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

pub(super) fn tick_label(ms: f64, step: f64, hi: f64) -> String {
    let ms = ms + 0.0; // no "-0"
    if hi < 1_000.0 {
        return format!("{ms:.0} ms");
    }
    if hi >= 120_000.0 && step >= 1_000.0 {
        let s = (ms / 1_000.0).round() as i64;
        return if s % 60 == 0 {
            format!("{} min", s / 60)
        } else {
            format!("{}m{:02}s", s / 60, s % 60)
        };
    }
    let secs = ms / 1_000.0;
    if step >= 1_000.0 {
        format!("{secs:.0} s")
    } else if step >= 100.0 {
        format!("{secs:.1} s")
    } else if step >= 10.0 {
        format!("{secs:.2} s")
    } else {
        format!("{secs:.3} s")
    }
}

/// Approximate text width in px (no font metrics in here).
pub(super) fn text_w(s: &str, size: f64, mono: bool) -> f64 {
    s.chars().count() as f64 * size * if mono { 0.62 } else { 0.56 }
}

/// One stretch of the time axis.
#[derive(Clone, Copy)]
pub(super) struct Seg {
    pub(super) t0: f64,
    pub(super) t1: f64,
    pub(super) x0: f64,
    pub(super) x1: f64,
    /// A long idle stretch, drawn compressed to [`GAP_W`].
    pub(super) gap: bool,
}

/// A piecewise-linear time axis: every stretch with activity at one common rate, and idle gaps
/// (e.g. a `sleep` step) longer than [`GAP_SHARE`] of the whole collapsed to [`GAP_W`] pixels, so
/// a burst of requests is not squeezed into a few pixels by the wait before it.
pub(super) struct Scale {
    pub(super) segs: Vec<Seg>,
    pub(super) lo: f64,
    pub(super) hi: f64,
}

impl Scale {
    pub(super) fn new(mut times: Vec<f64>) -> Scale {
        times.retain(|t| t.is_finite());
        times.sort_by(f64::total_cmp);
        times.dedup();
        let (first, last) = match (times.first(), times.last()) {
            (Some(&a), Some(&b)) => (a, b.max(a + 10.0)),
            _ => (0.0, 1_000.0),
        };
        let span = last - first;
        let min_gap = (span * GAP_SHARE).max(GAP_MIN_MS);
        let gaps: Vec<(f64, f64)> = times
            .windows(2)
            .filter(|w| w[1] - w[0] > min_gap)
            .map(|w| (w[0], w[1]))
            .collect();
        let idle: f64 = gaps.iter().map(|(a, b)| b - a).sum();
        let active = (span - idle).max(1.0);
        let pad = (active * 0.03).max(2.0);
        let (lo, hi) = (first - pad, last + pad);
        let avail = PLOT_W - gaps.len() as f64 * GAP_W;
        let rate = avail / (active + 2.0 * pad);
        let mut segs = Vec::with_capacity(gaps.len() * 2 + 1);
        let (mut t, mut x) = (lo, GUTTER);
        for &(a, b) in &gaps {
            let x1 = x + (a - t) * rate;
            segs.push(Seg {
                t0: t,
                t1: a,
                x0: x,
                x1,
                gap: false,
            });
            segs.push(Seg {
                t0: a,
                t1: b,
                x0: x1,
                x1: x1 + GAP_W,
                gap: true,
            });
            t = b;
            x = x1 + GAP_W;
        }
        segs.push(Seg {
            t0: t,
            t1: hi,
            x0: x,
            x1: GUTTER + PLOT_W,
            gap: false,
        });
        Scale { segs, lo, hi }
    }

    pub(super) fn x(&self, t: f64) -> f64 {
        let Some(s) = self.segs.iter().find(|s| t <= s.t1).or(self.segs.last()) else {
            return GUTTER;
        };
        let x = s.x0 + (t - s.t0) / (s.t1 - s.t0).max(1e-9) * (s.x1 - s.x0);
        x.clamp(GUTTER, GUTTER + PLOT_W)
    }
}
