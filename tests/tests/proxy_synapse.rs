//! `rotary proxy` in front of a real Synapse from PyPI (3 s refreshable access-token lifetime):
//! forwarding and the token graph on Synapse's own answers, and the proxy kill matrix — the
//! reference client in a free workload under the seeded fault schedule, correct and with each
//! switch. Skipped, with a message, where Synapse cannot be installed (CI installs it).

mod common;
#[path = "common/proxy.rs"]
mod proxy_common;

use proxy_common::Synapse;
use rotary_judge::{AccessState, RefreshState};
use rotary_rollout::proxy::Proxy;
use serde_json::{Value, json};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_470)
}

/// One Synapse for the whole file: starting one takes seconds.
fn synapse() -> Option<&'static Synapse> {
    static SYNAPSE: std::sync::OnceLock<Option<Synapse>> = std::sync::OnceLock::new();
    SYNAPSE
        .get_or_init(|| Synapse::start("proxy", free_port()))
        .as_ref()
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_sessions_are_learnt_from_its_answers() {
    let Some(hs) = synapse() else { return };
    let proxy = Proxy::builder(&hs.url)
        .expect("upstream")
        .listen("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("proxy");
    let p = proxy.url();
    proxy_common::register(&hs.url, "graph-user", "pass-word-1").await;
    let (st, login) = post(
        &p,
        "/_matrix/client/v3/login",
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "graph-user"}, "password": "pass-word-1", "refresh_token": true}),
    )
    .await;
    assert_eq!(st, 200, "{login}");
    let lifetime = login["expires_in_ms"].as_i64().unwrap_or(0);
    assert!((2000..=3000).contains(&lifetime), "{login}");
    let rt1 = login["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (st, r1) = post(&p, "/_matrix/client/v3/refresh", json!({"refresh_token": rt1})).await;
    assert_eq!(st, 200, "{r1}");
    let at2 = r1["access_token"].as_str().unwrap_or_default().to_owned();
    let who = reqwest::Client::new()
        .get(format!("{p}/_matrix/client/v3/account/whoami"))
        .bearer_auth(&at2)
        .send()
        .await
        .expect("whoami");
    assert_eq!(who.status().as_u16(), 200);
    // Synapse refuses the first refresh token once its successor was used (1.163: 403 M_FORBIDDEN).
    let (st, again) = post(&p, "/_matrix/client/v3/refresh", json!({"refresh_token": rt1})).await;
    assert!(st == 401 || st == 403, "{st} {again}");
    let refused_with = again["errcode"].as_str().map(str::to_owned);
    proxy.settle().await;
    let trace = proxy.trace();
    let refreshes: Vec<_> = trace.iter().filter(|e| e.endpoint == "refresh").collect();
    assert_eq!(refreshes.len(), 2);
    assert_eq!(
        refreshes[0].refresh_token.as_ref().map(|t| t.state),
        Some(RefreshState::Current)
    );
    assert_eq!(
        refreshes[1]
            .refresh_token
            .as_ref()
            .map(|t| (t.label.as_str(), t.state)),
        Some(("rt#1", RefreshState::Consumed))
    );
    assert_eq!(
        refreshes[1].errcode, refused_with,
        "the trace has Synapse's errcode"
    );
    let whoami = trace
        .iter()
        .find(|e| e.endpoint == "whoami")
        .expect("whoami traced");
    assert_eq!(
        (whoami.access_token.label.as_str(), whoami.access_token.state),
        ("at#2", AccessState::Valid)
    );
    assert_eq!(whoami.user_id.as_deref(), Some("@graph-user:localhost"));
}

/// The proxy kill matrix against Synapse: the correct client breaks no `must` invariant; each of
/// the seven switches of [`proxy_common::KILL_MATRIX`] breaks at least one.
///
/// A run starved by a loaded machine (Synapse hashing passwords on a shared core: fewer than
/// [`MIN_REQUESTS_PER_SESSION`] requests per session, so the faults that need a session's 10th
/// whoami never fire) proves nothing either way: it is run again, twice as long, at most twice.
/// A run that was fed enough and missed a switch fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_matrix_against_synapse() {
    let Some(hs) = synapse() else { return };
    let secs: u64 = std::env::var("ROTARY_PROXY_MATRIX_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut run_for = Duration::from_secs(secs);
    for attempt in 1..=3 {
        let prefix = if attempt == 1 {
            "s".to_owned()
        } else {
            format!("s{attempt}")
        };
        let outcome = matrix_once(&hs.url, &prefix, run_for).await;
        let starved = outcome.requests < outcome.sessions * MIN_REQUESTS_PER_SESSION;
        if outcome.missed.is_empty() {
            return;
        }
        assert!(
            starved && attempt < 3,
            "switches the watch did not catch: {:?} ({} requests for {} sessions in {run_for:?}, attempt {attempt})\n{}",
            outcome.missed,
            outcome.requests,
            outcome.sessions,
            outcome.table
        );
        eprintln!(
            "proxy kill matrix against Synapse starved ({} requests for {} sessions in {run_for:?}): running it again for {:?}",
            outcome.requests,
            outcome.sessions,
            run_for * 2
        );
        run_for *= 2;
    }
}

/// Fewer requests than this per session in a matrix run: the machine starved it.
const MIN_REQUESTS_PER_SESSION: u64 = 25;

/// What one run of the matrix found.
struct MatrixOutcome {
    requests: u64,
    sessions: u64,
    missed: Vec<String>,
    table: String,
}

async fn matrix_once(upstream: &str, prefix: &str, run_for: Duration) -> MatrixOutcome {
    let mut b = Proxy::builder(upstream)
        .expect("upstream")
        .listen("127.0.0.1:0".parse().expect("addr"));
    for f in proxy_common::steady_faults() {
        b = b.fault(f);
    }
    let proxy = b.start().await.expect("proxy");
    let sessions = proxy_common::run_matrix(&proxy, upstream, prefix, run_for).await;
    let report = proxy.finish().await;
    let (table, missed, broke) = proxy_common::judge_matrix(&sessions, &report);
    assert!(
        broke.is_empty(),
        "the correct client broke must invariants: {broke:?}\n{table}"
    );
    eprintln!(
        "proxy kill matrix against Synapse ({} requests, {} refreshes, {} faults fired, {run_for:?}):\n{table}",
        report.totals.requests, report.totals.refreshes, report.totals.faults_fired
    );
    MatrixOutcome {
        requests: report.totals.requests,
        sessions: sessions.len() as u64,
        missed,
        table,
    }
}
