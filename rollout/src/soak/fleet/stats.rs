//! What the sessions did, added up: lock-free counters and their snapshot.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// What the sessions did, added up. Every field is a count (gauges say so).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadStats {
    /// Logins that succeeded (re-logins included).
    pub logins: u64,
    /// Logins that failed (and were tried again).
    pub login_failures: u64,
    /// Sessions logged in now (gauge).
    pub alive: u64,
    /// Sessions suspended now (gauge).
    pub suspended: u64,
    /// Suspensions so far.
    pub suspensions: u64,
    /// Logouts the clients signalled.
    pub logouts: u64,
    /// Of which soft.
    pub soft_logouts: u64,
    /// App requests (whoami, send, create_room) finished.
    pub actions: u64,
    /// Of which failed.
    pub actions_failed: u64,
    /// Of which failed with a 401 the app saw.
    pub unauthorized: u64,
    /// Syncs that answered.
    pub syncs: u64,
    /// Syncs that failed.
    pub sync_failures: u64,
    /// Messages whose send succeeded.
    pub messages_sent: u64,
    /// Messages whose send failed (they may still have been stored).
    pub messages_send_failed: u64,
    /// Messages sync showed (the first time).
    pub messages_seen: u64,
    /// Messages sync showed more than once.
    pub messages_duplicated: u64,
    /// Messages sent and never shown.
    pub messages_lost: u64,
    /// Messages shown after being given up.
    pub messages_late: u64,
    /// Messages neither seen nor lost (a gap of a limited timeline, or no final sync).
    pub messages_unverified: u64,
    /// Of the messages seen, those whose send had failed.
    pub messages_seen_after_error: u64,
    /// Timeline gaps (`limited`) met in a session's room.
    pub timeline_gaps: u64,
}

impl WorkloadStats {
    /// Adds `other`'s counts to these (gauges too).
    pub fn add(&mut self, o: &WorkloadStats) {
        let pairs = [
            (&mut self.logins, o.logins),
            (&mut self.login_failures, o.login_failures),
            (&mut self.alive, o.alive),
            (&mut self.suspended, o.suspended),
            (&mut self.suspensions, o.suspensions),
            (&mut self.logouts, o.logouts),
            (&mut self.soft_logouts, o.soft_logouts),
            (&mut self.actions, o.actions),
            (&mut self.actions_failed, o.actions_failed),
            (&mut self.unauthorized, o.unauthorized),
            (&mut self.syncs, o.syncs),
            (&mut self.sync_failures, o.sync_failures),
            (&mut self.messages_sent, o.messages_sent),
            (&mut self.messages_send_failed, o.messages_send_failed),
            (&mut self.messages_seen, o.messages_seen),
            (&mut self.messages_duplicated, o.messages_duplicated),
            (&mut self.messages_lost, o.messages_lost),
            (&mut self.messages_late, o.messages_late),
            (&mut self.messages_unverified, o.messages_unverified),
            (&mut self.messages_seen_after_error, o.messages_seen_after_error),
            (&mut self.timeline_gaps, o.timeline_gaps),
        ];
        for (mine, theirs) in pairs {
            *mine += theirs;
        }
    }
}

/// The live counters behind [`WorkloadStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) logins: AtomicU64,
    pub(crate) login_failures: AtomicU64,
    pub(crate) alive: AtomicU64,
    pub(crate) suspended: AtomicU64,
    pub(crate) suspensions: AtomicU64,
    pub(crate) logouts: AtomicU64,
    pub(crate) soft_logouts: AtomicU64,
    pub(crate) actions: AtomicU64,
    pub(crate) actions_failed: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) sync_failures: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) messages_send_failed: AtomicU64,
    pub(crate) messages_seen: AtomicU64,
    pub(crate) messages_duplicated: AtomicU64,
    pub(crate) messages_lost: AtomicU64,
    pub(crate) messages_late: AtomicU64,
    pub(crate) messages_unverified: AtomicU64,
    pub(crate) messages_seen_after_error: AtomicU64,
    pub(crate) timeline_gaps: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn drop_one(c: &AtomicU64) {
    // A gauge never goes below zero, whatever the order of updates.
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WorkloadStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkloadStats {
            logins: g(&self.logins),
            login_failures: g(&self.login_failures),
            alive: g(&self.alive),
            suspended: g(&self.suspended),
            suspensions: g(&self.suspensions),
            logouts: g(&self.logouts),
            soft_logouts: g(&self.soft_logouts),
            actions: g(&self.actions),
            actions_failed: g(&self.actions_failed),
            unauthorized: g(&self.unauthorized),
            syncs: g(&self.syncs),
            sync_failures: g(&self.sync_failures),
            messages_sent: g(&self.messages_sent),
            messages_send_failed: g(&self.messages_send_failed),
            messages_seen: g(&self.messages_seen),
            messages_duplicated: g(&self.messages_duplicated),
            messages_lost: g(&self.messages_lost),
            messages_late: g(&self.messages_late),
            messages_unverified: g(&self.messages_unverified),
            messages_seen_after_error: g(&self.messages_seen_after_error),
            timeline_gaps: g(&self.timeline_gaps),
        }
    }
}
