//! The live judge's task: every completed trace entry goes through one [`Watch`], in completion
//! order; violations are counted (all) and kept with their trace windows (the first N).

use super::Shared;
use rotary_judge::live::{Violation, Watch, WatchConfig};
use rotary_server::trace::{SubscriptionError, TraceSubscription};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The watch and what it found: counts of every violation, the first `max` in full.
#[derive(Debug)]
pub struct ViolationLog {
    watch: Watch,
    kept: Vec<Violation>,
    max: usize,
    counts: BTreeMap<String, u64>,
    by_level: BTreeMap<String, u64>,
    total: u64,
    /// Entries the watch missed because it fell behind the trace.
    pub lagged: u64,
}

impl ViolationLog {
    /// An empty log keeping at most `max` violations in full.
    pub fn new(max: usize) -> Self {
        ViolationLog {
            watch: Watch::new(WatchConfig::default()),
            kept: Vec::new(),
            max,
            counts: BTreeMap::new(),
            by_level: BTreeMap::new(),
            total: 0,
            lagged: 0,
        }
    }

    /// Starts over with a fresh watch.
    pub fn reset(&mut self, cfg: WatchConfig) {
        let max = self.max;
        *self = ViolationLog::new(max);
        self.watch = Watch::new(cfg);
    }

    /// Violations kept, oldest first.
    pub fn kept(&self) -> &[Violation] {
        &self.kept
    }

    /// Violations by invariant id.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Violations by level.
    pub fn by_level(&self) -> &BTreeMap<String, u64> {
        &self.by_level
    }

    /// Every violation found.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Entries judged.
    pub fn observed(&self) -> u64 {
        self.watch.observed()
    }

    /// Sessions the watch follows.
    pub fn watched_sessions(&self) -> usize {
        self.watch.sessions()
    }

    fn record(&mut self, v: Violation) {
        self.total += 1;
        *self.counts.entry(v.invariant.clone()).or_insert(0) += 1;
        *self.by_level.entry(v.level.to_string()).or_insert(0) += 1;
        if self.kept.len() < self.max {
            self.kept.push(v);
        }
    }
}

/// Feeds the trace to the watch until the trace goes away.
pub async fn run(shared: Arc<Shared>, mut sub: TraceSubscription) {
    shared.lock_violations().watch = Watch::new(shared.cfg.watch.clone());
    loop {
        match sub.recv().await {
            Ok(entry) => {
                shared.metrics.completed(&entry);
                let found = {
                    let mut log = shared.lock_violations();
                    let found = log.watch.observe(&entry);
                    for v in &found {
                        log.record(v.clone());
                    }
                    found
                };
                for v in &found {
                    shared.metrics.violation(&v.invariant, &v.level.to_string());
                    tracing::warn!(
                        invariant = %v.invariant,
                        level = %v.level,
                        session = %v.session,
                        seq = v.seq,
                        "{}",
                        v.message
                    );
                }
                shared.judged.fetch_add(1, Ordering::Release);
            }
            Err(SubscriptionError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "the live judge fell behind the trace; some entries were not judged"
                );
                shared.lock_violations().lagged += n;
                shared.judged.fetch_add(n, Ordering::Release);
            }
            Err(SubscriptionError::Closed) => return,
        }
    }
}
