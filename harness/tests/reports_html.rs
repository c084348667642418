//! The HTML report directory of a hand-built run, by its structure: an index linking a well-formed
//! page per scenario, and page names that stay inside the directory.
//!
//! Set `ROTARY_HTML_SAMPLE=/some/dir` to keep a copy of the HTML report (plus a 500-request
//! scenario) for `scripts/check-html.sh`.

mod common;

use common::markup::{HTML_VOID, well_formed};
use common::sample::{big, run, run_of};
use rotary_harness::report::{page_file_name, write_html};

#[test]
fn html_report() {
    let run = run();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("html");
    write_html(&run, &out).unwrap();
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    well_formed(&index, HTML_VOID).unwrap();
    assert!(index.starts_with("<!DOCTYPE html>"));
    assert!(index.contains("rotary-reference-driver"));
    for r in &run.scenarios {
        let name = page_file_name(&r.id);
        assert_eq!(name, format!("{}.html", r.id));
        assert!(
            index.contains(&format!("<a href=\"{name}\">{}</a>", r.id)),
            "index links {name}"
        );
        let page = std::fs::read_to_string(out.join(&name)).unwrap();
        well_formed(&page, HTML_VOID).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.contains("<svg"), "{name} has its timeline");
        assert!(page.contains("href=\"index.html\""));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src=\"http"), "no external resource");
    }
    let lost = std::fs::read_to_string(out.join("lost-response.commit-then-drop.html")).unwrap();
    assert!(lost.contains("<tr id=\"t4\" class=\"evidence\""));
    assert!(lost.contains("<a href=\"#t4\">#4</a>"));
    let storm_page = std::fs::read_to_string(out.join("concurrency.single-refresh.html")).unwrap();
    assert!(storm_page.contains(
        "<a href=\"https://github.com/matrix-org/matrix-rust-sdk/issues/1234\">https://github.com/matrix-org/matrix-rust-sdk/issues/1234</a> (duplicate refreshes)"
    ));
    let crashed_page = std::fs::read_to_string(out.join("restore.kill-and-resume.html")).unwrap();
    assert!(crashed_page.contains("line 12 &lt;tag&gt; &amp; &quot;quotes&quot;"));
    assert!(!crashed_page.contains('\u{1b}'));

    if let Some(sample) = std::env::var_os("ROTARY_HTML_SAMPLE") {
        let mut scenarios = run.scenarios.clone();
        scenarios.push(big());
        write_html(&run_of(scenarios), std::path::Path::new(&sample)).unwrap();
    }
}

#[test]
fn page_names_stay_inside_the_directory() {
    assert_eq!(page_file_name("expiry.reactive-401"), "expiry.reactive-401.html");
    assert_eq!(page_file_name("../etc/passwd"), "s_.._etc_passwd.html");
    assert_eq!(page_file_name("index"), "s_index.html");
    assert_eq!(page_file_name("a b/c"), "a_b_c.html");
}
