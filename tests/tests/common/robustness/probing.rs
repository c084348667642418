//! Running probes and judging answers: a server to probe, live tokens filled into each request,
//! the rules an answer must follow, and the trace checked against what was answered.

use super::panics::assert_no_server_panics;
use super::targets::{Auth, Expect, Probe, Shape};
use super::wire::{Answer, exchange, http_request};
use futures_util::stream::{self, StreamExt};
use rotary_server::{Delivery, MintRequest, MockHomeserver, Profile};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "unsupported_token_type",
    "access_denied",
    "unsupported_response_type",
];
pub const REGISTRATION_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_redirect_uri",
    "invalid_client_metadata",
];

pub fn is_matrix_error(body: &Map<String, Value>) -> bool {
    let errcode_ok = body
        .get("errcode")
        .and_then(Value::as_str)
        .is_some_and(|c| c.starts_with("M_"));
    errcode_ok && body.get("error").is_some_and(Value::is_string)
}

pub fn is_rfc_error(body: &Map<String, Value>, codes: &[&str]) -> bool {
    body.get("error")
        .and_then(Value::as_str)
        .is_some_and(|e| codes.contains(&e))
        && body.get("error_description").is_none_or(Value::is_string)
}

/// Why an answer is wrong for its probe, if it is.
pub fn judge(probe: &Probe, a: &Answer) -> Result<(), String> {
    let Some(status) = a.status else {
        return Err("the connection closed without an answer".into());
    };
    if status >= 500 {
        return Err(format!("status {status}"));
    }
    let cors = a.header("access-control-allow-origin").is_some();
    match probe.expect {
        Expect::Traced(..) | Expect::Preflight if !cors => {
            return Err("no CORS headers: the answer did not come from the client-server API".into());
        }
        Expect::Control if cors => return Err("a control answer with CORS headers".into()),
        _ => {}
    }
    if probe.expect == Expect::Preflight || probe.method == "HEAD" {
        return if status < 400 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        };
    }
    let body = a.json();
    if status >= 400 {
        let Some(Value::Object(m)) = &body else {
            return Err(format!("a {status} whose body is not a JSON object"));
        };
        if !a
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return Err(format!("a {status} without a JSON content type"));
        }
        let uia = status == 401 && m.get("flows").is_some_and(Value::is_array);
        let ok = match probe.expect {
            Expect::Traced(_, Shape::OAuth) => is_matrix_error(m) || is_rfc_error(m, OAUTH_ERRORS),
            Expect::Traced(_, Shape::Registration) => {
                is_matrix_error(m) || is_rfc_error(m, REGISTRATION_ERRORS)
            }
            _ => is_matrix_error(m) || uia,
        };
        if !ok {
            return Err(format!("a {status} with an error body of the wrong shape"));
        }
    } else if (300..400).contains(&status) {
        if probe.expect != Expect::Traced("oauth_authorize", Shape::OAuth) || a.header("location").is_none() {
            return Err(format!("an unexpected redirect {status}"));
        }
    } else if status != 204 && body.is_none() {
        return Err(format!("a {status} whose body is not JSON"));
    }
    Ok(())
}

/// Live values for one request: fresh sessions (legacy and, with OAuth on, OAuth) and a room.
pub struct Live {
    pub at: String,
    pub rt: String,
    pub dev: String,
    pub oat: String,
    pub ort: String,
    pub client: String,
}

pub fn mint(server: &MockHomeserver, user: &str) -> Live {
    let s = server
        .mint_session_with(&MintRequest::for_user(user))
        .expect("mint a session");
    let (oat, ort, client) = match server.mint_oauth_session(user) {
        Ok(o) => (
            o.issued.access_token,
            o.issued.refresh_token.unwrap_or_default(),
            o.client_id,
        ),
        Err(_) => ("mat_none".into(), "mar_none".into(), "NOCLIENT".into()),
    };
    Live {
        at: s.access_token,
        rt: s.refresh_token.unwrap_or_default(),
        dev: s.device_id,
        oat,
        ort,
        client,
    }
}

pub fn fill(bytes: &[u8], live: &Live, rooms: &Rooms, uniq: usize) -> Vec<u8> {
    // Only valid UTF-8 holds placeholders; anything else is sent byte for byte. (std's string
    // search is optimised even in a debug build, unlike a hand-written loop.)
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes.to_vec();
    };
    if !text.contains('{') {
        return bytes.to_vec();
    }
    let mut text = text.to_owned();
    for (from, to) in [
        ("{at}", live.at.as_str()),
        ("{rt}", live.rt.as_str()),
        ("{dev}", live.dev.as_str()),
        ("{oat}", live.oat.as_str()),
        ("{ort}", live.ort.as_str()),
        ("{client}", live.client.as_str()),
        ("{room}", rooms.alice.as_str()),
        ("{droom}", rooms.dave.as_str()),
        ("{uniq}", &uniq.to_string()),
    ] {
        if text.contains(from) {
            text = text.replace(from, to);
        }
    }
    text.into_bytes()
}

/// Alice's room (read by `messages` and `sync` probes) and dave's (where `send` probes write:
/// whatever garbage they manage to store stays out of alice's timeline, so reads stay small).
pub struct Rooms {
    pub alice: String,
    pub dave: String,
}

/// A server for probing: alice and dave (each with a room) and carol.
pub async fn probe_server(profile: Profile) -> (MockHomeserver, Rooms) {
    let server = MockHomeserver::builder()
        .profile(profile)
        .user("carol", "pw")
        .user("dave", "pw")
        .start()
        .await
        .expect("server starts");
    let rooms = Rooms {
        alice: server.create_room("alice", Some("robust")).expect("room"),
        dave: server.create_room("dave", Some("junk")).expect("room"),
    };
    (server, rooms)
}

/// Sends every probe (a few at a time) and returns what is wrong: bad answers, trace entries
/// that do not match the requests the client-server API answered, a server that stopped answering.
pub async fn run_probes(server: &MockHomeserver, rooms: &Rooms, probes: Vec<Probe>) -> Vec<String> {
    let before = server.trace_len();
    let addr = server.addr();
    let total = probes.len();
    let answers: Vec<(Probe, Answer)> = stream::iter(probes.into_iter().enumerate())
        .map(|(i, p)| async move {
            let user = match p.auth {
                Auth::Carol => "carol",
                Auth::Dave => "dave",
                Auth::None | Auth::Alice => "alice",
            };
            let live = mint(server, user);
            let path = String::from_utf8_lossy(&fill(p.path.as_bytes(), &live, rooms, i)).into_owned();
            let mut headers: Vec<(String, Vec<u8>)> = p
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, &live, rooms, i)))
                .collect();
            if p.auth != Auth::None {
                headers.push(("Authorization".into(), format!("Bearer {}", live.at).into_bytes()));
            }
            let body = fill(&p.body, &live, rooms, i);
            let answer = exchange(addr, http_request(&p.method, &path, &headers, &body)).await;
            (p, answer)
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let mut problems = Vec::new();
    let mut expected: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for (p, a) in &answers {
        if let Err(why) = judge(p, a) {
            let path: String = p.path.chars().take(80).collect();
            problems.push(format!(
                "[{}] {} {path}: {why}; body {}",
                p.label,
                p.method,
                a.short_body()
            ));
        }
        if let (Expect::Traced(name, _), Some(status)) = (p.expect, a.status)
            && a.traced_responses() == 1
        {
            *expected.entry((name.to_owned(), status)).or_default() += 1;
        }
    }
    problems.extend(trace_problems(server, before, &expected).await);
    if let Err(e) = answers_whoami(server).await {
        problems.push(e);
    }
    assert_eq!(answers.len(), total);
    problems
}

/// The trace after `before` must hold exactly the requests the client-server API answered, each
/// finished and delivered.
pub async fn trace_problems(
    server: &MockHomeserver,
    before: u64,
    expected: &BTreeMap<(String, u16), usize>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let trace = server.trace_after(before);
    let mut seen: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for e in &trace {
        if e.delivery != Delivery::Sent {
            problems.push(format!(
                "trace #{} ({} {}) delivery {:?}",
                e.seq, e.endpoint, e.path, e.delivery
            ));
        }
        match e.status {
            Some(s) => *seen.entry((e.endpoint.to_string(), s)).or_default() += 1,
            None => problems.push(format!("trace #{} ({}) has no status", e.seq, e.endpoint)),
        }
    }
    if &seen != expected {
        let mut diff = Vec::new();
        for key in expected.keys().chain(seen.keys()) {
            let (want, got) = (
                expected.get(key).copied().unwrap_or(0),
                seen.get(key).copied().unwrap_or(0),
            );
            if want != got {
                diff.push(format!("{key:?}: answered {want}, traced {got}"));
            }
        }
        diff.dedup();
        problems.push(format!(
            "the trace does not match the answers: {}",
            diff.join("; ")
        ));
    }
    problems
}

/// The server still answers: a fresh session's whoami succeeds.
pub async fn answers_whoami(server: &MockHomeserver) -> Result<(), String> {
    let s = server
        .mint_session("alice")
        .map_err(|e| format!("mint after the batch: {e}"))?;
    let headers = vec![(
        "Authorization".to_owned(),
        format!("Bearer {}", s.access_token).into_bytes(),
    )];
    let a = exchange(
        server.addr(),
        http_request("GET", "/_matrix/client/v3/account/whoami", &headers, b""),
    )
    .await;
    match (a.status, a.json()) {
        (Some(200), Some(body)) if body["user_id"] == "@alice:localhost" => Ok(()),
        _ => Err(format!(
            "whoami after the batch: {:?} {}",
            a.status,
            a.short_body()
        )),
    }
}

pub fn assert_clean(what: &str, problems: &[String]) {
    assert_no_server_panics();
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}
