//! Load without loss: 10,000 requests from 200 concurrent connections (each worker its own
//! reqwest client and connection) against one in-process `synapse` server with short lifetimes —
//! whoami, sync and send mixed with racing refreshes of the same eight sessions, with current and
//! stale refresh tokens. Afterwards the trace holds every request exactly once and finished, every
//! answer agrees with the token states the trace recorded, and every session ends in a state
//! Synapse's rules allow.

use rotary_server::{AccessState, Delivery, MintRequest, MockHomeserver, Profile, RefreshState};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 200;
const PER_CONNECTION: usize = 50;
const USERS: [&str; 2] = ["alice", "bob"];
const DEVICES_PER_USER: usize = 4;

/// What a client believes about its session: the newest tokens it received, and older refresh
/// tokens it could (wrongly) present again.
#[derive(Clone, Debug)]
struct Belief {
    access: String,
    refresh: String,
    refresh_number: u64,
    stale: Vec<String>,
}

struct Session {
    user: &'static str,
    device: String,
    room: String,
    belief: Mutex<Belief>,
}

fn label_number(label: &str) -> u64 {
    label.split('#').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Whoami,
    Sync,
    Send,
    Refresh,
    StaleRefresh,
}

impl Op {
    fn pick(worker: usize, n: usize) -> Op {
        match (worker * 7 + n * 13) % 10 {
            0..=3 => Op::Whoami,
            4 | 5 => Op::Sync,
            6 | 7 => Op::Send,
            8 => Op::Refresh,
            _ => Op::StaleRefresh,
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Op::Whoami => "whoami",
            Op::Sync => "sync",
            Op::Send => "send",
            Op::Refresh | Op::StaleRefresh => "refresh",
        }
    }
}

/// What the clients saw, per endpoint and status.
type Tally = BTreeMap<(&'static str, u16), usize>;

async fn worker(
    server_url: String,
    sessions: Arc<Vec<Session>>,
    id: usize,
    server: Arc<MockHomeserver>,
) -> Tally {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let session = &sessions[id % sessions.len()];
    let mut tally = Tally::new();
    for n in 0..PER_CONNECTION {
        let op = Op::pick(id, n);
        let belief = session.belief.lock().expect("belief").clone();
        let request = match op {
            Op::Whoami => http
                .get(format!("{server_url}/_matrix/client/v3/account/whoami"))
                .bearer_auth(&belief.access),
            Op::Sync => http
                .get(format!("{server_url}/_matrix/client/v3/sync?timeout=0&since=s0"))
                .bearer_auth(&belief.access),
            Op::Send => http
                .put(format!(
                    "{server_url}/_matrix/client/v3/rooms/{}/send/m.room.message/w{id}-{n}",
                    session.room
                ))
                .bearer_auth(&belief.access)
                .json(&json!({"msgtype": "m.text", "body": format!("{id}/{n}")})),
            Op::Refresh | Op::StaleRefresh => {
                let token = match op {
                    Op::StaleRefresh => belief.stale.last().unwrap_or(&belief.refresh),
                    _ => &belief.refresh,
                };
                http.post(format!("{server_url}/_matrix/client/v3/refresh"))
                    .json(&json!({"refresh_token": token}))
            }
        };
        let resp = request.send().await.expect("every request is answered");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("a JSON body");
        *tally.entry((op.endpoint(), status)).or_default() += 1;
        if matches!(op, Op::Refresh | Op::StaleRefresh) && status == 200 {
            let access = body["access_token"].as_str().expect("access_token").to_owned();
            let refresh = body["refresh_token"].as_str().expect("refresh_token").to_owned();
            let number = label_number(&server.label_of(&refresh).expect("a label"));
            let mut b = session.belief.lock().expect("belief");
            // Responses of racing refreshes arrive in any order: keep the newest pair.
            if number > b.refresh_number {
                let old = std::mem::replace(&mut b.refresh, refresh);
                b.stale.push(old);
                if b.stale.len() > 3 {
                    b.stale.remove(0);
                }
                b.access = access;
                b.refresh_number = number;
            } else {
                b.stale.push(refresh);
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_lose_nothing() {
    let server = Arc::new(
        MockHomeserver::builder()
            .profile(Profile::Synapse)
            .refreshable_access_token_lifetime(Duration::from_secs(2))
            .user("bob", "builder")
            .start()
            .await
            .expect("server starts"),
    );
    let mut sessions = Vec::new();
    for user in USERS {
        let room = server.create_room(user, Some("load")).expect("room");
        for d in 0..DEVICES_PER_USER {
            let issued = server
                .mint_session_with(&MintRequest {
                    user: user.to_owned(),
                    device_id: Some(format!("LOAD{d}")),
                    refresh_token: true,
                })
                .expect("mint");
            let refresh = issued.refresh_token.expect("a refresh token");
            sessions.push(Session {
                user,
                device: issued.device_id,
                room: room.clone(),
                belief: Mutex::new(Belief {
                    access: issued.access_token,
                    refresh_number: label_number(issued.refresh_label.as_deref().unwrap_or_default()),
                    refresh,
                    stale: Vec::new(),
                }),
            });
        }
    }
    let sessions = Arc::new(sessions);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..CONNECTIONS {
        tasks.spawn(worker(server.url(), sessions.clone(), id, server.clone()));
    }
    let mut seen = Tally::new();
    while let Some(t) = tasks.join_next().await {
        for (k, v) in t.expect("a worker panicked") {
            *seen.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed();
    let sent: usize = seen.values().sum();
    assert_eq!(sent, CONNECTIONS * PER_CONNECTION);
    eprintln!(
        "{sent} requests from {CONNECTIONS} connections in {:.1} s ({:.0}/s): {seen:?}",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );

    // Every request exactly once, in a gap-free sequence, finished and delivered.
    let trace = server.trace();
    assert_eq!(
        trace.len(),
        sent,
        "the trace holds {} entries for {sent} requests",
        trace.len()
    );
    for (i, e) in trace.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "seqs are not contiguous at {i}");
        assert_eq!(e.delivery, Delivery::Sent, "entry {} not delivered: {e:?}", e.seq);
        assert!(
            e.status.is_some() && e.duration_ms.is_some() && e.done_seq.is_some(),
            "{e:?}"
        );
    }
    let mut traced = Tally::new();
    for e in &trace {
        let endpoint = match e.endpoint.as_ref() {
            "whoami" => "whoami",
            "sync" => "sync",
            "send" => "send",
            "refresh" => "refresh",
            other => panic!("a request the clients never sent: {other}"),
        };
        *traced.entry((endpoint, e.status.unwrap_or(0))).or_default() += 1;
    }
    assert_eq!(
        traced, seen,
        "the trace's statuses differ from what the clients received"
    );

    // Every answer agrees with the token states on arrival. States only ever get worse (valid →
    // expired/revoked; current → previous-unused → consumed → gone), so a success proves the
    // token was usable on arrival, and an unusable token on arrival proves a refusal.
    for e in &trace {
        let status = e.status.unwrap_or(0);
        match e.endpoint.as_ref() {
            "refresh" => {
                let state = e.refresh_token.as_ref().expect("a presented refresh token").state;
                let usable = matches!(state, RefreshState::Current | RefreshState::PreviousUnused);
                match status {
                    200 => assert!(usable, "refresh #{} succeeded with a {state:?} token", e.seq),
                    401 | 403 => {}
                    s => panic!("refresh #{} answered {s}", e.seq),
                }
                if !usable {
                    assert_ne!(status, 200, "#{}: {state:?} refresh token accepted", e.seq);
                }
                if status == 200 {
                    assert!(e.issued.as_ref().is_some_and(|i| i.refresh_token.is_some()));
                }
            }
            _ => {
                let state = e.access_token.state;
                match status {
                    200 => assert_eq!(
                        state,
                        AccessState::Valid,
                        "#{} ({}) accepted a {state:?} token",
                        e.seq,
                        e.endpoint
                    ),
                    401 => assert_eq!(e.errcode.as_deref(), Some("M_UNKNOWN_TOKEN"), "{e:?}"),
                    s => panic!("#{} ({}) answered {s}", e.seq, e.endpoint),
                }
            }
        }
    }

    // Every session: at most two live refresh generations, exactly one current refresh token —
    // the newest the clients received — and the newest access token is still live (unexpired or
    // explainably expired: the lifetime is 2 s).
    let before_checks = server.trace_len();
    let http = reqwest::Client::new();
    for s in sessions.iter() {
        let devices = server.sessions(Some(s.user));
        let d = devices
            .iter()
            .find(|d| d.device_id == s.device)
            .unwrap_or_else(|| panic!("{}'s device {} is gone", s.user, s.device));
        let b = s.belief.lock().expect("belief").clone();
        assert!(d.live_refresh_tokens.len() <= 2, "{d:?}");
        let current = d.current_refresh_token.clone().expect("a current refresh token");
        assert!(d.live_refresh_tokens.contains(&current), "{d:?}");
        assert_eq!(Some(current), server.label_of(&b.refresh), "{d:?}");
        let access_label = server.label_of(&b.access).expect("a label");
        assert!(
            d.live_access_tokens.contains(&access_label),
            "{access_label} not live: {d:?}"
        );
        let resp = http
            .get(format!("{}/_matrix/client/v3/account/whoami", server.url()))
            .bearer_auth(&b.access)
            .send()
            .await
            .expect("answered");
        let entry = server
            .trace_after(before_checks)
            .pop()
            .expect("the check is traced");
        match resp.status().as_u16() {
            200 => assert_eq!(entry.access_token.state, AccessState::Valid),
            401 => assert_eq!(entry.access_token.state, AccessState::Expired, "{entry:?}"),
            other => panic!(
                "the newest access token of {}'s {} answered {other}",
                s.user, s.device
            ),
        }
    }
    // The sends: each stored once per transaction id.
    for user in USERS {
        let room = &sessions.iter().find(|s| s.user == user).expect("a session").room;
        let stored = server.count_events(room, "m.room.message");
        let sent_ok: usize = trace
            .iter()
            .filter(|e| {
                e.endpoint == "send"
                    && e.status == Some(200)
                    && e.user_id.as_deref() == Some(&format!("@{user}:localhost"))
            })
            .count();
        assert_eq!(
            stored, sent_ok,
            "{user}'s room holds {stored} messages for {sent_ok} successful sends"
        );
    }
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");
}
