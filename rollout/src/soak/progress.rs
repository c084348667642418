//! The live progress line of a soak: elapsed and remaining time, the phase, sessions alive,
//! refreshes, 401s and faults per second, violations. Drawn on stderr with `indicatif` when it is
//! a terminal (and asked for); otherwise nothing.

use super::metrics::SecondRow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// The progress line.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    phase: String,
}

impl Progress {
    /// A progress line over `total` (hidden unless `show` and stderr is a terminal).
    pub fn new(show: bool, total: Duration) -> Progress {
        let target = if show {
            ProgressDrawTarget::stderr_with_hz(2)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.as_secs().max(1)), target);
        let style =
            ProgressStyle::with_template("{prefix:>10} {elapsed_precise} [{bar:24}] -{eta_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        Progress {
            bar,
            phase: String::new(),
        }
    }

    /// A phase starts.
    pub fn phase(&mut self, name: &str) {
        name.clone_into(&mut self.phase);
        self.bar.set_prefix(self.phase.clone());
    }

    /// One more second: its row and the violations so far (`must`, `should`).
    pub fn tick(&mut self, elapsed: Duration, row: &SecondRow, violations: (u64, u64)) {
        self.bar.set_position(elapsed.as_secs());
        self.bar.set_message(line(row, violations));
    }

    /// The run is over; the fleet is stopping.
    pub fn finishing(&self) {
        self.bar.set_prefix("stopping");
    }

    /// Gone.
    pub fn done(&self) {
        self.bar.finish_and_clear();
    }
}

/// The progress message for one second.
pub fn line(row: &SecondRow, (must, should): (u64, u64)) -> String {
    format!(
        "{} alive ({} suspended) · {} refresh/s · {} 401/s · {} faults/s · violations {must} must, {should} should",
        row.alive, row.suspended, row.refreshes, row.unauthorized, row.faults
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_it_all() {
        let row = SecondRow {
            alive: 9,
            suspended: 1,
            refreshes: 4,
            unauthorized: 2,
            faults: 1,
            ..SecondRow::default()
        };
        assert_eq!(
            line(&row, (0, 3)),
            "9 alive (1 suspended) · 4 refresh/s · 2 401/s · 1 faults/s · violations 0 must, 3 should"
        );
    }
}
