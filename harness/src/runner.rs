//! Running many scenarios: in parallel (`--jobs`), each with its own server and driver, gathered
//! into one [`RunReport`] in catalogue order, with `--expect` applied. With `--repeat N` each
//! scenario runs N times and its runs are folded into one report ([`crate::repeat`]).

use crate::execute::{ExecOptions, run_scenario};
use crate::expect::{Expectations, Expected};
use crate::record::{DriverInfo, RunReport, SCHEMA_VERSION, ScenarioReport, Summary};
use crate::scenario::Scenario;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// How to run a set of scenarios.
///
/// ```
/// use rotary_harness::RunConfig;
/// let cfg = RunConfig::new("my-driver --flag").jobs(4);
/// assert_eq!(cfg.jobs, 4);
/// ```
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The driver's shell command line.
    pub driver: String,
    /// Scenarios at once (at least 1).
    pub jobs: usize,
    /// Overrides every scenario's per-call timeout.
    pub call_timeout: Option<Duration>,
    /// Known failures (`--expect FILE`).
    pub expectations: Expectations,
    /// Runs per scenario (`--repeat N`, at least 1).
    pub repeat: u32,
}

impl RunConfig {
    /// A configuration for `driver` with one job per core.
    pub fn new(driver: impl Into<String>) -> RunConfig {
        RunConfig {
            driver: driver.into(),
            jobs: default_jobs(),
            call_timeout: None,
            expectations: Expectations::default(),
            repeat: 1,
        }
    }

    /// Sets the runs per scenario (`--repeat N`; 0 counts as 1).
    pub fn repeat(mut self, n: u32) -> RunConfig {
        self.repeat = n.max(1);
        self
    }

    /// Sets the number of parallel scenarios.
    pub fn jobs(mut self, jobs: usize) -> RunConfig {
        self.jobs = jobs.max(1);
        self
    }

    /// Overrides every scenario's per-call timeout.
    pub fn call_timeout(mut self, t: Option<Duration>) -> RunConfig {
        self.call_timeout = t;
        self
    }

    /// Sets the known failures.
    pub fn expectations(mut self, e: Expectations) -> RunConfig {
        self.expectations = e;
        self
    }

    /// The old name of [`RunConfig::expectations`], which read like `Option::expect`.
    #[deprecated(note = "use `RunConfig::expectations`")]
    #[doc(hidden)]
    pub fn expect(self, e: Expectations) -> RunConfig {
        self.expectations(e)
    }
}

/// The number of cores, the default for `--jobs`.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs the scenarios and returns the report; `on_done` sees each run of a scenario as it
/// finishes (for a progress bar: `scenarios.len() * repeat` calls). Scenario problems become
/// verdicts; this never fails.
///
/// Runs start in queue order: with `repeat` N > 1, run *k* of every scenario (in the given order)
/// before run *k + 1* of any, so the runs of one scenario are spread over the run rather than back
/// to back.
pub async fn run_scenarios(
    scenarios: &[Scenario],
    cfg: &RunConfig,
    on_done: impl Fn(&ScenarioReport) + Send + Sync + 'static,
) -> RunReport {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let permits = Arc::new(Semaphore::new(cfg.jobs.max(1)));
    let on_done = Arc::new(on_done);
    let opts = ExecOptions {
        driver: cfg.driver.clone(),
        call_timeout: cfg.call_timeout,
    };
    let repeat = cfg.repeat.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..repeat {
        for (i, s) in scenarios.iter().enumerate() {
            let s = s.clone();
            let opts = opts.clone();
            let on_done = Arc::clone(&on_done);
            let expected = cfg.expectations.expected_case(&s.id, &s.aliases);
            // Taken here, in queue order, so runs start in that order (tasks are not polled in
            // spawn order).
            let permit = Arc::clone(&permits).acquire_owned().await;
            tasks.spawn(async move {
                let _permit = permit;
                let (mut report, info) = run_scenario(&s, &opts).await;
                report.expected_failure = expected != Expected::Pass;
                report.expected_flaky = expected == Expected::Flaky;
                on_done(&report);
                (i, k, report, info)
            });
        }
    }
    let mut runs: Vec<Vec<Option<ScenarioReport>>> = vec![vec![None; repeat as usize]; scenarios.len()];
    let mut driver: Option<DriverInfo> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, k, report, info)) => {
                if driver.is_none() {
                    driver = info;
                }
                if let Some(slot) = runs.get_mut(i).and_then(|r| r.get_mut(k as usize)) {
                    *slot = Some(report);
                }
            }
            Err(e) => tracing::error!("a scenario task failed: {e}"),
        }
    }
    let scenarios: Vec<ScenarioReport> = runs
        .into_iter()
        .filter_map(|r| crate::repeat::aggregate(r.into_iter().flatten().collect()))
        .collect();
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    RunReport {
        schema: SCHEMA_VERSION,
        rotary_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        driver: driver.unwrap_or_else(|| DriverInfo {
            command: cfg.driver.clone(),
            ..DriverInfo::default()
        }),
        summary: Summary::of(&scenarios, duration_ms),
        warnings: crate::repeat::expectation_warnings(&scenarios),
        scenarios,
    }
}
