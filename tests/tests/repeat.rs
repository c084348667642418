//! `--repeat N` end to end, with the reference client: the correct client passes every run of a
//! small selection, a bug switch fails every run of the scenario that catches it, and a driver
//! that is buggy on every other run is reported `flaky` with its pass rate — and the `--expect`
//! file's flaky marks are judged against the runs.

use rotary_harness::{
    Catalogue, Expectations, RunConfig, RunReport, Scenario, Verdict, default_dir, report, run_scenarios,
};

const DRIVER: &str = env!("CARGO_BIN_EXE_rotary-test-driver");
/// Quick scenarios; `no-retry` is caught by both.
const SELECTION: [&str; 2] = ["concurrency.401-storm", "expiry.reactive-401"];

fn selection() -> Vec<Scenario> {
    let c = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
    SELECTION
        .iter()
        .map(|id| c.get(id).unwrap_or_else(|| panic!("{id} exists")).clone())
        .collect()
}

/// A driver command line that runs the correct reference client on odd runs and the one with
/// `--bug no-retry` on even runs, counting its starts in `dir/n` (deterministic with one job).
fn alternating(dir: &std::path::Path) -> String {
    let n = dir.join("n");
    let n = n.display();
    format!(
        "n=$(cat '{n}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{n}'; \
         if [ $((n % 2)) -eq 0 ]; then exec '{DRIVER}' --bug no-retry; else exec '{DRIVER}'; fi"
    )
}

/// The per-scenario fields `--repeat` adds, as JSON, for a snapshot.
fn rates(run: &RunReport) -> serde_json::Value {
    let json = report::to_json(run);
    let entries: Vec<serde_json::Value> = json["scenarios"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s["id"], "verdict": s["verdict"], "runs": s["runs"],
                        "passes": s["passes"], "pass_rate": s["pass_rate"],
                        "verdicts": s["verdicts"], "evidence_run": s["evidence_run"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({ "scenarios": entries, "warnings": json["warnings"] })
}

/// The summary line without its wall time.
fn summary(run: &RunReport) -> String {
    let line = report::summary_line(run);
    match (line.rfind(" in "), line.rfind(" s — ")) {
        (Some(a), Some(b)) if a < b => format!("{} in [time]{}", &line[..a], &line[b + 2..]),
        _ => line,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correct_client_passes_every_run() {
    let run = run_scenarios(&selection(), &RunConfig::new(DRIVER).jobs(4).repeat(3), |_| {}).await;
    for s in &run.scenarios {
        let rep = s
            .repeat
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no repeats", s.id));
        assert_eq!(
            (s.verdict, rep.runs, rep.pass_rate),
            (Verdict::Pass, 3, 1.0),
            "{}",
            s.id
        );
    }
    assert!(run.summary.ok);
    assert_eq!(run.summary.flaky, Some(0));
    insta::assert_snapshot!("repeat_correct_summary", summary(&run));
    insta::assert_json_snapshot!("repeat_correct_rates", rates(&run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_fails_every_run() {
    let cfg = RunConfig::new(format!("{DRIVER} --bug no-retry"))
        .jobs(4)
        .repeat(3);
    let run = run_scenarios(&selection(), &cfg, |_| {}).await;
    for s in &run.scenarios {
        let rep = s
            .repeat
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no repeats", s.id));
        assert_eq!(
            (s.verdict, rep.passes, rep.pass_rate),
            (Verdict::Fail, 0, 0.0),
            "{}",
            s.id
        );
        assert_eq!(rep.evidence_run, 1);
    }
    assert!(!run.summary.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_fails_every_other_run_is_flaky() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storm: Vec<Scenario> = selection().into_iter().take(1).collect();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = std::sync::Arc::clone(&seen);
    let cfg = RunConfig::new(alternating(dir.path())).jobs(1).repeat(3);
    let run = run_scenarios(&storm, &cfg, move |r| {
        if let Ok(mut v) = seen2.lock() {
            v.push(r.verdict);
        }
    })
    .await;
    // Every run was reported as it finished: pass, fail, pass.
    assert_eq!(
        seen.lock().map(|v| v.clone()).unwrap_or_default(),
        vec![Verdict::Pass, Verdict::Fail, Verdict::Pass]
    );
    let s = &run.scenarios[0];
    assert_eq!(s.verdict, Verdict::Flaky);
    // The evidence kept is the failing run's.
    assert!(s.failed_checks().next().is_some());
    assert!(!run.summary.ok, "a flaky `must` scenario fails the run");
    insta::assert_snapshot!("repeat_flaky_summary", summary(&run));
    insta::assert_json_snapshot!("repeat_flaky_rates", rates(&run));
    let failures = report::render_failures(&run, false);
    assert!(
        failures
            .starts_with("✗ concurrency.401-storm — flaky (must): passed 2 of 3 runs; evidence from run 2\n"),
        "{failures}"
    );

    // Listed as a plain known failure: expected, but the entry should say flaky.
    let _ = std::fs::remove_file(dir.path().join("n"));
    let plain = Expectations::parse("concurrency.401-storm # drops the retry\n", "t").expect("parses");
    let run = run_scenarios(&storm, &cfg.clone().expectations(plain), |_| {}).await;
    assert!(run.summary.ok);
    assert_eq!(run.summary.unmarked_flaky, Some(1));
    assert_eq!(
        run.warnings,
        vec![
            "concurrency.401-storm: listed in --expect as a known failure, but it passed in 2 of 3 runs; mark it flaky (`# flaky: why`)"
                .to_owned()
        ]
    );

    // Marked flaky, and the correct client never fails: flagged too.
    let marked =
        Expectations::parse("concurrency.401-storm # flaky: drops the retry\n", "t").expect("parses");
    let cfg = RunConfig::new(DRIVER).jobs(1).repeat(3).expectations(marked);
    let run = run_scenarios(&storm, &cfg, |_| {}).await;
    assert!(run.summary.ok);
    assert_eq!(run.summary.unexpected_passes, 1);
    assert_eq!(
        run.warnings,
        vec!["concurrency.401-storm: listed as flaky in --expect, but it never failed in 3 runs".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_reports_as_before() {
    let run = run_scenarios(&selection(), &RunConfig::new(DRIVER).jobs(2).repeat(1), |_| {}).await;
    assert!(run.scenarios.iter().all(|s| s.repeat.is_none()));
    assert_eq!((run.summary.repeat, run.summary.flaky), (None, None));
    let json = report::to_json(&run);
    assert!(json["scenarios"][0].get("pass_rate").is_none());
    assert!(json.get("warnings").is_none());
    assert!(!report::summary_line(&run).contains('×'));
}
