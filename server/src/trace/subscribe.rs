//! Live subscribers of a trace: every finished entry, in completion order, through a bounded channel.
//!
//! A subscriber that falls more than the channel's capacity behind loses the oldest entries it had
//! not read; it is told how many ([`SubscriptionError::Lagged`]) and the count adds up in
//! [`TraceSubscription::lagged`] and in the trace's stats. Nobody subscribed costs one atomic
//! load per finished request.

use super::TraceEntry;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// Why [`TraceSubscription::recv`] returned no entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscriber fell behind and this many entries were skipped; the next call goes on
    /// with the oldest entry still held.
    #[error("the subscriber fell behind: {0} trace entries skipped")]
    Lagged(u64),
    /// The trace is gone (its server stopped): no more entries will come.
    #[error("the trace is gone")]
    Closed,
}

/// Shared between the trace and its subscriptions. The channel is made on the first
/// subscription: its slots cost memory and time that a server nobody watches should not pay at
/// start-up.
#[derive(Debug)]
pub(super) struct Hub {
    tx: OnceLock<broadcast::Sender<Arc<TraceEntry>>>,
    capacity: usize,
    subscribers: Arc<AtomicUsize>,
    lagged: Arc<AtomicU64>,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: OnceLock::new(),
            capacity: capacity.max(1),
            subscribers: Arc::new(AtomicUsize::new(0)),
            lagged: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether anyone listens (one atomic load).
    pub fn active(&self) -> bool {
        self.subscribers.load(Ordering::Acquire) > 0
    }

    /// Hands a finished entry to every subscriber.
    pub fn publish(&self, entry: Arc<TraceEntry>) {
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(entry);
        }
    }

    pub fn subscribe(&self) -> TraceSubscription {
        self.subscribers.fetch_add(1, Ordering::AcqRel);
        TraceSubscription {
            rx: self
                .tx
                .get_or_init(|| broadcast::channel(self.capacity).0)
                .subscribe(),
            lagged: 0,
            subscribers: self.subscribers.clone(),
            total_lagged: self.lagged.clone(),
        }
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }
}

/// A live feed of a trace's finished entries, from the moment of subscribing, in the order they
/// finished (which is the order of their `done_seq`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use rotary_server::trace::{Completion, Trace, TraceEntry};
/// let trace = Trace::default();
/// let mut live = trace.subscribe();
/// let ticket = trace.begin(TraceEntry::new("whoami", "GET", "/"));
/// trace.finish(ticket, Completion { status: Some(200), ..Default::default() });
/// let entry = live.recv().await.unwrap();
/// assert_eq!((entry.seq, entry.status, entry.done_seq), (1, Some(200), Some(1)));
/// # }
/// ```
#[derive(Debug)]
pub struct TraceSubscription {
    rx: broadcast::Receiver<Arc<TraceEntry>>,
    lagged: u64,
    subscribers: Arc<AtomicUsize>,
    total_lagged: Arc<AtomicU64>,
}

impl TraceSubscription {
    /// The next finished entry; waits for one.
    pub async fn recv(&mut self) -> Result<Arc<TraceEntry>, SubscriptionError> {
        match self.rx.recv().await {
            Ok(e) => Ok(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(self.lag(n)),
            Err(broadcast::error::RecvError::Closed) => Err(SubscriptionError::Closed),
        }
    }

    /// The next finished entry if one is waiting, without waiting (`Ok(None)` when none is).
    pub fn try_recv(&mut self) -> Result<Option<Arc<TraceEntry>>, SubscriptionError> {
        match self.rx.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(self.lag(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(SubscriptionError::Closed),
        }
    }

    fn lag(&mut self, n: u64) -> SubscriptionError {
        self.lagged += n;
        self.total_lagged.fetch_add(n, Ordering::Relaxed);
        SubscriptionError::Lagged(n)
    }

    /// How many entries this subscriber has missed by falling behind.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl Drop for TraceSubscription {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::entry_at as entry;
    use super::*;

    #[test]
    fn a_slow_subscriber_is_told_how_much_it_missed() {
        let hub = Hub::new(4);
        assert!(!hub.active());
        let mut slow = hub.subscribe();
        assert!(hub.active());
        for seq in 1..=10 {
            hub.publish(entry(seq));
        }
        assert_eq!(slow.try_recv(), Err(SubscriptionError::Lagged(6)));
        let rest: Vec<u64> = std::iter::from_fn(|| slow.try_recv().ok().flatten())
            .map(|e| e.seq)
            .collect();
        assert_eq!(rest, [7, 8, 9, 10]);
        assert_eq!(slow.lagged(), 6);
        assert_eq!(hub.lagged(), 6);
        drop(slow);
        assert_eq!(hub.subscribers(), 0);
    }

    #[test]
    fn closed_when_the_hub_is_gone() {
        let hub = Hub::new(4);
        let mut sub = hub.subscribe();
        hub.publish(entry(1));
        drop(hub);
        assert_eq!(sub.try_recv().map(|e| e.map(|e| e.seq)), Ok(Some(1)));
        assert_eq!(sub.try_recv(), Err(SubscriptionError::Closed));
    }
}
