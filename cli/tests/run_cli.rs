//! `rotary run`, `list` and `explain` as a user runs them: exit codes, `--expect`, reports on
//! disk, selection, and clear errors for a broken catalogue.

use std::path::Path;
use std::process::{Command, Output};

fn rotary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args(args)
        .env_remove("ROTARY_SCENARIOS")
        .output()
        .expect("rotary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rotary-run-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn a_passing_selection_exits_0_and_writes_every_report() {
    let dir = tmp("reports");
    let json = dir.join("r.json");
    let junit = dir.join("j.xml");
    let html = dir.join("html");
    let o = rotary(&[
        "run",
        "expiry.reactive-401",
        "concurrency.401-*",
        "--no-progress",
        "--json",
        json.to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The glob picks both cases of concurrency.401-storm (`ID` and `ID@oauth`).
    assert!(text(&o).contains("3 scenarios: 3 pass"), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("valid json");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["driver"]["name"], "rotary-reference");
    assert_eq!(report["scenarios"].as_array().map(Vec::len), Some(3));
    let first = &report["scenarios"][0];
    for key in [
        "id",
        "verdict",
        "checks",
        "trace",
        "notifications",
        "steps",
        "transcript",
    ] {
        assert!(!first[key].is_null(), "{key} missing");
    }
    // No raw token anywhere in the reports: only labels.
    for file in [
        &json,
        &junit,
        &html.join("index.html"),
        &html.join("expiry.reactive-401.html"),
    ] {
        let body = std::fs::read_to_string(file).expect("report written");
        assert!(
            !body.contains("syt_") && !body.contains("syr_"),
            "raw token in {}",
            file.display()
        );
    }
    assert!(
        std::fs::read_to_string(&junit)
            .expect("junit")
            .contains("<testcase")
    );
}

#[test]
fn a_failing_must_scenario_exits_1_unless_expected() {
    let o = rotary(&["run", "expiry.reactive-401", "--bug", "no-retry", "--no-progress"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("expiry.reactive-401"), "{out}");
    assert!(
        out.contains("expected:") && out.contains("actual:"),
        "failures show expected vs actual: {out}"
    );

    let dir = tmp("expect");
    let expect = dir.join("known.txt");
    std::fs::write(
        &expect,
        "# known\nexpiry.reactive-401   # no retry after refresh\nrotation.chain\n",
    )
    .expect("write");
    let o = rotary(&[
        "run",
        "expiry.reactive-401",
        "rotation.chain",
        "--bug",
        "no-retry",
        "--no-progress",
        "--expect",
        expect.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("2 expected failures"), "{out}");

    // Listed but passing: flagged so the list shrinks.
    let o = rotary(&[
        "run",
        "expiry.reactive-401",
        "--no-progress",
        "--expect",
        expect.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("1 unexpected pass"), "{}", text(&o));
}

#[test]
fn usage_and_catalogue_errors_exit_2_with_a_clear_message() {
    let o = rotary(&["run", "no-such.*"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("no scenario matches \"no-such.*\""),
        "{}",
        text(&o)
    );

    let o = rotary(&["run", "--partition", "3/2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("need 1 <= M <= N"), "{}", text(&o));

    let o = rotary(&["run", "--bug", "no-such-bug"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let dir = tmp("broken");
    std::fs::write(
        dir.join("x.broken.toml"),
        "id = \"x.broken\"\ntitle = \"t\"\nlevel = \"must\"\nrequirement = \"r\"\nneeds = [\"login\"]\n\
         [[step]]\ndo = \"login\"\n[[step]]\ndo = \"sleep\"\nduration = \"a while\"\n",
    )
    .expect("write");
    let o = rotary(&["run", "--scenarios", dir.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    let out = text(&o);
    assert!(
        out.contains("x.broken.toml: step 2 (sleep): line 8: invalid duration \"a while\""),
        "{out}"
    );

    let o = rotary(&["explain", "expiry.reactiv"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("did you mean: expiry."), "{}", text(&o));
}

#[test]
fn list_and_explain_show_the_catalogue() {
    let o = rotary(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let scenarios = v["scenarios"].as_array().expect("scenarios");
    assert!(scenarios.len() >= 35);
    for s in scenarios {
        for key in ["id", "title", "level", "tags", "needs", "auth", "mechanisms"] {
            assert!(!s[key].is_null(), "{key} missing in {s}");
        }
    }
    // A scenario that holds for both mechanisms is two cases; the OAuth one is `ID@oauth`.
    let oauth = scenarios
        .iter()
        .find(|s| s["id"] == "concurrency.401-storm@oauth")
        .expect("the OAuth case of concurrency.401-storm");
    assert_eq!(oauth["auth"], "oauth");
    assert_eq!(oauth["aliases"][0], "oauth.401-storm");
    // An old id still resolves, with a warning naming the new one.
    let o = rotary(&["explain", "oauth.401-storm"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("now names concurrency.401-storm@oauth"),
        "{}",
        text(&o)
    );
    let o = rotary(&["list", "--tag", "faults"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("faults.refresh-500"));
    let o = rotary(&["explain", "concurrency.401-storm"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    for part in ["Requirement:", "Steps:", "Checks:", "refresh_count"] {
        assert!(out.contains(part), "{part} missing: {out}");
    }
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .is_dir()
    );
}

#[test]
fn repeat_runs_each_scenario_n_times_and_is_bounded() {
    let dir = tmp("repeat");
    let json = dir.join("r.json");
    let o = rotary(&[
        "run",
        "expiry.reactive-401",
        "--repeat",
        "3",
        "--all",
        "--no-progress",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("pass        must         3/3 expiry.reactive-401"),
        "{out}"
    );
    assert!(out.contains("1 scenario × 3 runs: 1 pass,"), "{out}");
    assert!(out.contains(", 0 flaky in "), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("valid json");
    let s = &report["scenarios"][0];
    assert_eq!(
        (&s["runs"], &s["passes"], &s["pass_rate"]),
        (&3.into(), &3.into(), &1.0.into())
    );
    assert_eq!(report["summary"]["repeat"], 3);
    for bad in ["0", "1001", "many"] {
        let o = rotary(&["run", "expiry.reactive-401", "--repeat", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains("--repeat"), "{}", text(&o));
    }
    let o = rotary(&["run", "expiry.reactive-401", "--repeat", "0"]);
    assert!(text(&o).contains("between 1 and 1000, not 0"), "{}", text(&o));
}
