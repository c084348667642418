//! The cargo-fuzz targets' properties (`fuzz/`) on random inputs, in the normal test suite: the
//! parsers behind the server (paths, durations, configs, fault rules, globs, OAuth inputs) and raw
//! requests against live servers hold up under proptest. Past failures are replayed from
//! `robustness_fuzz.proptest-regressions`.

mod common;
#[path = "../../fuzz/src/checks.rs"]
mod fuzz_checks;
#[path = "../../fuzz/src/request.rs"]
mod fuzz_request;

use common::robustness::panics::{assert_no_server_panics, watch_panics_on};
use proptest::prelude::*;
use rotary_server::{ServerConfig, endpoint_names};
use serde_json::json;

fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("r0".to_owned()),
        Just("v3".to_owned()),
        Just("v1".to_owned()),
        Just("unstable".to_owned()),
        Just("api".to_owned()),
        Just("rooms".to_owned()),
        Just("send".to_owned()),
        Just("login".to_owned()),
        Just("logout".to_owned()),
        Just("all".to_owned()),
        Just("refresh".to_owned()),
        Just("org.matrix.msc2918".to_owned()),
        Just("devices".to_owned()),
        Just("user".to_owned()),
        Just("filter".to_owned()),
        Just("profile".to_owned()),
        Just("pushrules".to_owned()),
        Just("account".to_owned()),
        Just("whoami".to_owned()),
        Just("%21room%3Ax".to_owned()),
        Just(String::new()),
        Just("..".to_owned()),
        Just("%FF".to_owned()),
        "[a-zA-Z0-9_%.~-]{0,12}",
        ".{0,6}",
    ];
    let root = prop_oneof![
        Just("/_matrix/client".to_owned()),
        Just("/_matrix/client/v3".to_owned()),
        Just("/oauth2".to_owned()),
        Just(String::new()),
        Just("/.well-known/matrix".to_owned()),
    ];
    (root, prop::collection::vec(segment, 0..20))
        .prop_map(|(root, segs)| format!("{root}/{}", segs.join("/")))
}

fn duration_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,22}",
        "[0-9]{1,12} ?(ns|us|ms|s|m|h|d|w|M|y|min|sec|hours|years|months|nsec|usec)",
        "([0-9]{1,6}(ms|s|m|h|d|y|ns|us) ?){1,4}",
        "(none|never|off|null|infinite|NONE| off )",
        ".{0,16}",
    ]
}

fn knob_value() -> impl Strategy<Value = String> {
    prop_oneof![
        duration_strategy().prop_map(|d| format!("{d:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("true".to_owned()),
        Just("\"synapse\"".to_owned()),
        Just("\"mas\"".to_owned()),
        Just("\"single-use\"".to_owned()),
        Just("\"grace-then-unknown\"".to_owned()),
        Just("{ per_second = 0.5, burst = 2 }".to_owned()),
        Just("[]".to_owned()),
        "\"[a-z0-9 .-]{0,12}\"",
    ]
}

fn knob_name() -> impl Strategy<Value = String> {
    let names: Vec<String> = serde_json::to_value(ServerConfig::default())
        .ok()
        .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
        .unwrap_or_default();
    prop_oneof![prop::sample::select(names), "[a-z_]{1,12}"]
}

proptest! {
    #[test]
    fn classify_holds_up(path in path_strategy(), method in "(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS|[A-Z]{1,8})", knobs in any::<u8>()) {
        fuzz_checks::check_classify(&path, &method, &fuzz_checks::config_for(knobs));
    }

    #[test]
    fn classify_holds_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_checks::classify_input(&data);
    }

    #[test]
    fn durations_hold_up(s in duration_strategy()) {
        fuzz_checks::check_duration(&s);
    }

    #[test]
    fn configs_hold_up(knobs in prop::collection::vec((knob_name(), knob_value()), 0..6)) {
        let toml: String = knobs.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        fuzz_checks::config_input(toml.as_bytes());
        let json: String = knobs
            .iter()
            .map(|(k, v)| format!("{k:?}: {}", v.replace(" = ", ": ").replace("per_second", "\"per_second\"").replace("burst", "\"burst\"")))
            .collect::<Vec<_>>()
            .join(", ");
        fuzz_checks::config_input(format!("{{{json}}}").as_bytes());
    }

    #[test]
    fn configs_hold_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_checks::config_input(&data);
        fuzz_checks::duration_input(&data);
    }

    #[test]
    fn fault_rules_hold_up(
        endpoint in prop_oneof![prop::sample::select(endpoint_names()).prop_map(str::to_owned), "[a-z]{0,6}"],
        path in prop_oneof![path_strategy(), "[*/a-z]{0,10}"],
        nth in any::<u64>(),
        probability in any::<f64>(),
        kind in prop::sample::select(vec!["error", "oauth_error", "delay", "hang", "reset", "empty_reply", "garbage", "truncate", "html", "commit_then_drop", "nope"]),
        status in any::<u16>(),
        duration in duration_strategy(),
    ) {
        let toml = format!(
            "endpoint = {endpoint:?}, path = {path:?}, nth = {}, probability = {probability:?}, action = {{ kind = {kind:?}, status = {status}, duration = {duration:?} }}",
            nth % (1 << 40)
        );
        fuzz_checks::fault_input(toml.as_bytes());
        let json = json!({"endpoint": endpoint, "path": path, "first": nth, "seed": nth, "action": {"kind": kind, "duration": duration}});
        fuzz_checks::fault_input(json.to_string().as_bytes());
    }

    #[test]
    fn globs_hold_up(pattern in "[ab*/]{0,12}", text in "[ab/]{0,12}") {
        fuzz_checks::check_glob(&pattern, &text);
    }

    #[test]
    fn fault_rules_hold_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_checks::fault_input(&data);
        fuzz_checks::glob_input(&data);
    }

    #[test]
    fn oauth_inputs_hold_up(
        scope in "((urn:matrix:client:api:\\*|urn:matrix:org\\.matrix\\.msc2967\\.client:api:\\*|urn:matrix:client:device:[A-Za-z0-9._~-]{0,8}|urn:matrix:org\\.matrix\\.msc2967\\.client:device:[A-Z]{0,4}|openid|[!-~]{0,6}) ?){0,4}",
        uri in "(https?|com\\.example\\.app|javascript)://?(127\\.0\\.0\\.1|localhost|\\[::1\\]|example\\.org|user@host)?(:[0-9]{1,5})?(/[a-z#?]{0,6})?",
        verifier in "[A-Za-z0-9._~-]{40,130}",
    ) {
        fuzz_checks::oauth_input(scope.as_bytes());
        fuzz_checks::oauth_input(uri.as_bytes());
        fuzz_checks::oauth_input(verifier.as_bytes());
        let metadata = json!({"redirect_uris": [uri], "application_type": "native", "grant_types": [scope]});
        fuzz_checks::oauth_input(metadata.to_string().as_bytes());
    }

    #[test]
    fn oauth_inputs_hold_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..120)) {
        fuzz_checks::oauth_input(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The `request_parsing` fuzz target's exchange: raw and framed requests against live servers.
    #[test]
    fn raw_requests_hold_up(
        mode in any::<u8>(),
        method in prop_oneof![Just("POST".to_owned()), Just("GET".to_owned()), Just("PUT".to_owned()), "[A-Z]{0,5}"],
        path in prop_oneof![
            Just("login".to_owned()), Just("refresh".to_owned()), Just("account/whoami".to_owned()),
            Just("rooms/{room}/send/m.room.message/t1".to_owned()), Just("token".to_owned()),
            Just("clock/advance".to_owned()), Just("faults".to_owned()), Just("config".to_owned()),
            "[a-z/{}%?=&]{0,20}",
        ],
        body in prop_oneof![
            Just(r#"{"refresh_token":"{rt}"}"#.to_owned()),
            Just("grant_type=refresh_token&refresh_token={ort}&client_id={client}".to_owned()),
            Just(r#"{"type":"m.login.password","user":"alice","password":"wonderland","refresh_token":true}"#.to_owned()),
            Just(r#"{"by": "5m"}"#.to_owned()),
            ".{0,40}",
        ],
        raw in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        watch_panics_on(&[fuzz_request::SERVER_THREAD]);
        let mut framed = vec![mode | 0x02];
        framed.extend_from_slice(method.as_bytes());
        framed.push(0xFF);
        framed.extend_from_slice(path.as_bytes());
        framed.push(0xFF);
        framed.push(0xFF);
        framed.extend_from_slice(body.as_bytes());
        fuzz_request::exchange(&framed);
        let mut unframed = vec![mode & !0x02];
        unframed.extend_from_slice(&raw);
        fuzz_request::exchange(&unframed);
        assert_no_server_panics();
    }
}
