//! The reports rendered from a hand-built run: JSON, JUnit and terminal output as snapshots, the
//! SVG timeline and the HTML directory by their structure.
//!
//! Set `ROTARY_HTML_SAMPLE=/some/dir` to keep a copy of the HTML report (plus a 500-request
//! scenario) for `scripts/check-html.sh`.

use rotary_harness::report::{
    page_file_name, render_failures, summary_line, timeline_svg, to_json, to_junit, trace_line, write_html,
    write_json, write_junit,
};
use rotary_harness::{
    CallError, CheckResult, DriverInfo, Level, NotificationRecord, RunReport, ScenarioReport, StepOutcome,
    StepRecord, Summary, Verdict,
};
use rotary_server::{AccessState, Delivery, FiredFault, IssuedLabels, RefreshState, TokenView, TraceEntry};
use serde_json::json;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Building blocks

fn req(seq: u64, real_ms: i64, endpoint: &'static str, method: &'static str, path: &str) -> TraceEntry {
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

fn with_at(mut e: TraceEntry, label: &str, state: AccessState) -> TraceEntry {
    e.access_token = TokenView {
        label: label.into(),
        state,
    };
    e
}

fn with_rt(mut e: TraceEntry, label: &str, state: RefreshState) -> TraceEntry {
    e.refresh_token = Some(TokenView {
        label: label.into(),
        state,
    });
    e
}

fn rejected(mut e: TraceEntry, soft: bool) -> TraceEntry {
    e.status = Some(401);
    e.errcode = Some("M_UNKNOWN_TOKEN".into());
    e.soft_logout = Some(soft);
    e
}

fn issuing(mut e: TraceEntry, at: &str, rt: &str, lifetime_ms: i64) -> TraceEntry {
    let answered = e.t_ms + e.duration_ms.unwrap_or(0);
    e.issued = Some(Box::new(IssuedLabels {
        access_token: Some(at.into()),
        refresh_token: Some(rt.into()),
        expires_in_ms: Some(lifetime_ms),
        expires_at_ms: Some(answered + lifetime_ms),
    }));
    e
}

fn took(mut e: TraceEntry, ms: i64) -> TraceEntry {
    e.duration_ms = Some(ms);
    e
}

fn whoami(seq: u64, real_ms: i64, at: &str, state: AccessState) -> TraceEntry {
    with_at(
        req(seq, real_ms, "whoami", "GET", "/_matrix/client/v3/account/whoami"),
        at,
        state,
    )
}

fn refresh(seq: u64, real_ms: i64, rt: &str, state: RefreshState) -> TraceEntry {
    let mut e = with_rt(
        req(seq, real_ms, "refresh", "POST", "/_matrix/client/v3/refresh"),
        rt,
        state,
    );
    e.user_id = None;
    e.device_id = None;
    e
}

fn login(seq: u64, real_ms: i64) -> TraceEntry {
    let mut e = req(seq, real_ms, "login", "POST", "/_matrix/client/v3/login");
    e.flags.insert("refresh_token".into(), json!(true));
    e
}

fn step(
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

fn session_changed(at_ms: i64, step: usize, trace_len: u64, at: &str, rt: &str) -> NotificationRecord {
    NotificationRecord {
        at_ms,
        step,
        trace_len,
        method: "session_changed".into(),
        params: json!({ "access_token": at, "refresh_token": rt }),
    }
}

fn check(
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

fn scenario(id: &str, title: &str, level: Level, verdict: Verdict) -> ScenarioReport {
    ScenarioReport {
        id: id.into(),
        title: title.into(),
        level,
        tags: Vec::new(),
        requirement: String::new(),
        references: Vec::new(),
        verdict,
        expected_failure: false,
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
        facts: BTreeMap::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The synthetic run

/// Five requests meet an expired token together; one refresh; five retries succeed.
fn storm() -> ScenarioReport {
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
fn lost_response() -> ScenarioReport {
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
fn crashed() -> ScenarioReport {
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

fn skipped() -> ScenarioReport {
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
fn expected() -> ScenarioReport {
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

fn run_of(scenarios: Vec<ScenarioReport>) -> RunReport {
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
        scenarios,
    }
}

fn run() -> RunReport {
    run_of(vec![storm(), lost_response(), crashed(), skipped(), expected()])
}

/// 500 requests over a minute from a client that refreshes far too often, with some losses.
fn big() -> ScenarioReport {
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

// ---------------------------------------------------------------------------------------------
// A tiny well-formedness check (no XML parser in the dependency tree of the tests)

/// Checks that tags balance, attributes are quoted and `&` starts an entity. `void` lists HTML
/// elements that have no end tag.
fn well_formed(doc: &str, void: &[&str]) -> Result<usize, String> {
    let b = doc.as_bytes();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    let mut elements = 0;
    let entity_ok = |rest: &str| {
        ["amp;", "lt;", "gt;", "quot;", "#39;"]
            .iter()
            .any(|e| rest.starts_with(e))
    };
    while i < b.len() {
        match b[i] {
            b'<' => {
                if doc[i..].starts_with("<!--") {
                    i += doc[i..].find("-->").ok_or("unclosed comment")? + 3;
                    continue;
                }
                if doc[i..].starts_with("<!") || doc[i..].starts_with("<?") {
                    i += doc[i..].find('>').ok_or("unclosed declaration")? + 1;
                    continue;
                }
                // Scan the tag, honouring quotes.
                let start = i;
                let mut j = i + 1;
                let mut quote = None;
                while j < b.len() {
                    match (quote, b[j]) {
                        (None, b'"') | (None, b'\'') => quote = Some(b[j]),
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), b'<') => return Err(format!("`<` inside an attribute at {j}")),
                        (Some(_), b'&') if !entity_ok(&doc[j + 1..]) => {
                            return Err(format!("bare `&` at {j}"));
                        }
                        (None, b'>') => break,
                        _ => {}
                    }
                    j += 1;
                }
                let tag = &doc[start + 1..j];
                i = j + 1;
                if let Some(name) = tag.strip_prefix('/') {
                    let name = name.trim();
                    match stack.pop() {
                        Some(open) if open == name => {}
                        other => return Err(format!("`</{name}>` closes {other:?} at {start}")),
                    }
                    continue;
                }
                elements += 1;
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
                if name.is_empty() {
                    return Err(format!("empty tag at {start}"));
                }
                // Attributes: name="value" pairs only.
                let attrs = tag[name.len()..].trim();
                let mut rest = attrs;
                while !rest.is_empty() {
                    let eq = rest
                        .find('=')
                        .ok_or_else(|| format!("attribute without value in <{name}> at {start}"))?;
                    let after = &rest[eq + 1..];
                    let q = after.chars().next().ok_or("attribute cut short")?;
                    if q != '"' && q != '\'' {
                        return Err(format!("unquoted attribute in <{name}> at {start}"));
                    }
                    let close = after[1..].find(q).ok_or("unclosed attribute")?;
                    rest = after[close + 2..].trim_start();
                }
                if !self_closing && !void.contains(&name.as_str()) {
                    stack.push(name);
                }
                // Raw text elements.
                if let Some(open) = stack.last().filter(|n| *n == "style" || *n == "script") {
                    let end = format!("</{open}>");
                    i += doc[i..].find(&end).ok_or("unclosed raw text element")?;
                }
            }
            b'&' => {
                if !entity_ok(&doc[i + 1..]) {
                    return Err(format!("bare `&` at {i}: {:?}", &doc[i..(i + 20).min(doc.len())]));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if stack.is_empty() {
        Ok(elements)
    } else {
        Err(format!("unclosed elements: {stack:?}"))
    }
}

const HTML_VOID: &[&str] = &["meta", "br", "hr", "img", "input", "link"];

/// The text of every `<text …>…</text>` element whose content has no child element.
fn svg_texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(p) = rest.find("<text") {
        rest = &rest[p..];
        let Some(gt) = rest.find('>') else { break };
        let Some(end) = rest.find("</text>") else { break };
        let inner = &rest[gt + 1..end];
        let inner = match inner.rfind('>') {
            Some(q) => &inner[q + 1..],
            None => inner,
        };
        out.push(inner.to_owned());
        rest = &rest[end..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn summary_counts_follow_the_verdicts() {
    let run = run();
    let s = &run.summary;
    assert_eq!(
        (s.total, s.pass, s.fail, s.error, s.skipped, s.non_strict),
        (5, 1, 1, 1, 1, 1)
    );
    assert_eq!(s.expected_failures, 1);
    assert!(!s.ok);
}

#[test]
fn json_report() {
    let run = run();
    insta::assert_json_snapshot!("json_report", to_json(&run), {
        ".started_at" => "[started_at]",
        ".summary.duration_ms" => "[duration]",
        ".scenarios[].duration_ms" => "[duration]",
    });
    // The file round-trips into the same report.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/report.json");
    write_json(&run, &path).unwrap();
    let back: RunReport = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back, run);
}

#[test]
fn junit_report() {
    let run = run();
    let xml = to_junit(&run).unwrap();
    insta::assert_snapshot!("junit_report", xml);
    well_formed(&xml, &[]).unwrap();
    assert!(xml.contains(r#"<testsuite name="rotary: rotary-reference-driver""#));
    assert!(xml.contains(r#"classname="concurrency""#));
    // A `should` failure that is not expected is a failure of its own type.
    let mut ns = expected();
    ns.expected_failure = false;
    let other = to_junit(&run_of(vec![ns])).unwrap();
    assert!(other.contains(r#"<failure message="no request presented an access token older than the newest one delivered" type="non-strict">"#), "{other}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/junit.xml");
    write_junit(&run, &path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), xml);
}

#[test]
fn terminal_failures() {
    let run = run();
    insta::assert_snapshot!("terminal_failures", render_failures(&run, false));
    insta::assert_snapshot!("summary_line", summary_line(&run));
}

#[test]
fn terminal_colours_only_when_asked() {
    let run = run();
    assert!(!render_failures(&run, false).contains('\u{1b}'));
    let coloured = render_failures(&run, true);
    assert!(coloured.contains("\u{1b}[1;31m✗ lost-response.commit-then-drop"));
    // The driver's own ANSI codes never pass through.
    assert!(!coloured.contains("\u{1b}[2mdebug"));
}

#[test]
fn summary_line_of_a_clean_run() {
    let mut pass = storm();
    pass.expected_failure = true;
    let run = run_of(vec![pass, storm()]);
    assert_eq!(
        summary_line(&run),
        "2 scenarios: 2 pass, 0 fail, 0 non-strict, 0 info, 0 skipped, 0 error, 0 timeout (1 unexpected pass) in 4.3 s — OK"
    );
    assert!(render_failures(&run, false).contains("unexpected pass"));
}

#[test]
fn trace_lines_are_compact_and_complete() {
    let r = lost_response();
    assert_eq!(
        trace_line(&r.trace[2]),
        "#3 +50ms refresh POST rt#1(current) → 200 [fault lose-first-refresh: commit_then_drop] delivery=dropped issued at#2/rt#2 (3ms)"
    );
    assert_eq!(
        trace_line(&r.trace[3]),
        "#4 +1260ms refresh POST rt#1(consumed) → 401 M_UNKNOWN_TOKEN soft_logout=false (1ms)"
    );
    let e = expected();
    assert_eq!(
        trace_line(&e.trace[2]),
        "#3 +40ms whoami GET [clock +6 min] at#1(revoked) → 401 M_UNKNOWN_TOKEN soft_logout=false (1ms)"
    );
    let c = crashed();
    assert_eq!(
        trace_line(&c.trace[2]),
        "#3 +60ms sync GET at#1(valid) → no response delivery=pending"
    );
}

#[test]
fn timeline_has_one_lane_per_generation() {
    let svg = timeline_svg(&storm());
    well_formed(&svg, &[]).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let texts = svg_texts(&svg);
    for lane in ["no token / unknown", "at#1 / rt#1", "at#2 / rt#2"] {
        assert_eq!(
            texts.iter().filter(|t| *t == lane).count(),
            1,
            "lane {lane} in {texts:?}"
        );
    }
    assert!(!texts.iter().any(|t| t.starts_with("at#3")));
    // One tooltip per request, with its trace line.
    for e in &storm().trace {
        let line = trace_line(e)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            svg.contains(&format!("<title>{line}</title>")),
            "no tooltip for #{}",
            e.seq
        );
    }
    // at#1 expires inside the timeline (a dashed line), at#2 after its end (a note).
    assert!(texts.iter().any(|t| t == "expires"));
    assert!(texts.iter().any(|t| t.starts_with("exp. at")));
    // Deterministic.
    assert_eq!(svg, timeline_svg(&storm()));
    assert!(!svg.contains("<script"));
}

#[test]
fn timeline_marks_faults_losses_and_logouts() {
    let svg = timeline_svg(&lost_response());
    well_formed(&svg, &[]).unwrap();
    let texts = svg_texts(&svg);
    // The lost response still created a generation, reached by a dashed purple connector.
    assert!(texts.iter().any(|t| t == "at#2 / rt#2"));
    assert!(svg.contains("issued, but the response never reached the client by #3"));
    // The fault's action is written next to its mark; the evidence is numbered.
    assert!(texts.iter().any(|t| t.contains("commit_then_drop")));
    assert!(texts.iter().any(|t| t == "logged_out (hard)"));
    assert!(texts.iter().any(|t| t.starts_with("#4")));
}

#[test]
fn timeline_handles_minted_tokens_pending_requests_and_clock_jumps() {
    let svg = timeline_svg(&crashed());
    well_formed(&svg, &[]).unwrap();
    let texts = svg_texts(&svg);
    // Minted outside the trace, paired through session_changed: one lane for both tokens.
    assert!(texts.iter().any(|t| t == "at#1 / rt#1"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "minted outside the trace"));
    assert!(!texts.iter().any(|t| t == "no token / unknown"));

    let svg = timeline_svg(&expected());
    well_formed(&svg, &[]).unwrap();
    // at#1 expired when the clock jumped (during the advance_clock step, at 27 ms).
    assert!(svg.contains("at#1 expires at 27 ms"), "{svg}");

    let empty = timeline_svg(&skipped());
    well_formed(&empty, &[]).unwrap();
    assert!(empty.contains("no request reached the server"));
}

#[test]
fn timeline_scales_to_hundreds_of_requests() {
    let r = big();
    let svg = timeline_svg(&r);
    well_formed(&svg, &[]).unwrap();
    let height: f64 = svg
        .split("height=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(height < 1_200.0, "height {height}");
    assert_eq!(svg.matches("<g class=\"rt-m\">").count(), 500);
    assert!(svg.len() < 600_000, "{} bytes", svg.len());
}

#[test]
fn html_report() {
    let run = run();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("html");
    write_html(&run, &out).unwrap();
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    well_formed(&index, HTML_VOID).unwrap();
    assert!(index.starts_with("<!DOCTYPE html>"));
    assert!(index.contains("rotary-reference-driver"));
    for r in &run.scenarios {
        let name = page_file_name(&r.id);
        assert_eq!(name, format!("{}.html", r.id));
        assert!(
            index.contains(&format!("<a href=\"{name}\">{}</a>", r.id)),
            "index links {name}"
        );
        let page = std::fs::read_to_string(out.join(&name)).unwrap();
        well_formed(&page, HTML_VOID).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.contains("<svg"), "{name} has its timeline");
        assert!(page.contains("href=\"index.html\""));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src=\"http"), "no external resource");
    }
    let lost = std::fs::read_to_string(out.join("lost-response.commit-then-drop.html")).unwrap();
    assert!(lost.contains("<tr id=\"t4\" class=\"evidence\""));
    assert!(lost.contains("<a href=\"#t4\">#4</a>"));
    let storm_page = std::fs::read_to_string(out.join("concurrency.single-refresh.html")).unwrap();
    assert!(storm_page.contains(
        "<a href=\"https://github.com/matrix-org/matrix-rust-sdk/issues/1234\">https://github.com/matrix-org/matrix-rust-sdk/issues/1234</a> (duplicate refreshes)"
    ));
    let crashed_page = std::fs::read_to_string(out.join("restore.kill-and-resume.html")).unwrap();
    assert!(crashed_page.contains("line 12 &lt;tag&gt; &amp; &quot;quotes&quot;"));
    assert!(!crashed_page.contains('\u{1b}'));

    if let Some(sample) = std::env::var_os("ROTARY_HTML_SAMPLE") {
        let mut scenarios = run.scenarios.clone();
        scenarios.push(big());
        write_html(&run_of(scenarios), std::path::Path::new(&sample)).unwrap();
    }
}

#[test]
fn page_names_stay_inside_the_directory() {
    assert_eq!(page_file_name("expiry.reactive-401"), "expiry.reactive-401.html");
    assert_eq!(page_file_name("../etc/passwd"), "s_.._etc_passwd.html");
    assert_eq!(page_file_name("index"), "s_index.html");
    assert_eq!(page_file_name("a b/c"), "a_b_c.html");
}
