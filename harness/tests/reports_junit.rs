//! The JUnit report of a hand-built run: a snapshot, well-formed XML, `should` failures typed as
//! non-strict, and the file as rendered.

mod common;

use common::markup::well_formed;
use common::sample::{expected, run, run_of};
use rotary_harness::report::{to_junit, write_junit};

#[test]
fn junit_report() {
    let run = run();
    let xml = to_junit(&run).unwrap();
    insta::assert_snapshot!("junit_report", xml);
    well_formed(&xml, &[]).unwrap();
    assert!(xml.contains(r#"<testsuite name="rotary: rotary-reference-driver""#));
    assert!(xml.contains(r#"classname="concurrency""#));
    // A `should` failure that is not expected is a failure of its own type.
    let mut ns = expected();
    ns.expected_failure = false;
    let other = to_junit(&run_of(vec![ns])).unwrap();
    assert!(other.contains(r#"<failure message="no request presented an access token older than the newest one delivered" type="non-strict">"#), "{other}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/junit.xml");
    write_junit(&run, &path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), xml);
}
