//! Resident memory, read from `/proc` (Linux; elsewhere it reads as unknown): of the harness
//! itself, and of a driver process by its pid.

/// Resident set size of this process, bytes (`None` where `/proc` is not there).
pub fn rss_self() -> Option<u64> {
    rss_of("self")
}

/// Resident set size of process `pid`, bytes.
pub fn rss_pid(pid: u32) -> Option<u64> {
    rss_of(&pid.to_string())
}

fn rss_of(who: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory over a soak: the baseline (after the ramp-up), the peak and the last reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryWatch {
    /// The first reading after the ramp-up.
    pub start: Option<u64>,
    /// The highest reading.
    pub peak: u64,
    /// The last reading.
    pub last: u64,
}

impl MemoryWatch {
    /// Records a reading; `baseline` marks the end of the ramp-up (the first such reading is the
    /// start).
    pub fn record(&mut self, rss: u64, baseline: bool) {
        if baseline && self.start.is_none() {
            self.start = Some(rss);
        }
        self.peak = self.peak.max(rss);
        self.last = rss;
    }

    /// How much it grew from the baseline to the end (0 when it shrank).
    pub fn growth(&self) -> u64 {
        self.last.saturating_sub(self.start.unwrap_or(self.last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_add_up() {
        if cfg!(target_os = "linux") {
            assert!(rss_self().is_some_and(|b| b > 1024 * 1024));
        }
        let mut m = MemoryWatch::default();
        m.record(100, false);
        m.record(200, true);
        m.record(150, true);
        m.record(260, false);
        assert_eq!((m.start, m.peak, m.last, m.growth()), (Some(200), 260, 260, 60));
    }
}
