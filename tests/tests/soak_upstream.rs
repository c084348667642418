//! `rotary soak --upstream`: the fleet through Rotary's proxy in front of a real homeserver — an
//! embedded mock standing in for one, and a real Synapse from PyPI (skipped, with a message, where
//! it cannot be installed; CI installs it). The correct fleet passes, bug switches are caught by
//! the proxy's trace, the schedule's clock jump is skipped and said so, revocations are device
//! deletions on the real server, and the soak leaves no live device behind.

#[path = "common/proxy.rs"]
mod proxy_common;

use proxy_common::Synapse;
use rotary_reference::{Bug, Bugs};
use rotary_rollout::soak::target::{SoakTarget, TargetError, UpstreamOptions, UpstreamTarget};
use rotary_rollout::soak::{Soak, SoakConfig, SoakOutcome};
use rotary_server::{MockHomeserver, Profile};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn config(bug: Option<&str>) -> SoakConfig {
    config_for(bug, 20)
}

/// Fewer requests than this per session: the machine starved the run.
const MIN_REQUESTS_PER_SESSION: f64 = 20.0;

/// A run that did too little to show what its schedule's phases would.
fn starved(o: &SoakOutcome) -> bool {
    o.report.metric("requests") < 8.0 * MIN_REQUESTS_PER_SESSION || o.report.metric("messages.seen") == 0.0
}

fn config_for(bug: Option<&str>, secs: u64) -> SoakConfig {
    let mut cfg = SoakConfig::new(8, Duration::from_secs(secs));
    cfg.access_token_lifetime = Duration::from_secs(3);
    if let Some(name) = bug {
        let mut bugs = Bugs::NONE;
        bugs.insert(Bug::from_name(name).unwrap_or_else(|e| panic!("{e}")));
        cfg.bugs = bugs;
        cfg.bug_share = 1.0;
    }
    cfg
}

async fn soak_through(url: String, tag: String, cfg: SoakConfig) -> SoakOutcome {
    let mut opts = UpstreamOptions::new(url);
    opts.tag = tag;
    let target = UpstreamTarget::start(opts)
        .await
        .unwrap_or_else(|e| panic!("the proxy could not start: {e}"));
    Soak::new(cfg)
        .run(Arc::new(target))
        .await
        .unwrap_or_else(|e| panic!("the soak could not run: {e}"))
}

async fn mock() -> MockHomeserver {
    MockHomeserver::builder()
        .profile(Profile::Synapse)
        .refreshable_access_token_lifetime(Duration::from_secs(3))
        .start()
        .await
        .unwrap_or_else(|e| panic!("mock: {e}"))
}

/// The bugs checked through the proxy, and the metric that must show each.
const MATRIX: &[(&str, &str)] = &[
    ("stale-refresh-token", "violations.stale-refresh-token"),
    ("logout-on-transient", "sessions.lost"),
    ("refresh-per-401", "violations.must"),
];

fn assert_correct(o: &SoakOutcome) {
    let text = o.report.text();
    assert!(
        o.passed(),
        "the correct fleet must pass through the proxy:\n{text}"
    );
    assert_eq!(o.report.metric("clock.jumps"), 0.0, "{text}");
    assert!(text.contains("clock jump(s) of the schedule skipped"), "{text}");
    assert!(
        o.report.metric("faults") > 0.0,
        "the proxy injected the schedule's faults:\n{text}"
    );
    assert!(o.report.metric("refresh.count") > 0.0, "{text}");
    assert!(o.report.metric("messages.seen") > 0.0, "{text}");
    assert!(o.report.metric("revocations") >= 1.0, "{text}");
    // Revoked sessions are refused by the real server and log out, and those logouts are not
    // lost sessions (`passed` holds `sessions.lost == 0`). A revocation late in the run may meet a
    // session that sends nothing more before the end (suspended, or slow on a loaded machine):
    // `sessions.zombie` judges those; here at least one revocation must have been heeded.
    assert!(o.report.metric("logouts") >= 1.0, "{text}");
}

fn assert_caught(outcomes: &[SoakOutcome]) {
    let mut missed = Vec::new();
    for ((name, metric), o) in MATRIX.iter().zip(outcomes) {
        if o.passed() || o.report.metric(metric) <= 0.0 {
            missed.push(format!("{name} (expected {metric} > 0):\n{}", o.report.text()));
        }
    }
    assert!(
        missed.is_empty(),
        "bugs not caught through the proxy:\n{}",
        missed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_through_the_proxy_in_front_of_a_mock() {
    let mut servers = Vec::new();
    let mut runs = Vec::new();
    for (i, bug) in std::iter::once(None)
        .chain(MATRIX.iter().map(|(b, _)| Some(*b)))
        .enumerate()
    {
        let server = mock().await;
        runs.push(tokio::spawn(soak_through(
            server.url(),
            format!("m{i}"),
            config(bug),
        )));
        servers.push(server);
    }
    let mut outcomes = Vec::new();
    for r in runs {
        outcomes.push(r.await.unwrap_or_else(|e| panic!("a soak panicked: {e}")));
    }
    assert_correct(&outcomes[0]);
    assert_caught(&outcomes[1..]);
    // Every device the soak created (and its side sessions) is gone from the real server.
    let left = servers[0].sessions(None);
    assert!(left.is_empty(), "devices left behind: {left:?}");
}

#[tokio::test]
async fn a_bad_upstream_is_a_clear_error() {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let err = UpstreamTarget::start(UpstreamOptions::new(format!("http://127.0.0.1:{port}")))
        .await
        .err()
        .unwrap_or_else(|| panic!("a closed port must not be a target"));
    assert!(matches!(err, TargetError::Start(_)), "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    // A web page, not a homeserver.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let page = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..4 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let body = "<html><body>It works!</body></html>";
            let _ = s
                .write_all(
                    format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                        .as_bytes(),
                )
                .await;
        }
    });
    let err = UpstreamTarget::start(UpstreamOptions::new(format!("http://{addr}")))
        .await
        .err()
        .unwrap_or_else(|| panic!("a web page must not be a target"));
    assert!(err.to_string().contains("is not a Matrix homeserver"), "{err}");
    page.abort();
    // An accounts file that does not parse names the line.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("accounts.txt");
    std::fs::write(&file, "alice\n").unwrap_or_else(|e| panic!("{e}"));
    let server = mock().await;
    let mut opts = UpstreamOptions::new(server.url());
    opts.accounts_file = Some(file);
    let err = UpstreamTarget::start(opts)
        .await
        .err()
        .unwrap_or_else(|| panic!("must refuse"));
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[tokio::test]
async fn listed_accounts_are_used_and_too_few_is_a_clear_error() {
    let server = mock().await;
    for u in ["ann", "bea"] {
        server
            .add_user(u, &format!("pw-{u}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("accounts.txt");
    std::fs::write(&file, "# staging\nann pw-ann\nbea pw-bea\n").unwrap_or_else(|e| panic!("{e}"));
    let mut opts = UpstreamOptions::new(server.url());
    opts.accounts_file = Some(file);
    let target = UpstreamTarget::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = target.accounts("soak", 2).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.iter().map(|a| a.user.as_str()).collect::<Vec<_>>(),
        ["ann", "bea"]
    );
    let err = target
        .accounts("driver", 1)
        .await
        .err()
        .unwrap_or_else(|| panic!("only two listed"));
    assert!(
        err.to_string().contains("lists 2 accounts; the soak needs 3"),
        "{err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_490)
}

async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_through_the_proxy_in_front_of_synapse() {
    let Some(hs) = Synapse::start("soak", free_port()) else {
        return;
    };
    let tag = format!("s{:x}", std::process::id());
    // A run starved by a loaded machine (Synapse hashing passwords on a shared core) cannot show
    // what the schedule's phases would: it is run again, twice as long, once. A fed run is judged
    // at once.
    let mut outcomes = Vec::new();
    for (attempt, secs) in [(1u32, 20u64), (2, 40)] {
        let tag = if attempt == 1 {
            tag.clone()
        } else {
            format!("{tag}r")
        };
        let mut runs = vec![tokio::spawn(soak_through(
            hs.url.clone(),
            format!("{tag}c"),
            config_for(None, secs),
        ))];
        for (i, (bug, _)) in MATRIX.iter().enumerate() {
            runs.push(tokio::spawn(soak_through(
                hs.url.clone(),
                format!("{tag}b{i}"),
                config_for(Some(bug), secs),
            )));
        }
        outcomes.clear();
        for r in runs {
            outcomes.push(r.await.unwrap_or_else(|e| panic!("a soak panicked: {e}")));
        }
        let correct = &outcomes[0];
        if !starved(correct) || attempt == 2 {
            break;
        }
        eprintln!(
            "the soak against Synapse was starved ({} requests, {} messages seen in {secs} s): running it again for {} s",
            correct.report.metric("requests"),
            correct.report.metric("messages.seen"),
            secs * 2
        );
    }
    println!(
        "soak through the proxy against Synapse:\n{}",
        outcomes[0].report.text()
    );
    assert_correct(&outcomes[0]);
    assert_caught(&outcomes[1..]);
    // No device of a soak user is left on Synapse: log in as one, and it is the only one.
    let user = format!("rotary-soak-{tag}c-0");
    let password = format!("rotary-pw-{tag}c-0-soak");
    let (status, login) = post(
        &hs.url,
        "/_matrix/client/v3/login",
        None,
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap_or_default().to_owned();
    let devices: Value = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/devices", hs.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    let n = devices["devices"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 1, "only the login just made: {devices}");
    let _ = post(&hs.url, "/_matrix/client/v3/logout", Some(&token), json!({})).await;
}
