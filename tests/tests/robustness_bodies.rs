//! Robustness of request bodies over raw HTTP: every client-server endpoint (legacy, OAuth 2.0 and a
//! few unknown paths) has a probe, and none answers a 5xx, an error body that is not Matrix (or RFC
//! 6749 / RFC 7591 on the OAuth endpoints), or loses a trace entry when fed garbage bodies (arbitrary
//! bytes, invalid UTF-8, wrong content types, deep nesting, huge numbers, duplicate keys), wrong JSON
//! types for every field, or bodies over the limit (413, chunked or promised too).

mod common;

use common::robustness::inputs::{JSON, garbage_bodies, wrong_type_probes};
use common::robustness::panics::{assert_no_server_panics, watch_panics};
use common::robustness::probing::{answers_whoami, assert_clean, probe_server, run_probes};
use common::robustness::targets::{Base, Expect, Probe, client_targets, control_targets};
use common::robustness::wire::exchange;
use rotary_server::{Profile, ServerConfig, classify, endpoint_names};

#[test]
fn every_endpoint_has_a_probe_that_classifies_as_it() {
    let targets = client_targets();
    for name in endpoint_names() {
        assert!(
            targets
                .iter()
                .any(|t| matches!(t.expect, Expect::Traced(n, _) if n == name)),
            "no robustness probe for the endpoint {name:?}: add one to client_targets()"
        );
    }
    for profile in [Profile::Synapse, Profile::Mas] {
        let cfg = ServerConfig::for_profile(profile);
        for target in &targets {
            let Expect::Traced(name, _) = target.expect else {
                continue;
            };
            let path = target
                .path
                .split('?')
                .next()
                .unwrap_or_default()
                .replace("{room}", "!r:localhost")
                .replace("{droom}", "!d:localhost");
            assert_eq!(
                classify(&path, target.method, &cfg).name(),
                name,
                "{} {path}",
                target.method
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_on_every_endpoint() {
    watch_panics();
    for profile in [Profile::Synapse, Profile::Mas] {
        let (server, rooms) = probe_server(profile).await;
        let mut probes = Vec::new();
        for target in client_targets() {
            for (label, ct, body) in garbage_bodies() {
                let mut p = Probe::new(&target, label.clone(), ct, body);
                if label == "content type with invalid bytes" {
                    p = p.header("Content-Type", b"application/json\xff\xfe".to_vec());
                }
                probes.push(p);
            }
        }
        let problems = run_probes(&server, &rooms, probes).await;
        assert_clean(&format!("garbage bodies ({})", profile.name()), &problems);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_types_for_every_field() {
    watch_panics();
    for profile in [Profile::Synapse, Profile::Mas] {
        let (server, rooms) = probe_server(profile).await;
        let probes: Vec<Probe> = client_targets().iter().flat_map(wrong_type_probes).collect();
        assert!(probes.len() > 300, "only {} probes", probes.len());
        let problems = run_probes(&server, &rooms, probes).await;
        assert_clean(&format!("wrong types ({})", profile.name()), &problems);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    watch_panics();
    let (server, rooms) = probe_server(Profile::Mas).await;
    let limit = server.config().max_body_bytes;
    let mut probes = Vec::new();
    for target in client_targets() {
        probes.push(Probe::new(&target, "limit + 1", JSON, vec![b'x'; limit + 1]));
        // Exactly at the limit: read, parsed, refused for what it says, never 413.
        let exact = format!("{{\"a\": \"{}\"}}", "y".repeat(limit - 9));
        assert_eq!(exact.len(), limit);
        probes.push(Probe::new(&target, "exactly the limit", JSON, exact.into_bytes()));
    }
    // Routes that read a body (axum's limit, 2 MiB): one byte over it, so that nothing is left
    // unread (see the_control_api_survives_garbage in robustness_control.rs).
    for target in control_targets()
        .into_iter()
        .filter(|t| matches!(t.base, Base::Json(_)))
    {
        probes.push(Probe::new(&target, "2 MiB + 1", JSON, vec![b'z'; (2 << 20) + 1]));
    }
    let answers_before = server.trace_len();
    let problems = run_probes(&server, &rooms, probes).await;
    assert_clean("bodies over the limit", &problems);
    let trace = server.trace_after(answers_before);
    let too_large = trace.iter().filter(|e| e.status == Some(413)).count();
    assert_eq!(
        too_large,
        client_targets().len(),
        "every over-limit request is traced as 413"
    );
    assert!(
        trace
            .iter()
            .filter(|e| e.status == Some(413))
            .all(|e| e.errcode.as_deref() == Some("M_TOO_LARGE"))
    );
    // Chunked bodies count too, and so does a Content-Length that promises more than the limit.
    let chunk = vec![b'c'; 64 * 1024];
    let mut chunked = b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..(limit / chunk.len() + 2) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let a = exchange(server.addr(), chunked).await;
    assert_eq!(a.status, Some(413), "{}", a.short_body());
    assert_eq!(a.json().expect("JSON")["errcode"], "M_TOO_LARGE");
    let mut promise = b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    promise.extend(vec![b'p'; limit + 10]);
    let a = exchange(server.addr(), promise).await;
    assert_eq!(a.status, Some(413), "{}", a.short_body());
    answers_whoami(&server).await.expect("alive");
    assert_no_server_panics();
}
