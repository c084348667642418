//! The soak itself: a target (the embedded mock by default), the fleet of simulated sessions and
//! driver processes, the judge on the streamed trace, the timeline's events at their times, one
//! row of the series a second, and at the end the metrics, the thresholds and the report.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rotary_rollout::soak::SoakError> {
//! use rotary_rollout::soak::{Soak, SoakConfig};
//! use std::time::Duration;
//! let mut cfg = SoakConfig::new(20, Duration::from_secs(30));
//! cfg.access_token_lifetime = Duration::from_secs(3);
//! let outcome = Soak::new(cfg).run_embedded().await?;
//! assert!(outcome.passed());
//! # Ok(()) }
//! ```

use super::drivers::{DriverFleet, DriverFleetConfig};
use super::fleet::{Workload, WorkloadError, WorkloadStats};
use super::judge::Judge;
use super::judge::{JudgeSummary, LOGOUT_SETTLE};
use super::memory::{MemoryWatch, rss_self};
use super::metrics::{SecondRow, Series, Values, invariant_metric};
use super::report::{SeriesWriter, SoakReport};
use super::schedule::{Schedule, ScheduleError};
use super::target::{MockTarget, SoakTarget, TargetError};
use super::threshold::{self, Threshold};
use super::timeline::{Event, Timeline};
use rotary_judge::live::{INVARIANTS, WatchConfig};
use rotary_reference::Bugs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Rows of the series kept in memory for the charts (the CSV has every second).
pub const SERIES_POINTS: usize = 1_200;

/// What to soak, for how long, judged how.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Simulated sessions.
    pub sessions: usize,
    /// How long.
    pub duration: Duration,
    /// The embedded mock's access-token lifetime.
    pub access_token_lifetime: Duration,
    /// The phases.
    pub schedule: Schedule,
    /// The thresholds (all must hold).
    pub thresholds: Vec<Threshold>,
    /// Bug switches for a share of the simulated sessions.
    pub bugs: Bugs,
    /// That share (0..=1).
    pub bug_share: f64,
    /// Driver processes: the command and how many.
    pub drivers: Option<(String, usize)>,
    /// The seed of every random choice.
    pub seed: u64,
    /// Where the report goes.
    pub report_dir: Option<PathBuf>,
    /// Stop at the first `must` violation.
    pub fail_fast: bool,
    /// Show the live progress line (on a terminal).
    pub progress: bool,
    /// How the live invariants judge.
    pub watch: WatchConfig,
}

impl SoakConfig {
    /// `sessions` sessions for `duration`, the default schedule and thresholds, 5 s tokens, seed 1.
    pub fn new(sessions: usize, duration: Duration) -> SoakConfig {
        SoakConfig {
            sessions,
            duration,
            access_token_lifetime: Duration::from_secs(5),
            schedule: Schedule::default_schedule(),
            thresholds: Threshold::defaults(),
            bugs: Bugs::NONE,
            bug_share: 1.0,
            drivers: None,
            seed: 1,
            report_dir: None,
            fail_fast: false,
            progress: false,
            watch: WatchConfig::default(),
        }
    }
}

/// A soak that could not run.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The schedule does not fit.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The target failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The fleet could not start.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// Writing the report failed.
    #[error("cannot write the report in {dir}: {source}")]
    Report {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing to run.
    #[error("nothing to soak: --sessions 0 and no --driver")]
    Empty,
}

/// How a soak ended.
#[derive(Debug)]
pub struct SoakOutcome {
    /// Everything the report holds.
    pub report: SoakReport,
}

impl SoakOutcome {
    /// Whether every threshold held (and the run was not interrupted).
    pub fn passed(&self) -> bool {
        self.report.summary.passed
    }
}

/// A soak, ready to run.
#[derive(Debug)]
pub struct Soak {
    cfg: SoakConfig,
}

impl Soak {
    /// A soak with this configuration.
    pub fn new(cfg: SoakConfig) -> Soak {
        Soak { cfg }
    }

    /// Runs against a fresh embedded mock homeserver.
    pub async fn run_embedded(self) -> Result<SoakOutcome, SoakError> {
        let target = MockTarget::start(self.cfg.access_token_lifetime).await?;
        self.run(Arc::new(target)).await
    }

    /// Runs against `target`.
    pub async fn run(self, target: Arc<dyn SoakTarget>) -> Result<SoakOutcome, SoakError> {
        let cfg = self.cfg;
        let n_drivers = cfg.drivers.as_ref().map_or(0, |(_, m)| *m);
        if cfg.sessions == 0 && n_drivers == 0 {
            return Err(SoakError::Empty);
        }
        let lifetime = cfg.access_token_lifetime;
        // A session refused definitively must have ended by then.
        let zombie_after = (lifetime * 3).max(Duration::from_secs(10));
        let timeline = Timeline::build(&cfg.schedule, cfg.duration, lifetime, cfg.sessions, cfg.seed)?;
        let accounts = target.accounts("soak", cfg.sessions).await?;
        let driver_accounts = target.accounts("driver", n_drivers).await?;
        let mut writer = match &cfg.report_dir {
            Some(dir) => Some(SeriesWriter::create(dir).map_err(|source| SoakError::Report {
                dir: dir.clone(),
                source,
            })?),
            None => None,
        };
        let judge = Arc::new(Judge::new(cfg.watch.clone()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (pump_stop_tx, pump_stop_rx) = watch::channel(false);
        let pump = {
            let (judge, feed) = (Arc::clone(&judge), target.subscribe());
            tokio::spawn(async move { judge.pump(feed, pump_stop_rx, Duration::from_millis(500)).await })
        };
        let started = Instant::now();
        let fleet = if cfg.sessions > 0 {
            Some(
                Workload::builder()
                    .base_url(target.base_url())
                    .accounts(accounts)
                    .profile(cfg.schedule.workload.clone())
                    .seed(cfg.seed)
                    .ramp_up(timeline.ramp_up)
                    .tag(format!("soak{}", cfg.seed))
                    .bugs(cfg.bugs, cfg.bug_share)
                    .observer(Arc::clone(&judge) as Arc<dyn super::fleet::SessionObserver>)
                    .start()?,
            )
        } else {
            None
        };
        let state_root =
            std::env::temp_dir().join(format!("rotary-soak-{}-{}", std::process::id(), cfg.seed));
        let drivers = cfg.drivers.as_ref().map(|(command, _)| {
            DriverFleet::start(
                DriverFleetConfig {
                    command: command.clone(),
                    homeserver_url: target.base_url(),
                    state_root: state_root.clone(),
                    interval: cfg.schedule.workload.action_interval,
                    call_timeout: Duration::from_secs(30),
                    round: Duration::from_secs(300),
                    seed: cfg.seed,
                },
                driver_accounts,
                Arc::clone(&judge),
                stop_rx.clone(),
            )
        });
        let mut progress = super::progress::Progress::new(cfg.progress, cfg.duration);
        let mut memory = MemoryWatch::default();
        let mut series = Series::new(SERIES_POINTS);
        let mut must = judge.must_violation();
        let mut next_event = 0usize;
        let mut second = 0u64;
        let mut alive_seconds = 0f64;
        let (mut clock_jumps, mut skipped_jumps, mut revoked) = (0u64, 0u64, 0u64);
        let mut interrupted = false;
        let mut stopped_early = false;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let total = cfg.duration;
        loop {
            let now = started.elapsed();
            // The events due.
            while let Some(ev) = timeline.events.get(next_event).filter(|e| e.at <= now) {
                next_event += 1;
                match &ev.event {
                    Event::PhaseStart { name, .. } => {
                        tracing::info!(phase = %name, "soak phase starts");
                        progress.phase(name);
                    }
                    Event::FaultsOn { rules } => target.add_faults(rules)?,
                    Event::FaultsOff => target.clear_faults()?,
                    Event::ClockJump { by } => match target.advance_clock(*by) {
                        Ok(()) => clock_jumps += 1,
                        Err(TargetError::Unsupported(what)) => {
                            skipped_jumps += 1;
                            tracing::warn!("a clock jump is skipped: the target cannot {what}");
                        }
                        Err(e) => return Err(e.into()),
                    },
                    Event::Revoke { sessions } => {
                        for info in sessions.iter().filter_map(|&i| fleet.as_ref()?.session(i)?.login) {
                            match target.revoke(&info.user_id, &info.device_id).await {
                                Ok(()) => revoked += 1,
                                Err(e) => tracing::warn!(error = %e, "a revocation failed"),
                            }
                        }
                    }
                    Event::Suspend { sessions, duration } => {
                        if let Some(f) = &fleet {
                            for &i in sessions {
                                f.suspend(i, *duration);
                            }
                        }
                    }
                }
            }
            if now >= Duration::from_secs(second + 1) || now >= total {
                second += 1;
                let stats = fleet.as_ref().map(|f| f.stats()).unwrap_or_default();
                let driver_alive = drivers
                    .as_ref()
                    .map_or(0, |d| d.stats.alive.load(std::sync::atomic::Ordering::Relaxed));
                let alive = stats.alive + driver_alive;
                alive_seconds += alive.saturating_sub(stats.suspended) as f64;
                let rss = rss_self().unwrap_or(0);
                memory.record(rss, now >= timeline.ramp_up);
                judge.settle_logouts(LOGOUT_SETTLE, zombie_after);
                let c = judge.take_second();
                let row = SecondRow {
                    t: second,
                    phase: timeline.phase_at(now).map(|p| p.name.clone()).unwrap_or_default(),
                    alive,
                    suspended: stats.suspended,
                    requests: c.requests,
                    refreshes: c.refreshes,
                    unauthorized: c.unauthorized,
                    faults: c.faults,
                    violations: c.violations,
                    logouts: c.logouts,
                    rss,
                };
                if let Some(w) = writer.as_mut() {
                    w.row(&row).map_err(|source| SoakError::Report {
                        dir: cfg.report_dir.clone().unwrap_or_default(),
                        source,
                    })?;
                }
                progress.tick(now, &row, judge.violation_counts());
                series.push(row);
            }
            if now >= total {
                break;
            }
            let next_tick = started + Duration::from_secs(second + 1).min(total);
            let wake = timeline
                .events
                .get(next_event)
                .map_or(next_tick, |e| next_tick.min(started + e.at));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = &mut ctrl_c => {
                    interrupted = true;
                    break;
                }
                _ = must.wait_for(|m| *m), if cfg.fail_fast => {
                    stopped_early = true;
                    break;
                }
            }
        }
        progress.finishing();
        let ran = started.elapsed();
        // The end: faults off, so the last syncs see the last messages; then everyone stops.
        target.clear_faults()?;
        stop_tx.send_replace(true);
        let stats = match fleet {
            Some(f) => f.stop().await,
            None => WorkloadStats::default(),
        };
        let (driver_errors, driver_stats) = match drivers {
            Some(d) => {
                let stats = Arc::clone(&d.stats);
                (d.join().await, Some(stats))
            }
            None => (Vec::new(), None),
        };
        pump_stop_tx.send_replace(true);
        if let Err(e) = pump.await {
            tracing::warn!(error = %e, "the trace pump ended abnormally");
        }
        if let Err(e) = target.cleanup().await {
            tracing::warn!(error = %e, "tidying up the target failed");
        }
        // At the end, a refusal younger than `zombie_after` is held against its session only
        // when it is older than a lifetime and the client kept sending requests after it.
        judge.settle_at_end(
            zombie_after.min(lifetime.max(Duration::from_secs(2))),
            zombie_after,
        );
        let _ = std::fs::remove_dir_all(&state_root);
        memory.record(rss_self().unwrap_or(0), true);
        progress.done();
        let summary = judge.summary();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let (driver_calls, driver_errors_n) = driver_stats
            .as_ref()
            .map_or((0, 0), |d| (load(&d.calls), load(&d.errors)));
        let values = values(&Inputs {
            summary: &summary,
            stats: &stats,
            memory,
            ran,
            lifetime,
            alive_seconds,
            clock_jumps,
            revoked,
            driver_calls,
            driver_errors: driver_errors_n,
        });
        let outcomes = threshold::check(&cfg.thresholds, &values);
        let held = outcomes.iter().all(|o| o.ok);
        let report = SoakReport::new(super::report::ReportParts {
            cfg: &cfg,
            target: target.describe(),
            timeline,
            values,
            thresholds: outcomes,
            summary,
            stats,
            series,
            driver_errors,
            passed: held && !interrupted,
            interrupted,
            stopped_early,
            skipped_clock_jumps: skipped_jumps,
        });
        if let (Some(dir), Some(w)) = (&cfg.report_dir, writer) {
            w.finish()
                .and_then(|()| report.write(dir))
                .map_err(|source| SoakError::Report {
                    dir: dir.clone(),
                    source,
                })?;
        }
        Ok(SoakOutcome { report })
    }
}

struct Inputs<'a> {
    summary: &'a JudgeSummary,
    stats: &'a WorkloadStats,
    memory: MemoryWatch,
    ran: Duration,
    lifetime: Duration,
    alive_seconds: f64,
    clock_jumps: u64,
    revoked: u64,
    driver_calls: u64,
    driver_errors: u64,
}

/// Every metric of the catalogue, from what the soak gathered.
fn values(i: &Inputs<'_>) -> Values {
    let (s, w) = (i.summary, i.stats);
    let mut v = Values::new();
    let mut put = |k: &str, x: f64| {
        v.insert(k.to_owned(), x);
    };
    put("violations.must", s.must as f64);
    put("violations.should", s.should as f64);
    put("violations.total", s.by_invariant.values().sum::<u64>() as f64);
    for inv in INVARIANTS {
        let n = s.by_invariant.get(inv.id).copied().unwrap_or(0);
        put(&invariant_metric(inv.id), n as f64);
    }
    put("logouts", s.logouts as f64);
    put("logouts.soft", w.soft_logouts as f64);
    put("sessions.lost", s.sessions_lost as f64);
    put("logins", w.logins as f64);
    put("login.failures", w.login_failures as f64);
    put("messages.sent", w.messages_sent as f64);
    put("messages.seen", w.messages_seen as f64);
    put("messages.lost", w.messages_lost as f64);
    put("messages.duplicated", w.messages_duplicated as f64);
    put("messages.late", w.messages_late as f64);
    put("messages.unverified", w.messages_unverified as f64);
    put("app.401", w.unauthorized as f64);
    put("actions", w.actions as f64);
    put("actions.failed", w.actions_failed as f64);
    put("syncs", w.syncs as f64);
    put("sync.failures", w.sync_failures as f64);
    put("requests", s.entries as f64);
    put("requests.401", s.unauthorized as f64);
    put("faults", s.faults as f64);
    put("refresh.count", s.refreshes as f64);
    put("refresh.failed", s.refresh_failed as f64);
    let secs = i.ran.as_secs_f64().max(0.001);
    put("refresh.rate", s.refreshes as f64 / secs);
    let lifetimes = i.alive_seconds / i.lifetime.as_secs_f64().max(0.001);
    let answered = s.refreshes.saturating_sub(s.refresh_failed) as f64;
    put(
        "refresh.per_lifetime",
        if lifetimes > 0.0 {
            answered / lifetimes
        } else {
            0.0
        },
    );
    for (k, q) in ["p50", "p90", "p99", "max"].iter().zip(s.refresh_ms) {
        put(&format!("refresh.{k}"), q);
    }
    for (k, q) in ["p50", "p90", "p99", "max"].iter().zip(s.action_ms) {
        put(&format!("action.{k}"), q);
    }
    put("drivers.errors", i.driver_errors as f64);
    put("drivers.calls", i.driver_calls as f64);
    put("trace.lagged", s.lagged as f64);
    put("clock.jumps", i.clock_jumps as f64);
    put("suspensions", w.suspensions as f64);
    put("revocations", i.revoked as f64);
    put("sessions.zombie", s.zombies as f64);
    put("memory.start", i.memory.start.unwrap_or(0) as f64);
    put("memory.end", i.memory.last as f64);
    put("memory.peak", i.memory.peak as f64);
    put("memory.growth", i.memory.growth() as f64);
    put("duration", i.ran.as_millis() as f64);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::metrics::catalogue;

    #[test]
    fn every_metric_of_the_catalogue_has_a_value() {
        let v = values(&Inputs {
            summary: &JudgeSummary::default(),
            stats: &WorkloadStats::default(),
            memory: MemoryWatch::default(),
            ran: Duration::from_secs(1),
            lifetime: Duration::from_secs(1),
            alive_seconds: 0.0,
            clock_jumps: 0,
            revoked: 0,
            driver_calls: 0,
            driver_errors: 0,
        });
        let names: Vec<String> = catalogue().into_iter().map(|m| m.name).collect();
        let keys: Vec<String> = v.keys().cloned().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
