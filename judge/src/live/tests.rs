//! The watch's rules, each shown broken and kept.

use super::*;
use crate::trace::{AccessState, IssuedLabels, RefreshState, TokenView};

/// Entries of one device, built up in arrival order.
struct Script {
    entries: Vec<TraceEntry>,
}

impl Script {
    fn new() -> Script {
        Script { entries: Vec::new() }
    }

    fn push(
        &mut self,
        endpoint: &'static str,
        at_ms: i64,
        took_ms: i64,
        status: Option<u16>,
    ) -> &mut TraceEntry {
        let seq = self.entries.len() as u64 + 1;
        let mut e = TraceEntry::new(endpoint, "POST", format!("/_matrix/client/v3/{endpoint}"));
        e.seq = seq;
        e.real_ms = at_ms;
        e.t_ms = at_ms;
        e.duration_ms = Some(took_ms);
        e.status = status;
        e.delivery = if status.is_some() {
            Delivery::Sent
        } else {
            Delivery::Reset
        };
        e.device_id = Some("DEV".into());
        e.user_id = Some("@alice:localhost".into());
        self.entries.push(e);
        self.entries.last_mut().expect("just pushed")
    }

    fn login(&mut self, at_ms: i64, lifetime_ms: i64) {
        let e = self.push("login", at_ms, 5, Some(200));
        e.issued = Some(Box::new(issued(1, lifetime_ms)));
    }

    fn refresh(
        &mut self,
        at_ms: i64,
        took_ms: i64,
        presented: u64,
        status: Option<u16>,
        new: Option<u64>,
    ) -> u64 {
        let e = self.push("refresh", at_ms, took_ms, status);
        e.refresh_token = Some(TokenView {
            label: format!("rt#{presented}"),
            state: RefreshState::Current,
        });
        if status.is_some_and(|s| s >= 400) && status != Some(500) {
            e.errcode = Some("M_UNKNOWN_TOKEN".into());
        }
        e.issued = new.map(|n| Box::new(issued(n, 3_000)));
        e.seq
    }

    fn request(&mut self, endpoint: &'static str, at_ms: i64, access: u64, status: u16) -> &mut TraceEntry {
        let e = self.push(endpoint, at_ms, 2, Some(status));
        e.access_token = TokenView {
            label: format!("at#{access}"),
            state: AccessState::Valid,
        };
        e
    }

    /// Completion order as a server produces it: `done_seq` from the completion times.
    fn judge(&mut self) -> Vec<Violation> {
        let arrivals: Vec<i64> = self.entries.iter().map(|e| e.real_ms).collect();
        for e in &mut self.entries {
            let end = e.real_ms + e.duration_ms.unwrap_or(0);
            e.done_seq = Some(arrivals.iter().filter(|&&a| a <= end).count() as u64);
        }
        Watch::judge_trace(WatchConfig::default(), &self.entries)
    }
}

fn issued(n: u64, lifetime_ms: i64) -> IssuedLabels {
    IssuedLabels {
        access_token: Some(format!("at#{n}")),
        refresh_token: Some(format!("rt#{n}")),
        expires_in_ms: Some(lifetime_ms),
        expires_at_ms: None,
    }
}

fn ids(v: &[Violation]) -> Vec<&str> {
    v.iter().map(|v| v.invariant.as_str()).collect()
}

#[test]
fn a_correct_refresh_chain_breaks_nothing() {
    let mut s = Script::new();
    s.login(0, 3_000);
    s.request("whoami", 100, 1, 200);
    s.refresh(1_500, 5, 1, Some(200), Some(2));
    s.request("whoami", 1_600, 2, 200);
    s.refresh(3_000, 5, 2, Some(200), Some(3));
    s.request("whoami", 3_100, 3, 200);
    assert!(s.judge().is_empty());
}

#[test]
fn overlapping_refreshes_break_single_flight_and_a_retry_does_not() {
    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 200, 1, Some(200), Some(2));
    s.refresh(1_050, 10, 1, Some(200), Some(3));
    let v = s.judge();
    assert!(ids(&v).contains(&"live.single-flight"), "{v:?}");
    assert_eq!(v[0].window.last().map(|e| e.seq), Some(v[0].seq));

    // A retry with the same token after the first one's response was lost is right.
    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 20, 1, None, Some(2));
    s.refresh(1_500, 10, 1, Some(200), Some(3));
    assert!(s.judge().is_empty());

    // The client gave up on the first (closed the connection) and retried at once; the server
    // noticed the close just after the retry arrived (5 ms: judged before the retry completes;
    // 100 ms: after). Not a second flight.
    for noticed_after_ms in [5, 100] {
        let mut s = Script::new();
        s.login(0, 3_000);
        s.refresh(1_000, 500 + noticed_after_ms, 1, None, None);
        s.entries[1].delivery = Delivery::Abandoned;
        s.refresh(1_500, 10, 1, Some(200), Some(2));
        assert!(
            !ids(&s.judge()).contains(&"live.single-flight"),
            "{noticed_after_ms}"
        );
    }
}

#[test]
fn a_refresh_token_older_than_one_delivered_is_stale_after_the_grace() {
    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 5, 1, Some(200), Some(2));
    s.refresh(2_000, 5, 1, Some(200), Some(3));
    assert_eq!(ids(&s.judge()), ["live.stale-refresh-token"]);

    // Within the grace period the client may not have read the answer yet.
    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 5, 1, Some(200), Some(2));
    s.refresh(1_100, 5, 1, Some(200), Some(3));
    assert!(!ids(&s.judge()).contains(&"live.stale-refresh-token"));
}

#[test]
fn an_old_access_token_and_an_expired_one_are_seen() {
    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 5, 1, Some(200), Some(2));
    s.request("whoami", 2_000, 1, 200);
    assert_eq!(ids(&s.judge()), ["live.stale-access-token"]);

    let mut s = Script::new();
    s.login(0, 3_000);
    s.request("whoami", 4_000, 1, 401);
    s.request("sync", 4_100, 1, 401);
    assert_eq!(
        ids(&s.judge()),
        ["live.expired-token-used"],
        "reported once per token"
    );
}

#[test]
fn a_logout_after_a_transient_failure_is_blamed_and_after_a_refusal_is_not() {
    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 5, 1, Some(500), None);
    s.request("logout", 1_200, 1, 200);
    let v = s.judge();
    assert_eq!(ids(&v), ["live.logout-after-transient"]);
    assert_eq!(v[0].level, Level::Must);

    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 5, 1, Some(500), None);
    s.refresh(1_500, 5, 1, Some(403), None);
    s.request("logout", 1_600, 1, 200);
    assert!(s.judge().is_empty());
}

#[test]
fn a_fresh_login_after_a_transient_failure_is_blamed() {
    let mut s = Script::new();
    s.login(0, 3_000);
    s.refresh(1_000, 5, 1, None, None);
    let e = s.push("login", 1_400, 5, Some(200));
    e.device_id = Some("NEW".into());
    e.issued = Some(Box::new(issued(9, 3_000)));
    assert_eq!(ids(&s.judge()), ["live.logout-after-transient"]);
}

#[test]
fn refreshes_beyond_the_lifetime_are_a_loop_unless_401s_prompted_them() {
    let mut s = Script::new();
    s.login(0, 3_000);
    for (i, at) in [100, 300, 500, 700, 900].into_iter().enumerate() {
        let n = i as u64 + 1;
        s.refresh(at, 5, n, Some(200), Some(n + 1));
    }
    assert_eq!(
        ids(&s.judge()),
        ["live.refresh-loop"],
        "reported once per lifetime"
    );

    let mut s = Script::new();
    s.login(0, 3_000);
    for (i, at) in [100, 300, 500, 700, 900].into_iter().enumerate() {
        let n = i as u64 + 1;
        s.request("whoami", at, n, 401);
        s.refresh(at + 50, 5, n, Some(200), Some(n + 1));
    }
    assert!(s.judge().is_empty(), "each refresh answered a 401");

    // Refused refreshes repeated: a loop although each follows a 401.
    let mut s = Script::new();
    s.login(0, 3_000);
    for at in [100, 300, 500, 700, 900] {
        s.request("whoami", at, 1, 401);
        s.refresh(at + 50, 5, 1, Some(401), None);
    }
    assert!(ids(&s.judge()).contains(&"live.refresh-loop"));
}

#[test]
fn a_resend_after_a_lost_response_must_keep_its_transaction_id() {
    let send = |s: &mut Script, at: i64, txn: &str, status: Option<u16>| {
        let e = s.push("send", at, 5, status);
        e.access_token = TokenView {
            label: "at#1".into(),
            state: AccessState::Valid,
        };
        e.path = format!("/_matrix/client/v3/rooms/!r:x/send/m.room.message/{txn}");
        e.flags.insert("txn_id".into(), serde_json::json!(txn));
        e.flags.insert("body_hash".into(), serde_json::json!("abc"));
    };
    let mut s = Script::new();
    s.login(0, 300_000);
    send(&mut s, 100, "t1", None);
    send(&mut s, 600, "t2", Some(200));
    assert_eq!(ids(&s.judge()), ["live.txn-id-kept"]);

    let mut s = Script::new();
    s.login(0, 300_000);
    send(&mut s, 100, "t1", None);
    send(&mut s, 600, "t1", Some(200));
    send(&mut s, 700, "t3", Some(200));
    assert!(s.judge().is_empty());

    // Two messages with the same text: the retry of the one refused earlier is not a new id.
    let mut s = Script::new();
    s.login(0, 300_000);
    send(&mut s, 100, "t1", Some(401));
    send(&mut s, 200, "t2", None);
    send(&mut s, 600, "t1", Some(200));
    assert!(s.judge().is_empty());
}

#[test]
fn sessions_are_bounded() {
    let cfg = WatchConfig {
        max_sessions: 10,
        ..WatchConfig::default()
    };
    let mut watch = Watch::new(cfg);
    for i in 0..1000 {
        let mut e = TraceEntry::new("whoami", "GET", "/");
        e.seq = i + 1;
        e.real_ms = i as i64;
        e.status = Some(200);
        e.delivery = Delivery::Sent;
        e.device_id = Some(format!("D{i}"));
        watch.observe(&e);
    }
    assert!(watch.sessions() <= 10, "{}", watch.sessions());
    assert_eq!(watch.observed(), 1000);
}
