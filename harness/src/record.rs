//! What a run records: verdicts, check results, steps, notifications — the data every report renders.
//!
//! These types serialise to the `--json` report (schema version [`SCHEMA_VERSION`]). Fields are
//! only ever added, never renamed.

use rotary_server::TraceEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `--json` report's schema.
pub const SCHEMA_VERSION: u32 = 1;

/// A scenario's level: how strictly its requirement binds a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The spec requires it, or users lose their session without it.
    Must,
    /// Good practice; failing it is reported as `non-strict`.
    Should,
    /// Observes behaviour; never passes or fails.
    Info,
}

impl Level {
    /// The level's name as written in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Info => "info",
        }
    }
}

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
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::NonStrict,
        Verdict::Info,
        Verdict::Skipped,
        Verdict::Error,
        Verdict::Timeout,
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
        }
    }

    /// Whether the verdict means the client did something wrong or the run broke.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Verdict::Fail | Verdict::NonStrict | Verdict::Error | Verdict::Timeout
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
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name as written in the scenario (`refresh_count`, …).
    pub check: String,
    /// What it demands, in words (`exactly 1 refresh call in steps 2–3`).
    pub description: String,
    /// Whether it held.
    pub passed: bool,
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// `seq` of the trace entries that prove the result (for a failure: the offending requests).
    pub evidence: Vec<u64>,
}

/// A driver error as the protocol reports it (`data.kind`, `status`, `errcode`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// `logged_out`, `soft_logged_out`, `http`, `network`, `unsupported`, `other`, or
    /// `method_not_found` for a JSON-RPC -32601.
    pub kind: String,
    /// The driver's message.
    pub message: String,
    /// HTTP status, for `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Matrix errcode, for `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<String>,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    /// A driver call answered with a result (tokens replaced by labels), or a server action
    /// succeeded (`result` describes it).
    Ok {
        /// The result.
        result: serde_json::Value,
    },
    /// A driver call answered with an error.
    Failed {
        /// The error.
        error: CallError,
    },
    /// A `parallel` call: one outcome per operation, in start order.
    Parallel {
        /// `Ok` or `Failed` per operation.
        results: Vec<StepOutcome>,
    },
    /// The step did not finish: the driver broke, or time ran out (see the scenario's message).
    Aborted {
        /// What happened.
        reason: String,
    },
}

impl StepOutcome {
    /// Whether the step (every operation of a `parallel`) succeeded.
    pub fn is_ok(&self) -> bool {
        match self {
            StepOutcome::Ok { .. } => true,
            StepOutcome::Failed { .. } | StepOutcome::Aborted { .. } => false,
            StepOutcome::Parallel { results } => results.iter().all(StepOutcome::is_ok),
        }
    }

    /// The errors of the step (all failing operations of a `parallel`).
    pub fn errors(&self) -> Vec<&CallError> {
        match self {
            StepOutcome::Ok { .. } | StepOutcome::Aborted { .. } => Vec::new(),
            StepOutcome::Failed { error } => vec![error],
            StepOutcome::Parallel { results } => results.iter().flat_map(StepOutcome::errors).collect(),
        }
    }
}

/// One step as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based position in the scenario.
    pub index: usize,
    /// The step's name, if the scenario gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action (`login`, `parallel`, `expire_access_tokens`, …).
    pub action: String,
    /// A short rendering of its parameters (`count=5 op=whoami`).
    pub summary: String,
    /// Start, real ms since the scenario's server started (the trace's `real_ms` scale).
    pub started_ms: i64,
    /// End, same scale.
    pub ended_ms: i64,
    /// Trace entries with `seq > trace_from` arrived after the step started.
    pub trace_from: u64,
    /// Trace entries with `seq <= trace_to` arrived before the step ended.
    pub trace_to: u64,
    /// How it ended.
    pub outcome: StepOutcome,
}

/// A notification the driver sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// When it arrived, real ms since the server started.
    pub at_ms: i64,
    /// The step running when it arrived (1-based; 0 = during start-up).
    pub step: usize,
    /// How many requests the trace held when it arrived.
    pub trace_len: u64,
    /// `session_changed`, `logged_out`, `log`, or an unknown method name.
    pub method: String,
    /// Its params, with every token replaced by its label.
    pub params: serde_json::Value,
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
    /// Extra facts (e.g. `"driver_exit": "signal 9"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
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
            }
            let failed = r.verdict.is_failure();
            if r.expected_failure {
                if failed {
                    s.expected_failures += 1;
                } else if r.verdict == Verdict::Pass {
                    s.unexpected_passes += 1;
                }
            } else if r.level == Level::Must && !matches!(r.verdict, Verdict::Pass | Verdict::Skipped) {
                s.ok = false;
            }
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

    #[test]
    fn parallel_outcome_is_ok_only_when_all_are() {
        let ok = StepOutcome::Ok {
            result: serde_json::json!({}),
        };
        let bad = StepOutcome::Failed {
            error: CallError {
                kind: "http".into(),
                message: "401".into(),
                status: Some(401),
                errcode: None,
            },
        };
        assert!(
            StepOutcome::Parallel {
                results: vec![ok.clone(), ok.clone()]
            }
            .is_ok()
        );
        let mixed = StepOutcome::Parallel {
            results: vec![ok, bad],
        };
        assert!(!mixed.is_ok());
        assert_eq!(mixed.errors().len(), 1);
    }
}
