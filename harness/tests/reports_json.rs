//! The JSON report of a hand-built run: a snapshot, and the file round-trips into the same report.

mod common;

use common::sample::run;
use rotary_harness::RunReport;
use rotary_harness::report::{to_json, write_json};

#[test]
fn json_report() {
    let run = run();
    insta::assert_json_snapshot!("json_report", to_json(&run), {
        ".started_at" => "[started_at]",
        ".summary.duration_ms" => "[duration]",
        ".scenarios[].duration_ms" => "[duration]",
    });
    // The file round-trips into the same report.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/report.json");
    write_json(&run, &path).unwrap();
    let back: RunReport = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back, run);
}
