//! What a run records — verdicts, the driver, each scenario's report, the whole run — the data every
//! report renders (the observation types themselves live in `rotary_judge::observed`).
//!
//! These types serialise to the `--json` report (schema version [`SCHEMA_VERSION`]). Fields are
//! only ever added, never renamed.

use rotary_judge::TraceEntry;
pub use rotary_judge::{CallError, CheckResult, Level, NotificationRecord, StepOutcome, StepRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `--json` report's schema.
pub const SCHEMA_VERSION: u32 = 1;

/// The outcome of one scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// A `must` scenario's check failed.
    Fail,
    /// A `should` scenario's check failed.
    NonStrict,
    /// An `info` scenario ran; its checks are shown, not judged.
    Info,
    /// The driver lacks a capability the scenario needs.
    Skipped,
    /// The driver crashed or broke the protocol, or the harness could not run the scenario.
    Error,
    /// A call or the whole scenario ran out of time.
    Timeout,
    /// With `--repeat N`: some runs passed and some failed.
    Flaky,
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 8] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::NonStrict,
        Verdict::Info,
        Verdict::Skipped,
        Verdict::Error,
        Verdict::Timeout,
        Verdict::Flaky,
    ];

    /// The verdict's name as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NonStrict => "non-strict",
            Verdict::Info => "info",
            Verdict::Skipped => "skipped",
            Verdict::Error => "error",
            Verdict::Timeout => "timeout",
            Verdict::Flaky => "flaky",
        }
    }

    /// Whether the verdict means the client did something wrong or the run broke.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Verdict::Fail | Verdict::NonStrict | Verdict::Error | Verdict::Timeout | Verdict::Flaky
        )
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The driver as its `initialize` answer described it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    /// The driver's name.
    pub name: String,
    /// The driver's version.
    pub version: String,
    /// The capabilities it listed.
    pub capabilities: Vec<String>,
    /// The command line that started it.
    pub command: String,
}

/// Counts of verdicts over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenarios run (including skipped).
    pub total: usize,
    /// Verdict `pass`.
    pub pass: usize,
    /// Verdict `fail`.
    pub fail: usize,
    /// Verdict `non-strict`.
    pub non_strict: usize,
    /// Verdict `info`.
    pub info: usize,
    /// Verdict `skipped`.
    pub skipped: usize,
    /// Verdict `error`.
    pub error: usize,
    /// Verdict `timeout`.
    pub timeout: usize,
    /// Scenarios listed in `--expect` that failed, as expected.
    pub expected_failures: usize,
    /// Scenarios listed in `--expect` that passed: the list should shrink.
    pub unexpected_passes: usize,
    /// Whether the run counts as a success (exit code 0).
    pub ok: bool,
    /// Wall time of the run, ms.
    pub duration_ms: u64,
    /// With `--repeat N` (N > 1): the runs per scenario (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// With `--repeat N` (N > 1): scenarios whose runs were mixed, verdict `flaky`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flaky: Option<usize>,
    /// With `--repeat N` (N > 1): scenarios listed in `--expect` as plain known failures that
    /// passed in some runs (the entry should be marked flaky).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmarked_flaky: Option<usize>,
}

/// How the runs of one scenario went, with `--repeat N` (N > 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repeats {
    /// How many times the scenario ran.
    pub runs: u32,
    /// Runs that did not fail: verdict `pass` (or `info`, `skipped` for such scenarios).
    pub passes: u32,
    /// `passes / runs`, rounded to 3 decimals.
    pub pass_rate: f64,
    /// Runs per verdict name (only verdicts that occurred).
    pub verdicts: BTreeMap<String, u32>,
    /// The 1-based run whose evidence the report keeps: the first failing run, else run 1.
    pub evidence_run: u32,
}

/// One line of the exchange with the driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// When, real ms since the server started.
    pub at_ms: i64,
    /// `"→"` harness to driver, `"←"` driver to harness.
    pub dir: String,
    /// The line, with every token replaced by its label.
    pub line: String,
}

/// Everything about one scenario's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Stable id.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// Level.
    pub level: Level,
    /// Tags.
    pub tags: Vec<String>,
    /// The requirement being checked.
    pub requirement: String,
    /// Spec sections, MSCs, SDK issues.
    pub references: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// Listed in the `--expect` file as a known failure.
    pub expected_failure: bool,
    /// Listed in the `--expect` file as flaky (`# flaky: why`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expected_flaky: bool,
    /// For error, timeout and skipped: what happened, naming the scenario and the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// Of which spent in `sleep` steps (real waiting the scenario asked for), ms.
    pub waited_ms: u64,
    /// The server's profile and every knob.
    pub server: serde_json::Value,
    /// The checks, in file order (empty when the scenario did not get that far).
    pub checks: Vec<CheckResult>,
    /// The steps as they ran.
    pub steps: Vec<StepRecord>,
    /// The server's trace (tokens as labels only).
    pub trace: Vec<TraceEntry>,
    /// The driver's notifications (tokens as labels only).
    pub notifications: Vec<NotificationRecord>,
    /// The driver's stderr (the last 64 KiB of each process, tokens replaced by labels).
    pub stderr: String,
    /// Every JSON-RPC line exchanged with the driver (tokens replaced by labels; at most 5000
    /// lines of at most 2 KiB each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<TranscriptLine>,
    /// What the live invariants (`rotary_judge::live`, the rules `rotary proxy` and `rotary soak`
    /// judge live traffic by) found in this scenario's trace. Informational here: the verdict
    /// comes from the scenario's own checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<rotary_judge::live::Violation>,
    /// Extra facts (e.g. `"driver_exit": "signal 9"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    /// With `--repeat N` (N > 1): the runs' pass rate and verdicts, flattened into the entry
    /// (`runs`, `passes`, `pass_rate`, `verdicts`, `evidence_run`). Everything else in the entry
    /// is the run named by `evidence_run`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeats>,
}

impl ScenarioReport {
    /// The failed checks.
    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// A whole run: what `--json` writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Rotary's version.
    pub rotary_version: String,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// The driver (from the first scenario that initialised it).
    pub driver: DriverInfo,
    /// Verdict counts.
    pub summary: Summary,
    /// Every selected scenario, in catalogue order.
    pub scenarios: Vec<ScenarioReport>,
    /// What the `--expect` file got wrong with `--repeat`: a flaky entry that never failed, a
    /// plain entry that passed in some runs (absent when there is nothing to say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Summary {
    /// Counts the verdicts of `scenarios`; `ok` follows the exit-code rule: every non-skipped
    /// `must` scenario passed, or failed (any way, error and timeout included) as `--expect` said.
    pub fn of(scenarios: &[ScenarioReport], duration_ms: u64) -> Summary {
        let mut s = Summary {
            total: scenarios.len(),
            duration_ms,
            ok: true,
            ..Summary::default()
        };
        for r in scenarios {
            match r.verdict {
                Verdict::Pass => s.pass += 1,
                Verdict::Fail => s.fail += 1,
                Verdict::NonStrict => s.non_strict += 1,
                Verdict::Info => s.info += 1,
                Verdict::Skipped => s.skipped += 1,
                Verdict::Error => s.error += 1,
                Verdict::Timeout => s.timeout += 1,
                Verdict::Flaky => *s.flaky.get_or_insert(0) += 1,
            }
            if let Some(rep) = &r.repeat {
                s.repeat = Some(s.repeat.map_or(rep.runs, |n| n.max(rep.runs)));
            }
            let failed = r.verdict.is_failure();
            if r.expected_failure {
                if failed {
                    s.expected_failures += 1;
                    if r.verdict == Verdict::Flaky && !r.expected_flaky {
                        *s.unmarked_flaky.get_or_insert(0) += 1;
                    }
                } else if r.verdict == Verdict::Pass {
                    s.unexpected_passes += 1;
                }
            } else if r.level == Level::Must && !matches!(r.verdict, Verdict::Pass | Verdict::Skipped) {
                s.ok = false;
            }
        }
        if s.repeat.is_some() {
            s.flaky.get_or_insert(0);
            s.unmarked_flaky.get_or_insert(0);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_match_serde() {
        for v in Verdict::ALL {
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, serde_json::Value::String(v.name().to_owned()));
        }
    }
}
