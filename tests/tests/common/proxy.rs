//! The proxy tests' shared parts: a free workload of the reference client (a sync loop with sends
//! and whoamis, no scripted steps, a fresh login after any logout), the seeded fault schedule the
//! kill matrix runs under, and a real Synapse started from PyPI (skipped with a message if it
//! cannot be installed).

#![allow(dead_code)]

use rotary_reference::{Bug, Bugs, Client, ClientConfig, ClientEvent};
use rotary_rollout::proxy::RunningProxy;
use rotary_server::FaultRule;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one session of the workload did.
#[derive(Debug, Default)]
pub struct WorkloadStats {
    pub iterations: AtomicU64,
    pub errors: AtomicU64,
    pub logins: AtomicU64,
    pub logouts: AtomicU64,
}

/// Creates `user` on the upstream directly (registration with dummy auth; an existing user is fine).
pub async fn register(upstream: &str, user: &str, password: &str) {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{upstream}/_matrix/client/v3/register"))
        .json(&json!({"username": user, "password": password, "auth": {"type": "m.login.dummy"}, "inhibit_login": true}))
        .send()
        .await
        .expect("register request");
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    assert!(
        status == 200 || body["errcode"] == "M_USER_IN_USE",
        "registering {user}: {status} {body}"
    );
}

async fn create_room(base: &str, token: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .post(format!("{base}/_matrix/client/v3/createRoom"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = r.json().await.ok()?;
    body["room_id"].as_str().map(str::to_owned)
}

/// Runs the reference client (with `bugs`) against `base` until `deadline`: each round two
/// whoamis at once, a short sync, and every other round a message; a fresh login after a logout;
/// once, after `suspend.0`, the app sleeps for `suspend.1` (in the background, its token expiring).
/// Every loop is bounded by the deadline.
pub async fn free_workload(
    base: String,
    user: String,
    password: String,
    bugs: Bugs,
    deadline: Instant,
    suspend: Option<(Duration, Duration)>,
    stats: Arc<WorkloadStats>,
) {
    let started = Instant::now();
    let mut suspended = false;
    let logged_out = Arc::new(AtomicU64::new(0));
    let sink_flag = logged_out.clone();
    let mut cfg = ClientConfig::new(base.clone());
    cfg.bugs = bugs;
    cfg.request_timeout = Duration::from_secs(5);
    let client = match Client::new(
        cfg,
        Arc::new(move |e| {
            if let ClientEvent::LoggedOut { .. } = e {
                sink_flag.fetch_add(1, Ordering::Relaxed);
            }
        }),
    ) {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("client for {user}: {e}"),
    };
    let mut room: Option<String> = None;
    let mut since: Option<String> = None;
    let mut round = 0u64;
    let mut seen_logouts = 0;
    while Instant::now() < deadline {
        round += 1;
        stats.iterations.fetch_add(1, Ordering::Relaxed);
        if client.who().is_none() || logged_out.load(Ordering::Relaxed) > seen_logouts {
            seen_logouts = logged_out.load(Ordering::Relaxed);
            match client.login(&user, &password, true, None).await {
                Ok(_) => {
                    stats.logins.fetch_add(1, Ordering::Relaxed);
                    since = None;
                    if room.is_none()
                        && let Some(at) = client.tokens().access_token
                    {
                        room = create_room(&base, &at).await;
                    }
                }
                Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let (a, b, s) = tokio::join!(
            client.whoami(),
            client.whoami(),
            client.sync(Duration::from_millis(200), since.as_deref())
        );
        for r in [a.err(), b.err()].into_iter().flatten() {
            if r.is_logout() {
                stats.logouts.fetch_add(1, Ordering::Relaxed);
            }
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        match s {
            Ok(next) => since = Some(next),
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if round.is_multiple_of(2)
            && let Some(r) = &room
            && client.send_text(r, &format!("round {round}")).await.is_err()
        {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        if let Some((after, length)) = suspend
            && !suspended
            && started.elapsed() >= after
        {
            suspended = true;
            tokio::time::sleep(length.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
}

/// The bug switches the proxy kill matrix requires the live watch to catch in a free workload.
pub const KILL_MATRIX: [Bug; 7] = [
    Bug::RefreshPer401,
    Bug::StaleRefreshToken,
    Bug::LogoutOnTransient,
    Bug::IgnoreRetryAfter,
    Bug::PreemptStorm,
    Bug::NewTxnOnRetry,
    Bug::NoPreempt,
];

/// Switches that run in the matrix and are reported, but not required: `retry-forever` loops only
/// as fast as the upstream answers, so whether its loop passes the threshold (more than 10 refresh
/// attempts in one 3 s lifetime) within the 600 ms rejection window depends on the machine.
pub const SOMETIMES: [Bug; 1] = [Bug::RetryForever];

/// The seeded fault schedule of the kill matrix: steady faults from the start.
pub fn steady_faults() -> Vec<FaultRule> {
    [
        // Transient refresh failures: a 503, a 429 with Retry-After, a lost response.
        r#"name = "refresh-503", endpoint = "refresh", probability = 0.1, seed = 2, action = { kind = "error", status = 503 }"#,
        r#"name = "refresh-429", endpoint = "refresh", probability = 0.05, seed = 3, action = { kind = "error", status = 429, retry_after_ms = 400 }"#,
        r#"name = "refresh-lost", endpoint = "refresh", probability = 0.1, seed = 4, action = { kind = "commit_then_drop" }"#,
        // Lost send responses: the retry must keep its transaction id.
        r#"name = "send-lost", endpoint = "send", probability = 0.25, seed = 5, action = { kind = "commit_then_drop" }"#,
    ]
    .iter()
    .map(|r| FaultRule::from_toml(r).expect("rule"))
    .collect()
}

/// The chaos window of the schedule: every refresh fails for a while (a client that retries without
/// bound loops), then the rule goes.
pub fn chaos_rule() -> FaultRule {
    FaultRule::from_toml(
        r#"name = "refresh-down", endpoint = "refresh", action = { kind = "error", status = 503 }"#,
    )
    .expect("rule")
}

/// The rate-limit window of the schedule: every refresh answered 429 with a 1 s Retry-After.
pub fn rate_limited_rule() -> FaultRule {
    FaultRule::from_toml(
        r#"name = "refresh-rate-limited", endpoint = "refresh", action = { kind = "error", status = 429, retry_after_ms = 1000 }"#,
    )
    .expect("rule")
}

/// The rejection window of the schedule: every whoami answered 401 `M_UNKNOWN_TOKEN` for 600 ms.
pub fn rejected_rule() -> FaultRule {
    FaultRule::from_toml(
        r#"name = "all-rejected", endpoint = "whoami", action = { kind = "error", status = 401, errcode = "M_UNKNOWN_TOKEN", soft_logout = false }"#,
    )
    .expect("rule")
}

/// Whether a switch is required to be caught.
pub fn required(bug: Bug) -> bool {
    KILL_MATRIX.contains(&bug)
}

/// Runs the kill matrix's sessions (two correct clients and one per switch) through `proxy` for
/// `run_for`, with the chaos window in the middle; returns each session's user and bug.
pub async fn run_matrix(
    proxy: &RunningProxy,
    upstream: &str,
    prefix: &str,
    run_for: Duration,
) -> Vec<(String, Option<Bug>)> {
    let mut sessions: Vec<(String, Option<Bug>)> = vec![
        (format!("{prefix}-correct-1"), None),
        (format!("{prefix}-correct-2"), None),
    ];
    for b in KILL_MATRIX.into_iter().chain(SOMETIMES) {
        let name = rotary_reference::BUGS
            .iter()
            .find(|i| i.bug == b)
            .map_or("bug", |i| i.name);
        sessions.push((format!("{prefix}-{name}"), Some(b)));
    }
    for (user, _) in &sessions {
        register(upstream, user, "pass-word-1").await;
        // Two 401s in a row for each user, twice: its two concurrent whoamis of one round get
        // them, so a client without single flight refreshes twice with the same refresh token.
        for after in [10, 30] {
            let rule = format!(
                r#"name = "whoami-401", user = "{user}", endpoint = "whoami", after = {after}, first = {}, action = {{ kind = "error", status = 401, errcode = "M_UNKNOWN_TOKEN", soft_logout = false }}"#,
                after + 2
            );
            proxy
                .add_fault(FaultRule::from_toml(&rule).expect("rule"))
                .expect("valid rule");
        }
    }
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for (user, bug) in &sessions {
        let mut bugs = Bugs::NONE;
        if let Some(b) = bug {
            bugs.insert(*b);
        }
        tasks.push(tokio::spawn(free_workload(
            proxy.url(),
            user.clone(),
            "pass-word-1".to_owned(),
            bugs,
            deadline,
            // In the background past the 3 s lifetime, at 20 % of the run.
            Some((run_for.mul_f64(0.2), Duration::from_millis(3_800))),
            Arc::new(WorkloadStats::default()),
        )));
    }
    // The schedule of windows, as fractions of the run: every refresh fails (40–52 %), every
    // refresh is rate-limited with a Retry-After (58–70 %), every whoami is refused (from 78 %, 600 ms).
    let t0 = Instant::now();
    let at = |f: f64| t0 + run_for.mul_f64(f);
    tokio::time::sleep_until(at(0.40).into()).await;
    let id = proxy.add_fault(chaos_rule()).expect("chaos rule");
    tokio::time::sleep_until(at(0.52).into()).await;
    proxy.remove_fault(id);
    tokio::time::sleep_until(at(0.58).into()).await;
    let id = proxy.add_fault(rate_limited_rule()).expect("rate-limit rule");
    tokio::time::sleep_until(at(0.70).into()).await;
    proxy.remove_fault(id);
    tokio::time::sleep_until(at(0.78).into()).await;
    let id = proxy.add_fault(rejected_rule()).expect("rejection rule");
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.remove_fault(id);
    for t in tasks {
        let _ = tokio::time::timeout(run_for + Duration::from_secs(30), t).await;
    }
    sessions
}

/// Judges a kill-matrix run: each session's violations (every level for a switched session,
/// `must` only for a correct one) as a printable table, the required switches that broke
/// nothing, and the correct sessions that broke a `must` invariant (with the violations).
pub fn judge_matrix(
    sessions: &[(String, Option<Bug>)],
    report: &rotary_rollout::ProxyReport,
) -> (String, Vec<String>, Vec<String>) {
    let mut table = String::new();
    let mut missed = Vec::new();
    let mut broke = Vec::new();
    for (user, bug) in sessions {
        let prefix = format!("@{user}:");
        let mine = |u: Option<&str>| u.is_some_and(|u| u.starts_with(&prefix));
        let found: std::collections::BTreeSet<String> = report
            .violations
            .iter()
            .filter(|v| mine(v.user.as_deref()))
            .filter(|v| bug.is_some() || v.level == rotary_judge::Level::Must)
            .map(|v| format!("{} ({})", v.id, v.level))
            .collect();
        table.push_str(&format!("{user}: {found:?}\n"));
        match bug {
            None if !found.is_empty() => {
                let details: Vec<String> = report
                    .violations
                    .iter()
                    .filter(|v| mine(v.user.as_deref()))
                    .map(|v| format!("{} {}", v.id, v.message))
                    .collect();
                broke.push(format!("{user}: {details:?}"));
            }
            Some(b) if found.is_empty() && required(*b) => missed.push(user.clone()),
            _ => {}
        }
    }
    (table, missed, broke)
}

/// A real Synapse on loopback, from PyPI, with a 3 s refreshable access-token lifetime; stopped
/// when dropped. `None` (and a message) where it cannot be installed or started.
pub struct Synapse {
    pub url: String,
    dir: PathBuf,
    root: PathBuf,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Synapse {
    pub fn start(name: &str, port: u16) -> Option<Synapse> {
        Synapse::start_with(name, port, "3s")
    }

    /// A Synapse whose `refreshable_access_token_lifetime` is `lifetime` (`3s`; `null` turns
    /// refresh tokens off).
    pub fn start_with(name: &str, port: u16, lifetime: &str) -> Option<Synapse> {
        let root = repo_root();
        // One virtualenv for every test and fidelity/check.sh (installing takes minutes).
        let shared = std::env::var("ROTARY_SYNAPSE_VENV_DIR")
            .unwrap_or_else(|_| "/tmp/rotary-fidelity-synapse".to_owned());
        let dir = std::env::temp_dir().join(format!("rotary-{name}-synapse-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let venv = PathBuf::from(&shared).join("venv");
        // Tests of one binary run at once: one installs, the others wait for it.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let installing = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !venv.join("bin/python").exists() {
            let ok = std::process::Command::new(root.join("fidelity/run-synapse.sh"))
                .arg("install")
                .env("SYNAPSE_DIR", &shared)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "SKIPPED: Synapse could not be installed from PyPI (fidelity/run-synapse.sh install); the tests against a real Synapse need it"
                );
                return None;
            }
        }
        drop(installing);
        let _ = std::os::unix::fs::symlink(&venv, dir.join("venv"));
        let status = std::process::Command::new(root.join("fidelity/run-synapse.sh"))
            .arg("start")
            .env("SYNAPSE_DIR", &dir)
            .env("SYNAPSE_PORT", port.to_string())
            .env("LIFETIME", lifetime)
            .stdout(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "SKIPPED: Synapse did not start (see {}/homeserver.log)",
                dir.display()
            );
            return None;
        }
        Some(Synapse {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            root,
        })
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.root.join("fidelity/run-synapse.sh"))
            .arg("stop")
            .env("SYNAPSE_DIR", &self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
