//! Real driver processes in the fleet (`--driver CMD --drivers M`): each one a session of the
//! client under test, driven through the existing protocol (`initialize`, `login`, then `whoami`,
//! `sync` and — when the driver can — `parallel` at a rate) in a loop of rounds: a round logs in
//! with a fresh process and runs until the round's end, a logout or a broken driver; then the
//! next round starts. A driver that dies is an error for its session, counted, and the soak goes
//! on. Nothing accumulates: the transcript and notifications are cleared after every call.

use super::fleet::Account;
use super::judge::Judge;
use super::rng::SeededRng;
use rotary_harness::{Driver, DriverFailure, Sink};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How the driver fleet runs.
#[derive(Clone, Debug)]
pub struct DriverFleetConfig {
    /// The command line (`sh -c`).
    pub command: String,
    /// The homeserver URL the drivers are given.
    pub homeserver_url: String,
    /// Where their state directories go (one per driver).
    pub state_root: PathBuf,
    /// Mean time between two calls.
    pub interval: Duration,
    /// One call's timeout.
    pub call_timeout: Duration,
    /// A round's longest length (then the process is shut down and a fresh one logs in).
    pub round: Duration,
    /// The seed of the drivers' choices.
    pub seed: u64,
}

/// What the drivers did.
#[derive(Debug, Default, Serialize)]
pub struct DriverStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls answered with an error (the client's, not the protocol's).
    pub call_errors: AtomicU64,
    /// Drivers that died or broke the protocol.
    pub errors: AtomicU64,
    /// Rounds started.
    pub rounds: AtomicU64,
    /// Logouts signalled.
    pub logouts: AtomicU64,
    /// Drivers logged in now.
    pub alive: AtomicU64,
}

/// The driver part of a fleet.
#[derive(Debug)]
pub struct DriverFleet {
    tasks: Vec<tokio::task::JoinHandle<Option<String>>>,
    /// The counts.
    pub stats: Arc<DriverStats>,
}

impl DriverFleet {
    /// Starts one loop per account; every loop ends at `stop`.
    pub fn start(
        cfg: DriverFleetConfig,
        accounts: Vec<Account>,
        judge: Arc<Judge>,
        stop: watch::Receiver<bool>,
    ) -> DriverFleet {
        let stats = Arc::new(DriverStats::default());
        let cfg = Arc::new(cfg);
        let tasks = accounts
            .into_iter()
            .enumerate()
            .map(|(i, account)| {
                let (cfg, judge, stats, stop) = (
                    Arc::clone(&cfg),
                    Arc::clone(&judge),
                    Arc::clone(&stats),
                    stop.clone(),
                );
                tokio::spawn(async move { driver_loop(i, account, cfg, judge, stats, stop).await })
            })
            .collect();
        DriverFleet { tasks, stats }
    }

    /// Waits for every loop; answers the first error of each driver that had one.
    pub async fn join(self) -> Vec<String> {
        let mut errors = Vec::new();
        for t in self.tasks {
            if let Ok(Some(e)) = t.await {
                errors.push(e);
            }
        }
        errors
    }
}

fn new_sink() -> Sink {
    Sink {
        notifications: Arc::default(),
        transcript: Arc::default(),
        counts: Arc::default(),
        dropped: Arc::default(),
        step: Arc::default(),
        t0: std::time::Instant::now(),
        trace_len: Arc::new(|| 0),
    }
}

/// Clears what the sink collected; answers whether a `logged_out` notification was among it.
fn drain(sink: &Sink) -> bool {
    sink.transcript.lock().unwrap_or_else(|p| p.into_inner()).clear();
    sink.counts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let mut n = sink.notifications.lock().unwrap_or_else(|p| p.into_inner());
    let out = n.iter().any(|r| r.method == "logged_out");
    n.clear();
    out
}

/// The error kind of a failed call, if any.
fn error_kind(e: &rotary_harness::RpcError) -> Option<String> {
    e.data
        .as_ref()
        .and_then(|d| d.get("kind"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

async fn driver_loop(
    index: usize,
    account: Account,
    cfg: Arc<DriverFleetConfig>,
    judge: Arc<Judge>,
    stats: Arc<DriverStats>,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    let mut rng = SeededRng::derive(cfg.seed, 0xD_0000 + index as u64);
    let mut first_error = None;
    let state_dir = cfg.state_root.join(format!("driver-{index}"));
    let mut round = 0u64;
    while !*stop.borrow() {
        round += 1;
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        let _ = std::fs::create_dir_all(&state_dir);
        let result = run_round(
            &cfg, &account, &state_dir, &judge, &stats, &mut rng, &mut stop, round,
        )
        .await;
        if let Err(e) = result {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(driver = index, error = %e, "a soak driver failed; its session is over, the soak goes on");
            first_error.get_or_insert_with(|| format!("driver {index}: {e}"));
            // A driver that fails at once must not spin: wait before the next round.
            let pause = tokio::time::sleep(Duration::from_secs(2));
            tokio::select! {
                _ = pause => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    first_error
}

#[allow(clippy::too_many_arguments)]
async fn run_round(
    cfg: &DriverFleetConfig,
    account: &Account,
    state_dir: &std::path::Path,
    judge: &Judge,
    stats: &DriverStats,
    rng: &mut SeededRng,
    stop: &mut watch::Receiver<bool>,
    round: u64,
) -> Result<(), DriverFailure> {
    let sink = new_sink();
    let scenario = format!("soak.round-{round}");
    let mut d = Driver::spawn(
        &cfg.command,
        &cfg.homeserver_url,
        &scenario,
        state_dir,
        sink.clone(),
    )?;
    let init = json!({"protocol": 1, "homeserver_url": cfg.homeserver_url, "scenario": scenario, "state_dir": state_dir});
    let caps: Vec<String> = match d.call("initialize", init, cfg.call_timeout).await? {
        Ok(v) => v["capabilities"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        Err(e) => {
            d.kill().await;
            return Err(DriverFailure::Spawn(format!("initialize failed: {}", e.message)));
        }
    };
    let login = json!({"user": account.user, "password": account.password, "refresh_token": true});
    stats.calls.fetch_add(1, Ordering::Relaxed);
    let device = match d.call("login", login, cfg.call_timeout).await? {
        Ok(v) => v["device_id"].as_str().unwrap_or("?").to_owned(),
        Err(_) => {
            stats.call_errors.fetch_add(1, Ordering::Relaxed);
            d.shutdown(Duration::from_secs(2)).await;
            return Ok(());
        }
    };
    stats.alive.fetch_add(1, Ordering::Relaxed);
    drain(&sink);
    let has = |c: &str| caps.iter().any(|x| x == c);
    let (can_sync, can_parallel) = (has("sync"), has("parallel"));
    let end = Instant::now() + cfg.round;
    let mut since: Option<String> = None;
    let outcome = loop {
        let wait = rng.jitter(cfg.interval, 0.5, 1.5);
        let slept = tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = stop.wait_for(|s| *s) => false,
        };
        if !slept || Instant::now() >= end {
            break Ok(());
        }
        let roll = rng.unit();
        let (method, params) = if can_parallel && roll < 0.25 {
            ("parallel", json!({"count": 3, "op": "whoami", "params": {}}))
        } else if can_sync && roll < 0.6 {
            let mut p = json!({"timeout_ms": 0});
            if let Some(s) = &since {
                p["since"] = json!(s);
            }
            ("sync", p)
        } else {
            ("whoami", json!({}))
        };
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let answer = match d.call(method, params, cfg.call_timeout).await {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        let logged_out_note = drain(&sink);
        let logged_out_error = match &answer {
            Ok(v) => {
                if method == "sync" {
                    since = v["next_batch"].as_str().map(str::to_owned);
                }
                false
            }
            Err(e) => {
                stats.call_errors.fetch_add(1, Ordering::Relaxed);
                matches!(error_kind(e).as_deref(), Some("logged_out" | "soft_logged_out"))
            }
        };
        if logged_out_note || logged_out_error {
            stats.logouts.fetch_add(1, Ordering::Relaxed);
            judge.logout(&device, Some(&account.user));
            break Ok(());
        }
    };
    stats.alive.fetch_sub(1, Ordering::Relaxed);
    match outcome {
        Ok(()) => {
            d.shutdown(Duration::from_secs(3)).await;
            Ok(())
        }
        Err(e) => {
            d.kill().await;
            Err(e)
        }
    }
}
