//! Checks on how the driver's calls ended: a step (or every driver step) succeeded, or a step
//! failed with one of the expected error kinds.

use super::common::{describe_failure, verdict, window_errors, with_evidence};
use super::kind::{CheckKind, CheckResult, Shape};
use super::scope::StepRef;
use crate::observed::{Observed, StepOutcome, StepRecord};
use serde::{Deserialize, Serialize};

/// A driver step (every operation of a `parallel`) succeeded; without `step`, every driver step.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepOk {
    /// The step (default: every driver step).
    pub step: Option<StepRef>,
    #[serde(skip)]
    index: Option<usize>,
    #[serde(skip)]
    driver_steps: Vec<usize>,
}

impl CheckKind for StepOk {
    const SUMMARY: &'static str =
        "a driver step succeeded (every operation of a `parallel`); without `step`, every driver step";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("step", "the step (number or name)")];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.index = self.step.as_ref().map(|r| shape.driver_step(r)).transpose()?;
        self.driver_steps = shape
            .steps
            .iter()
            .filter(|s| s.driver_call)
            .map(|s| s.index)
            .collect();
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let picked: Vec<&StepRecord> = obs
            .steps
            .iter()
            .filter(|s| match self.index {
                Some(i) => s.index == i,
                None => self.driver_steps.contains(&s.index),
            })
            .collect();
        let failed: Vec<&&StepRecord> = picked.iter().filter(|s| !s.outcome.is_ok()).collect();
        let what = match self.index {
            Some(i) => format!("step {i} succeeded"),
            None => "every driver step succeeded".to_owned(),
        };
        let ran = self.index.is_none() || !picked.is_empty();
        let actual = if !ran {
            "the step did not run".to_owned()
        } else if failed.is_empty() {
            "success".to_owned()
        } else {
            failed
                .iter()
                .map(|s| describe_failure(s))
                .collect::<Vec<_>>()
                .join("; ")
        };
        with_evidence(
            verdict(what, failed.is_empty() && ran, "success".to_owned(), actual),
            failed.iter().flat_map(|s| window_errors(obs, s)),
        )
    }
}

/// A driver step failed, optionally with one of these error kinds.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepError {
    /// The step.
    pub step: StepRef,
    /// Accepted kinds (`logged_out`, `soft_logged_out`, `http`, `network`, …); any if empty.
    #[serde(default)]
    pub kind: Vec<String>,
    #[serde(skip)]
    index: usize,
}

impl CheckKind for StepError {
    const SUMMARY: &'static str = "a driver step failed, with one of the given error kinds if any are given";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("step", "the step (number or name; required)"),
        (
            "kind",
            "accepted kinds: `logged_out`, `soft_logged_out`, `http`, `network`, `unsupported`, `other`, `method_not_found`",
        ),
    ];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        let kinds = rotary_protocol::ERROR_KINDS;
        if let Some(k) = self.kind.iter().find(|k| !kinds.contains(&k.as_str())) {
            return Err(format!("unknown error kind {k:?}; known: {}", kinds.join(", ")));
        }
        self.index = shape.driver_step(&self.step)?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let step = self.index;
        let expected = if self.kind.is_empty() {
            "an error".to_owned()
        } else {
            format!("an error of kind {}", self.kind.join(" or "))
        };
        let (passed, actual) = match obs.steps.iter().find(|s| s.index == step) {
            None => (false, "the step did not run".to_owned()),
            Some(s) => {
                let errors = s.outcome.errors();
                let ok = !errors.is_empty()
                    && errors
                        .iter()
                        .all(|e| self.kind.is_empty() || self.kind.contains(&e.kind));
                let actual = if errors.is_empty() {
                    match &s.outcome {
                        StepOutcome::Aborted { reason } => format!("aborted: {reason}"),
                        _ => "success".to_owned(),
                    }
                } else {
                    describe_failure(s)
                };
                (ok, actual)
            }
        };
        verdict(format!("step {step} failed"), passed, expected, actual)
    }
}

#[cfg(test)]
mod tests {
    use super::super::kind::StepShape;
    use super::*;
    use crate::observed::CallError;

    fn record(index: usize, outcome: StepOutcome) -> StepRecord {
        StepRecord {
            index,
            name: None,
            action: "whoami".into(),
            summary: String::new(),
            started_ms: 0,
            ended_ms: 0,
            trace_from: 0,
            trace_to: 0,
            outcome,
        }
    }

    #[test]
    fn outcomes_are_judged() {
        let steps = [
            StepShape::driver(1, None, "whoami"),
            StepShape::server(2, None, "sleep"),
        ];
        let shape = Shape {
            steps: &steps,
            rooms: &[],
            endpoints: &[],
        };
        let failed = StepOutcome::Failed {
            error: CallError {
                kind: "soft_logged_out".into(),
                message: String::new(),
                status: None,
                errcode: None,
            },
        };
        let obs = Observed {
            steps: vec![
                record(1, failed),
                record(
                    2,
                    StepOutcome::Ok {
                        result: serde_json::json!({}),
                    },
                ),
            ],
            ..Observed::default()
        };
        let mut ok = StepOk::default();
        ok.resolve(&shape).unwrap();
        assert!(!ok.evaluate(&obs).passed);
        let mut err = StepError {
            step: StepRef::Index(1),
            kind: vec!["soft_logged_out".into()],
            index: 0,
        };
        err.resolve(&shape).unwrap();
        assert!(err.evaluate(&obs).passed);
        err.kind = vec!["logged_out".into()];
        assert!(!err.evaluate(&obs).passed);
        err.kind = vec!["loged_out".into()];
        assert!(err.resolve(&shape).unwrap_err().contains("unknown error kind"));
        let mut on_sleep = StepOk {
            step: Some(StepRef::Index(2)),
            ..StepOk::default()
        };
        assert!(
            on_sleep
                .resolve(&shape)
                .unwrap_err()
                .contains("not a driver call")
        );
    }
}
