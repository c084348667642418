//! `rotary soak` at CI size: the correct reference fleet passes the default thresholds on the
//! default schedule, and a fleet with a bug switch fails with the violation that bug causes (the
//! soak kill matrix); driver processes join the fleet through the protocol, and a driver that
//! dies is counted while the soak goes on and its report is written.
//!
//! Every soak is 20 s of 10 sessions with 3 s access tokens and seed 1 (the same sessions are
//! suspended and revoked every time); they run at once, so the whole file takes about 30 s.

use rotary_reference::{Bug, Bugs};
use rotary_rollout::soak::{Soak, SoakConfig, SoakOutcome};
use std::time::Duration;

const DRIVER: &str = env!("CARGO_BIN_EXE_rotary-test-driver");

fn config(bug: Option<Bug>) -> SoakConfig {
    let mut cfg = SoakConfig::new(10, Duration::from_secs(20));
    cfg.access_token_lifetime = Duration::from_secs(3);
    if let Some(b) = bug {
        let mut bugs = Bugs::NONE;
        bugs.insert(b);
        cfg.bugs = bugs;
        cfg.bug_share = 1.0;
    }
    cfg
}

async fn soak(cfg: SoakConfig) -> SoakOutcome {
    Soak::new(cfg)
        .run_embedded()
        .await
        .unwrap_or_else(|e| panic!("the soak could not run: {e}"))
}

/// Each bug, and the metric that must show it.
const MATRIX: &[(&str, &str)] = &[
    ("refresh-per-401", "violations.must"),
    ("stale-refresh-token", "violations.stale-refresh-token"),
    ("logout-on-transient", "sessions.lost"),
    ("no-retry", "app.401"),
    ("preempt-storm", "violations.refresh-loop"),
    ("new-txn-on-retry", "messages.duplicated"),
    ("ignore-retry-after", "violations.refresh-loop"),
    ("swallow-refresh-failure", "sessions.zombie"),
    ("retry-forever", "sessions.zombie"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_kill_matrix() {
    let mut runs = vec![tokio::spawn(soak(config(None)))];
    for (name, _) in MATRIX {
        let bug = Bug::from_name(name).unwrap_or_else(|e| panic!("{e}"));
        runs.push(tokio::spawn(soak(config(Some(bug)))));
    }
    let mut outcomes = Vec::new();
    for r in runs {
        outcomes.push(r.await.unwrap_or_else(|e| panic!("a soak panicked: {e}")));
    }
    let correct = &outcomes[0];
    assert!(
        correct.passed(),
        "the correct fleet must pass:\n{}",
        correct.report.text()
    );
    assert_eq!(correct.report.metric("clock.jumps"), 1.0);
    assert!(correct.report.metric("revocations") >= 1.0);
    assert!(correct.report.metric("faults") > 0.0);
    assert!(correct.report.metric("messages.seen") > 0.0);
    // The revoked sessions logged out after a definitive refusal: not lost.
    assert!(correct.report.metric("logouts") >= correct.report.metric("revocations"));
    let mut missed = Vec::new();
    for ((name, metric), outcome) in MATRIX.iter().zip(&outcomes[1..]) {
        let caught = !outcome.passed() && outcome.report.metric(metric) > 0.0;
        if !caught {
            missed.push(format!(
                "{name} (expected {metric} > 0):\n{}",
                outcome.report.text()
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "bugs the soak did not catch:\n{}",
        missed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_processes_join_the_fleet_and_a_dead_driver_is_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = SoakConfig::new(2, Duration::from_secs(8));
    cfg.access_token_lifetime = Duration::from_secs(3);
    cfg.drivers = Some((DRIVER.to_owned(), 2));
    cfg.report_dir = Some(dir.path().to_owned());
    let good = soak(cfg).await;
    assert!(good.passed(), "{}", good.report.text());
    assert!(
        good.report.metric("drivers.calls") > 10.0,
        "{}",
        good.report.text()
    );
    for f in ["soak.json", "series.csv", "series.json", "index.html"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("soak.json")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["schema"], 1);
    assert_eq!(json["summary"]["passed"], true);
    assert!(json["thresholds"].as_array().is_some_and(|t| !t.is_empty()));

    let mut cfg = SoakConfig::new(0, Duration::from_secs(4));
    cfg.drivers = Some(("echo not a driver; exit 3".to_owned(), 1));
    let dead = soak(cfg).await;
    assert!(!dead.passed());
    assert!(
        dead.report.metric("drivers.errors") >= 1.0,
        "{}",
        dead.report.text()
    );
    assert!(!dead.report.driver_errors.is_empty());
}
