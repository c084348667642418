//! The report of a soak, in `--report DIR`: `soak.json` (the summary in the run report's
//! conventions: `schema`, a `summary`, the `thresholds` and their outcome, a `violations` list
//! with `id`, `level`, `session`, `t_ms` and the trace `window`), `series.csv` and `series.json`
//! (one row a second), and `index.html` (SVG charts of the series, the thresholds, each violation
//! with its trace window). [`SoakReport::text`] is the terminal's summary.

mod html;
mod series;

pub use series::SeriesWriter;

use super::fleet::WorkloadStats;
use super::judge::{END_TO_END, EndToEnd, JudgeSummary};
use super::metrics::{SecondRow, Series, Values};
use super::run::SoakConfig;
use super::threshold::Outcome;
use super::timeline::Timeline;
use rotary_judge::{Level, TraceEntry};
use serde::Serialize;
use std::path::Path;

/// The report's schema version (fields are only ever added).
pub const SCHEMA: u32 = 1;

/// One violation as the report lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ReportViolation {
    /// The invariant's id (`live.single-flight`, `soak.no-session-lost`).
    pub id: String,
    /// Its level.
    pub level: Level,
    /// The session (device id).
    pub session: String,
    /// The user, when known.
    pub user: Option<String>,
    /// When, real ms on the trace's scale.
    pub t_ms: i64,
    /// The offending request's `seq` (0 for end-to-end findings).
    pub seq: u64,
    /// What happened.
    pub message: String,
    /// The session's last trace entries up to the offending one.
    pub window: Vec<TraceEntry>,
}

/// What the soak was.
#[derive(Clone, Debug, Serialize)]
pub struct ReportConfig {
    /// Simulated sessions.
    pub sessions: usize,
    /// Planned duration, ms.
    pub duration_ms: u64,
    /// Access-token lifetime, ms.
    pub access_token_lifetime_ms: u64,
    /// The seed.
    pub seed: u64,
    /// Bug switches on a share of the sessions.
    pub bugs: Vec<&'static str>,
    /// That share.
    pub bug_share: f64,
    /// The driver command and count.
    pub drivers: Option<(String, usize)>,
    /// What the fleet talked to.
    pub target: String,
}

/// The verdict and what it rests on.
#[derive(Clone, Debug, Serialize)]
pub struct ReportSummary {
    /// Every threshold held, and the run was not interrupted.
    pub passed: bool,
    /// Ctrl-C ended it.
    pub interrupted: bool,
    /// `--fail-fast` ended it at the first `must` violation.
    pub stopped_early: bool,
    /// Clock jumps the target could not make.
    pub skipped_clock_jumps: u64,
    /// Every metric, by name.
    pub metrics: Values,
}

/// Everything a soak reports.
#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    /// [`SCHEMA`].
    pub schema: u32,
    /// `"soak"`.
    pub kind: &'static str,
    /// Rotary's version.
    pub rotary_version: &'static str,
    /// What ran.
    pub config: ReportConfig,
    /// The verdict and the metrics.
    pub summary: ReportSummary,
    /// Each threshold and its outcome.
    pub thresholds: Vec<Outcome>,
    /// The first violations, with evidence (the counts are in the metrics).
    pub violations: Vec<ReportViolation>,
    /// The end-to-end invariants judged.
    pub end_to_end: &'static [EndToEnd],
    /// The fleet's counts.
    pub fleet: WorkloadStats,
    /// The first error of each driver that had one.
    pub driver_errors: Vec<String>,
    /// The phases and events as they were planned.
    pub timeline: Timeline,
    /// Seconds each row of `series` covers.
    pub series_step: u64,
    /// The series, at most [`super::run::SERIES_POINTS`] rows (the CSV has every second).
    pub series: Vec<SecondRow>,
}

/// What [`SoakReport::new`] is made from.
#[derive(Debug)]
pub struct ReportParts<'a> {
    /// The configuration.
    pub cfg: &'a SoakConfig,
    /// The target's description.
    pub target: String,
    /// The timeline.
    pub timeline: Timeline,
    /// The metrics.
    pub values: Values,
    /// The thresholds' outcomes.
    pub thresholds: Vec<Outcome>,
    /// The judge's totals.
    pub summary: JudgeSummary,
    /// The fleet's.
    pub stats: WorkloadStats,
    /// The series.
    pub series: Series,
    /// Driver errors.
    pub driver_errors: Vec<String>,
    /// The verdict.
    pub passed: bool,
    /// Ctrl-C.
    pub interrupted: bool,
    /// `--fail-fast`.
    pub stopped_early: bool,
    /// Clock jumps not made.
    pub skipped_clock_jumps: u64,
}

impl SoakReport {
    /// Assembles the report.
    pub fn new(p: ReportParts<'_>) -> SoakReport {
        let cfg = p.cfg;
        SoakReport {
            schema: SCHEMA,
            kind: "soak",
            rotary_version: env!("CARGO_PKG_VERSION"),
            config: ReportConfig {
                sessions: cfg.sessions,
                duration_ms: cfg.duration.as_millis() as u64,
                access_token_lifetime_ms: cfg.access_token_lifetime.as_millis() as u64,
                seed: cfg.seed,
                bugs: cfg.bugs.names(),
                bug_share: cfg.bug_share,
                drivers: cfg.drivers.clone(),
                target: p.target,
            },
            summary: ReportSummary {
                passed: p.passed,
                interrupted: p.interrupted,
                stopped_early: p.stopped_early,
                skipped_clock_jumps: p.skipped_clock_jumps,
                metrics: p.values,
            },
            thresholds: p.thresholds,
            violations: p
                .summary
                .kept
                .into_iter()
                .map(|v| ReportViolation {
                    id: v.invariant,
                    level: v.level,
                    session: v.session,
                    user: v.user,
                    t_ms: v.t_ms,
                    seq: v.seq,
                    message: v.message,
                    window: v.window,
                })
                .collect(),
            end_to_end: END_TO_END,
            fleet: p.stats,
            driver_errors: p.driver_errors,
            timeline: p.timeline,
            series_step: p.series.step,
            series: p.series.rows().to_vec(),
        }
    }

    /// A metric's value (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        self.summary.metrics.get(name).copied().unwrap_or(0.0)
    }

    /// Writes `soak.json` and `index.html` into `dir` (the series files are written as the soak
    /// runs, by [`SeriesWriter`]).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("soak.json"), json)?;
        std::fs::write(dir.join("index.html"), html::render(self))?;
        Ok(())
    }

    /// The summary for a terminal: the numbers, each threshold with ✓ or ✗, the first violations.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let m = |k: &str| self.metric(k);
        let mib = |k: &str| m(k) / (1024.0 * 1024.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "soak: {} sessions{}, {:.1} s, seed {}; {} requests, {} refreshes ({:.1}/s, {:.2} per session-lifetime), {} faults, {} clock jumps, {} suspensions",
            self.config.sessions,
            self.config
                .drivers
                .as_ref()
                .map(|(_, n)| format!(" + {n} drivers"))
                .unwrap_or_default(),
            m("duration") / 1000.0,
            self.config.seed,
            m("requests"),
            m("refresh.count"),
            m("refresh.rate"),
            m("refresh.per_lifetime"),
            m("faults"),
            m("clock.jumps"),
            m("suspensions"),
        );
        if self.summary.skipped_clock_jumps > 0 {
            let _ = writeln!(
                out,
                "  {} clock jump(s) of the schedule skipped: {} cannot move its clock",
                self.summary.skipped_clock_jumps, self.config.target
            );
        }
        let _ = writeln!(
            out,
            "  messages: {} sent, {} seen, {} lost, {} duplicated; logouts {} ({} lost sessions); refresh p50/p99 {:.1}/{:.1} ms; memory {:.1} → {:.1} MiB (peak {:.1})",
            m("messages.sent"),
            m("messages.seen"),
            m("messages.lost"),
            m("messages.duplicated"),
            m("logouts"),
            m("sessions.lost"),
            m("refresh.p50"),
            m("refresh.p99"),
            mib("memory.start"),
            mib("memory.end"),
            mib("memory.peak"),
        );
        for t in &self.thresholds {
            let _ = writeln!(
                out,
                "  {} {:<28} (actual {})",
                if t.ok { "✓" } else { "✗" },
                t.threshold,
                fmt_num(t.actual)
            );
        }
        for v in self.violations.iter().take(5) {
            let _ = writeln!(
                out,
                "  violation {} ({}) session {}: {}",
                v.id, v.level, v.session, v.message
            );
        }
        if self.violations.len() > 5 {
            let _ = writeln!(out, "  … {} more in the report", self.violations.len() - 5);
        }
        for e in &self.driver_errors {
            let _ = writeln!(out, "  driver error: {e}");
        }
        let verdict = if self.summary.interrupted {
            "INTERRUPTED"
        } else if self.summary.passed {
            "OK"
        } else {
            "FAILED"
        };
        let failed = self.thresholds.iter().filter(|t| !t.ok).count();
        let _ = writeln!(
            out,
            "{} of {} thresholds held — {verdict}",
            self.thresholds.len() - failed,
            self.thresholds.len()
        );
        out
    }
}

/// A number as a person reads it: integers without decimals.
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.3}")
    }
}
