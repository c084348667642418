//! The judgement of a soak: every completed trace entry goes through the live invariants of
//! `rotary_judge::live` (the same [`Watch`] as `rotary run` and the proxy), and the fleet's own
//! events feed the end-to-end invariants a soak can see — every message seen exactly once by
//! sync, no session lost without a definitive refusal by the server. The refresh rate and memory
//! growth are judged from the totals, by thresholds.
//!
//! Memory is bounded: the watch keeps a few entries per session, this module counters, two
//! histograms, the first [`MAX_KEPT`] violations with their windows, and the devices the server
//! refused definitively (at most [`MAX_REFUSALS`]).

use super::fleet::{MessageFate, SessionEvent, SessionObserver};
use super::metrics::Histogram;
use super::target::{FeedItem, TraceFeed};
use rotary_judge::live::{Violation, Watch, WatchConfig};
use rotary_judge::{Level, TraceEntry};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Violations kept with their evidence for the report (the count goes on beyond).
pub const MAX_KEPT: usize = 100;
/// Devices remembered as refused definitively by the server.
pub const MAX_REFUSALS: usize = 100_000;
/// How long after a logout its cause is looked for in the trace (the trace entry of the refusal
/// may reach the judge after the client acted on the response).
pub const LOGOUT_SETTLE: Duration = Duration::from_secs(2);

/// An end-to-end invariant of a soak (beside the live ones of `rotary_judge::live`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EndToEnd {
    /// Stable id.
    pub id: &'static str,
    /// Level.
    pub level: Level,
    /// The requirement.
    pub requirement: &'static str,
    /// The metric a threshold judges it by.
    pub metric: &'static str,
}

/// Every message sent is seen exactly once by sync.
pub const MESSAGE_ONCE: EndToEnd = EndToEnd {
    id: "soak.message-once",
    level: Level::Must,
    requirement: "Every message whose send succeeded is seen exactly once by the sender's sync: none lost, none stored twice.",
    metric: "messages.lost, messages.duplicated",
};
/// No session lost without a definitive refusal.
pub const NO_SESSION_LOST: EndToEnd = EndToEnd {
    id: "soak.no-session-lost",
    level: Level::Must,
    requirement: "A session ends only after the server refused it definitively (a refresh answered 4xx other than 429, or a revoked token).",
    metric: "sessions.lost",
};
/// A definitive refusal ends the session.
pub const REFUSAL_HEEDED: EndToEnd = EndToEnd {
    id: "soak.refusal-heeded",
    level: Level::Must,
    requirement: "A session the server refused definitively is ended by its client (a logout is signalled) instead of going on with dead tokens or retrying forever.",
    metric: "sessions.zombie",
};
/// The refresh rate is bounded by the lifetime.
pub const REFRESH_RATE: EndToEnd = EndToEnd {
    id: "soak.refresh-rate",
    level: Level::Must,
    requirement: "Over the whole soak, sessions refresh no more often than the access-token lifetime explains.",
    metric: "refresh.per_lifetime",
};
/// Memory stays flat.
pub const MEMORY_FLAT: EndToEnd = EndToEnd {
    id: "soak.memory-flat",
    level: Level::Must,
    requirement: "The harness's (and drivers') resident memory does not grow with the run's length.",
    metric: "memory.growth",
};
/// The end-to-end invariants.
pub const END_TO_END: &[EndToEnd] = &[
    MESSAGE_ONCE,
    NO_SESSION_LOST,
    REFUSAL_HEEDED,
    REFRESH_RATE,
    MEMORY_FLAT,
];

/// What happened in one second, from the trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondCounts {
    /// Requests.
    pub requests: u64,
    /// Refreshes.
    pub refreshes: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// Faults injected.
    pub faults: u64,
    /// Live violations.
    pub violations: u64,
    /// Logouts signalled.
    pub logouts: u64,
}

/// The judge's totals at one moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JudgeSummary {
    /// Entries judged.
    pub entries: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Faults injected.
    pub faults: u64,
    /// Refresh requests.
    pub refreshes: u64,
    /// Refresh requests not answered 200.
    pub refresh_failed: u64,
    /// Entries the feed dropped because the judge fell behind.
    pub lagged: u64,
    /// Live violations by level.
    pub must: u64,
    /// Of `should` level.
    pub should: u64,
    /// Live violations by invariant id.
    pub by_invariant: BTreeMap<String, u64>,
    /// Logouts signalled (by the fleet and the drivers).
    pub logouts: u64,
    /// Of which after a definitive refusal.
    pub logouts_refused: u64,
    /// Of which without one: lost sessions.
    pub sessions_lost: u64,
    /// Sessions refused definitively that never logged out.
    pub zombies: u64,
    /// Refresh latency at the server, ms: p50, p90, p99, max.
    pub refresh_ms: [f64; 4],
    /// App request latency, ms: p50, p90, p99, max.
    pub action_ms: [f64; 4],
    /// The first violations, live and end-to-end, with their evidence.
    pub kept: Vec<Violation>,
}

#[derive(Default)]
struct State {
    watch: Watch,
    sum: JudgeSummary,
    second: SecondCounts,
    refresh_hist: Histogram,
    action_hist: Histogram,
    refusals: HashMap<String, Refusal>,
    ended: HashSet<String>,
    ended_order: VecDeque<String>,
    pending_logouts: VecDeque<(Instant, String, Option<String>)>,
    last_ms: i64,
}

/// A definitive refusal of a device that its client has not acted on yet.
struct Refusal {
    /// When the judge saw it.
    at: Instant,
    /// The trace's sequence number when its answer was produced: requests with a higher `seq`
    /// were sent after the client could know.
    done_seq: u64,
    /// Requests of the device sent after the refusal was answered.
    later: u32,
}

/// Requests a client may send after a definitive refusal before the end of a soak counts it as a
/// zombie: the refresh that learns the refusal is final, and one more.
const LATER_REQUESTS_AT_END: u32 = 2;

/// The judge, shared by the trace pump, the fleet's observer and the driver loops.
pub struct Judge {
    state: Mutex<State>,
    must_seen: watch::Sender<bool>,
    /// Session index → device id, for the fleet's events (the fleet names sessions by index).
    devices: Mutex<HashMap<usize, (String, String)>>,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge").finish_non_exhaustive()
    }
}

fn quantiles(h: &Histogram) -> [f64; 4] {
    [h.quantile(0.5), h.quantile(0.9), h.quantile(0.99), h.max()]
}

/// Whether this entry is the server refusing the session definitively.
fn definitive_refusal(e: &TraceEntry) -> bool {
    let Some(status) = e.status else { return false };
    if !e.delivered() {
        return false;
    }
    if e.is_refresh() {
        return (400..500).contains(&status) && status != 429;
    }
    status == 401
        && matches!(
            e.access_token.state,
            rotary_judge::AccessState::Revoked | rotary_judge::AccessState::Unknown
        )
}

impl Judge {
    /// A judge with this watch configuration.
    pub fn new(cfg: WatchConfig) -> Judge {
        Judge {
            state: Mutex::new(State {
                watch: Watch::new(cfg),
                ..State::default()
            }),
            must_seen: watch::channel(false).0,
            devices: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves once a `must` violation (live or end-to-end) was found.
    pub fn must_violation(&self) -> watch::Receiver<bool> {
        self.must_seen.subscribe()
    }

    /// Judges one completed entry.
    pub fn observe(&self, e: &TraceEntry) {
        let mut st = self.lock();
        let found = st.watch.observe(e);
        let s = &mut st.sum;
        s.entries += 1;
        st.second.requests += 1;
        if e.status == Some(401) {
            st.sum.unauthorized += 1;
            st.second.unauthorized += 1;
        }
        if e.fault.is_some() {
            st.sum.faults += 1;
            st.second.faults += 1;
        }
        if e.is_refresh() {
            st.sum.refreshes += 1;
            st.second.refreshes += 1;
            if e.status != Some(200) || !e.delivered() {
                st.sum.refresh_failed += 1;
            }
            if let Some(ms) = e.duration_ms {
                st.refresh_hist.record(ms as f64);
            }
        }
        st.last_ms = st.last_ms.max(e.real_ms);
        if let Some(d) = &e.device_id
            && let Some(r) = st.refusals.get_mut(d)
            && e.seq > r.done_seq
        {
            r.later = r.later.saturating_add(1);
        }
        if definitive_refusal(e)
            && let Some(d) = &e.device_id
            && !st.ended.contains(d)
        {
            if st.refusals.len() >= MAX_REFUSALS {
                st.refusals.clear();
            }
            let done_seq = e.done_seq.unwrap_or(e.seq);
            st.refusals.entry(d.clone()).or_insert_with(|| Refusal {
                at: Instant::now(),
                done_seq,
                later: 0,
            });
        }
        for v in found {
            st.second.violations += 1;
            match v.level {
                Level::Must => st.sum.must += 1,
                Level::Should => st.sum.should += 1,
                Level::Info => {}
            }
            *st.sum.by_invariant.entry(v.invariant.clone()).or_default() += 1;
            if v.level == Level::Must {
                self.must_seen.send_replace(true);
            }
            keep(&mut st.sum, v);
        }
    }

    /// The feed dropped `n` entries.
    pub fn lagged(&self, n: u64) {
        self.lock().sum.lagged += n;
    }

    /// A client signalled a logout of `device`.
    pub fn logout(&self, device: &str, user: Option<&str>) {
        let mut st = self.lock();
        st.sum.logouts += 1;
        st.second.logouts += 1;
        st.pending_logouts
            .push_back((Instant::now(), device.to_owned(), user.map(str::to_owned)));
    }

    /// Decides the logouts older than `settle`: each after a definitive refusal is fine, each
    /// without one is a lost session. Then the refusals older than `zombie_after` whose session
    /// never logged out: each is a session that ignored a definitive refusal.
    pub fn settle_logouts(&self, settle: Duration, zombie_after: Duration) {
        self.settle(settle, zombie_after, None);
    }

    /// The last settling, when the fleet has stopped: every pending logout is decided, and a
    /// refusal is a zombie when it is older than `zombie_after`, or older than `grace` *and* its
    /// client kept sending requests after it (more than the refresh that learns the refusal is
    /// final). A client whose answer to the refusal was still in flight when the soak ended — a
    /// slow server — is given the benefit of the doubt.
    pub fn settle_at_end(&self, grace: Duration, zombie_after: Duration) {
        self.settle(Duration::ZERO, zombie_after, Some(grace));
    }

    fn settle(&self, settle: Duration, zombie_after: Duration, end_grace: Option<Duration>) {
        let mut st = self.lock();
        let now = Instant::now();
        while st
            .pending_logouts
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= settle)
        {
            let Some((_, device, user)) = st.pending_logouts.pop_front() else {
                break;
            };
            let refused = st.refusals.remove(&device).is_some();
            end(&mut st, &device);
            if refused {
                st.sum.logouts_refused += 1;
                continue;
            }
            st.sum.sessions_lost += 1;
            let t_ms = st.last_ms;
            let v = Violation {
                invariant: NO_SESSION_LOST.id.to_owned(),
                level: Level::Must,
                session: device.clone(),
                user,
                t_ms,
                seq: 0,
                message: format!(
                    "device {device} was logged out by its client, and the server never refused it definitively"
                ),
                window: Vec::new(),
            };
            self.must_seen.send_replace(true);
            keep(&mut st.sum, v);
        }
        let stale: Vec<String> = st
            .refusals
            .iter()
            .filter(|(_, r)| {
                let age = now.duration_since(r.at);
                age >= zombie_after || end_grace.is_some_and(|g| age >= g && r.later >= LATER_REQUESTS_AT_END)
            })
            .map(|(d, _)| d.clone())
            .collect();
        for device in stale {
            let Some(Refusal { at, later, .. }) = st.refusals.remove(&device) else {
                continue;
            };
            let age = now.duration_since(at);
            if st.ended.contains(&device) {
                continue;
            }
            end(&mut st, &device);
            st.sum.zombies += 1;
            let t_ms = st.last_ms;
            let v = Violation {
                invariant: REFUSAL_HEEDED.id.to_owned(),
                level: Level::Must,
                session: device.clone(),
                user: None,
                t_ms,
                seq: 0,
                message: format!(
                    "the server refused device {device} definitively, and {:.1} s later its client had not logged out ({} request(s) sent after the refusal)",
                    age.as_secs_f64(),
                    later
                ),
                window: Vec::new(),
            };
            self.must_seen.send_replace(true);
            keep(&mut st.sum, v);
        }
    }

    /// A message of session `index` did not come back exactly once.
    pub fn message(&self, index: usize, n: u64, fate: MessageFate) {
        if !matches!(fate, MessageFate::Lost | MessageFate::Duplicated) {
            return;
        }
        let who = self
            .devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&index)
            .cloned();
        let mut st = self.lock();
        let t_ms = st.last_ms;
        let (user, device) = who.map_or((None, format!("session {index}")), |(u, d)| (Some(u), d));
        let what = if fate == MessageFate::Lost {
            "was sent (the server said so) and never shown by sync"
        } else {
            "was shown by sync more than once: the server stored it twice"
        };
        let v = Violation {
            invariant: MESSAGE_ONCE.id.to_owned(),
            level: Level::Must,
            session: device,
            user,
            t_ms,
            seq: 0,
            message: format!("message #{n} of session {index} {what}"),
            window: Vec::new(),
        };
        self.must_seen.send_replace(true);
        keep(&mut st.sum, v);
    }

    /// One app request took this long.
    pub fn action_latency(&self, d: Duration) {
        self.lock().action_hist.record(d.as_secs_f64() * 1_000.0);
    }

    /// The counts of the second that just ended (and starts the next).
    pub fn take_second(&self) -> SecondCounts {
        std::mem::take(&mut self.lock().second)
    }

    /// Live violations so far: `must`, `should`.
    pub fn violation_counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.sum.must, st.sum.should)
    }

    /// Sessions the watch holds state for (it must stay bounded).
    pub fn watched_sessions(&self) -> usize {
        self.lock().watch.sessions()
    }

    /// The totals now.
    pub fn summary(&self) -> JudgeSummary {
        let st = self.lock();
        let mut s = st.sum.clone();
        s.refresh_ms = quantiles(&st.refresh_hist);
        s.action_ms = quantiles(&st.action_hist);
        s
    }

    /// Feeds the trace into the judge until `stop`, then drains what is still coming (until the
    /// feed is quiet for `quiet`).
    pub async fn pump(&self, mut feed: Box<dyn TraceFeed>, mut stop: watch::Receiver<bool>, quiet: Duration) {
        loop {
            tokio::select! {
                item = feed.recv() => if !self.take(item) { return },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        while let Ok(item) = tokio::time::timeout(quiet, feed.recv()).await {
            if !self.take(item) {
                return;
            }
        }
    }

    fn take(&self, item: FeedItem) -> bool {
        match item {
            FeedItem::Entry(e) => self.observe(&e),
            FeedItem::Lagged(n) => self.lagged(n),
            FeedItem::Closed => return false,
        }
        true
    }
}

/// Remembers that a device's session is over (bounded: the oldest are forgotten).
fn end(st: &mut State, device: &str) {
    if st.ended.insert(device.to_owned()) {
        st.ended_order.push_back(device.to_owned());
        while st.ended_order.len() > MAX_REFUSALS {
            if let Some(old) = st.ended_order.pop_front() {
                st.ended.remove(&old);
            }
        }
    }
}

/// Keeps a violation for the report: the first [`MAX_KEPT`], and beyond them the first of each
/// invariant not kept yet.
fn keep(sum: &mut JudgeSummary, v: Violation) {
    if sum.kept.len() < MAX_KEPT || !sum.kept.iter().any(|k| k.invariant == v.invariant) {
        sum.kept.push(v);
    }
}

impl SessionObserver for Judge {
    fn on_event(&self, session: usize, event: &SessionEvent<'_>) {
        match event {
            SessionEvent::LoggedIn { user_id, device_id } => {
                self.devices
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(session, ((*user_id).to_owned(), (*device_id).to_owned()));
            }
            SessionEvent::LoggedOut {
                user_id, device_id, ..
            } => self.logout(device_id, Some(user_id)),
            SessionEvent::Action { latency, .. } => self.action_latency(*latency),
            SessionEvent::Message { n, fate } => self.message(session, *n, *fate),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotary_judge::{Delivery, TokenView};

    fn refresh(seq: u64, status: u16) -> TraceEntry {
        let mut e = TraceEntry::new("refresh", "POST", "/_matrix/client/v3/refresh");
        (e.seq, e.real_ms, e.status, e.delivery) = (seq, seq as i64 * 10, Some(status), Delivery::Sent);
        (e.done_seq, e.device_id, e.duration_ms) = (Some(seq), Some("D1".into()), Some(4));
        e.refresh_token = Some(TokenView {
            label: "rt#1".into(),
            state: rotary_judge::RefreshState::Consumed,
        });
        e
    }

    #[test]
    fn a_logout_after_a_refusal_is_no_lost_session() {
        let j = Judge::new(WatchConfig::default());
        j.observe(&refresh(1, 500));
        j.logout("D2", None);
        j.observe(&refresh(2, 401));
        j.logout("D1", Some("@u:localhost"));
        j.settle_logouts(Duration::ZERO, Duration::from_secs(60));
        let s = j.summary();
        assert_eq!((s.logouts, s.logouts_refused, s.sessions_lost), (2, 1, 1));
        assert_eq!(s.refreshes, 2);
        assert_eq!(s.refresh_failed, 2);
        assert_eq!(s.unauthorized, 1);
        assert!(
            s.kept
                .iter()
                .any(|v| v.invariant == NO_SESSION_LOST.id && v.session == "D2")
        );
        assert!(*j.must_violation().borrow());
        assert_eq!(j.take_second().requests, 2);
        assert_eq!(j.take_second().requests, 0);
    }

    #[test]
    fn at_the_end_only_a_client_that_kept_going_is_a_zombie() {
        let j = Judge::new(WatchConfig::default());
        j.observe(&refresh(1, 401));
        // Its answer to the refusal may still be in flight: the benefit of the doubt.
        j.settle_at_end(Duration::ZERO, Duration::from_secs(60));
        assert_eq!(j.summary().zombies, 0);
        // Two more requests sent after the refusal was answered, and no logout: a zombie.
        j.observe(&refresh(2, 401));
        j.observe(&refresh(3, 401));
        j.settle_at_end(Duration::ZERO, Duration::from_secs(60));
        let s = j.summary();
        assert_eq!(s.zombies, 1);
        assert!(
            s.kept[0].message.contains("2 request(s) sent after the refusal"),
            "{}",
            s.kept[0].message
        );
    }

    #[test]
    fn a_refusal_without_a_logout_is_a_zombie() {
        let j = Judge::new(WatchConfig::default());
        j.observe(&refresh(1, 401));
        j.settle_logouts(Duration::ZERO, Duration::from_secs(60));
        assert_eq!(j.summary().zombies, 0);
        j.settle_logouts(Duration::ZERO, Duration::ZERO);
        let s = j.summary();
        assert_eq!(s.zombies, 1);
        assert_eq!(s.kept[0].invariant, REFUSAL_HEEDED.id);
        // Refusals of a session already over are not held against it.
        j.observe(&refresh(2, 401));
        j.settle_logouts(Duration::ZERO, Duration::ZERO);
        assert_eq!(j.summary().zombies, 1);
    }

    #[test]
    fn only_lost_and_duplicated_messages_are_violations() {
        let j = Judge::new(WatchConfig::default());
        j.message(0, 1, MessageFate::Late);
        j.message(0, 1, MessageFate::Unverified);
        assert!(j.summary().kept.is_empty());
        j.message(0, 2, MessageFate::Duplicated);
        assert_eq!(j.summary().kept[0].invariant, MESSAGE_ONCE.id);
    }
}
