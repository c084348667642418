//! Rotary's harness: the scenario model, the driver protocol, the runner, the checks and the
//! reports behind the `rotary` command line.
#![forbid(unsafe_code)]

mod catalogue;
mod checks;
mod cli;
pub mod commands;
mod driver;
mod execute;
mod expect;
mod record;
pub mod report;
mod runner;
mod scenario;
pub mod serve;

pub use catalogue::{Catalogue, CatalogueError, Partition, Selection, default_dir};
pub use checks::{Observed, REFRESH_ENDPOINTS, SessionView, evaluate, is_refresh, label_number};
pub use cli::{Cli, Command};
pub use driver::{
    Driver, DriverFailure, MAX_LINE, MAX_LOG_NOTIFICATIONS, MAX_NOTIFICATIONS, RawLine, RawNotification,
    RpcError, STDERR_KEEP, Sink, TRANSCRIPT_LINE_MAX, TRANSCRIPT_MAX_LINES, kill_stragglers,
};
pub use execute::{ExecOptions, redact_tokens, run_scenario};
pub use expect::{ExpectError, Expectations};
pub use record::{
    CallError, CheckResult, DriverInfo, Level, NotificationRecord, RunReport, SCHEMA_VERSION, ScenarioReport,
    StepOutcome, StepRecord, Summary, TranscriptLine, Verdict,
};
pub use runner::{RunConfig, default_jobs, run_scenarios};
pub use scenario::{
    Action, Auth, Bounds, CAPABILITIES, CHECK_NAMES, Check, CheckSpec, DEFAULT_CALL_TIMEOUT,
    DEFAULT_SCENARIO_TIMEOUT, ERROR_KINDS, ParallelOp, Scenario, ScenarioError, Step, StepRange, StepRef,
    server_lines,
};
pub use serve::{ServeArgs, build_server, parse_kv};
