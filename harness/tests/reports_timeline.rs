//! The SVG timeline of a scenario, by its structure: one lane per token generation, marks for faults,
//! losses and logouts, minted tokens, pending requests and clock jumps, and hundreds of requests.

mod common;

use common::markup::{svg_texts, well_formed};
use common::sample::{big, crashed, expected, lost_response, skipped, storm};
use rotary_harness::report::{timeline_svg, trace_line};

#[test]
fn timeline_has_one_lane_per_generation() {
    let svg = timeline_svg(&storm());
    well_formed(&svg, &[]).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let texts = svg_texts(&svg);
    for lane in ["no token / unknown", "at#1 / rt#1", "at#2 / rt#2"] {
        assert_eq!(
            texts.iter().filter(|t| *t == lane).count(),
            1,
            "lane {lane} in {texts:?}"
        );
    }
    assert!(!texts.iter().any(|t| t.starts_with("at#3")));
    // One tooltip per request, with its trace line.
    for e in &storm().trace {
        let line = trace_line(e)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            svg.contains(&format!("<title>{line}</title>")),
            "no tooltip for #{}",
            e.seq
        );
    }
    // at#1 expires inside the timeline (a dashed line), at#2 after its end (a note).
    assert!(texts.iter().any(|t| t == "expires"));
    assert!(texts.iter().any(|t| t.starts_with("exp. at")));
    // Deterministic.
    assert_eq!(svg, timeline_svg(&storm()));
    assert!(!svg.contains("<script"));
}

#[test]
fn timeline_marks_faults_losses_and_logouts() {
    let svg = timeline_svg(&lost_response());
    well_formed(&svg, &[]).unwrap();
    let texts = svg_texts(&svg);
    // The lost response still created a generation, reached by a dashed purple connector.
    assert!(texts.iter().any(|t| t == "at#2 / rt#2"));
    assert!(svg.contains("issued, but the response never reached the client by #3"));
    // The fault's action is written next to its mark; the evidence is numbered.
    assert!(texts.iter().any(|t| t.contains("commit_then_drop")));
    assert!(texts.iter().any(|t| t == "logged_out (hard)"));
    assert!(texts.iter().any(|t| t.starts_with("#4")));
}

#[test]
fn timeline_handles_minted_tokens_pending_requests_and_clock_jumps() {
    let svg = timeline_svg(&crashed());
    well_formed(&svg, &[]).unwrap();
    let texts = svg_texts(&svg);
    // Minted outside the trace, paired through session_changed: one lane for both tokens.
    assert!(texts.iter().any(|t| t == "at#1 / rt#1"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "minted outside the trace"));
    assert!(!texts.iter().any(|t| t == "no token / unknown"));

    let svg = timeline_svg(&expected());
    well_formed(&svg, &[]).unwrap();
    // at#1 expired when the clock jumped (during the advance_clock step, at 27 ms).
    assert!(svg.contains("at#1 expires at 27 ms"), "{svg}");

    let empty = timeline_svg(&skipped());
    well_formed(&empty, &[]).unwrap();
    assert!(empty.contains("no request reached the server"));
}

#[test]
fn timeline_scales_to_hundreds_of_requests() {
    let r = big();
    let svg = timeline_svg(&r);
    well_formed(&svg, &[]).unwrap();
    let height: f64 = svg
        .split("height=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(height < 1_200.0, "height {height}");
    assert_eq!(svg.matches("<g class=\"rt-m\">").count(), 500);
    assert!(svg.len() < 600_000, "{} bytes", svg.len());
}
