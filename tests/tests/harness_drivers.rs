//! The harness against misbehaving drivers: each gets its verdict, with a message naming the
//! scenario and step, the run completes, and no driver process is left behind.

use rotary_harness::{Catalogue, RunConfig, Scenario, Verdict, default_dir, run_scenarios};
use std::time::Duration;

const FAKE: &str = env!("CARGO_BIN_EXE_rotary-fake-driver");

fn scenario() -> Scenario {
    let c = Catalogue::load(&default_dir()).expect("catalogue");
    c.get("expiry.reactive-401")
        .expect("expiry.reactive-401 exists")
        .clone()
}

async fn verdict_of(mode: &str) -> rotary_harness::ScenarioReport {
    let mut s = scenario();
    s.call_timeout = Duration::from_secs(2);
    s.timeout = Duration::from_secs(20);
    let cfg = RunConfig::new(format!("{FAKE} {mode}")).jobs(1);
    let run = run_scenarios(std::slice::from_ref(&s), &cfg, |_| {}).await;
    run.scenarios.into_iter().next().expect("one report")
}

fn alive(pattern: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaviour_gets_its_verdict() {
    let cases: &[(&str, Verdict, &str)] = &[
        (
            "crash",
            Verdict::Error,
            "step 1 (login): the driver exited before answering `login` (exit code 101)",
        ),
        (
            "hang",
            Verdict::Timeout,
            "step 1 (login): the driver did not answer `login` within 2s",
        ),
        (
            "garbage",
            Verdict::Error,
            "step 1 (login): the driver printed a line that is not JSON-RPC",
        ),
        (
            "wrong-id",
            Verdict::Error,
            "step 1 (login): the driver answered id 102 while the harness waited for id 2",
        ),
        (
            "huge",
            Verdict::Error,
            "step 1 (login): the driver wrote a line longer than",
        ),
        (
            "exit-early",
            Verdict::Error,
            "step 1 (login): the driver exited before answering `login` (exit code 0)",
        ),
        (
            "hang-init",
            Verdict::Timeout,
            "start-up: the driver did not answer `initialize` within 2s",
        ),
        (
            "garbage-init",
            Verdict::Error,
            "start-up: the driver printed a line that is not JSON-RPC: \"Starting SDK v1.2.3...\"",
        ),
        (
            "exit-init",
            Verdict::Error,
            "start-up: the driver exited before answering `initialize`",
        ),
        (
            "no-caps",
            Verdict::Error,
            "start-up: the `initialize` result needs \"capabilities\"",
        ),
        (
            "few-caps",
            Verdict::Skipped,
            "the driver lacks `login`, `legacy-refresh`",
        ),
        ("ok", Verdict::Fail, ""),
    ];
    for (mode, verdict, message) in cases {
        let r = verdict_of(mode).await;
        assert_eq!(r.verdict, *verdict, "mode {mode}: {:?}", r.message);
        let got = r.message.clone().unwrap_or_default();
        assert!(
            got.starts_with("scenario expiry.reactive-401") || message.is_empty(),
            "mode {mode}: message must name the scenario: {got}"
        );
        assert!(
            got.contains(message),
            "mode {mode}: {got:?} should contain {message:?}"
        );
        if *mode == "crash" {
            assert!(
                r.stderr.contains("fake driver: panicking on login"),
                "stderr kept: {:?}",
                r.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_driver_does_not_stop_the_run() {
    let c = Catalogue::load(&default_dir()).expect("catalogue");
    let picked: Vec<Scenario> = c
        .scenarios
        .iter()
        .take(3)
        .cloned()
        .map(|mut s| {
            s.call_timeout = Duration::from_secs(1);
            s
        })
        .collect();
    let cfg = RunConfig::new(format!("{FAKE} crash")).jobs(2);
    let run = run_scenarios(&picked, &cfg, |_| {}).await;
    assert_eq!(run.scenarios.len(), picked.len());
    assert!(
        run.scenarios
            .iter()
            .all(|s| matches!(s.verdict, Verdict::Error | Verdict::Skipped))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_driver_are_killed() {
    let r = verdict_of("fork").await;
    assert_eq!(r.verdict, Verdict::Timeout, "{:?}", r.message);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!alive("sleep 300"), "the driver's child outlived the scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_driver_command_is_an_error() {
    let mut s = scenario();
    s.call_timeout = Duration::from_secs(2);
    let cfg = RunConfig::new("/no/such/driver --x").jobs(1);
    let run = run_scenarios(std::slice::from_ref(&s), &cfg, |_| {}).await;
    let r = &run.scenarios[0];
    assert_eq!(r.verdict, Verdict::Error);
    assert!(
        r.stderr.contains("/no/such/driver"),
        "sh's complaint is kept: {:?}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_leaves_the_process_group_is_killed_too() {
    let r = verdict_of("daemon").await;
    assert_eq!(r.verdict, Verdict::Timeout, "{:?}", r.message);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!alive("sleep 301"), "the driver's daemon outlived the scenario");
    assert!(r.facts.contains_key("stragglers_killed"), "{:?}", r.facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_drivers_time_out_with_bounded_memory() {
    let r = verdict_of("flood").await;
    assert_eq!(r.verdict, Verdict::Timeout, "{:?}", r.message);
    assert!(
        r.notifications.len() <= rotary_harness::MAX_LOG_NOTIFICATIONS,
        "{} notifications kept",
        r.notifications.len()
    );
    assert!(r.facts.contains_key("notifications_dropped"), "{:?}", r.facts);
    assert!(r.transcript.len() <= rotary_harness::TRANSCRIPT_MAX_LINES);

    let r = verdict_of("stderr-flood").await;
    assert_eq!(r.verdict, Verdict::Timeout, "{:?}", r.message);
    assert!(
        r.stderr.len() <= 2 * rotary_harness::STDERR_KEEP,
        "{} bytes of stderr",
        r.stderr.len()
    );
}
