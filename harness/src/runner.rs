//! Running many scenarios: in parallel (`--jobs`), each with its own server and driver, gathered
//! into one [`RunReport`] in catalogue order, with `--expect` applied.

use crate::execute::{ExecOptions, run_scenario};
use crate::expect::Expectations;
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
}

impl RunConfig {
    /// A configuration for `driver` with one job per core.
    pub fn new(driver: impl Into<String>) -> RunConfig {
        RunConfig {
            driver: driver.into(),
            jobs: default_jobs(),
            call_timeout: None,
            expectations: Expectations::default(),
        }
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

/// Runs the scenarios and returns the report; `on_done` sees each scenario as it finishes (for a
/// progress bar). Scenario problems become verdicts; this never fails.
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
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in scenarios.iter().enumerate() {
        let s = s.clone();
        let opts = opts.clone();
        let permits = Arc::clone(&permits);
        let on_done = Arc::clone(&on_done);
        let expected = cfg.expectations.lists_case(&s.id, &s.aliases);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let (mut report, info) = run_scenario(&s, &opts).await;
            report.expected_failure = expected;
            on_done(&report);
            (i, report, info)
        });
    }
    let mut results: Vec<Option<ScenarioReport>> = vec![None; scenarios.len()];
    let mut driver: Option<DriverInfo> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, report, info)) => {
                if driver.is_none() {
                    driver = info;
                }
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(report);
                }
            }
            Err(e) => tracing::error!("a scenario task failed: {e}"),
        }
    }
    let scenarios: Vec<ScenarioReport> = results.into_iter().flatten().collect();
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
        scenarios,
    }
}
