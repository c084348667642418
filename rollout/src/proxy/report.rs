//! The proxy's report: what it saw and what the live invariants found, as JSON (`report.json`,
//! the run report's conventions) and HTML (`index.html`: violations first with their trace
//! windows, then a timeline per session drawn like the run report's). The whole trace is streamed
//! next to them (`trace/trace-NNNNNN.ndjson`) while the proxy runs.

use super::Shared;
use super::graph::SessionSummary;
use super::metrics::Totals;
use rotary_harness::{Level, ScenarioReport, Verdict};
use rotary_judge::TraceEntry;
use rotary_judge::live::{Violation, invariant};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The report's JSON schema version (fields are only ever added).
pub const SCHEMA_VERSION: u32 = 1;
/// Sessions drawn as timelines in the HTML report (the most recently seen).
const MAX_TIMELINES: usize = 50;
/// Entries drawn per session timeline (its newest ones still in memory).
const MAX_TIMELINE_ENTRIES: usize = 200;

/// One violation as the report lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReportedViolation {
    /// The invariant's stable id (`live.single-flight`).
    pub id: String,
    /// Its level.
    pub level: Level,
    /// The invariant's requirement, in one sentence.
    pub requirement: String,
    /// The invariant's references.
    pub references: Vec<String>,
    /// The session (device id).
    pub session: String,
    /// The user, when known.
    pub user: Option<String>,
    /// When the offending request arrived, ms since the proxy started.
    pub t_ms: i64,
    /// The offending request's `seq`.
    pub seq: u64,
    /// What happened.
    pub message: String,
    /// The session's entries up to the offending one.
    pub window: Vec<TraceEntry>,
}

impl From<&Violation> for ReportedViolation {
    fn from(v: &Violation) -> Self {
        let inv = invariant(&v.invariant);
        ReportedViolation {
            id: v.invariant.clone(),
            level: v.level,
            requirement: inv.map(|i| i.requirement.to_owned()).unwrap_or_default(),
            references: inv
                .map(|i| i.references.iter().map(|r| (*r).to_owned()).collect())
                .unwrap_or_default(),
            session: v.session.clone(),
            user: v.user.clone(),
            t_ms: v.t_ms,
            seq: v.seq,
            message: v.message.clone(),
            window: v.window.clone(),
        }
    }
}

/// What a proxy run found.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProxyReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The upstream homeserver.
    pub upstream: String,
    /// How long the proxy ran, ms.
    pub duration_ms: i64,
    /// Counters.
    pub totals: Totals,
    /// Violations by invariant id (every one found).
    pub counts: BTreeMap<String, u64>,
    /// Every violation found (the kept ones are in `violations`).
    pub total_violations: u64,
    /// The violations kept in full, oldest first.
    pub violations: Vec<ReportedViolation>,
    /// Trace entries the live judge missed by falling behind (0 normally).
    pub unjudged: u64,
    /// Sessions as observed.
    pub sessions: Vec<SessionSummary>,
    /// Entries recorded, and how many had left memory by the end (they are in the trace files).
    pub trace_entries: u64,
    /// See `trace_entries`.
    pub trace_evicted: u64,
    /// The trace entries still in memory at the end (for the HTML timelines; not serialized).
    #[serde(skip)]
    pub trace: Vec<TraceEntry>,
}

impl ProxyReport {
    /// Violations of `must` invariants (the exit code's judge).
    pub fn must_violations(&self) -> u64 {
        self.totals.violations.get("must").copied().unwrap_or(0)
    }

    /// Writes `report.json` and `index.html` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("index.html"), self.html())?;
        Ok(())
    }

    /// The HTML page.
    pub fn html(&self) -> String {
        let mut out = String::new();
        let verdict = if self.must_violations() > 0 {
            "FAIL"
        } else {
            "PASS"
        };
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rotary proxy: {verdict}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}.must{{color:#b00}}.should{{color:#a60}}\
pre{{background:#f6f6f6;padding:6px;overflow-x:auto}}</style></head><body>\n\
<h1>rotary proxy in front of {} — {verdict}</h1>\n",
            esc(&self.upstream)
        );
        let t = &self.totals;
        let _ = writeln!(
            out,
            "<p>{} requests, {} sessions, {} refreshes, {} × 401, {} faults fired, {} upstream failures, over {:.1} s. \
Violations: {} must, {} should, {} info.</p>",
            t.requests,
            t.sessions,
            t.refreshes,
            t.unauthorized,
            t.faults_fired,
            t.upstream_errors,
            self.duration_ms as f64 / 1000.0,
            t.violations.get("must").unwrap_or(&0),
            t.violations.get("should").unwrap_or(&0),
            t.violations.get("info").unwrap_or(&0),
        );
        out.push_str("<h2>Violations</h2>\n");
        if self.violations.is_empty() {
            out.push_str("<p>None.</p>\n");
        }
        for v in &self.violations {
            let _ = writeln!(
                out,
                "<h3 class=\"{lvl}\">{id} ({lvl}) — session {s}{u}, request #{seq} at {t:.3} s</h3>\n<p>{msg}</p>\n<p><i>{req}</i></p>\n<pre>{window}</pre>",
                lvl = v.level,
                id = esc(&v.id),
                s = esc(&v.session),
                u = v
                    .user
                    .as_deref()
                    .map(|u| format!(" ({})", esc(u)))
                    .unwrap_or_default(),
                seq = v.seq,
                t = v.t_ms as f64 / 1000.0,
                msg = esc(&v.message),
                req = esc(&v.requirement),
                window = v
                    .window
                    .iter()
                    .map(|e| esc(&rotary_harness::report::trace_line(e)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        if self.total_violations > self.violations.len() as u64 {
            let _ = writeln!(
                out,
                "<p>{} more violations were counted but not kept (see the counts in report.json).</p>",
                self.total_violations - self.violations.len() as u64
            );
        }
        out.push_str("<h2>Sessions</h2>\n<table><tr><th>session</th><th>user</th><th>newest tokens</th><th>generations</th><th>ended</th></tr>\n");
        for s in &self.sessions {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.device_id),
                esc(s.user_id.as_deref().unwrap_or("?")),
                esc(&s.access_token),
                esc(s.refresh_token.as_deref().unwrap_or("")),
                s.generations,
                if s.ended { "logged out" } else { "" }
            );
        }
        out.push_str("</table>\n<h2>Timelines</h2>\n");
        for s in self.sessions.iter().take(MAX_TIMELINES) {
            let mut entries: Vec<TraceEntry> = self
                .trace
                .iter()
                .filter(|e| e.device_id.as_deref() == Some(s.device_id.as_str()))
                .cloned()
                .collect();
            if entries.is_empty() {
                continue;
            }
            let skip = entries.len().saturating_sub(MAX_TIMELINE_ENTRIES);
            entries.drain(..skip);
            let violations: Vec<Violation> = self
                .violations
                .iter()
                .filter(|v| v.session == s.device_id)
                .map(|v| Violation {
                    invariant: v.id.clone(),
                    level: v.level,
                    session: v.session.clone(),
                    user: v.user.clone(),
                    t_ms: v.t_ms,
                    seq: v.seq,
                    message: v.message.clone(),
                    window: Vec::new(),
                })
                .collect();
            let scenario = session_as_scenario(s, entries, violations);
            let _ = writeln!(
                out,
                "<h3>{} ({})</h3>\n{}",
                esc(&s.device_id),
                esc(s.user_id.as_deref().unwrap_or("?")),
                rotary_harness::report::timeline_svg(&scenario)
            );
        }
        out.push_str("</body></html>\n");
        out
    }
}

/// A session drawn with the run report's timeline: a scenario whose trace is the session's.
fn session_as_scenario(
    s: &SessionSummary,
    trace: Vec<TraceEntry>,
    violations: Vec<Violation>,
) -> ScenarioReport {
    let failed = violations.iter().any(|v| v.level == Level::Must);
    ScenarioReport {
        id: s.device_id.clone(),
        title: format!("session {}", s.device_id),
        level: Level::Must,
        tags: Vec::new(),
        requirement: String::new(),
        references: Vec::new(),
        verdict: if failed { Verdict::Fail } else { Verdict::Pass },
        expected_failure: false,
        expected_flaky: false,
        message: None,
        duration_ms: 0,
        waited_ms: 0,
        server: serde_json::Value::Null,
        checks: Vec::new(),
        steps: Vec::new(),
        trace,
        notifications: Vec::new(),
        stderr: String::new(),
        transcript: Vec::new(),
        violations,
        facts: BTreeMap::new(),
        repeat: None,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Builds the report from the proxy's state now.
pub(super) fn build(shared: &Shared) -> ProxyReport {
    let log = shared.lock_violations();
    let stats = shared.trace.stats();
    let mut totals = shared.metrics.totals();
    totals.sessions = shared.lock_graph().len() as u64;
    ProxyReport {
        schema_version: SCHEMA_VERSION,
        upstream: shared.cfg.upstream.to_string(),
        duration_ms: i64::try_from(shared.started.elapsed().as_millis()).unwrap_or(i64::MAX),
        totals,
        counts: log.counts().clone(),
        total_violations: log.total(),
        violations: log.kept().iter().map(ReportedViolation::from).collect(),
        unjudged: log.lagged,
        sessions: shared.lock_graph().sessions(),
        trace_entries: stats.last_seq,
        trace_evicted: stats.evicted,
        trace: shared.trace.snapshot(0),
    }
}
