//! The server clock: real time plus an offset that can be advanced, so expiry needs no waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A clock that runs at real speed but can be moved forward on demand.
///
/// All token lifetimes are measured against this clock, in milliseconds since the Unix epoch, so a
/// test can jump past an expiry instead of sleeping.
///
/// ```
/// use rotary_server::Clock;
/// use std::time::Duration;
///
/// let clock = Clock::new();
/// let before = clock.now_ms();
/// clock.advance(Duration::from_secs(60));
/// assert!(clock.now_ms() >= before + 60_000);
/// ```
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    start_wall_ms: i64,
    offset_ms: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock that reads the wall time, with no offset.
    pub fn new() -> Self {
        let start_wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            start: Instant::now(),
            start_wall_ms,
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Milliseconds since the Unix epoch, including every advance so far.
    pub fn now_ms(&self) -> i64 {
        self.now_ms_at(Instant::now())
    }

    /// Milliseconds since this clock was created, including every advance so far.
    pub fn since_start_ms(&self) -> i64 {
        self.since_start_ms_at(Instant::now())
    }

    /// Real milliseconds since this clock was created, not counting advances.
    pub fn real_elapsed_ms(&self) -> i64 {
        self.real_elapsed_ms_at(Instant::now())
    }

    /// [`now_ms`](Self::now_ms) at an instant already read (one clock read for several figures).
    ///
    /// ```
    /// let clock = rotary_server::clock::Clock::new();
    /// let t = std::time::Instant::now();
    /// clock.advance(std::time::Duration::from_secs(5));
    /// assert!(clock.since_start_ms_at(t) >= 5_000);
    /// assert_eq!(clock.now_ms_at(t) - clock.since_start_ms_at(t), clock.now_ms() - clock.since_start_ms());
    /// ```
    pub fn now_ms_at(&self, t: Instant) -> i64 {
        // Saturating: huge advances pin the clock at the end of time instead of overflowing.
        self.start_wall_ms.saturating_add(self.since_start_ms_at(t))
    }

    /// [`since_start_ms`](Self::since_start_ms) at an instant already read.
    pub fn since_start_ms_at(&self, t: Instant) -> i64 {
        self.real_elapsed_ms_at(t)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// [`real_elapsed_ms`](Self::real_elapsed_ms) at an instant already read.
    pub fn real_elapsed_ms_at(&self, t: Instant) -> i64 {
        i64::try_from(t.saturating_duration_since(self.start).as_millis()).unwrap_or(i64::MAX)
    }

    /// The total offset added by [`Clock::advance`].
    pub fn offset(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.offset_ms.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// Moves the clock forward by `by`. Returns the new time in ms since the epoch.
    pub fn advance(&self, by: Duration) -> i64 {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        // Saturating, not wrapping: a fifth huge advance must not turn the clock negative.
        let _ = self
            .offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(ms))
            });
        self.now_ms()
    }

    /// Sets the offset back to zero.
    pub fn reset(&self) {
        self.offset_ms.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_time_forward_and_reset_undoes_it() {
        let clock = Clock::new();
        let t0 = clock.now_ms();
        clock.advance(Duration::from_millis(1500));
        assert!(clock.now_ms() >= t0 + 1500);
        assert_eq!(clock.offset(), Duration::from_millis(1500));
        clock.reset();
        assert!(clock.now_ms() < t0 + 1500);
    }
}
