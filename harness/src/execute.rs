//! Running one scenario: a fresh mock homeserver, the driver process, the steps in order, then the
//! checks over what was observed.

use crate::driver_process::{RawNotification, Sink, kill_stragglers};
use crate::record::{
    DriverInfo, Level, NotificationRecord, ScenarioReport, StepRecord, TranscriptLine, Verdict,
};
use crate::redact::{label_json, label_outcome, redact_json_line, redact_tokens};
use crate::scenario::Scenario;
use crate::steps::{Broken, Ctx};
use rotary_judge::Observed;
use rotary_judge::live::{Watch, WatchConfig};
use rotary_server::MockHomeserver;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `shutdown` may take before the driver is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a scenario run needs besides the scenario.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// The driver's shell command line.
    pub driver: String,
    /// Overrides the scenario's per-call timeout.
    pub call_timeout: Option<Duration>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn since(t0: Instant) -> i64 {
    i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Runs the steps in order, recording each; `Err` ends the scenario.
async fn run_steps(ctx: &mut Ctx, s: &Scenario, records: &mut Vec<StepRecord>) -> Result<(), Broken> {
    for step in &s.steps {
        ctx.sink.step.store(step.index, Ordering::SeqCst);
        let started_ms = since(ctx.t0);
        let trace_from = ctx.server.trace_len();
        let out = step.action.run(ctx, step.at()).await;
        // Let the server finish recording what the last response produced.
        let trace_to = ctx.server.trace_len();
        let label_of = ctx.label_of();
        let (outcome, result) = match out {
            Ok(o) => (label_outcome(&o, &label_of), Ok(())),
            Err(b) => (
                crate::record::StepOutcome::Aborted {
                    reason: b.message.clone(),
                },
                Err(b),
            ),
        };
        records.push(StepRecord {
            index: step.index,
            name: step.name.clone(),
            action: step.action.name().to_owned(),
            summary: step.action.summary(),
            started_ms,
            ended_ms: since(ctx.t0),
            trace_from,
            trace_to,
            outcome,
        });
        result?;
    }
    Ok(())
}

/// A report with the scenario's own fields and nothing observed (also what a scenario that could
/// not even start gets, e.g. when the server would not bind).
fn early(s: &Scenario, verdict: Verdict, message: Option<String>, started: Instant) -> ScenarioReport {
    ScenarioReport {
        id: s.id.clone(),
        title: s.title.clone(),
        level: s.level,
        tags: s.tags.clone(),
        requirement: s.requirement.clone(),
        references: s.references.clone(),
        verdict,
        expected_failure: false,
        expected_flaky: false,
        message,
        duration_ms: ms(started.elapsed()),
        waited_ms: 0,
        server: s.server_table.clone(),
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

/// Starts the driver, checks its capabilities, runs the steps.
async fn drive(ctx: &mut Ctx, s: &Scenario, records: &mut Vec<StepRecord>) -> Result<(), Broken> {
    ctx.start_driver(None).await?;
    let caps = ctx
        .info
        .as_ref()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let missing: Vec<String> = s
        .needs
        .iter()
        .filter(|n| !caps.contains(n))
        .map(|m| format!("`{m}`"))
        .collect();
    if !missing.is_empty() {
        return Err(Broken {
            verdict: Verdict::Skipped,
            message: format!("scenario {}: the driver lacks {}", s.id, missing.join(", ")),
        });
    }
    run_steps(ctx, s, records).await
}

/// What the scenario observed, tokens as labels: notifications, stderr, transcript, trace, rooms,
/// devices.
fn observe(ctx: &mut Ctx, steps: Vec<StepRecord>) -> (Observed, String, Vec<TranscriptLine>) {
    let label_of = ctx.label_of();
    let raw: Vec<RawNotification> =
        std::mem::take(&mut *ctx.sink.notifications.lock().unwrap_or_else(|p| p.into_inner()));
    let notifications: Vec<NotificationRecord> = raw
        .into_iter()
        .map(|n| NotificationRecord {
            at_ms: n.at_ms,
            step: n.step,
            trace_len: n.trace_len,
            method: n.method,
            params: label_json(&n.params, &label_of),
        })
        .collect();
    let stderr = redact_tokens(&ctx.stderr, &label_of);
    let transcript: Vec<TranscriptLine> =
        std::mem::take(&mut *ctx.sink.transcript.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .map(|l| TranscriptLine {
                at_ms: l.at_ms,
                dir: if l.to_driver { "→" } else { "←" }.to_owned(),
                line: redact_json_line(&l.line, &label_of),
            })
            .collect();
    let mut room_events = BTreeMap::new();
    for (handle, id) in &ctx.rooms {
        room_events.insert(handle.clone(), ctx.server.event_ids(id, "m.room.message"));
    }
    let mut devices = BTreeMap::new();
    for d in ctx.server.sessions(None) {
        let local = d
            .user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        *devices.entry(local).or_insert(0) += 1;
    }
    let observed = Observed {
        trace: ctx.server.trace(),
        steps,
        notifications,
        sessions: std::mem::take(&mut ctx.sessions),
        room_events,
        room_sends: std::mem::take(&mut ctx.room_sends),
        devices,
        minted: std::mem::take(&mut ctx.minted),
    };
    (observed, stderr, transcript)
}

/// Runs one scenario with a fresh server and driver. Never panics on driver misbehaviour: every
/// problem becomes a verdict with a message naming the scenario and step.
pub async fn run_scenario(s: &Scenario, opts: &ExecOptions) -> (ScenarioReport, Option<DriverInfo>) {
    let started = Instant::now();
    let mut builder = MockHomeserver::builder().config(s.server.clone());
    for f in &s.faults {
        builder = builder.fault(f.clone());
    }
    let server = match builder.start().await {
        Ok(server) => server,
        Err(e) => {
            let why = format!("scenario {}: cannot start the mock homeserver: {e}", s.id);
            return (early(s, Verdict::Error, Some(why), started), None);
        }
    };
    let state_dir = match tempfile::Builder::new().prefix("rotary-state-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            let why = format!("scenario {}: cannot make a state folder: {e}", s.id);
            return (early(s, Verdict::Error, Some(why), started), None);
        }
    };
    let t0 = Instant::now();
    let sink = Sink {
        notifications: Arc::new(Mutex::new(Vec::new())),
        transcript: Arc::new(Mutex::new(Vec::new())),
        counts: Arc::default(),
        dropped: Arc::default(),
        step: Arc::default(),
        t0,
        trace_len: Arc::new(server.trace_len_reader()),
    };
    let mut ctx = Ctx {
        scenario: s.id.clone(),
        driver_cmd: opts.driver.clone(),
        call_timeout: opts.call_timeout.unwrap_or(s.call_timeout),
        server: Arc::new(server),
        t0,
        state_dir,
        sink,
        driver: None,
        info: None,
        stderr: String::new(),
        rooms: HashMap::new(),
        room_sends: BTreeMap::new(),
        sessions: BTreeMap::new(),
        last_next_batch: None,
        waited: Duration::ZERO,
        facts: BTreeMap::new(),
        minted: Vec::new(),
    };
    let mut records = Vec::new();
    let mut verdict: Option<Verdict> = None;
    let mut message = None;
    match tokio::time::timeout(s.timeout, drive(&mut ctx, s, &mut records)).await {
        Ok(Ok(())) => {}
        Ok(Err(b)) => {
            verdict = Some(b.verdict);
            message = Some(b.message);
        }
        Err(_) => {
            let at = ctx.sink.step.load(Ordering::SeqCst);
            let what = s
                .steps
                .get(at.wrapping_sub(1))
                .map_or("start-up".to_owned(), |st| {
                    format!("step {} ({})", st.index, st.action.name())
                });
            verdict = Some(Verdict::Timeout);
            message = Some(format!(
                "scenario {}: {what}: the scenario did not finish within its timeout of {}",
                s.id,
                humantime::format_duration(s.timeout)
            ));
        }
    }
    // Stop the driver (politely if it is healthy), then gather what happened.
    if let Some(mut d) = ctx.driver.take() {
        if verdict.is_none() {
            d.shutdown(SHUTDOWN_GRACE).await;
        } else {
            d.kill().await;
        }
        // The stderr reader may still be draining the pipe.
        tokio::time::sleep(Duration::from_millis(20)).await;
        ctx.stderr.push_str(&d.stderr());
    }
    // Whatever escaped the process group (setsid, daemons) still carries the state folder in its
    // environment.
    let stragglers = kill_stragglers(ctx.state_dir.path());
    if stragglers > 0 {
        ctx.facts.insert(
            "stragglers_killed".to_owned(),
            format!("{stragglers} process(es) that left the driver's process group"),
        );
    }
    let info = ctx.info.clone();
    let evicted = ctx.server.trace_evicted();
    if evicted > 0 && verdict.is_none() {
        // The checks need every request; a scenario this busy needs a larger window.
        verdict = Some(Verdict::Error);
        message = Some(format!(
            "scenario {}: the server's trace window dropped {evicted} request(s), so the checks cannot judge it (the scenario sent more requests than the window holds)",
            s.id
        ));
    }
    let (observed, stderr, transcript) = observe(&mut ctx, records);
    let violations = Watch::judge_trace(WatchConfig::default(), &observed.trace);
    let checks: Vec<_> = if verdict.is_none() {
        s.checks.iter().map(|c| c.evaluate(&observed)).collect()
    } else {
        Vec::new()
    };
    let verdict = verdict.unwrap_or_else(|| {
        let all = checks.iter().all(|c| c.passed);
        match (s.level, all) {
            (Level::Info, _) => Verdict::Info,
            (_, true) => Verdict::Pass,
            (Level::Must, false) => Verdict::Fail,
            (Level::Should, false) => Verdict::NonStrict,
        }
    });
    let dropped = ctx.sink.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        ctx.facts.insert(
            "notifications_dropped".to_owned(),
            format!("{dropped} (over the per-method limits; the driver flooded)"),
        );
    }
    if ctx.waited > Duration::ZERO {
        ctx.facts.insert(
            "waited".to_owned(),
            humantime::format_duration(ctx.waited).to_string(),
        );
    }
    let report = ScenarioReport {
        waited_ms: ms(ctx.waited),
        server: serde_json::to_value(ctx.server.config()).unwrap_or(Value::Null),
        checks,
        steps: observed.steps,
        trace: observed.trace,
        notifications: observed.notifications,
        stderr,
        transcript,
        violations,
        facts: std::mem::take(&mut ctx.facts),
        message,
        ..early(s, verdict, None, started)
    };
    (report, info)
}
