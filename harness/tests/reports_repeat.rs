//! Reports of a hand-built `--repeat 3` run: a scenario that passed every run, a flaky one, an
//! expected failure marked flaky that never failed, and a plain expected failure that passed in
//! some runs — the terminal and JSON formats (snapshots), JUnit and HTML.

mod common;

use common::markup::well_formed;
use common::sample::{crashed, expected, lost_response, run_of, storm};
use rotary_harness::repeat::{aggregate, expectation_warnings};
use rotary_harness::report::{render_failures, summary_line, to_json, to_junit, write_html};
use rotary_harness::{RunReport, ScenarioReport, Verdict};

/// A run of `r` in which every check held.
fn passed(mut r: ScenarioReport) -> ScenarioReport {
    r.verdict = Verdict::Pass;
    r.message = None;
    for c in &mut r.checks {
        c.passed = true;
    }
    r
}

fn folded(runs: Vec<ScenarioReport>) -> ScenarioReport {
    aggregate(runs).expect("runs")
}

/// Three runs each of four scenarios.
fn repeated() -> RunReport {
    let always = folded(vec![storm(), storm(), storm()]);
    let flaky = folded(vec![
        passed(lost_response()),
        lost_response(),
        passed(lost_response()),
    ]);
    let mut marked = expected();
    marked.expected_flaky = true;
    let never_failed = folded(vec![
        passed(marked.clone()),
        passed(marked.clone()),
        passed(marked),
    ]);
    let mut plain = crashed();
    plain.expected_failure = true;
    let unmarked = folded(vec![plain.clone(), passed(plain.clone()), passed(plain)]);
    let mut run = run_of(vec![always, flaky, never_failed, unmarked]);
    run.warnings = expectation_warnings(&run.scenarios);
    run
}

#[test]
fn summary_of_repeated_runs() {
    let run = repeated();
    let s = &run.summary;
    assert_eq!(s.repeat, Some(3));
    assert_eq!(s.flaky, Some(2));
    assert_eq!(s.unmarked_flaky, Some(1));
    assert_eq!((s.pass, s.expected_failures, s.unexpected_passes), (2, 1, 1));
    // The flaky `must` scenario is not listed: the run fails.
    assert!(!s.ok);
    let flaky = &run.scenarios[1];
    assert_eq!(flaky.verdict, Verdict::Flaky);
    let rep = flaky.repeat.as_ref().expect("repeats");
    assert_eq!((rep.passes, rep.runs, rep.evidence_run), (2, 3, 2));
    assert_eq!(rep.pass_rate, 0.667);
}

#[test]
fn terminal_of_repeated_runs() {
    let run = repeated();
    insta::assert_snapshot!("repeat_terminal_failures", render_failures(&run, false));
    insta::assert_snapshot!("repeat_summary_line", summary_line(&run));
}

#[test]
fn json_of_repeated_runs() {
    let run = repeated();
    let json = to_json(&run);
    // Only what `--repeat` adds, to keep the snapshot about it.
    let entries: Vec<serde_json::Value> = json["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s["id"],
                "verdict": s["verdict"],
                "expected_failure": s["expected_failure"],
                "expected_flaky": s.get("expected_flaky"),
                "runs": s["runs"],
                "passes": s["passes"],
                "pass_rate": s["pass_rate"],
                "verdicts": s["verdicts"],
                "evidence_run": s["evidence_run"],
            })
        })
        .collect();
    insta::assert_json_snapshot!("repeat_json", serde_json::json!({
        "summary": json["summary"],
        "warnings": json["warnings"],
        "scenarios": entries,
    }), {
        ".summary.duration_ms" => "[duration]",
    });
    // The whole report round-trips, the flattened fields included.
    let back: RunReport = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, run);
}

#[test]
fn junit_and_html_of_repeated_runs() {
    let run = repeated();
    let xml = to_junit(&run).expect("junit");
    well_formed(&xml, &[]).expect("well-formed XML");
    assert!(xml.contains(r#"type="flaky""#), "{xml}");
    assert!(xml.contains("flaky: passed 2 of 3 runs"), "{xml}");
    assert!(xml.contains("passed 3 of 3 runs (pass rate 1)"), "{xml}");
    let dir = tempfile::tempdir().expect("temp dir");
    write_html(&run, dir.path()).expect("html");
    let index = std::fs::read_to_string(dir.path().join("index.html")).expect("index");
    assert!(
        index.contains(r#"<span class="v v-flaky">flaky</span><span class="rate""#),
        "{index}"
    );
    assert!(index.contains(">2/3</span>"));
    assert!(index.contains("flaky (over 3 runs each)"));
    assert!(index.contains("passed in some runs: mark it flaky"), "{index}");
    let page = std::fs::read_to_string(dir.path().join("lost-response.commit-then-drop.html")).expect("page");
    assert!(page.contains("Passed 2 of 3 runs (pass rate 0.667: 1 fail, 2 pass). What follows is run 2"));
}
