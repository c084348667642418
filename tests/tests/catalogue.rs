//! The whole catalogue against the reference client: every must/should scenario passes, and the
//! kill matrix — the catalogue against each bug switch — shows every switch caught and every
//! judged scenario catching something.

use rotary_harness::{Catalogue, Level, RunConfig, RunReport, Verdict, default_dir, report, run_scenarios};
use std::collections::BTreeMap;

const DRIVER: &str = env!("CARGO_BIN_EXE_rotary-test-driver");

async fn run(bug: Option<&str>) -> RunReport {
    let c = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
    let driver = match bug {
        Some(b) => format!("{DRIVER} --bug {b}"),
        None => DRIVER.to_owned(),
    };
    // Scenarios mostly wait (on sleeps, backoff, timeouts), so more jobs than cores is fine.
    run_scenarios(&c.scenarios, &RunConfig::new(driver).jobs(6), |_| {}).await
}

fn caught(v: Verdict) -> bool {
    matches!(
        v,
        Verdict::Fail | Verdict::NonStrict | Verdict::Error | Verdict::Timeout
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_passes_every_judged_scenario() {
    let run = run(None).await;
    assert!(
        run.scenarios.len() >= 35,
        "the catalogue has {} scenarios",
        run.scenarios.len()
    );
    let bad: Vec<String> = run
        .scenarios
        .iter()
        .filter(|s| s.level != Level::Info && s.verdict != Verdict::Pass)
        .map(|s| format!("{} ({})", s.id, s.verdict))
        .collect();
    assert!(
        bad.is_empty(),
        "{}\n{}",
        bad.join(", "),
        report::render_failures(&run, false)
    );
    assert!(run.summary.ok);
    // The live invariants (what `rotary proxy` and `rotary soak` judge traffic by) find nothing
    // the correct client does wrong in any scenario.
    let must: Vec<String> = run
        .scenarios
        .iter()
        .flat_map(|s| s.violations.iter().map(move |v| (s, v)))
        .filter(|(_, v)| v.level == Level::Must)
        .map(|(s, v)| format!("{}: {} {}", s.id, v.invariant, v.message))
        .collect();
    assert!(
        must.is_empty(),
        "live invariants broken by the correct client:\n{}",
        must.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_matrix() {
    let bugs: Vec<&str> = rotary_reference::BUGS.iter().map(|b| b.name).collect();
    let mut matrix: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let mut levels: BTreeMap<String, Level> = BTreeMap::new();
    let mut watched: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (i, bug) in bugs.iter().enumerate() {
        let run = run(Some(bug)).await;
        let seen = watched.entry(bug).or_default();
        seen.extend(
            run.scenarios
                .iter()
                .flat_map(|s| s.violations.iter().map(|v| v.invariant.clone())),
        );
        for s in &run.scenarios {
            levels.insert(s.id.clone(), s.level);
            let row = matrix
                .entry(s.id.clone())
                .or_insert_with(|| vec![false; bugs.len()]);
            row[i] = s.level != Level::Info && caught(s.verdict);
        }
    }
    // The table: one row per scenario, one column per switch (numbered; the key follows).
    let mut table = String::new();
    table.push_str(&format!("{:<44}", "scenario \\ switch"));
    for i in 0..bugs.len() {
        table.push_str(&format!("{:>3}", i + 1));
    }
    table.push('\n');
    for (id, row) in &matrix {
        table.push_str(&format!("{id:<44}"));
        for &c in row {
            table.push_str(if c { "  X" } else { "  ." });
        }
        table.push('\n');
    }
    table.push('\n');
    for (i, b) in bugs.iter().enumerate() {
        table.push_str(&format!("{:>2} {b}\n", i + 1));
    }
    let uncaught: Vec<&str> = bugs
        .iter()
        .enumerate()
        .filter(|(i, _)| !matrix.values().any(|row| row[*i]))
        .map(|(_, b)| *b)
        .collect();
    let idle: Vec<&String> = matrix
        .iter()
        .filter(|(id, row)| levels.get(*id) != Some(&Level::Info) && !row.iter().any(|c| *c))
        .map(|(id, _)| id)
        .collect();
    println!("{table}");
    assert!(
        uncaught.is_empty(),
        "switches no scenario catches: {uncaught:?}\n{table}"
    );
    assert!(
        idle.is_empty(),
        "scenarios that catch no switch: {idle:?}\n{table}"
    );
    insta::assert_snapshot!("kill_matrix", table);
    // The live invariants see the switches whose mistake shows on the wire, scenario or not.
    for (bug, invariant) in [
        ("refresh-per-401", "live.stale-refresh-token"),
        ("stale-refresh-token", "live.stale-refresh-token"),
        ("retry-forever", "live.refresh-loop"),
        ("preempt-storm", "live.refresh-loop"),
        ("missing-expiry-is-zero", "live.refresh-loop"),
        ("new-txn-on-retry", "live.txn-id-kept"),
        ("no-preempt", "live.expired-token-used"),
    ] {
        let seen = watched.get(bug).cloned().unwrap_or_default();
        assert!(
            seen.contains(invariant),
            "{bug}: the watch saw {seen:?}, not {invariant}"
        );
    }
    println!("live invariants per switch: {watched:#?}");
}

/// Every SDK expectations file (`drivers/*/expected-failures*.txt`) parses and names only
/// scenarios that exist, so a renamed or deleted scenario cannot leave a stale line behind; and none
/// uses an old (aliased) id.
#[test]
fn sdk_expectations_name_catalogue_scenarios() {
    let c = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
    // Ids and aliases (old ids of folded scenarios still resolve, with a warning).
    let ids: Vec<&str> = c.names();
    let drivers = default_dir().join("../drivers");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&drivers).unwrap_or_else(|e| panic!("{}: {e}", drivers.display())) {
        let dir = dir.unwrap_or_else(|e| panic!("{e}")).path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let f = f.unwrap_or_else(|e| panic!("{e}")).path();
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("expected-failures") && name.ends_with(".txt") {
                files.push(f);
            }
        }
    }
    assert!(
        files.len() >= 3,
        "expected the rust-sdk and both js-sdk files, found {files:?}"
    );
    for f in files {
        let e = rotary_harness::Expectations::load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!e.is_empty(), "{}: lists nothing", f.display());
        let stale = e.unmatched(ids.iter().copied());
        assert!(stale.is_empty(), "{}: no such scenario: {stale:?}", f.display());
        let old = c.alias_warnings(e.patterns());
        assert!(old.is_empty(), "{}: {old:?}", f.display());
    }
}
