//! The terminal output of a hand-built run: the summary's counts and line, the failures (a snapshot),
//! colours only when asked, and compact, complete trace lines.

mod common;

use common::sample::{crashed, expected, lost_response, run, run_of, storm};
use rotary_harness::report::{render_failures, summary_line, trace_line};

#[test]
fn summary_counts_follow_the_verdicts() {
    let run = run();
    let s = &run.summary;
    assert_eq!(
        (s.total, s.pass, s.fail, s.error, s.skipped, s.non_strict),
        (5, 1, 1, 1, 1, 1)
    );
    assert_eq!(s.expected_failures, 1);
    assert!(!s.ok);
}

#[test]
fn terminal_failures() {
    let run = run();
    insta::assert_snapshot!("terminal_failures", render_failures(&run, false));
    insta::assert_snapshot!("summary_line", summary_line(&run));
}

#[test]
fn terminal_colours_only_when_asked() {
    let run = run();
    assert!(!render_failures(&run, false).contains('\u{1b}'));
    let coloured = render_failures(&run, true);
    assert!(coloured.contains("\u{1b}[1;31m✗ lost-response.commit-then-drop"));
    // The driver's own ANSI codes never pass through.
    assert!(!coloured.contains("\u{1b}[2mdebug"));
}

#[test]
fn summary_line_of_a_clean_run() {
    let mut pass = storm();
    pass.expected_failure = true;
    let run = run_of(vec![pass, storm()]);
    assert_eq!(
        summary_line(&run),
        "2 scenarios: 2 pass, 0 fail, 0 non-strict, 0 info, 0 skipped, 0 error, 0 timeout (1 unexpected pass) in 4.3 s — OK"
    );
    assert!(render_failures(&run, false).contains("unexpected pass"));
}

#[test]
fn trace_lines_are_compact_and_complete() {
    let r = lost_response();
    assert_eq!(
        trace_line(&r.trace[2]),
        "#3 +50ms refresh POST rt#1(current) → 200 [fault lose-first-refresh: commit_then_drop] delivery=dropped issued at#2/rt#2 (3ms)"
    );
    assert_eq!(
        trace_line(&r.trace[3]),
        "#4 +1260ms refresh POST rt#1(consumed) → 401 M_UNKNOWN_TOKEN soft_logout=false (1ms)"
    );
    let e = expected();
    assert_eq!(
        trace_line(&e.trace[2]),
        "#3 +40ms whoami GET [clock +6 min] at#1(revoked) → 401 M_UNKNOWN_TOKEN soft_logout=false (1ms)"
    );
    let c = crashed();
    assert_eq!(
        trace_line(&c.trace[2]),
        "#3 +60ms sync GET at#1(valid) → no response delivery=pending"
    );
}
