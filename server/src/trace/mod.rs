//! The request trace of one server: a bounded in-memory window, an optional NDJSON spill and live subscribers.
//!
//! Entries are appended when a request arrives ([`Trace::begin`], which gives it its `seq`) and
//! completed when it is answered ([`Trace::finish`], which sets `done_seq`: how many requests had
//! arrived by then). The model (`TraceEntry` and its parts) is `rotary_judge::trace`.
//!
//! - **Window.** Memory holds the newest [`TraceConfig::window`] entries (default
//!   [`DEFAULT_WINDOW`], about 0.5 KiB each: some 50 MiB when full). An entry pushed out while its
//!   request is still running (a long-poll, a hang) is kept aside until it finishes, so it is
//!   still completed, spilled and published. [`Trace::stats`] says how many were evicted;
//!   [`Trace::page`] says which part of a requested range is gone.
//! - **Spill.** With [`TraceConfig::spill`], every entry is written as one JSON line when it is
//!   *completed* — so each line is final, and the files hold every request exactly once, in
//!   completion order (sort by `seq` for arrival order). Entries still pending when the trace is
//!   reset or dropped are written then, as pending. A writer thread does the writing; the request
//!   path only queues (see [`spill`](self::SpillConfig)).
//! - **Subscribers.** [`Trace::subscribe`] feeds each completed entry, in completion order, to a
//!   bounded channel per subscriber (with a lag count for slow ones).
//!
//! Every operation takes the trace's lock only for a few pointer moves: pages are copied out as
//! `Arc`s and serialized after the lock is released.
//!
//! ```
//! use rotary_server::trace::{Completion, Trace, TraceConfig, TraceEntry};
//! let trace = Trace::new(TraceConfig { window: 2, ..TraceConfig::default() }).unwrap();
//! for _ in 0..3 {
//!     let t = trace.begin(TraceEntry::new("whoami", "GET", "/"));
//!     trace.finish(t, Completion { status: Some(200), ..Default::default() });
//! }
//! let page = trace.page(0, 10);
//! assert_eq!(page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
//! assert_eq!((page.first_seq, page.evicted, page.missed), (2, 1, 1));
//! ```

mod spill;
mod subscribe;

pub use rotary_judge::trace::{
    AccessState, Delivery, FiredFault, IssuedLabels, RefreshState, TokenView, TraceEntry,
};
pub use spill::{SpillConfig, read_spill, spill_file, spill_files};
pub use subscribe::{SubscriptionError, TraceSubscription};

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Entries kept in memory by default.
pub const DEFAULT_WINDOW: usize = 100_000;
/// Finished entries a subscriber may fall behind by before it loses some.
pub const DEFAULT_SUBSCRIBER_CAPACITY: usize = 16_384;

/// What a finished request adds to its entry.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    /// See [`TraceEntry::status`].
    pub status: Option<u16>,
    /// See [`TraceEntry::errcode`].
    pub errcode: Option<String>,
    /// See [`TraceEntry::soft_logout`].
    pub soft_logout: Option<bool>,
    /// See [`TraceEntry::issued`].
    pub issued: Option<IssuedLabels>,
    /// Overrides the user found on arrival (login and register learn it only then).
    pub user_id: Option<String>,
    /// Overrides the device found on arrival.
    pub device_id: Option<String>,
    /// How it was delivered.
    pub delivery: Option<Delivery>,
    /// Real ms spent.
    pub duration_ms: i64,
    /// Extra flags learnt while handling.
    pub flags: BTreeMap<String, serde_json::Value>,
}

/// How a trace keeps its entries.
///
/// ```
/// use rotary_server::trace::{SpillConfig, TraceConfig};
/// let config = TraceConfig::default()
///     .window(10_000)
///     .spill(SpillConfig::new("/var/tmp/rotary-trace", 256 << 20));
/// assert_eq!(config.window, 10_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// Entries kept in memory (the newest ones). 0 keeps only requests still running.
    pub window: usize,
    /// Where to write every completed entry, if anywhere.
    pub spill: Option<SpillConfig>,
    /// How far a subscriber may fall behind before it loses entries.
    pub subscriber_capacity: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            spill: None,
            subscriber_capacity: DEFAULT_SUBSCRIBER_CAPACITY,
        }
    }
}

impl TraceConfig {
    /// Sets [`window`](Self::window).
    pub fn window(mut self, entries: usize) -> Self {
        self.window = entries;
        self
    }

    /// Sets [`spill`](Self::spill).
    pub fn spill(mut self, spill: SpillConfig) -> Self {
        self.spill = Some(spill);
        self
    }
}

/// A request's place in the trace, from [`Trace::begin`] for [`Trace::finish`]. It belongs to one
/// generation of the trace: after a [`clear`](Trace::clear), finishing an older ticket does
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The entry's `seq`.
    pub seq: u64,
    generation: u64,
}

/// A slice of the trace, copied out cheaply (shared entries).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TracePage {
    /// Entries with `seq` after the requested one, in order, at most the requested number.
    pub entries: Vec<Arc<TraceEntry>>,
    /// Pass this as `after` to read on (the last seq returned, or the requested `after` when
    /// nothing was returned).
    pub next_after: u64,
    /// Whether entries after `next_after` were already there.
    pub more: bool,
    /// The first seq still in memory (`last_seq + 1` when memory holds none).
    pub first_seq: u64,
    /// The newest seq: how many requests the trace has recorded.
    pub last_seq: u64,
    /// How many entries have left memory (see the spill for them).
    pub evicted: u64,
    /// How many entries of the requested range had already left memory: nonzero means this
    /// page does not continue exactly after `after`.
    pub missed: u64,
}

/// Counters of a trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TraceStats {
    /// Requests recorded (the newest seq).
    pub last_seq: u64,
    /// The first seq still in memory.
    pub first_seq: u64,
    /// Entries in memory.
    pub in_window: usize,
    /// Entries that have left the window.
    pub evicted: u64,
    /// Of those, requests still running (kept aside until they finish).
    pub evicted_pending: usize,
    /// Lines the spill has written.
    pub spilled: u64,
    /// Lines the spill dropped because its writer had fallen too far behind.
    pub spill_dropped: u64,
    /// Lines the spill failed to write (I/O errors).
    pub spill_errors: u64,
    /// Spill files opened.
    pub spill_files: u64,
    /// Live subscribers.
    pub subscribers: usize,
    /// Entries subscribers missed by falling behind, summed.
    pub subscriber_lagged: u64,
}

/// Why a trace could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The spill directory could not be created or read, or its writer not started.
    #[error("trace spill in {dir}: {source}")]
    Spill {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The trace of one server: see the [module](self).
///
/// ```
/// use rotary_server::trace::{Completion, Trace, TraceEntry};
/// let trace = Trace::default();
/// let ticket = trace.begin(TraceEntry::new("whoami", "GET", "/"));
/// assert_eq!(ticket.seq, 1);
/// trace.finish(ticket, Completion { status: Some(200), ..Default::default() });
/// assert_eq!(trace.snapshot(0)[0].done_seq, Some(1));
/// ```
#[derive(Debug)]
pub struct Trace {
    window: Mutex<Window>,
    capacity: usize,
    spill: Option<spill::Spill>,
    hub: subscribe::Hub,
}

#[derive(Debug, Default)]
struct Window {
    /// Entries `first_seq ..= last_seq`, oldest first.
    entries: VecDeque<Arc<TraceEntry>>,
    first_seq: u64,
    last_seq: u64,
    evicted: u64,
    /// Evicted entries whose requests are still running, by seq.
    aside: HashMap<u64, TraceEntry>,
    generation: u64,
}

impl Window {
    fn fresh(generation: u64) -> Self {
        Self {
            first_seq: 1,
            generation,
            ..Self::default()
        }
    }
}

impl Default for Trace {
    fn default() -> Self {
        Self::in_memory(TraceConfig::default())
    }
}

fn pending(e: &TraceEntry) -> bool {
    e.done_seq.is_none()
}

impl Trace {
    /// A trace as configured; fails only when the spill cannot be set up.
    pub fn new(config: TraceConfig) -> Result<Self, TraceError> {
        let spill = match &config.spill {
            None => None,
            Some(s) => Some(spill::Spill::start(s).map_err(|source| TraceError::Spill {
                dir: s.dir.clone(),
                source,
            })?),
        };
        Ok(Self::with_spill(&config, spill))
    }

    fn in_memory(config: TraceConfig) -> Self {
        Self::with_spill(&config, None)
    }

    fn with_spill(config: &TraceConfig, spill: Option<spill::Spill>) -> Self {
        Self {
            window: Mutex::new(Window::fresh(0)),
            capacity: config.window,
            spill,
            hub: subscribe::Hub::new(config.subscriber_capacity),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an entry for a request that has just arrived; its `seq` is set here.
    pub fn begin(&self, mut entry: TraceEntry) -> Ticket {
        // The evicted entry, if any, is freed after the lock is released.
        let (ticket, _evicted) = {
            let mut w = self.lock();
            w.last_seq += 1;
            entry.seq = w.last_seq;
            let ticket = Ticket {
                seq: w.last_seq,
                generation: w.generation,
            };
            w.entries.push_back(Arc::new(entry));
            let mut out = None;
            if w.entries.len() > self.capacity
                && let Some(old) = w.entries.pop_front()
            {
                w.first_seq += 1;
                w.evicted += 1;
                if pending(&old) {
                    let seq = old.seq;
                    w.aside.insert(seq, Arc::unwrap_or_clone(old));
                } else {
                    out = Some(old);
                }
            }
            (ticket, out)
        };
        ticket
    }

    /// Adds a request's outcome to its entry (once; later calls and stale tickets do nothing),
    /// then spills and publishes it.
    pub fn finish(&self, ticket: Ticket, done: Completion) {
        let mut w = self.lock();
        if ticket.generation != w.generation {
            return;
        }
        let arrived = w.last_seq;
        let index = ticket
            .seq
            .checked_sub(w.first_seq)
            .and_then(|i| usize::try_from(i).ok());
        let finished = match index.and_then(|i| w.entries.get_mut(i)) {
            Some(slot) if pending(slot) => {
                complete(Arc::make_mut(slot), done, arrived);
                slot.clone()
            }
            Some(_) => return,
            None => match w.aside.remove(&ticket.seq) {
                Some(mut e) => {
                    complete(&mut e, done, arrived);
                    Arc::new(e)
                }
                None => return,
            },
        };
        // Under the lock, so that the spill and subscribers see completion order.
        if self.hub.active() {
            self.hub.publish(finished.clone());
        }
        if let Some(spill) = &self.spill {
            spill.send(finished);
        }
    }

    /// A page: at most `limit` entries with `seq` greater than `after`, in order, plus where the
    /// trace stands. Copies `Arc`s under the lock, nothing more.
    pub fn page(&self, after: u64, limit: usize) -> TracePage {
        let w = self.lock();
        let start = after.max(w.first_seq.saturating_sub(1));
        let skip = usize::try_from(start - (w.first_seq - 1)).unwrap_or(usize::MAX);
        let entries: Vec<Arc<TraceEntry>> = w.entries.iter().skip(skip).take(limit).cloned().collect();
        let next_after = entries.last().map_or(after.min(w.last_seq), |e| e.seq);
        TracePage {
            more: next_after < w.last_seq,
            next_after,
            first_seq: w.first_seq,
            last_seq: w.last_seq,
            evicted: w.evicted,
            missed: start.saturating_sub(after).min(w.evicted),
            entries,
        }
    }

    /// Every entry in memory with `seq` greater than `after`, in order (deep copies).
    pub fn snapshot(&self, after: u64) -> Vec<TraceEntry> {
        self.page(after, usize::MAX)
            .entries
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// How many requests the trace has recorded (the newest seq), evicted ones included.
    pub fn len(&self) -> usize {
        usize::try_from(self.lock().last_seq).unwrap_or(usize::MAX)
    }

    /// Whether no request was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries have left memory; 0 means [`snapshot`](Self::snapshot) is complete.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// The trace's counters.
    pub fn stats(&self) -> TraceStats {
        let mut stats = {
            let w = self.lock();
            TraceStats {
                last_seq: w.last_seq,
                first_seq: w.first_seq,
                in_window: w.entries.len(),
                evicted: w.evicted,
                evicted_pending: w.aside.len(),
                ..TraceStats::default()
            }
        };
        if let Some(spill) = &self.spill {
            let c = &spill.counters;
            stats.spilled = c.written.load(Ordering::Relaxed);
            stats.spill_dropped = c.dropped.load(Ordering::Relaxed);
            stats.spill_errors = c.errors.load(Ordering::Relaxed);
            stats.spill_files = c.files.load(Ordering::Relaxed);
        }
        stats.subscribers = self.hub.subscribers();
        stats.subscriber_lagged = self.hub.lagged();
        stats
    }

    /// A live feed of the entries completed from now on.
    pub fn subscribe(&self) -> TraceSubscription {
        self.hub.subscribe()
    }

    /// Blocks until the spill has written and flushed every entry completed so far (at once
    /// without a spill).
    pub fn flush(&self) {
        if let Some(spill) = &self.spill {
            spill.flush();
        }
    }

    /// Forgets every entry; seqs start again at 1. Entries still pending are spilled as they
    /// are, and the spill goes on in a new file.
    pub fn clear(&self) {
        let old = {
            let mut w = self.lock();
            let next = Window::fresh(w.generation + 1);
            std::mem::replace(&mut *w, next)
        };
        self.spill_pending(old);
        if let Some(spill) = &self.spill {
            spill.rotate();
        }
    }

    /// Spills the entries of a window that will never finish (reset or drop).
    fn spill_pending(&self, w: Window) {
        let Some(spill) = &self.spill else { return };
        let mut left: Vec<Arc<TraceEntry>> = w
            .entries
            .into_iter()
            .filter(|e| pending(e))
            .chain(w.aside.into_values().map(Arc::new))
            .collect();
        left.sort_by_key(|e| e.seq);
        for e in left {
            spill.send(e);
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let w = std::mem::take(&mut *self.lock());
        self.spill_pending(w);
        // The spill's own drop then drains its queue and joins its writer.
    }
}

fn complete(e: &mut TraceEntry, done: Completion, arrived: u64) {
    e.status = done.status;
    e.errcode = done.errcode;
    e.soft_logout = done.soft_logout;
    e.issued = done.issued.map(Box::new);
    if done.user_id.is_some() {
        e.user_id = done.user_id;
    }
    if done.device_id.is_some() {
        e.device_id = done.device_id;
    }
    e.delivery = done.delivery.unwrap_or(Delivery::Sent);
    e.duration_ms = Some(done.duration_ms);
    e.flags.extend(done.flags);
    e.done_seq = Some(arrived);
}

#[cfg(test)]
mod tests;
