//! `rotary run --repeat N`: folding a scenario's N runs into one report — its pass rate, its
//! verdicts, one combined verdict — and what the runs say about the `--expect` file.
//!
//! The combined verdict:
//!
//! | the runs | verdict |
//! |---|---|
//! | all the same verdict | that verdict (`pass` when all passed, `fail` when all failed, …) |
//! | some failed (`fail`, `non-strict`, `error`, `timeout`), some did not | `flaky` |
//! | different failures, none passed | the first failing run's verdict |
//! | different non-failures (e.g. `pass` and `skipped`) | the first run's verdict |
//!
//! The report keeps the evidence (checks, trace, steps, stderr, …) of one run only: the first
//! failing run, else run 1, and says which in [`Repeats::evidence_run`].

use crate::record::{Repeats, ScenarioReport, Verdict};
use std::collections::BTreeMap;

/// The largest `--repeat`.
pub const MAX_REPEAT: u32 = 1000;

/// A `--repeat` value out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the number of runs must be between 1 and {MAX_REPEAT}, not {0}")]
pub struct RepeatError(pub u64);

/// Checks a `--repeat` value (1 ..= [`MAX_REPEAT`]).
///
/// ```
/// use rotary_harness::repeat::check_repeat;
/// assert_eq!(check_repeat(5), Ok(5));
/// assert!(check_repeat(0).is_err());
/// ```
pub fn check_repeat(n: u64) -> Result<u32, RepeatError> {
    match u32::try_from(n) {
        Ok(v) if (1..=MAX_REPEAT).contains(&v) => Ok(v),
        _ => Err(RepeatError(n)),
    }
}

/// Folds the runs of one scenario (in run order) into one report. One run is returned unchanged
/// (no [`Repeats`]), so `--repeat 1` reports exactly what a plain run does; `None` when `runs` is
/// empty.
pub fn aggregate(runs: Vec<ScenarioReport>) -> Option<ScenarioReport> {
    let n = runs.len();
    if n <= 1 {
        return runs.into_iter().next();
    }
    let verdicts: Vec<Verdict> = runs.iter().map(|r| r.verdict).collect();
    let first_failing = verdicts.iter().position(|v| v.is_failure());
    let keep = first_failing.unwrap_or(0);
    let passes = verdicts.iter().filter(|v| !v.is_failure()).count();
    let combined = if verdicts.iter().all(|v| *v == verdicts[0]) {
        verdicts[0]
    } else if first_failing.is_some() && passes > 0 {
        Verdict::Flaky
    } else {
        verdicts[keep]
    };
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for v in &verdicts {
        *counts.entry(v.name().to_owned()).or_insert(0) += 1;
    }
    let runs_n = u32::try_from(n).unwrap_or(u32::MAX);
    let passes_n = u32::try_from(passes).unwrap_or(u32::MAX);
    let mut report = runs.into_iter().nth(keep)?;
    report.verdict = combined;
    report.repeat = Some(Repeats {
        runs: runs_n,
        passes: passes_n,
        pass_rate: rate(passes_n, runs_n),
        verdicts: counts,
        evidence_run: u32::try_from(keep + 1).unwrap_or(u32::MAX),
    });
    Some(report)
}

/// `passes / runs`, rounded to 3 decimals.
fn rate(passes: u32, runs: u32) -> f64 {
    if runs == 0 {
        return 0.0;
    }
    (f64::from(passes) * 1000.0 / f64::from(runs)).round() / 1000.0
}

/// `passes/runs` for a report, e.g. `7/10`; `None` without [`Repeats`].
pub fn rate_text(r: &ScenarioReport) -> Option<String> {
    r.repeat.as_ref().map(|p| format!("{}/{}", p.passes, p.runs))
}

/// What repeated runs say about the `--expect` file: a flaky entry whose scenario never failed
/// in its N runs, and a plain entry whose scenario passed in some of them. One sentence each, in
/// report order; nothing for scenarios that ran once (one run says nothing about flakiness).
pub fn expectation_warnings(scenarios: &[ScenarioReport]) -> Vec<String> {
    let mut out = Vec::new();
    for r in scenarios.iter().filter(|r| r.expected_failure) {
        let Some(runs) = r.repeat.as_ref().map(|p| p.runs) else {
            continue;
        };
        if r.expected_flaky && !r.verdict.is_failure() {
            out.push(format!(
                "{}: listed as flaky in --expect, but it never failed in {runs} runs",
                r.id
            ));
        } else if !r.expected_flaky && r.verdict == Verdict::Flaky {
            let (passes, runs) = r.repeat.as_ref().map_or((0, 1), |p| (p.passes, p.runs));
            out.push(format!(
                "{}: listed in --expect as a known failure, but it passed in {passes} of {runs} runs; mark it flaky (`# flaky: why`)",
                r.id
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Level;

    fn run(verdict: Verdict, tag: &str) -> ScenarioReport {
        ScenarioReport {
            id: "x.y".into(),
            title: String::new(),
            level: Level::Must,
            tags: Vec::new(),
            requirement: String::new(),
            references: Vec::new(),
            verdict,
            expected_failure: false,
            expected_flaky: false,
            message: None,
            duration_ms: 0,
            waited_ms: 0,
            server: serde_json::Value::Null,
            checks: Vec::new(),
            steps: Vec::new(),
            trace: Vec::new(),
            notifications: Vec::new(),
            stderr: tag.into(),
            transcript: Vec::new(),
            violations: Vec::new(),
            facts: BTreeMap::new(),
            repeat: None,
        }
    }

    fn agg(vs: &[Verdict]) -> ScenarioReport {
        let runs = vs
            .iter()
            .enumerate()
            .map(|(i, v)| run(*v, &format!("run {}", i + 1)))
            .collect();
        aggregate(runs).expect("runs")
    }

    #[test]
    fn one_run_is_unchanged() {
        let r = run(Verdict::Fail, "only");
        assert_eq!(aggregate(vec![r.clone()]), Some(r));
        assert_eq!(aggregate(Vec::new()), None);
    }

    #[test]
    fn all_passed_and_all_failed() {
        let p = agg(&[Verdict::Pass; 3]);
        assert_eq!(p.verdict, Verdict::Pass);
        let rep = p.repeat.expect("repeats");
        assert_eq!(
            (rep.runs, rep.passes, rep.pass_rate, rep.evidence_run),
            (3, 3, 1.0, 1)
        );
        assert_eq!(rep.verdicts, BTreeMap::from([("pass".to_owned(), 3)]));
        let f = agg(&[Verdict::Fail; 4]);
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.repeat.map(|r| (r.passes, r.pass_rate)), Some((0, 0.0)));
    }

    #[test]
    fn mixed_is_flaky_with_the_first_failing_runs_evidence() {
        let r = agg(&[
            Verdict::Pass,
            Verdict::Pass,
            Verdict::Fail,
            Verdict::Pass,
            Verdict::Timeout,
        ]);
        assert_eq!(r.verdict, Verdict::Flaky);
        assert_eq!(r.stderr, "run 3");
        let rep = r.repeat.expect("repeats");
        assert_eq!(
            (rep.runs, rep.passes, rep.pass_rate, rep.evidence_run),
            (5, 3, 0.6, 3)
        );
        assert_eq!(
            rep.verdicts,
            BTreeMap::from([
                ("fail".to_owned(), 1),
                ("pass".to_owned(), 3),
                ("timeout".to_owned(), 1)
            ])
        );
        assert_eq!(
            agg(&[Verdict::Pass, Verdict::Pass, Verdict::Fail])
                .repeat
                .map(|r| r.pass_rate),
            Some(0.667)
        );
    }

    #[test]
    fn mixed_failures_take_the_first_failure() {
        let r = agg(&[Verdict::Timeout, Verdict::Fail]);
        assert_eq!(r.verdict, Verdict::Timeout);
        let r = agg(&[Verdict::Skipped, Verdict::Pass]);
        assert_eq!(r.verdict, Verdict::Skipped);
        assert_eq!(r.repeat.map(|p| p.passes), Some(2));
    }

    #[test]
    fn repeat_bounds() {
        assert_eq!(check_repeat(1), Ok(1));
        assert_eq!(check_repeat(1000), Ok(1000));
        assert_eq!(
            check_repeat(1001).map_err(|e| e.to_string()),
            Err("the number of runs must be between 1 and 1000, not 1001".to_owned())
        );
        assert!(check_repeat(0).is_err());
        assert!(check_repeat(u64::MAX).is_err());
    }

    #[test]
    fn warnings_name_wrong_expectations() {
        let mut never = agg(&[Verdict::Pass; 3]);
        never.id = "a.never".into();
        never.expected_failure = true;
        never.expected_flaky = true;
        let mut mixed = agg(&[Verdict::Fail, Verdict::Pass, Verdict::Pass]);
        mixed.id = "b.mixed".into();
        mixed.expected_failure = true;
        let mut fine = agg(&[Verdict::Fail, Verdict::Pass]);
        fine.expected_failure = true;
        fine.expected_flaky = true;
        let unlisted = agg(&[Verdict::Fail, Verdict::Pass]);
        let mut once = run(Verdict::Pass, "");
        once.expected_failure = true;
        once.expected_flaky = true;
        assert_eq!(
            expectation_warnings(&[never, mixed, fine, unlisted, once]),
            vec![
                "a.never: listed as flaky in --expect, but it never failed in 3 runs".to_owned(),
                "b.mixed: listed in --expect as a known failure, but it passed in 2 of 3 runs; mark it flaky (`# flaky: why`)"
                    .to_owned(),
            ]
        );
    }
}
