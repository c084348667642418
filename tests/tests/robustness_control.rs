//! Robustness of the `/_rotary` control API over raw HTTP: every control route fed garbage bodies,
//! wrong JSON types for every field and every config knob, odd fault lists, huge clock advances and
//! odd queries answers no 5xx and keeps the server answering.

mod common;

use common::robustness::inputs::{JSON, garbage_bodies, wrong_type_probes, wrong_values};
use common::robustness::panics::watch_panics;
use common::robustness::probing::{answers_whoami, assert_clean, probe_server, run_probes};
use common::robustness::targets::{Base, Probe, control, control_targets, inert_fault};
use rotary_server::Profile;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_survives_garbage() {
    watch_panics();
    let (server, rooms) = probe_server(Profile::Mas).await;
    let original = server.config();
    let mut probes = Vec::new();
    for target in control_targets() {
        for (label, ct, body) in garbage_bodies() {
            // A route that takes no body does not read it, and hyper then closes the connection
            // with the unread bytes still queued: the kernel answers with a reset that can cut
            // the response short. Small bodies are read with the head, so only those go there.
            if matches!(target.base, Base::None) && body.len() > 8 * 1024 {
                continue;
            }
            probes.push(Probe::new(&target, label, ct, body));
        }
        probes.extend(wrong_type_probes(&target));
    }
    // Every knob with every wrong value, and the fault rule's forms.
    let patch = control("PATCH", "/_rotary/config", Base::None);
    let knobs = serde_json::to_value(&original).expect("config serialises");
    for knob in knobs.as_object().expect("an object").keys() {
        for w in wrong_values() {
            let body = format!("{{\"{knob}\": {w}}}").into_bytes();
            probes.push(Probe::new(&patch, format!("{knob} = {w:.24}"), JSON, body));
        }
    }
    let faults = control("POST", "/_rotary/faults", Base::None);
    for body in [
        json!([inert_fault(), {"action": 1}]),
        json!({"faults": [inert_fault()]}),
        json!({"faults": 1}),
    ] {
        probes.push(Probe::new(
            &faults,
            "fault list",
            JSON,
            body.to_string().into_bytes(),
        ));
    }
    // Huge clock advances, several times over (the clock must saturate, not overflow).
    let advance = control("POST", "/_rotary/clock/advance", Base::None);
    for by in [
        "18446744073709551615",
        "\"584542046years\"",
        "\"1000000000000000y\"",
        "1e999999",
        "-1",
        "\"-5m\"",
    ] {
        for _ in 0..5 {
            probes.push(Probe::new(
                &advance,
                format!("advance {by}"),
                JSON,
                format!("{{\"by\": {by}}}").into_bytes(),
            ));
        }
    }
    for query in [
        "/_rotary/trace?after=abc",
        "/_rotary/trace?after=-1",
        "/_rotary/trace?after=1180591620717411303424",
        "/_rotary/trace?after=%FF",
        "/_rotary/sessions?user=%FF%FE",
        "/_rotary/sessions?user=",
        "/_rotary/faults/%FF",
        "/_rotary/sessions/%FF/%FE/rotate",
        "/_rotary/rooms/%FF/join",
    ] {
        let target = control("GET", "/_rotary", Base::None);
        let mut p = Probe::new(&target, query, None, vec![]);
        p.path = query.to_owned();
        p.method = if query.contains("rotate") || query.contains("join") {
            "POST"
        } else {
            "GET"
        }
        .to_owned();
        probes.push(p);
    }
    let problems = run_probes(&server, &rooms, probes).await;
    server.clear_faults();
    server.set_config(original).expect("restore the config");
    assert_clean("control API", &problems);
    // The clock saturated rather than wrapped: it still reads as a time, and tokens still work.
    assert!(server.now_ms() > 0);
    answers_whoami(&server)
        .await
        .expect("alive after huge clock advances");
}
