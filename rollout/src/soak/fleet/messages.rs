//! The message book of a session: what it sent and sync has not shown yet, so that each message is
//! seen exactly once — bounded in size.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// The most messages a session remembers while waiting for sync to show them; the oldest beyond
/// it count as lost.
pub const MAX_PENDING_MESSAGES: usize = 1024;
/// Messages given up (lost, unverified) remembered, so that a late sighting is not a duplicate.
const KEEP_GIVEN_UP: usize = 256;

/// One message's state while sync has not shown it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The send is under way.
    Sending,
    /// The send succeeded.
    Confirmed,
    /// The send failed (it may still have been stored).
    Failed,
}

/// The messages of a session that sync has not shown yet, and the recently given up ones.
#[derive(Debug, Default)]
pub(crate) struct MessageBook {
    next: u64,
    pending: BTreeMap<u64, (Instant, Sent)>,
    given_up: VecDeque<u64>,
}

/// What a sighting of a message meant.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sighting {
    First {
        /// Whether its send had failed.
        after_error: bool,
    },
    Again,
    Late,
    Unknown,
}

impl MessageBook {
    pub(crate) fn begin(&mut self, now: Instant) -> u64 {
        let n = self.next;
        self.next += 1;
        self.pending.insert(n, (now, Sent::Sending));
        n
    }

    pub(crate) fn settle(&mut self, n: u64, ok: bool) {
        if let Some((_, state)) = self.pending.get_mut(&n) {
            *state = if ok { Sent::Confirmed } else { Sent::Failed };
        }
    }

    pub(crate) fn seen(&mut self, n: u64) -> Sighting {
        if n >= self.next {
            return Sighting::Unknown;
        }
        if let Some((_, state)) = self.pending.remove(&n) {
            return Sighting::First {
                after_error: state == Sent::Failed,
            };
        }
        if let Some(i) = self.given_up.iter().position(|&g| g == n) {
            self.given_up.remove(i);
            return Sighting::Late;
        }
        Sighting::Again
    }

    pub(crate) fn give_up(&mut self, n: u64) -> Option<Sent> {
        let (_, state) = self.pending.remove(&n)?;
        while self.given_up.len() >= KEEP_GIVEN_UP {
            self.given_up.pop_front();
        }
        self.given_up.push_back(n);
        Some(state)
    }

    /// Messages that are overdue (older than `deadline`) or beyond the cap: given up, with what
    /// they were.
    pub(crate) fn overdue(&mut self, now: Instant, deadline: Duration) -> Vec<(u64, Sent)> {
        let mut out = Vec::new();
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (at, state))| *state != Sent::Sending && now.duration_since(*at) > deadline)
            .map(|(n, _)| *n)
            .collect();
        for n in late {
            if let Some(state) = self.give_up(n) {
                out.push((n, state));
            }
        }
        while self.pending.len() > MAX_PENDING_MESSAGES {
            let Some(&n) = self.pending.keys().next() else {
                break;
            };
            if let Some(state) = self.give_up(n) {
                out.push((n, state));
            }
        }
        out
    }

    /// A gap before the message `first_shown` (or before everything not shown): the earlier
    /// pending messages may be in it.
    pub(crate) fn gap(&mut self, first_shown: Option<u64>) -> Vec<(u64, Sent)> {
        let before: Vec<u64> = self
            .pending
            .keys()
            .copied()
            .filter(|&n| first_shown.is_none_or(|f| n < f))
            .collect();
        before
            .into_iter()
            .filter_map(|n| self.give_up(n).map(|s| (n, s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_seen_once_twice_late_or_never() {
        let t0 = Instant::now();
        let mut book = MessageBook::default();
        let a = book.begin(t0);
        let b = book.begin(t0);
        let c = book.begin(t0);
        book.settle(a, true);
        book.settle(b, false);
        book.settle(c, true);
        assert_eq!(book.seen(a), Sighting::First { after_error: false });
        assert_eq!(book.seen(a), Sighting::Again);
        assert_eq!(book.seen(b), Sighting::First { after_error: true });
        assert_eq!(book.seen(99), Sighting::Unknown);
        // c is overdue: given up as confirmed, so lost; seen afterwards it is late, not a duplicate.
        let overdue = book.overdue(t0 + Duration::from_secs(61), Duration::from_secs(60));
        assert_eq!(overdue, vec![(c, Sent::Confirmed)]);
        assert_eq!(book.seen(c), Sighting::Late);
        assert_eq!(book.seen(c), Sighting::Again);
    }

    #[test]
    fn a_gap_gives_up_what_came_before_the_first_message_shown() {
        let t0 = Instant::now();
        let mut book = MessageBook::default();
        let ns: Vec<u64> = (0..4).map(|_| book.begin(t0)).collect();
        for &n in &ns {
            book.settle(n, true);
        }
        let gone = book.gap(Some(2));
        assert_eq!(gone, vec![(0, Sent::Confirmed), (1, Sent::Confirmed)]);
        assert_eq!(book.seen(2), Sighting::First { after_error: false });
        assert_eq!(book.seen(0), Sighting::Late);
        assert_eq!(book.gap(None), vec![(3, Sent::Confirmed)]);
    }

    #[test]
    fn the_pending_book_is_capped() {
        let t0 = Instant::now();
        let mut book = MessageBook::default();
        for _ in 0..MAX_PENDING_MESSAGES + 5 {
            let n = book.begin(t0);
            book.settle(n, true);
        }
        let over = book.overdue(t0, Duration::from_secs(60));
        assert_eq!(over.len(), 5);
        assert_eq!(over[0].0, 0);
        assert_eq!(book.pending.len(), MAX_PENDING_MESSAGES);
    }
}
