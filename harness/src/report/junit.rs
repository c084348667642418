//! The `--junit` report: JUnit XML for CI systems (GitLab, Jenkins, GitHub test reporters).
//!
//! One `<testsuite>` named `rotary: <driver name>` (with the driver's version, capabilities and
//! command as properties), one `<testcase>` per scenario: `classname` is the id's group (the part
//! before the first `.`), `name` the full id, `time` the scenario's wall time.
//!
//! | verdict | JUnit |
//! |---|---|
//! | `pass` | passed |
//! | `info` | passed; the checks' observations go to `<system-out>` |
//! | `fail` | `<failure type="fail">` |
//! | `non-strict` | `<failure type="non-strict">`: a `should` requirement failed. It is visible as a failure, although the exit code ignores it (only `must` scenarios decide it) |
//! | `error`, `timeout` | `<error type="error">` / `<error type="timeout">` with the scenario's message |
//! | `skipped` | `<skipped>` with the missing capability |
//! | any failure listed in `--expect` | `<skipped type="expected-failure" message="expected failure: …">`: it is known and does not fail the run, but stays visible |
//! | a `pass` listed in `--expect` | passed, with `unexpected pass` in `<system-out>` |
//! | `flaky` (`--repeat N`: some runs passed, some failed) | `<failure type="flaky" message="flaky: passed 7 of 10 runs — …">` |
//!
//! With `--repeat N` (N > 1) every test case also says `passed 7 of 10 runs` in `<system-out>`,
//! and the failure text is the first failing run's (it says which).
//!
//! A failure's `message` is the first failed check's description; its text lists every failed
//! check with what was expected, what happened, and the trace lines of its evidence. The driver's
//! stderr goes to `<system-err>`.

use super::terminal::trace_line;
use super::text::clean;
use crate::record::{RunReport, ScenarioReport, Verdict};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Evidence lines per check in a failure's text.
const MAX_EVIDENCE: usize = 50;
/// Requests listed for an error or timeout without evidence.
const LAST_REQUESTS: usize = 10;

/// The report as JUnit XML.
pub fn to_junit(run: &RunReport) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("rotary");
    let driver = if run.driver.name.is_empty() {
        "unknown driver"
    } else {
        run.driver.name.as_str()
    };
    let mut suite = TestSuite::new(format!("rotary: {driver}"));
    suite.set_time(Duration::from_millis(run.summary.duration_ms));
    suite.add_property(Property::new("rotary_version", run.rotary_version.as_str()));
    suite.add_property(Property::new("driver_version", run.driver.version.as_str()));
    suite.add_property(Property::new(
        "driver_capabilities",
        run.driver.capabilities.join(" "),
    ));
    suite.add_property(Property::new("driver_command", run.driver.command.as_str()));
    suite.add_property(Property::new("ok", run.summary.ok.to_string()));
    for r in &run.scenarios {
        suite.add_test_case(test_case(r));
    }
    report.set_time(Duration::from_millis(run.summary.duration_ms));
    report.add_test_suite(suite);
    report.to_string()
}

/// Writes the JUnit XML to `path`, creating its parent directories.
pub fn write_junit(run: &RunReport, path: &Path) -> anyhow::Result<()> {
    let xml = to_junit(run)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, xml)?;
    Ok(())
}

fn test_case(r: &ScenarioReport) -> TestCase {
    let failed = r.verdict.is_failure();
    let status = if r.expected_failure && failed {
        let mut s = TestCaseStatus::skipped();
        s.set_type("expected-failure");
        s.set_message(format!("expected failure: {} — {}", r.verdict, first_problem(r)));
        s.set_description(details(r));
        s
    } else {
        match r.verdict {
            Verdict::Pass | Verdict::Info => TestCaseStatus::success(),
            Verdict::Skipped => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(r.message.clone().unwrap_or_else(|| "skipped".to_owned()));
                s
            }
            Verdict::Fail | Verdict::NonStrict => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_type(r.verdict.name());
                s.set_message(first_problem(r));
                s.set_description(details(r));
                s
            }
            Verdict::Flaky => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_type(r.verdict.name());
                let (passes, runs) = r.repeat.as_ref().map_or((0, 1), |p| (p.passes, p.runs));
                s.set_message(format!(
                    "flaky: passed {passes} of {runs} runs — {}",
                    first_problem(r)
                ));
                s.set_description(details(r));
                s
            }
            Verdict::Error | Verdict::Timeout => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_type(r.verdict.name());
                s.set_message(first_problem(r));
                s.set_description(details(r));
                s
            }
        }
    };
    let mut tc = TestCase::new(r.id.as_str(), status);
    tc.set_classname(r.id.split('.').next().unwrap_or(r.id.as_str()));
    tc.set_time(Duration::from_millis(r.duration_ms));
    let mut out = Vec::new();
    if let Some(p) = &r.repeat {
        out.push(format!(
            "passed {} of {} runs (pass rate {})",
            p.passes, p.runs, p.pass_rate
        ));
    }
    if r.expected_failure && r.verdict == Verdict::Pass {
        out.push("unexpected pass: listed in --expect as a known failure, but it passed".to_owned());
    }
    if r.verdict == Verdict::Info {
        out.push(format!("info: {}", clean(&r.title)));
        for c in &r.checks {
            out.push(format!(
                "{} {}: {} — expected {}, observed {}",
                if c.passed { "✓" } else { "✗" },
                clean(&c.check),
                clean(&c.description),
                clean(&c.expected),
                clean(&c.actual)
            ));
        }
    }
    if !out.is_empty() {
        tc.set_system_out(out.join("\n"));
    }
    if !r.stderr.trim().is_empty() {
        tc.set_system_err(clean(&r.stderr));
    }
    tc
}

/// The failure's one-line message: the first failed check's description, else the scenario's message.
fn first_problem(r: &ScenarioReport) -> String {
    if let Some(c) = r.failed_checks().next() {
        return clean(&c.description);
    }
    match &r.message {
        Some(m) => clean(m),
        None => r.verdict.name().to_owned(),
    }
}

/// The failure's text: the message, every failed check with its evidence, and for an error or
/// timeout without evidence the last requests.
fn details(r: &ScenarioReport) -> String {
    let by_seq: HashMap<u64, _> = r.trace.iter().map(|e| (e.seq, e)).collect();
    let mut s = format!(
        "{} — {} ({})\n{}\n",
        r.id,
        r.verdict,
        r.level.name(),
        clean(&r.title)
    );
    if let Some(p) = &r.repeat {
        s.push_str(&format!(
            "passed {} of {} runs; the evidence below is from run {}\n",
            p.passes, p.runs, p.evidence_run
        ));
    }
    if let Some(m) = &r.message {
        s.push_str(&format!("{}\n", clean(m)));
    }
    let mut any_evidence = false;
    for c in r.failed_checks() {
        s.push_str(&format!(
            "\n{}: {}\n  expected: {}\n  actual:   {}\n",
            clean(&c.check),
            clean(&c.description),
            clean(&c.expected),
            clean(&c.actual)
        ));
        if !c.evidence.is_empty() {
            any_evidence = true;
            s.push_str("  trace:\n");
            for seq in c.evidence.iter().take(MAX_EVIDENCE) {
                match by_seq.get(seq) {
                    Some(e) => s.push_str(&format!("    {}\n", trace_line(e))),
                    None => s.push_str(&format!("    #{seq} (not in the trace)\n")),
                }
            }
            if c.evidence.len() > MAX_EVIDENCE {
                s.push_str(&format!("    …and {} more\n", c.evidence.len() - MAX_EVIDENCE));
            }
        }
    }
    if matches!(r.verdict, Verdict::Error | Verdict::Timeout) {
        for (k, v) in &r.facts {
            s.push_str(&format!("{}: {}\n", clean(k), clean(v)));
        }
        if !any_evidence && !r.trace.is_empty() {
            let skip = r.trace.len().saturating_sub(LAST_REQUESTS);
            if skip > 0 {
                s.push_str(&format!(
                    "\nlast {} of {} requests:\n",
                    r.trace.len() - skip,
                    r.trace.len()
                ));
            } else {
                s.push_str("\nrequests:\n");
            }
            for e in &r.trace[skip..] {
                s.push_str(&format!("  {}\n", trace_line(e)));
            }
        }
    }
    s
}
