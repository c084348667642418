//! Rotary's harness: runs the scenario catalogue against any client through its driver, and
//! reports what happened.
//!
//! The front door is [`run_scenarios`]: load a [`Catalogue`], pick scenarios with a [`Selection`],
//! give a [`RunConfig`] (the driver's command line, jobs, known failures) and get a [`RunReport`]
//! that the [`report`] module renders for the terminal, JSON, JUnit and HTML. Each scenario runs
//! against a fresh `rotary_server::MockHomeserver` and a fresh driver process; its checks are the
//! pure functions of `rotary_judge`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rotary_harness::{Catalogue, RunConfig, Selection, default_dir, run_scenarios};
//! let catalogue = Catalogue::load(&default_dir())?;
//! let picked: Vec<_> = catalogue
//!     .select(&Selection { globs: vec!["concurrency.*".into()], ..Selection::default() })?
//!     .into_iter()
//!     .cloned()
//!     .collect();
//! let run = run_scenarios(&picked, &RunConfig::new("node my-driver.mjs").jobs(4), |_| {}).await;
//! println!("{}", rotary_harness::report::summary_line(&run));
//! # Ok(()) }
//! ```
//!
//! Inside: [`scenario`] (the model and its loader), [`steps`] (what a scenario's steps do, one
//! type each), `driver_process` (spawning and speaking to a driver), `execute` (one scenario),
//! `runner` (many, in parallel), [`record`] (what a run records) and [`report`].
#![forbid(unsafe_code)]

mod catalogue;
mod driver_process;
mod execute;
mod expect;
pub mod record;
mod redact;
pub mod repeat;
pub mod report;
mod runner;
pub mod scenario;
pub mod steps;

pub use catalogue::{Catalogue, CatalogueError, Partition, Selection, default_dir};
pub use expect::{ExpectError, Expectations, Expected, is_flaky_reason};
pub use record::{DriverInfo, Level, Repeats, RunReport, SCHEMA_VERSION, ScenarioReport, Summary, Verdict};
pub use redact::redact_tokens;
pub use runner::{RunConfig, default_jobs, run_scenarios};
pub use scenario::{Scenario, ScenarioError, server_lines};

// Paths of earlier releases, kept so that users' code keeps compiling; the names above (and the
// modules) are the ones to use.
#[doc(hidden)]
pub use driver_process::{
    Driver, DriverFailure, MAX_LINE, MAX_LOG_NOTIFICATIONS, MAX_NOTIFICATIONS, RawLine, RawNotification,
    RpcError, STDERR_KEEP, Sink, TRANSCRIPT_LINE_MAX, TRANSCRIPT_MAX_LINES, kill_stragglers,
};
#[doc(hidden)]
pub use execute::{ExecOptions, run_scenario};
#[doc(hidden)]
pub use record::{CallError, CheckResult, NotificationRecord, StepOutcome, StepRecord, TranscriptLine};
#[doc(hidden)]
pub use rotary_judge::check::{Bounds, Check, StepRange, StepRef};
#[doc(hidden)]
pub use rotary_judge::label::label_number;
#[doc(hidden)]
pub use rotary_judge::{Observed, SessionView};
#[doc(hidden)]
pub use rotary_protocol::{CAPABILITIES, ERROR_KINDS};
#[doc(hidden)]
pub use scenario::{DEFAULT_CALL_TIMEOUT, DEFAULT_SCENARIO_TIMEOUT};
#[doc(hidden)]
pub use steps::{Action, Auth, ParallelOp, Step};

/// The names of every check (now `rotary_judge::Check::NAMES`).
#[doc(hidden)]
pub const CHECK_NAMES: &[&str] = rotary_judge::Check::NAMES;

/// The endpoints whose calls can be refresh calls (now `rotary_judge::TraceEntry::is_refresh`).
#[doc(hidden)]
pub const REFRESH_ENDPOINTS: &[&str] = &["refresh", "oauth_token"];

/// Whether a trace entry is a refresh call (now `rotary_judge::TraceEntry::is_refresh`).
#[doc(hidden)]
pub fn is_refresh(e: &rotary_judge::TraceEntry) -> bool {
    e.is_refresh()
}

/// Evaluates one check (now `rotary_judge::Check::evaluate`).
#[doc(hidden)]
pub fn evaluate(check: &Check, obs: &Observed) -> CheckResult {
    check.evaluate(obs)
}
