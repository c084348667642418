//! Unit tests of the trace: window and eviction, paging, completion, reset, spill and subscribers.

use super::*;

fn entry() -> TraceEntry {
    TraceEntry::new("whoami", "GET", "/")
}

/// A shared entry with this seq (for the spill's and the subscribers' tests).
pub(super) fn entry_at(seq: u64) -> Arc<TraceEntry> {
    let mut e = entry();
    e.seq = seq;
    Arc::new(e)
}

fn ok() -> Completion {
    Completion {
        status: Some(200),
        ..Default::default()
    }
}

fn small(window: usize) -> Trace {
    Trace::new(TraceConfig::default().window(window)).unwrap()
}

fn seqs(entries: &[Arc<TraceEntry>]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[test]
fn the_window_keeps_the_newest_entries() {
    let trace = small(3);
    for _ in 0..5 {
        let t = trace.begin(entry());
        trace.finish(t, ok());
    }
    let stats = trace.stats();
    assert_eq!(
        (stats.last_seq, stats.first_seq, stats.in_window, stats.evicted),
        (5, 3, 3, 2)
    );
    assert_eq!(trace.len(), 5);
    assert_eq!(trace.evicted(), 2);
    assert_eq!(
        trace.snapshot(0).iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 4, 5]
    );
}

#[test]
fn pages_continue_where_the_last_one_ended_and_say_what_is_gone() {
    let trace = small(100);
    for _ in 0..250 {
        let t = trace.begin(entry());
        trace.finish(t, ok());
    }
    // 150 evicted: 151..=250 in memory.
    let p = trace.page(0, 40);
    assert_eq!(seqs(&p.entries), (151..=190).collect::<Vec<_>>());
    assert_eq!((p.next_after, p.more, p.missed), (190, true, 150));
    assert_eq!((p.first_seq, p.last_seq, p.evicted), (151, 250, 150));
    let p = trace.page(p.next_after, 100);
    assert_eq!(seqs(&p.entries), (191..=250).collect::<Vec<_>>());
    assert_eq!((p.next_after, p.more, p.missed), (250, false, 0));
    let p = trace.page(250, 10);
    assert!(p.entries.is_empty());
    assert_eq!((p.next_after, p.more), (250, false));
    // A cursor beyond the end (after a reset, say) comes back to the end.
    assert_eq!(trace.page(9_999, 10).next_after, 250);
    // limit 0: where the trace stands, no entries.
    let p = trace.page(200, 0);
    assert!(p.entries.is_empty());
    assert_eq!((p.next_after, p.more), (200, true));
}

#[test]
fn done_seq_counts_arrivals_until_the_answer() {
    let trace = small(10);
    let a = trace.begin(entry());
    let b = trace.begin(entry());
    trace.finish(b, ok());
    let c = trace.begin(entry());
    trace.finish(a, ok());
    trace.finish(c, ok());
    let done: Vec<Option<u64>> = trace.snapshot(0).iter().map(|e| e.done_seq).collect();
    assert_eq!(done, [Some(3), Some(2), Some(3)]);
    // A second finish changes nothing.
    trace.finish(
        a,
        Completion {
            status: Some(500),
            ..Default::default()
        },
    );
    assert_eq!(trace.snapshot(0)[0].status, Some(200));
}

#[test]
fn an_entry_evicted_while_pending_is_still_completed_and_published() {
    let trace = small(2);
    let mut live = trace.subscribe();
    let long_poll = trace.begin(entry());
    for _ in 0..3 {
        let t = trace.begin(entry());
        trace.finish(t, ok());
    }
    let stats = trace.stats();
    assert_eq!((stats.evicted, stats.evicted_pending), (2, 1));
    assert!(trace.snapshot(0).iter().all(|e| e.seq > 2));
    trace.finish(long_poll, ok());
    assert_eq!(trace.stats().evicted_pending, 0);
    let order: Vec<(u64, Option<u64>)> = std::iter::from_fn(|| live.try_recv().ok().flatten())
        .map(|e| (e.seq, e.done_seq))
        .collect();
    assert_eq!(order, [(2, Some(2)), (3, Some(3)), (4, Some(4)), (1, Some(4))]);
}

#[test]
fn a_zero_window_keeps_only_running_requests() {
    let trace = small(0);
    let t = trace.begin(entry());
    assert!(trace.snapshot(0).is_empty());
    assert_eq!(trace.stats().evicted_pending, 1);
    trace.finish(t, ok());
    assert_eq!(trace.stats().evicted_pending, 0);
    assert_eq!(trace.len(), 1);
}

#[test]
fn a_page_is_a_snapshot_that_later_completions_do_not_change() {
    let trace = small(10);
    let t = trace.begin(entry());
    let page = trace.page(0, 10);
    trace.finish(t, ok());
    assert_eq!(page.entries[0].delivery, Delivery::Pending);
    assert_eq!(trace.page(0, 10).entries[0].delivery, Delivery::Sent);
}

#[test]
fn a_reset_forgets_everything_and_ignores_stale_tickets() {
    let trace = small(10);
    let old = trace.begin(entry());
    trace.clear();
    assert!(trace.is_empty());
    let new = trace.begin(entry());
    assert_eq!(new.seq, old.seq);
    trace.finish(old, ok());
    assert_eq!(trace.snapshot(0)[0].delivery, Delivery::Pending);
    trace.finish(new, ok());
    assert_eq!(trace.snapshot(0)[0].status, Some(200));
}

#[test]
fn concurrent_appends_are_never_lost() {
    let trace = Arc::new(small(10_000));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let t = trace.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let ticket = t.begin(entry());
                    t.finish(ticket, ok());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all = trace.snapshot(0);
    assert_eq!(all.len(), 4000);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64 + 1 && e.status == Some(200))
    );
    assert_eq!(trace.snapshot(3990).len(), 10);
    assert_eq!(trace.snapshot(4000).len(), 0);
    assert_eq!(trace.snapshot(u64::MAX).len(), 0);
}

#[test]
fn the_spill_holds_every_entry_once_in_its_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let line = serde_json::to_vec(&entry()).unwrap().len() as u64;
    let config = TraceConfig::default()
        .window(5)
        .spill(SpillConfig::new(dir.path(), 20 * line));
    {
        let trace = Trace::new(config).unwrap();
        let hang = trace.begin(entry());
        let long_poll = trace.begin(entry());
        for _ in 0..98 {
            let t = trace.begin(entry());
            trace.finish(t, ok());
        }
        trace.finish(long_poll, ok());
        trace.flush();
        let stats = trace.stats();
        assert_eq!(
            (stats.spilled, stats.spill_dropped, stats.spill_errors),
            (99, 0, 0)
        );
        assert!(stats.spill_files >= 5, "{stats:?}");
        let _ = hang;
        // Dropped with `hang` still pending: it is written as it is.
    }
    let mut spilled = read_spill(dir.path()).unwrap();
    assert_eq!(spilled.len(), 100);
    assert_eq!(
        spilled.last().map(|e| (e.seq, e.delivery)),
        Some((1, Delivery::Pending))
    );
    spilled.sort_by_key(|e| e.seq);
    assert!(spilled.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    assert!(
        spilled[1..]
            .iter()
            .all(|e| e.status == Some(200) && e.done_seq.is_some())
    );
    assert_eq!(spilled[1].done_seq, Some(100));
}

#[test]
fn a_reset_spills_what_is_pending_and_starts_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let trace = Trace::new(TraceConfig::default().spill(SpillConfig::new(dir.path(), 1 << 20))).unwrap();
    let t = trace.begin(entry());
    trace.finish(t, ok());
    let _pending = trace.begin(entry());
    trace.clear();
    let t = trace.begin(entry());
    trace.finish(t, ok());
    trace.flush();
    let files = spill_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    let first = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(first.lines().count(), 2);
    assert_eq!(std::fs::read_to_string(&files[1]).unwrap().lines().count(), 1);
}

#[test]
fn a_spill_that_cannot_be_created_is_an_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let config = TraceConfig::default().spill(SpillConfig::new(file.path().join("sub"), 1024));
    assert!(matches!(Trace::new(config), Err(TraceError::Spill { .. })));
}

#[test]
fn subscribers_get_completions_in_order_and_cost_nothing_when_gone() {
    let trace = Trace::new(TraceConfig {
        subscriber_capacity: 8,
        ..TraceConfig::default()
    })
    .unwrap();
    let mut live = trace.subscribe();
    for _ in 0..20 {
        let t = trace.begin(entry());
        trace.finish(t, ok());
    }
    assert_eq!(live.try_recv(), Err(SubscriptionError::Lagged(12)));
    let rest: Vec<u64> = std::iter::from_fn(|| live.try_recv().ok().flatten())
        .map(|e| e.seq)
        .collect();
    assert_eq!(rest, (13..=20).collect::<Vec<_>>());
    assert_eq!(trace.stats().subscriber_lagged, 12);
    assert_eq!(trace.stats().subscribers, 1);
    drop(live);
    assert_eq!(trace.stats().subscribers, 0);
}
