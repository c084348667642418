//! Building blocks: trace entries (requests, tokens presented and issued, 401s, timings), steps,
//! notifications, checks and an empty scenario report, to build a run by hand.

use rotary_harness::{
    CheckResult, Level, NotificationRecord, ScenarioReport, StepOutcome, StepRecord, Verdict,
};
use rotary_server::{AccessState, Delivery, IssuedLabels, RefreshState, TokenView, TraceEntry};
use serde_json::json;
use std::collections::BTreeMap;

pub fn req(seq: u64, real_ms: i64, endpoint: &'static str, method: &'static str, path: &str) -> TraceEntry {
    TraceEntry {
        seq,
        t_ms: real_ms,
        real_ms,
        endpoint: endpoint.into(),
        method: method.into(),
        path: path.to_owned(),
        status: Some(200),
        errcode: None,
        soft_logout: None,
        access_token: TokenView {
            label: "-".into(),
            state: AccessState::Missing,
        },
        refresh_token: None,
        user_id: Some("@alice:localhost".into()),
        device_id: Some("DEVICE1".into()),
        issued: None,
        fault: None,
        delivery: Delivery::Sent,
        flags: BTreeMap::new(),
        duration_ms: Some(1),
        done_seq: Some(seq),
    }
}

pub fn with_at(mut e: TraceEntry, label: &str, state: AccessState) -> TraceEntry {
    e.access_token = TokenView {
        label: label.into(),
        state,
    };
    e
}

pub fn with_rt(mut e: TraceEntry, label: &str, state: RefreshState) -> TraceEntry {
    e.refresh_token = Some(TokenView {
        label: label.into(),
        state,
    });
    e
}

pub fn rejected(mut e: TraceEntry, soft: bool) -> TraceEntry {
    e.status = Some(401);
    e.errcode = Some("M_UNKNOWN_TOKEN".into());
    e.soft_logout = Some(soft);
    e
}

pub fn issuing(mut e: TraceEntry, at: &str, rt: &str, lifetime_ms: i64) -> TraceEntry {
    let answered = e.t_ms + e.duration_ms.unwrap_or(0);
    e.issued = Some(Box::new(IssuedLabels {
        access_token: Some(at.into()),
        refresh_token: Some(rt.into()),
        expires_in_ms: Some(lifetime_ms),
        expires_at_ms: Some(answered + lifetime_ms),
    }));
    e
}

pub fn took(mut e: TraceEntry, ms: i64) -> TraceEntry {
    e.duration_ms = Some(ms);
    e
}

pub fn whoami(seq: u64, real_ms: i64, at: &str, state: AccessState) -> TraceEntry {
    with_at(
        req(seq, real_ms, "whoami", "GET", "/_matrix/client/v3/account/whoami"),
        at,
        state,
    )
}

pub fn refresh(seq: u64, real_ms: i64, rt: &str, state: RefreshState) -> TraceEntry {
    let mut e = with_rt(
        req(seq, real_ms, "refresh", "POST", "/_matrix/client/v3/refresh"),
        rt,
        state,
    );
    e.user_id = None;
    e.device_id = None;
    e
}

pub fn login(seq: u64, real_ms: i64) -> TraceEntry {
    let mut e = req(seq, real_ms, "login", "POST", "/_matrix/client/v3/login");
    e.flags.insert("refresh_token".into(), json!(true));
    e
}

pub fn step(
    index: usize,
    action: &str,
    summary: &str,
    started_ms: i64,
    ended_ms: i64,
    from: u64,
    to: u64,
) -> StepRecord {
    StepRecord {
        index,
        name: None,
        action: action.into(),
        summary: summary.into(),
        started_ms,
        ended_ms,
        trace_from: from,
        trace_to: to,
        outcome: StepOutcome::Ok { result: json!({}) },
    }
}

pub fn session_changed(at_ms: i64, step: usize, trace_len: u64, at: &str, rt: &str) -> NotificationRecord {
    NotificationRecord {
        at_ms,
        step,
        trace_len,
        method: "session_changed".into(),
        params: json!({ "access_token": at, "refresh_token": rt }),
    }
}

pub fn check(
    name: &str,
    description: &str,
    passed: bool,
    expected: &str,
    actual: &str,
    evidence: &[u64],
) -> CheckResult {
    CheckResult {
        check: name.into(),
        description: description.into(),
        passed,
        expected: expected.into(),
        actual: actual.into(),
        evidence: evidence.to_vec(),
    }
}

pub fn scenario(id: &str, title: &str, level: Level, verdict: Verdict) -> ScenarioReport {
    ScenarioReport {
        id: id.into(),
        title: title.into(),
        level,
        tags: Vec::new(),
        requirement: String::new(),
        references: Vec::new(),
        verdict,
        expected_failure: false,
        expected_flaky: false,
        message: None,
        duration_ms: 0,
        waited_ms: 0,
        server: json!({ "profile": "synapse" }),
        checks: Vec::new(),
        steps: Vec::new(),
        trace: Vec::new(),
        notifications: Vec::new(),
        stderr: String::new(),
        transcript: Vec::new(),
        violations: Vec::new(),
        facts: BTreeMap::new(),
        repeat: None,
    }
}
