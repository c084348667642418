//! The synthetic run: five hand-built scenarios (a refresh storm, a lost response, a crashed driver,
//! a skipped scenario and an expected failure), and a 500-request scenario for the timeline.

use super::blocks::{
    check, issuing, login, refresh, rejected, req, scenario, session_changed, step, took, whoami, with_at,
};
use rotary_harness::{
    CallError, DriverInfo, Level, NotificationRecord, RunReport, ScenarioReport, StepOutcome, Summary,
    Verdict,
};
use rotary_server::{AccessState, Delivery, FiredFault, RefreshState};
use serde_json::json;

/// Five requests meet an expired token together; one refresh; five retries succeed.
pub fn storm() -> ScenarioReport {
    let mut r = scenario(
        "concurrency.single-refresh",
        "Five requests that meet an expired token at once share a single refresh",
        Level::Must,
        Verdict::Pass,
    );
    r.tags = vec!["concurrency".into(), "reactive".into()];
    r.requirement = "When several requests fail with 401 at the same time, the client calls /refresh once, \
                     and every request is retried with the new access token."
        .into();
    r.references = vec![
        "Matrix spec v1.3+, Client-Server API §Refreshing access tokens".into(),
        "https://github.com/matrix-org/matrix-rust-sdk/issues/1234 (duplicate refreshes)".into(),
    ];
    r.duration_ms = 1_262;
    r.waited_ms = 1_100;
    r.server =
        json!({ "profile": "synapse", "refreshable_access_token_lifetime": "1s", "refresh_rotation": true });
    let mut t = vec![
        req(1, 12, "versions", "GET", "/_matrix/client/versions"),
        issuing(login(2, 20), "at#1", "rt#1", 1_000),
    ];
    for (k, ms) in [1_135, 1_136, 1_136, 1_137, 1_138].into_iter().enumerate() {
        t.push(rejected(
            whoami(3 + k as u64, ms, "at#1", AccessState::Expired),
            true,
        ));
    }
    t.push(issuing(
        took(refresh(8, 1_140, "rt#1", RefreshState::Current), 25),
        "at#2",
        "rt#2",
        1_000,
    ));
    for (k, ms) in [1_170, 1_171, 1_171, 1_172, 1_174].into_iter().enumerate() {
        t.push(whoami(9 + k as u64, ms, "at#2", AccessState::Valid));
    }
    r.trace = t;
    r.steps = vec![
        step(1, "login", "user=alice", 15, 30, 1, 2),
        step(2, "sleep", "for=1.1s", 30, 1_130, 2, 2),
        step(3, "parallel", "count=5 op=whoami", 1_130, 1_240, 2, 13),
    ];
    r.steps[2].outcome = StepOutcome::Parallel {
        results: vec![
            StepOutcome::Ok {
                result: json!({ "user_id": "@alice:localhost" })
            };
            5
        ],
    };
    r.notifications = vec![
        session_changed(25, 1, 2, "at#1", "rt#1"),
        session_changed(1_168, 3, 8, "at#2", "rt#2"),
    ];
    r.checks = vec![
        check(
            "refresh_count",
            "exactly 1 refresh call(s) in step 3",
            true,
            "exactly 1",
            "1",
            &[8],
        ),
        check("step_ok", "step 3 (parallel) succeeded", true, "ok", "ok", &[]),
        check(
            "no_logout",
            "no logout was signalled",
            true,
            "no logout signal",
            "none",
            &[],
        ),
    ];
    r.stderr = "INFO refreshing once for 5 waiters\n".into();
    r
}

/// The refresh response is lost (commit-then-drop); the retry presents a consumed token.
pub fn lost_response() -> ScenarioReport {
    let mut r = scenario(
        "lost-response.commit-then-drop",
        "A refresh whose response is lost is retried without losing the session",
        Level::Must,
        Verdict::Fail,
    );
    r.tags = vec!["lost-response".into(), "faults".into()];
    r.requirement = "If the response to /refresh never arrives, the client retries the refresh and does not \
                     log the user out while the server still accepts the old refresh token."
        .into();
    r.references = vec!["MSC2918 §Refresh token rotation".into()];
    r.duration_ms = 1_402;
    r.server = json!({ "profile": "mas", "refresh_token_reuse": "never" });
    let mut dropped = issuing(
        took(refresh(3, 50, "rt#1", RefreshState::Current), 3),
        "at#2",
        "rt#2",
        300_000,
    );
    dropped.fault = Some(Box::new(FiredFault {
        id: 1,
        name: Some("lose-first-refresh".into()),
        action: "commit_then_drop".into(),
    }));
    dropped.delivery = Delivery::Dropped;
    dropped.done_seq = Some(3);
    r.trace = vec![
        issuing(login(1, 15), "at#1", "rt#1", 300_000),
        rejected(whoami(2, 45, "at#1", AccessState::Expired), true),
        dropped,
        rejected(refresh(4, 1_260, "rt#1", RefreshState::Consumed), false),
    ];
    r.steps = vec![
        step(1, "login", "user=alice", 10, 40, 0, 1),
        step(2, "expire_access_tokens", "", 40, 42, 1, 1),
        step(3, "whoami", "", 42, 1_400, 1, 4),
    ];
    r.steps[2].name = Some("after-expiry".into());
    r.steps[2].outcome = StepOutcome::Failed {
        error: CallError {
            kind: "logged_out".into(),
            message: "refresh token was rejected".into(),
            status: Some(401),
            errcode: Some("M_UNKNOWN_TOKEN".into()),
        },
    };
    r.notifications = vec![
        session_changed(18, 1, 1, "at#1", "rt#1"),
        NotificationRecord {
            at_ms: 1_265,
            step: 3,
            trace_len: 4,
            method: "logged_out".into(),
            params: json!({ "soft_logout": false }),
        },
    ];
    r.checks = vec![
        check(
            "refresh_count",
            "at most 2 refresh call(s)",
            true,
            "at most 2",
            "2",
            &[3, 4],
        ),
        check(
            "step_ok",
            "step 3 (after-expiry) succeeded",
            false,
            "ok",
            "failed with kind logged_out: refresh token was rejected",
            &[2, 3, 4],
        ),
        check(
            "no_logout",
            "no logout was signalled",
            false,
            "no logout signal",
            "`logged_out` notification (soft_logout: false) during step 3",
            &[4],
        ),
    ];
    r.stderr = "WARN refresh failed: connection closed before message completed\n\
                ERROR refresh token rejected (401 M_UNKNOWN_TOKEN), logging out\n"
        .into();
    r
}

/// The driver dies while a refresh hangs on a fault.
pub fn crashed() -> ScenarioReport {
    let mut r = scenario(
        "restore.kill-and-resume",
        "A client killed during a refresh resumes with the tokens it persisted",
        Level::Must,
        Verdict::Error,
    );
    r.tags = vec!["restore".into(), "persistence".into()];
    r.requirement = "Tokens received from /refresh are persisted before they are used.".into();
    r.message = Some(
        "scenario restore.kill-and-resume, step 3 (resume): the driver exited (signal 9) before answering"
            .into(),
    );
    r.duration_ms = 3_050;
    let mut hung = refresh(2, 45, "rt#1", RefreshState::Current);
    hung.status = None;
    hung.delivery = Delivery::Abandoned;
    hung.duration_ms = Some(2_990);
    hung.done_seq = Some(3);
    hung.fault = Some(Box::new(FiredFault {
        id: 2,
        name: None,
        action: "hang".into(),
    }));
    let mut sync = with_at(
        req(3, 60, "sync", "GET", "/_matrix/client/v3/sync?timeout=30000"),
        "at#1",
        AccessState::Valid,
    );
    sync.status = None;
    sync.delivery = Delivery::Pending;
    sync.duration_ms = None;
    sync.done_seq = None;
    r.trace = vec![whoami(1, 25, "at#1", AccessState::Valid), hung, sync];
    r.steps = vec![
        step(1, "restore", "access_token=at#1 refresh_token=rt#1", 5, 20, 0, 0),
        step(2, "whoami", "", 20, 40, 0, 1),
        step(3, "resume", "", 40, 3_040, 1, 3),
    ];
    r.steps[2].outcome = StepOutcome::Aborted {
        reason: "the driver exited (signal 9)".into(),
    };
    r.notifications = vec![session_changed(21, 1, 0, "at#1", "rt#1")];
    r.stderr = (1..=12)
        .map(|i| format!("\u{1b}[2mdebug\u{1b}[0m line {i} <tag> & \"quotes\"\n"))
        .collect::<String>();
    r.facts.insert("driver_exit".into(), "signal 9".into());
    r
}

pub fn skipped() -> ScenarioReport {
    let mut r = scenario(
        "oauth.refresh-grant",
        "The OAuth 2.0 refresh grant rotates tokens like /refresh",
        Level::Must,
        Verdict::Skipped,
    );
    r.tags = vec!["oauth".into()];
    r.message = Some("needs capability `oauth`, which the driver does not declare".into());
    r
}

/// A `should` scenario listed in `--expect`; the server clock was advanced.
pub fn expected() -> ScenarioReport {
    let mut r = scenario(
        "profiles.mas-old-token",
        "After a refresh the old access token is no longer presented",
        Level::Should,
        Verdict::NonStrict,
    );
    r.expected_failure = true;
    r.duration_ms = 60;
    r.server = json!({ "profile": "mas" });
    let login = issuing(login(1, 10), "at#1", "rt#1", 300_000);
    let mut refreshed = refresh(2, 30, "rt#1", RefreshState::Current);
    refreshed.t_ms += 360_000;
    let refreshed = issuing(refreshed, "at#2", "rt#2", 300_000);
    let mut stale = rejected(whoami(3, 40, "at#1", AccessState::Revoked), false);
    stale.t_ms += 360_000;
    r.trace = vec![login, refreshed, stale];
    r.steps = vec![
        step(1, "login", "user=alice", 5, 20, 0, 1),
        step(2, "advance_clock", "by=6m", 25, 27, 1, 1),
        step(3, "whoami", "", 28, 50, 1, 3),
    ];
    r.checks = vec![check(
        "no_stale_access_token",
        "no request presented an access token older than the newest one delivered",
        false,
        "none",
        "#3 presented at#1 although at#2 had been delivered",
        &[3],
    )];
    r
}

pub fn run_of(scenarios: Vec<ScenarioReport>) -> RunReport {
    RunReport {
        schema: rotary_harness::SCHEMA_VERSION,
        rotary_version: "0.1.0".into(),
        started_at: "2025-06-01T12:00:00Z".into(),
        driver: DriverInfo {
            name: "rotary-reference-driver".into(),
            version: "0.1.0".into(),
            capabilities: vec![
                "login".into(),
                "whoami".into(),
                "parallel".into(),
                "legacy-refresh".into(),
            ],
            command: "rotary __reference-driver".into(),
        },
        summary: Summary::of(&scenarios, 4_321),
        warnings: Vec::new(),
        scenarios,
    }
}

pub fn run() -> RunReport {
    run_of(vec![storm(), lost_response(), crashed(), skipped(), expected()])
}

/// 500 requests over a minute from a client that refreshes far too often, with some losses.
pub fn big() -> ScenarioReport {
    let mut r = scenario(
        "concurrency.storm-500",
        "Five hundred requests over a minute (a stress sample for the timeline)",
        Level::Should,
        Verdict::NonStrict,
    );
    r.duration_ms = 60_500;
    let mut t = vec![issuing(login(1, 100), "at#1", "rt#1", 5_000)];
    let (mut at, mut rt) = (1u64, 1u64);
    let mut seq = 1;
    let mut evidence = Vec::new();
    for k in 0..499u64 {
        seq += 1;
        let ms = 200 + (k as i64) * 120 + ((k * 37) % 50) as i64;
        let e = if k % 25 == 24 {
            let mut e = refresh(seq, ms, &format!("rt#{rt}"), RefreshState::Current);
            e.duration_ms = Some(30);
            if k % 100 == 99 {
                e.delivery = Delivery::Dropped;
                e.fault = Some(Box::new(FiredFault {
                    id: 1,
                    name: None,
                    action: "commit_then_drop".into(),
                }));
                evidence.push(seq);
            }
            at += 1;
            rt += 1;
            issuing(e, &format!("at#{at}"), &format!("rt#{rt}"), 5_000)
        } else if k % 25 == 0 && k > 0 {
            evidence.push(seq);
            rejected(whoami(seq, ms, &format!("at#{at}"), AccessState::Expired), true)
        } else {
            whoami(seq, ms, &format!("at#{at}"), AccessState::Valid)
        };
        t.push(e);
    }
    r.trace = t;
    r.steps = (0..6)
        .map(|i| {
            step(
                i + 1,
                "parallel",
                "count=80 op=whoami",
                150 + i as i64 * 10_000,
                10_100 + i as i64 * 10_000,
                0,
                0,
            )
        })
        .collect();
    r.checks = vec![check(
        "no_401",
        "no request met a 401",
        false,
        "0",
        "19",
        &evidence,
    )];
    r
}
