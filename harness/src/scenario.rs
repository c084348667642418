//! The scenario file format: one TOML file per scenario, parsed and validated into a [`Scenario`].
//!
//! ```
//! use rotary_harness::Scenario;
//! let s = Scenario::from_toml(
//!     r#"
//! id = "expiry.example"
//! title = "A 401 leads to one refresh"
//! level = "must"
//! requirement = "A client refreshes when the server says its token expired."
//! references = ["Matrix spec v1.3, 'Refreshing access tokens'"]
//! needs = ["login", "whoami", "legacy-refresh"]
//! [[step]]
//! do = "login"
//! [[step]]
//! do = "expire_access_tokens"
//! [[step]]
//! do = "whoami"
//! name = "after"
//! [[expect]]
//! check = "refresh_count"
//! exactly = 1
//! [[expect]]
//! check = "step_ok"
//! step = "after"
//! "#,
//!     "scenarios/expiry.example.toml".as_ref(),
//! )
//! .unwrap();
//! assert_eq!(s.steps.len(), 3);
//! ```

use crate::record::Level;
use rotary_server::{FaultRule, ServerConfig, endpoint_names, parse_duration};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default time one driver call may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a whole scenario may take.
pub const DEFAULT_SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Capabilities a scenario may name in `needs` (PROTOCOL.md, "Capabilities").
pub const CAPABILITIES: &[&str] = &[
    "login",
    "register",
    "restore",
    "resume",
    "whoami",
    "sync",
    "send",
    "parallel",
    "logout",
    "legacy-refresh",
    "oauth-refresh",
    "oauth-login",
];

/// A mistake in a scenario file, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// Where in it (`step 3 (parallel)`, `expect 2 (refresh_count)`, `id`, …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(file: &Path, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        file: file.to_owned(),
        field: field.into(),
        message: message.into(),
    }
}

/// A reference to a step: its 1-based number or its `name`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StepRef {
    /// 1-based position.
    Index(usize),
    /// A step's `name`.
    Name(String),
}

impl std::fmt::Display for StepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepRef::Index(i) => write!(f, "{i}"),
            StepRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// An inclusive range of steps, resolved to 1-based indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StepRange {
    /// First step.
    pub from: usize,
    /// Last step.
    pub to: usize,
}

impl std::fmt::Display for StepRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "step {}", self.from)
        } else {
            write!(f, "steps {}–{}", self.from, self.to)
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Ms(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Ms(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn alice() -> String {
    "alice".to_owned()
}
fn wonderland() -> String {
    "wonderland".to_owned()
}
fn yes() -> bool {
    true
}
fn main_room() -> String {
    "main".to_owned()
}
fn hello() -> String {
    "hello".to_owned()
}

/// Which authentication API a session uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// `/login` and `/refresh` (spec v1.3, MSC2918).
    #[default]
    Legacy,
    /// OAuth 2.0 (spec v1.15): the token endpoint from `auth_metadata`.
    Oauth,
}

impl Auth {
    /// The name used in the driver protocol's `Session.auth` and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Auth::Legacy => "legacy",
            Auth::Oauth => "oauth",
        }
    }
}

/// The operation of a `parallel` step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParallelOp {
    /// `whoami`.
    Whoami,
    /// `sync`.
    Sync,
    /// `send`.
    Send,
}

impl ParallelOp {
    /// The method name.
    pub fn name(self) -> &'static str {
        match self {
            ParallelOp::Whoami => "whoami",
            ParallelOp::Sync => "sync",
            ParallelOp::Send => "send",
        }
    }
}

/// What a step does: a driver call or a server action.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Driver `login` with a password.
    Login {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// Localpart (default `alice`).
        #[serde(default = "alice")]
        user: String,
        /// Password (default `wonderland`).
        #[serde(default = "wonderland")]
        password: String,
        /// Ask for a refresh token (default true).
        #[serde(default = "yes")]
        refresh_token: bool,
        /// Re-use a device id.
        #[serde(default)]
        device_id: Option<String>,
        /// `oauth` logs in with the headless authorization-code flow (capability `oauth-login`).
        #[serde(default)]
        auth: Auth,
    },
    /// Driver `register` (m.login.dummy).
    Register {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// The new localpart.
        user: String,
        /// Password (default `wonderland`).
        #[serde(default = "wonderland")]
        password: String,
        /// Ask for a refresh token (default true).
        #[serde(default = "yes")]
        refresh_token: bool,
    },
    /// The harness mints a session on the server and hands it to the driver's `restore`.
    Restore {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// Whose session (default `alice`).
        #[serde(default = "alice")]
        user: String,
        /// Mint a refresh token too (default true).
        #[serde(default = "yes")]
        refresh_token: bool,
        /// Expire the access token on the server before handing it over.
        #[serde(default)]
        expired: bool,
        /// Leave `expires_in_ms` out of the session.
        #[serde(default)]
        omit_expiry: bool,
        /// `oauth` mints an OAuth 2.0 session (with a registered client) instead of a legacy one.
        #[serde(default)]
        auth: Auth,
    },
    /// Driver `resume` (normally implied by `kill_driver`).
    Resume {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Driver `whoami`.
    Whoami {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Driver `sync`.
    Sync {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// Long-poll timeout (default 0).
        #[serde(default)]
        timeout_ms: u64,
        /// A `since` token, or `"last"` for the previous sync's `next_batch`.
        #[serde(default)]
        since: Option<String>,
    },
    /// Driver `send` of a text message.
    Send {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// A room made by `create_room` (its handle, default `main`) or a literal `!room:id`.
        #[serde(default = "main_room")]
        room: String,
        /// Message body (default `hello`).
        #[serde(default = "hello")]
        body: String,
    },
    /// Driver `parallel`: `count` operations started at once.
    Parallel {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// How many.
        count: u32,
        /// Which operation.
        op: ParallelOp,
        /// Parameters of each operation (for `send`, `room` is a handle as above).
        #[serde(default)]
        params: toml::Table,
        /// Optional protocol extension: start operation i after `i × interval_ms` (drivers that
        /// do not know it start all at once).
        #[serde(default)]
        interval_ms: Option<u64>,
    },
    /// Driver `session`: what the client holds now.
    Session {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Driver `logout`.
    Logout {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Server: expire every access token of the user's devices now.
    ExpireAccessTokens {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// Whose (default `alice`).
        #[serde(default = "alice")]
        user: String,
    },
    /// Server: move the server clock forward.
    AdvanceClock {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// By how much (`"10m"`).
        #[serde(deserialize_with = "de_duration")]
        by: Duration,
    },
    /// Server: refresh the user's session out of band, as another copy of the client would.
    RotateOutOfBand {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// Whose (default `alice`).
        #[serde(default = "alice")]
        user: String,
        /// Also use the new access token once (so the old refresh token is no longer accepted).
        #[serde(default)]
        use_new: bool,
    },
    /// Server: revoke the user's sessions (every token of every device).
    RevokeSession {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// Whose (default `alice`).
        #[serde(default = "alice")]
        user: String,
    },
    /// Server: add a fault rule (same fields as a `[[fault]]` table).
    AddFault {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// The rule (boxed: it is much larger than the other actions).
        fault: Box<FaultRule>,
    },
    /// Server: remove every fault rule.
    ClearFaults {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Server: create a room joined by the user; later steps refer to it by `room`.
    CreateRoom {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// The handle later steps use (default `main`).
        #[serde(default = "main_room")]
        room: String,
        /// Creator and member (default `alice`).
        #[serde(default = "alice")]
        user: String,
    },
    /// Wait in real time (the client's clock cannot be advanced).
    Sleep {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
        /// How long.
        #[serde(deserialize_with = "de_duration")]
        duration: Duration,
    },
    /// SIGKILL the driver, start a new process and ask it to `resume`.
    KillDriver {
        /// Step name.
        #[serde(default)]
        name: Option<String>,
    },
}

impl Action {
    /// The `do` name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Login { .. } => "login",
            Action::Register { .. } => "register",
            Action::Restore { .. } => "restore",
            Action::Resume { .. } => "resume",
            Action::Whoami { .. } => "whoami",
            Action::Sync { .. } => "sync",
            Action::Send { .. } => "send",
            Action::Parallel { .. } => "parallel",
            Action::Session { .. } => "session",
            Action::Logout { .. } => "logout",
            Action::ExpireAccessTokens { .. } => "expire_access_tokens",
            Action::AdvanceClock { .. } => "advance_clock",
            Action::RotateOutOfBand { .. } => "rotate_out_of_band",
            Action::RevokeSession { .. } => "revoke_session",
            Action::AddFault { .. } => "add_fault",
            Action::ClearFaults { .. } => "clear_faults",
            Action::CreateRoom { .. } => "create_room",
            Action::Sleep { .. } => "sleep",
            Action::KillDriver { .. } => "kill_driver",
        }
    }

    /// The step's `name`, if given.
    pub fn step_name(&self) -> Option<&str> {
        match self {
            Action::Login { name, .. }
            | Action::Register { name, .. }
            | Action::Restore { name, .. }
            | Action::Resume { name }
            | Action::Whoami { name }
            | Action::Sync { name, .. }
            | Action::Send { name, .. }
            | Action::Parallel { name, .. }
            | Action::Session { name }
            | Action::Logout { name }
            | Action::ExpireAccessTokens { name, .. }
            | Action::AdvanceClock { name, .. }
            | Action::RotateOutOfBand { name, .. }
            | Action::RevokeSession { name, .. }
            | Action::AddFault { name, .. }
            | Action::ClearFaults { name }
            | Action::CreateRoom { name, .. }
            | Action::Sleep { name, .. }
            | Action::KillDriver { name } => name.as_deref(),
        }
    }

    /// The driver method this step calls, if it is a driver call.
    pub fn driver_method(&self) -> Option<&'static str> {
        match self {
            Action::Login { .. } => Some("login"),
            Action::Register { .. } => Some("register"),
            Action::Restore { .. } => Some("restore"),
            Action::Resume { .. } | Action::KillDriver { .. } => Some("resume"),
            Action::Whoami { .. } => Some("whoami"),
            Action::Sync { .. } => Some("sync"),
            Action::Send { .. } => Some("send"),
            Action::Parallel { .. } => Some("parallel"),
            Action::Session { .. } => Some("session"),
            Action::Logout { .. } => Some("logout"),
            _ => None,
        }
    }

    /// A short rendering of the parameters, for reports.
    pub fn summary(&self) -> String {
        match self {
            Action::Login {
                user,
                refresh_token,
                device_id,
                auth,
                ..
            } => {
                let mut s = format!("{user}, refresh_token={refresh_token}");
                if *auth == Auth::Oauth {
                    s.push_str(", auth=oauth");
                }
                if let Some(d) = device_id {
                    s.push_str(&format!(", device_id={d}"));
                }
                s
            }
            Action::Register {
                user, refresh_token, ..
            } => format!("{user}, refresh_token={refresh_token}"),
            Action::Restore {
                user,
                refresh_token,
                expired,
                omit_expiry,
                ..
            } => {
                format!("{user}, refresh_token={refresh_token}, expired={expired}, omit_expiry={omit_expiry}")
            }
            Action::Sync {
                timeout_ms, since, ..
            } => match since {
                Some(s) => format!("timeout_ms={timeout_ms}, since={s}"),
                None => format!("timeout_ms={timeout_ms}"),
            },
            Action::Send { room, body, .. } => format!("room={room}, body={body:?}"),
            Action::Parallel {
                count,
                op,
                interval_ms,
                ..
            } => match interval_ms {
                Some(i) => format!("{count} × {}, {i} ms apart", op.name()),
                None => format!("{count} × {}", op.name()),
            },
            Action::ExpireAccessTokens { user, .. } | Action::RevokeSession { user, .. } => user.clone(),
            Action::AdvanceClock { by, .. } => format!("by {}", rotary_server::format_duration(*by)),
            Action::RotateOutOfBand { user, use_new, .. } => format!("{user}, use_new={use_new}"),
            Action::AddFault { fault, .. } => format!(
                "{} on {}",
                fault.action.kind(),
                fault.endpoint.as_deref().unwrap_or("any endpoint")
            ),
            Action::CreateRoom { room, user, .. } => format!("{room} by {user}"),
            Action::Sleep { duration, .. } => rotary_server::format_duration(*duration),
            _ => String::new(),
        }
    }
}

/// Bounds on a count: any of exactly / at least / at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bounds {
    /// Exactly this many.
    pub exactly: Option<u64>,
    /// At least.
    pub at_least: Option<u64>,
    /// At most.
    pub at_most: Option<u64>,
}

impl Bounds {
    /// Whether `n` is within the bounds.
    pub fn holds(&self, n: u64) -> bool {
        self.exactly.is_none_or(|e| n == e)
            && self.at_least.is_none_or(|l| n >= l)
            && self.at_most.is_none_or(|m| n <= m)
    }
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.exactly, self.at_least, self.at_most) {
            (Some(e), _, _) => write!(f, "exactly {e}"),
            (None, Some(l), Some(m)) => write!(f, "between {l} and {m}"),
            (None, Some(l), None) => write!(f, "at least {l}"),
            (None, None, Some(m)) => write!(f, "at most {m}"),
            (None, None, None) => write!(f, "any number of"),
        }
    }
}

/// A check as written in `[[expect]]` (before step references are resolved).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckSpec {
    /// Number of refresh calls the server saw.
    RefreshCount {
        /// Exactly.
        exactly: Option<u64>,
        /// At least.
        at_least: Option<u64>,
        /// At most.
        at_most: Option<u64>,
        /// Only requests that arrived during these steps (`[from, to]`).
        steps: Option<(StepRef, StepRef)>,
    },
    /// Number of requests to an endpoint.
    RequestCount {
        /// Endpoint name (`whoami`, `sync`, `send`, `login`, …; see `rotary serve --help`).
        endpoint: String,
        /// Only responses with this status.
        status: Option<u16>,
        /// Exactly.
        exactly: Option<u64>,
        /// At least.
        at_least: Option<u64>,
        /// At most.
        at_most: Option<u64>,
        /// Only requests that arrived during these steps.
        steps: Option<(StepRef, StepRef)>,
    },
    /// Every refresh presented the newest refresh token the client had received.
    NewestRefreshToken {},
    /// No request carried an access token older than the newest one the client had received.
    NoStaleAccessToken {
        /// Only requests that arrived during these steps.
        steps: Option<(StepRef, StepRef)>,
    },
    /// A driver step (every operation of a `parallel`) succeeded; without `step`, every driver step.
    StepOk {
        /// The step.
        step: Option<StepRef>,
    },
    /// A driver step failed, optionally with one of these error kinds.
    StepError {
        /// The step.
        step: StepRef,
        /// Accepted kinds (`logged_out`, `soft_logged_out`, `http`, `network`, …); any if empty.
        #[serde(default)]
        kind: Vec<String>,
    },
    /// The client never signalled a logout (no `logged_out` notification, no logout error).
    NoLogout {},
    /// The client signalled a logout (notification or error kind), with this softness if given.
    Logout {
        /// Required `soft_logout` value.
        soft_logout: Option<bool>,
    },
    /// After the first logout signal, at most `at_most` more requests reached the server.
    QuietAfterLogout {
        /// How many are tolerated (default 0).
        #[serde(default)]
        at_most: u64,
        /// Count only this endpoint.
        endpoint: Option<String>,
    },
    /// A refresh happened at least `margin_ms` before the expiry of the access token it replaced.
    PreemptiveRefresh {
        /// The margin, ms.
        margin_ms: u64,
    },
    /// No request was answered 401.
    #[serde(rename = "no_401")]
    No401 {
        /// Only requests that arrived during these steps.
        steps: Option<(StepRef, StepRef)>,
    },
    /// At most `at_most` refresh calls in any window of length `per` (real time).
    RefreshRate {
        /// How many.
        at_most: u64,
        /// The window.
        #[serde(deserialize_with = "de_duration")]
        per: Duration,
    },
    /// After each failed refresh call, the next one came at least `min_ms` later.
    RefreshBackoff {
        /// The least gap, ms.
        min_ms: u64,
    },
    /// Every message sent into the room is stored exactly once.
    MessagesOnce {
        /// The room handle (default `main`).
        #[serde(default = "main_room")]
        room: String,
    },
    /// The tokens the client holds (a `session` step's result) are the newest the server issued.
    SessionLatest {
        /// The `session` step (default: the last one).
        step: Option<StepRef>,
    },
    /// The client still holds a refresh token (a `session` step's result).
    SessionHasRefreshToken {
        /// The `session` step (default: the last one).
        step: Option<StepRef>,
    },
    /// The client holds no tokens (a `session` step's result), e.g. after a logout.
    SessionEmpty {
        /// The `session` step (default: the last one).
        step: Option<StepRef>,
    },
    /// The number of devices (sessions) the user has on the server at the end.
    DeviceCount {
        /// Whose (default `alice`).
        #[serde(default = "alice")]
        user: String,
        /// How many.
        exactly: usize,
    },
    /// Every login and registration asked for a refresh token.
    LoginRequestedRefresh {},
}

/// A check with its step references resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    /// See [`CheckSpec::RefreshCount`].
    RefreshCount {
        /// Bounds.
        bounds: Bounds,
        /// Window.
        steps: Option<StepRange>,
    },
    /// See [`CheckSpec::RequestCount`].
    RequestCount {
        /// Endpoint.
        endpoint: String,
        /// Status filter.
        status: Option<u16>,
        /// Bounds.
        bounds: Bounds,
        /// Window.
        steps: Option<StepRange>,
    },
    /// See [`CheckSpec::NewestRefreshToken`].
    NewestRefreshToken,
    /// See [`CheckSpec::NoStaleAccessToken`].
    NoStaleAccessToken {
        /// Window.
        steps: Option<StepRange>,
    },
    /// See [`CheckSpec::StepOk`]; `None` = every driver step.
    StepOk {
        /// The step.
        step: Option<usize>,
    },
    /// See [`CheckSpec::StepError`].
    StepError {
        /// The step.
        step: usize,
        /// Accepted kinds.
        kind: Vec<String>,
    },
    /// See [`CheckSpec::NoLogout`].
    NoLogout,
    /// See [`CheckSpec::Logout`].
    Logout {
        /// Required softness.
        soft_logout: Option<bool>,
    },
    /// See [`CheckSpec::QuietAfterLogout`].
    QuietAfterLogout {
        /// Tolerance.
        at_most: u64,
        /// Endpoint filter.
        endpoint: Option<String>,
    },
    /// See [`CheckSpec::PreemptiveRefresh`].
    PreemptiveRefresh {
        /// Margin.
        margin_ms: u64,
    },
    /// See [`CheckSpec::No401`].
    #[serde(rename = "no_401")]
    No401 {
        /// Window.
        steps: Option<StepRange>,
    },
    /// See [`CheckSpec::RefreshRate`].
    RefreshRate {
        /// How many.
        at_most: u64,
        /// Window length, ms.
        per_ms: u64,
    },
    /// See [`CheckSpec::RefreshBackoff`].
    RefreshBackoff {
        /// Least gap.
        min_ms: u64,
    },
    /// See [`CheckSpec::MessagesOnce`].
    MessagesOnce {
        /// Room handle.
        room: String,
    },
    /// See [`CheckSpec::SessionLatest`].
    SessionLatest {
        /// The `session` step.
        step: usize,
    },
    /// See [`CheckSpec::SessionHasRefreshToken`].
    SessionHasRefreshToken {
        /// The `session` step.
        step: usize,
    },
    /// See [`CheckSpec::SessionEmpty`].
    SessionEmpty {
        /// The `session` step.
        step: usize,
    },
    /// See [`CheckSpec::DeviceCount`].
    DeviceCount {
        /// Whose.
        user: String,
        /// How many.
        exactly: usize,
    },
    /// See [`CheckSpec::LoginRequestedRefresh`].
    LoginRequestedRefresh,
}

impl Check {
    /// The check's name as written in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            Check::RefreshCount { .. } => "refresh_count",
            Check::RequestCount { .. } => "request_count",
            Check::NewestRefreshToken => "newest_refresh_token",
            Check::NoStaleAccessToken { .. } => "no_stale_access_token",
            Check::StepOk { .. } => "step_ok",
            Check::StepError { .. } => "step_error",
            Check::NoLogout => "no_logout",
            Check::Logout { .. } => "logout",
            Check::QuietAfterLogout { .. } => "quiet_after_logout",
            Check::PreemptiveRefresh { .. } => "preemptive_refresh",
            Check::No401 { .. } => "no_401",
            Check::RefreshRate { .. } => "refresh_rate",
            Check::RefreshBackoff { .. } => "refresh_backoff",
            Check::MessagesOnce { .. } => "messages_once",
            Check::SessionLatest { .. } => "session_latest",
            Check::SessionHasRefreshToken { .. } => "session_has_refresh_token",
            Check::SessionEmpty { .. } => "session_empty",
            Check::DeviceCount { .. } => "device_count",
            Check::LoginRequestedRefresh => "login_requested_refresh",
        }
    }
}

/// Names of every check, for `--help` and error messages.
pub const CHECK_NAMES: &[&str] = &[
    "refresh_count",
    "request_count",
    "newest_refresh_token",
    "no_stale_access_token",
    "step_ok",
    "step_error",
    "no_logout",
    "logout",
    "quiet_after_logout",
    "preemptive_refresh",
    "no_401",
    "refresh_rate",
    "refresh_backoff",
    "messages_once",
    "session_latest",
    "session_has_refresh_token",
    "session_empty",
    "device_count",
    "login_requested_refresh",
];

/// Error kinds a driver may report (PROTOCOL.md, "Errors").
pub const ERROR_KINDS: &[&str] = &[
    "logged_out",
    "soft_logged_out",
    "http",
    "network",
    "unsupported",
    "other",
    "method_not_found",
];

/// A step: its action (which carries its optional name).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// 1-based position.
    pub index: usize,
    /// What it does.
    pub action: Action,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    id: String,
    title: String,
    level: Level,
    requirement: String,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    call_timeout: Option<Duration>,
    #[serde(default)]
    server: toml::Table,
    #[serde(default)]
    fault: Vec<toml::Table>,
    #[serde(default)]
    step: Vec<toml::Table>,
    #[serde(default)]
    expect: Vec<toml::Table>,
}

/// The line of the `n`-th (1-based) `[[header]]` in the text, for messages.
fn header_line(text: &str, header: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(header))
        .nth(n.checked_sub(1)?)
        .map(|(i, _)| i + 1)
}

/// Deserialises the tables of one `[[kind]]` array, naming the entry and its line on a mistake.
fn tables<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
    kind: &str,
    tables: Vec<toml::Table>,
) -> Result<Vec<T>, ScenarioError> {
    let header = format!("[[{kind}]]");
    tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let what = t
                .get(if kind == "step" { "do" } else { "endpoint" })
                .and_then(|v| v.as_str())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            toml::Value::Table(t).try_into().map_err(|e: toml::de::Error| {
                let at = header_line(text, &header, i + 1).map_or(String::new(), |l| format!("line {l}: "));
                err(
                    file,
                    format!("{kind} {}{what}", i + 1),
                    format!("{at}{}", e.message().trim_end()),
                )
            })
        })
        .collect()
}

/// A validated scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// The file it came from.
    pub file: PathBuf,
    /// Stable id (also the file's name without `.toml`).
    pub id: String,
    /// One-line title.
    pub title: String,
    /// Level.
    pub level: Level,
    /// The requirement (spec sentence or behaviour).
    pub requirement: String,
    /// Spec sections, MSCs, SDK bugs.
    pub references: Vec<String>,
    /// Tags (the id's prefix is always one).
    pub tags: Vec<String>,
    /// Driver capabilities it needs.
    pub needs: Vec<String>,
    /// Whole-scenario timeout.
    pub timeout: Duration,
    /// Per-call timeout.
    pub call_timeout: Duration,
    /// The `[server]` table as written (profile and knobs).
    pub server_table: serde_json::Value,
    /// The resulting server configuration.
    #[serde(skip)]
    pub server: ServerConfig,
    /// Fault rules installed before the first step.
    pub faults: Vec<FaultRule>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Checks in order.
    pub checks: Vec<Check>,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(file: &Path) -> Result<Scenario, ScenarioError> {
        let text =
            std::fs::read_to_string(file).map_err(|e| err(file, "file", format!("cannot read: {e}")))?;
        let s = Scenario::from_toml(&text, file)?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != s.id {
            return Err(err(
                file,
                "id",
                format!("id {:?} must match the file name ({stem}.toml)", s.id),
            ));
        }
        Ok(s)
    }

    /// Parses and validates scenario text; `file` is used in error messages only.
    pub fn from_toml(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
        let raw: ScenarioFile = toml::from_str(text).map_err(|e| {
            let (before, upto) = e.span().map_or(("", ""), |span| {
                (
                    text.get(..span.start).unwrap_or(""),
                    text.get(..span.end).unwrap_or(""),
                )
            });
            let line = before.matches('\n').count() + 1;
            let field = locate(upto).unwrap_or_else(|| "toml".to_owned());
            err(file, field, format!("line {line}: {}", e.message().trim_end()))
        })?;
        validate(raw, text, file)
    }

    /// The step a reference names.
    pub fn resolve(&self, r: &StepRef) -> Option<usize> {
        resolve(&self.steps, r)
    }

    /// Whether a tag (or the id's prefix) matches.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

fn locate(before: &str) -> Option<String> {
    let steps = before.matches("[[step]]").count();
    let expects = before.matches("[[expect]]").count();
    match (before.rfind("[[step]]"), before.rfind("[[expect]]")) {
        (Some(s), Some(x)) if s > x => Some(format!("step {steps}")),
        (Some(_), None) => Some(format!("step {steps}")),
        (_, Some(_)) => Some(format!("expect {expects}")),
        _ => None,
    }
}

fn resolve(steps: &[Step], r: &StepRef) -> Option<usize> {
    match r {
        StepRef::Index(i) => (*i >= 1 && *i <= steps.len()).then_some(*i),
        StepRef::Name(n) => steps
            .iter()
            .find(|s| s.action.step_name() == Some(n.as_str()))
            .map(|s| s.index),
    }
}

fn bounds(
    file: &Path,
    field: &str,
    exactly: Option<u64>,
    at_least: Option<u64>,
    at_most: Option<u64>,
) -> Result<Bounds, ScenarioError> {
    if exactly.is_some() && (at_least.is_some() || at_most.is_some()) {
        return Err(err(
            file,
            field,
            "give `exactly`, or `at_least` / `at_most`, not both",
        ));
    }
    if exactly.is_none() && at_least.is_none() && at_most.is_none() {
        return Err(err(file, field, "needs `exactly`, `at_least` or `at_most`"));
    }
    if let (Some(l), Some(m)) = (at_least, at_most)
        && l > m
    {
        return Err(err(file, field, format!("at_least ({l}) is above at_most ({m})")));
    }
    Ok(Bounds {
        exactly,
        at_least,
        at_most,
    })
}

fn validate(raw: ScenarioFile, text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
    let faults: Vec<FaultRule> = tables(text, file, "fault", raw.fault)?;
    let actions: Vec<Action> = tables(text, file, "step", raw.step)?;
    let id_ok = !raw.id.is_empty()
        && raw
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        && raw.id.contains('.');
    if !id_ok {
        return Err(err(
            file,
            "id",
            format!(
                "{:?} is not a valid id: use lowercase letters, digits, `-`, `_`, with a group prefix such as `expiry.`",
                raw.id
            ),
        ));
    }
    if raw.title.trim().is_empty() {
        return Err(err(file, "title", "must not be empty"));
    }
    if raw.requirement.trim().is_empty() {
        return Err(err(file, "requirement", "must not be empty"));
    }
    for n in &raw.needs {
        if !CAPABILITIES.contains(&n.as_str()) {
            return Err(err(
                file,
                "needs",
                format!("unknown capability {n:?}; known: {}", CAPABILITIES.join(", ")),
            ));
        }
    }
    // Server: the profile, then the knobs.
    let server_json =
        serde_json::to_value(&raw.server).map_err(|e| err(file, "server", format!("cannot read: {e}")))?;
    let server = ServerConfig::default()
        .patched(&server_json)
        .map_err(|e| err(file, "server", e.to_string()))?;
    let endpoints = endpoint_names();
    for (i, f) in faults.iter().enumerate() {
        f.validate(&endpoints)
            .map_err(|e| err(file, format!("fault {}", i + 1), e.to_string()))?;
    }
    let steps: Vec<Step> = actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| Step { index: i + 1, action })
        .collect();
    if steps.is_empty() {
        return Err(err(file, "step", "a scenario needs at least one [[step]]"));
    }
    // Step names unique, rooms defined before use, needs cover the driver calls.
    let mut names = HashSet::new();
    let mut rooms: HashSet<String> = HashSet::new();
    for s in &steps {
        let field = format!("step {} ({})", s.index, s.action.name());
        if let Some(n) = s.action.step_name()
            && !names.insert(n.to_owned())
        {
            return Err(err(file, field, format!("the step name {n:?} is used twice")));
        }
        if let Some(m) = s.action.driver_method()
            && !matches!(m, "session")
            && !raw.needs.iter().any(|n| n == m)
        {
            return Err(err(
                file,
                field,
                format!("calls the driver's `{m}`, so `needs` must list {m:?}"),
            ));
        }
        let needs = |cap: &str, why: &str| -> Result<(), ScenarioError> {
            if raw.needs.iter().any(|n| n == cap) {
                Ok(())
            } else {
                Err(err(file, &field, format!("{why}, so `needs` must list {cap:?}")))
            }
        };
        match &s.action {
            Action::Login {
                auth: Auth::Oauth, ..
            } => {
                needs("oauth-login", "logs in through OAuth")?;
                needs("oauth-refresh", "logs in through OAuth")?;
            }
            Action::Restore {
                auth: Auth::Oauth, ..
            } => needs("oauth-refresh", "restores an OAuth session")?,
            Action::CreateRoom { room, .. } => {
                rooms.insert(room.clone());
            }
            Action::Send { room, .. } => check_room(file, &field, room, &rooms)?,
            Action::Parallel {
                op, params, count, ..
            } => {
                if *count == 0 || *count > 1000 {
                    return Err(err(file, field, "count must be between 1 and 1000"));
                }
                if *op == ParallelOp::Send {
                    let room = params.get("room").and_then(|v| v.as_str()).unwrap_or("main");
                    check_room(file, &field, room, &rooms)?;
                }
                if !raw.needs.iter().any(|n| n == op.name()) {
                    return Err(err(
                        file,
                        field,
                        format!(
                            "runs `{}` in parallel, so `needs` must list {:?}",
                            op.name(),
                            op.name()
                        ),
                    ));
                }
            }
            Action::AddFault { fault, .. } => {
                fault
                    .validate(&endpoints)
                    .map_err(|e| err(file, field, e.to_string()))?;
            }
            _ => {}
        }
    }
    let mut checks = Vec::new();
    for (i, table) in raw.expect.into_iter().enumerate() {
        let name = table
            .get("check")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        let field = format!("expect {} ({})", i + 1, if name.is_empty() { "?" } else { &name });
        if name.is_empty() {
            return Err(err(
                file,
                field,
                format!("needs `check = \"…\"`, one of: {}", CHECK_NAMES.join(", ")),
            ));
        }
        if !CHECK_NAMES.contains(&name.as_str()) {
            return Err(err(
                file,
                field,
                format!("unknown check {name:?}; known: {}", CHECK_NAMES.join(", ")),
            ));
        }
        let spec: CheckSpec = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| err(file, &field, e.to_string().trim_end()))?;
        checks.push(resolve_check(file, &field, spec, &steps, &rooms)?);
    }
    if checks.is_empty() && raw.level != Level::Info {
        return Err(err(
            file,
            "expect",
            "a must/should scenario needs at least one [[expect]]",
        ));
    }
    let mut tags = raw.tags;
    if let Some((prefix, _)) = raw.id.split_once('.')
        && !tags.iter().any(|t| t == prefix)
    {
        tags.insert(0, prefix.to_owned());
    }
    Ok(Scenario {
        file: file.to_owned(),
        id: raw.id,
        title: raw.title,
        level: raw.level,
        requirement: raw.requirement.trim().to_owned(),
        references: raw.references,
        tags,
        needs: raw.needs,
        timeout: raw.timeout.unwrap_or(DEFAULT_SCENARIO_TIMEOUT),
        call_timeout: raw.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
        server_table: server_json,
        server,
        faults,
        steps,
        checks,
    })
}

fn check_room(file: &Path, field: &str, room: &str, rooms: &HashSet<String>) -> Result<(), ScenarioError> {
    if room.starts_with('!') || rooms.contains(room) {
        Ok(())
    } else {
        Err(err(
            file,
            field,
            format!("room {room:?} is not made by an earlier `create_room` step (nor a literal !room id)"),
        ))
    }
}

fn resolve_check(
    file: &Path,
    field: &str,
    spec: CheckSpec,
    steps: &[Step],
    rooms: &HashSet<String>,
) -> Result<Check, ScenarioError> {
    let one =
        |r: &StepRef| resolve(steps, r).ok_or_else(|| err(file, field, format!("step {r} does not exist")));
    let range = |r: Option<(StepRef, StepRef)>| -> Result<Option<StepRange>, ScenarioError> {
        match r {
            None => Ok(None),
            Some((a, b)) => {
                let (from, to) = (one(&a)?, one(&b)?);
                if from > to {
                    return Err(err(file, field, format!("steps [{a}, {b}] run backwards")));
                }
                Ok(Some(StepRange { from, to }))
            }
        }
    };
    let session_step = |r: Option<StepRef>| -> Result<usize, ScenarioError> {
        let i = match r {
            Some(r) => one(&r)?,
            None => steps
                .iter()
                .rev()
                .find(|s| matches!(s.action, Action::Session { .. }))
                .map(|s| s.index)
                .ok_or_else(|| err(file, field, "needs a `session` step to look at"))?,
        };
        match steps.get(i - 1).map(|s| &s.action) {
            Some(Action::Session { .. }) => Ok(i),
            _ => Err(err(file, field, format!("step {i} is not a `session` step"))),
        }
    };
    let driver_step = |i: usize| -> Result<usize, ScenarioError> {
        match steps.get(i - 1).map(|s| s.action.driver_method()) {
            Some(Some(_)) => Ok(i),
            _ => Err(err(file, field, format!("step {i} is not a driver call"))),
        }
    };
    let endpoints = endpoint_names();
    Ok(match spec {
        CheckSpec::RefreshCount {
            exactly,
            at_least,
            at_most,
            steps: s,
        } => Check::RefreshCount {
            bounds: bounds(file, field, exactly, at_least, at_most)?,
            steps: range(s)?,
        },
        CheckSpec::RequestCount {
            endpoint,
            status,
            exactly,
            at_least,
            at_most,
            steps: s,
        } => {
            if !endpoints.contains(&endpoint.as_str()) {
                return Err(err(
                    file,
                    field,
                    format!("unknown endpoint {endpoint:?}; known: {}", endpoints.join(", ")),
                ));
            }
            Check::RequestCount {
                endpoint,
                status,
                bounds: bounds(file, field, exactly, at_least, at_most)?,
                steps: range(s)?,
            }
        }
        CheckSpec::NewestRefreshToken {} => Check::NewestRefreshToken,
        CheckSpec::NoStaleAccessToken { steps: s } => Check::NoStaleAccessToken { steps: range(s)? },
        CheckSpec::StepOk { step } => Check::StepOk {
            step: match step {
                Some(r) => Some(driver_step(one(&r)?)?),
                None => None,
            },
        },
        CheckSpec::StepError { step, kind } => {
            for k in &kind {
                if !ERROR_KINDS.contains(&k.as_str()) {
                    return Err(err(
                        file,
                        field,
                        format!("unknown error kind {k:?}; known: {}", ERROR_KINDS.join(", ")),
                    ));
                }
            }
            Check::StepError {
                step: driver_step(one(&step)?)?,
                kind,
            }
        }
        CheckSpec::NoLogout {} => Check::NoLogout,
        CheckSpec::Logout { soft_logout } => Check::Logout { soft_logout },
        CheckSpec::QuietAfterLogout { at_most, endpoint } => {
            if let Some(e) = &endpoint
                && !endpoints.contains(&e.as_str())
            {
                return Err(err(file, field, format!("unknown endpoint {e:?}")));
            }
            Check::QuietAfterLogout { at_most, endpoint }
        }
        CheckSpec::PreemptiveRefresh { margin_ms } => Check::PreemptiveRefresh { margin_ms },
        CheckSpec::No401 { steps: s } => Check::No401 { steps: range(s)? },
        CheckSpec::RefreshRate { at_most, per } => {
            if per.is_zero() {
                return Err(err(file, field, "`per` must be longer than 0"));
            }
            Check::RefreshRate {
                at_most,
                per_ms: u64::try_from(per.as_millis()).unwrap_or(u64::MAX),
            }
        }
        CheckSpec::RefreshBackoff { min_ms } => Check::RefreshBackoff { min_ms },
        CheckSpec::MessagesOnce { room } => {
            if !rooms.contains(&room) {
                return Err(err(
                    file,
                    field,
                    format!("room {room:?} is not made by a `create_room` step"),
                ));
            }
            Check::MessagesOnce { room }
        }
        CheckSpec::SessionLatest { step } => Check::SessionLatest {
            step: session_step(step)?,
        },
        CheckSpec::SessionHasRefreshToken { step } => Check::SessionHasRefreshToken {
            step: session_step(step)?,
        },
        CheckSpec::SessionEmpty { step } => Check::SessionEmpty {
            step: session_step(step)?,
        },
        CheckSpec::DeviceCount { user, exactly } => Check::DeviceCount { user, exactly },
        CheckSpec::LoginRequestedRefresh {} => Check::LoginRequestedRefresh,
    })
}

/// The `[server]` table of a scenario rendered as `key = value` lines, for `rotary explain`.
pub fn server_lines(table: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if let serde_json::Value::Object(m) = table {
        let sorted: BTreeMap<_, _> = m.iter().collect();
        for (k, v) in sorted {
            out.push(format!("{k} = {v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
id = "x.y"
title = "t"
level = "must"
requirement = "r"
needs = ["login", "whoami", "parallel", "send"]
"#;

    fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml(&format!("{BASE}{extra}"), Path::new("scenarios/x.y.toml"))
    }

    #[test]
    fn a_good_scenario_parses() {
        let s = parse(
            r#"
[server]
profile = "mas"
refreshable_access_token_lifetime = "2s"
[[fault]]
endpoint = "refresh"
nth = 1
action = { kind = "commit_then_drop" }
[[step]]
do = "login"
[[step]]
do = "parallel"
name = "storm"
count = 3
op = "whoami"
[[step]]
do = "advance_clock"
by = "10m"
[[expect]]
check = "refresh_count"
at_most = 1
steps = [2, "storm"]
[[expect]]
check = "step_ok"
step = "storm"
"#,
        )
        .unwrap();
        assert_eq!(s.server.profile, rotary_server::Profile::Mas);
        assert_eq!(s.tags, vec!["x".to_owned()]);
        assert_eq!(
            s.checks[0],
            Check::RefreshCount {
                bounds: Bounds {
                    exactly: None,
                    at_least: None,
                    at_most: Some(1)
                },
                steps: Some(StepRange { from: 2, to: 2 })
            }
        );
    }

    fn message(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_name_the_file_and_field() {
        let m = message("[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"refresh_cnt\"\nexactly = 1\n");
        assert!(
            m.starts_with("scenarios/x.y.toml: expect 1 (refresh_cnt): unknown check"),
            "{m}"
        );
        let m = message("[[step]]\ndo = \"logn\"\n");
        assert!(m.contains("step 1") && m.contains("logn"), "{m}");
        let m = message("[[step]]\ndo = \"sleep\"\nduration = \"3 fortnights\"\n");
        assert!(m.contains("step 1") && m.contains("fortnights"), "{m}");
        let m = message("[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"step_ok\"\nstep = \"nope\"\n");
        assert!(
            m.contains("expect 1 (step_ok)") && m.contains("\"nope\" does not exist"),
            "{m}"
        );
        let m = message("[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"refresh_count\"\n");
        assert!(m.contains("needs `exactly`"), "{m}");
        let m = message("[server]\nrefreshable_access_token_lifetime = \"soon\"\n[[step]]\ndo = \"login\"\n");
        assert!(m.contains(": server:"), "{m}");
        let m = message("[[step]]\ndo = \"sync\"\n[[expect]]\ncheck = \"no_logout\"\n");
        assert!(m.contains("`needs` must list \"sync\""), "{m}");
        let m = message("[[step]]\ndo = \"login\"\ncolour = 3\n");
        assert!(m.contains("colour"), "{m}");
        let m = message("[[step]]\ndo = \"send\"\n[[expect]]\ncheck = \"no_logout\"\n");
        assert!(m.contains("room \"main\""), "{m}");
    }

    #[test]
    fn bounds_render_and_hold() {
        let b = Bounds {
            exactly: None,
            at_least: Some(1),
            at_most: Some(2),
        };
        assert!(b.holds(1) && b.holds(2) && !b.holds(3) && !b.holds(0));
        assert_eq!(b.to_string(), "between 1 and 2");
    }

    #[test]
    fn check_names_are_complete() {
        // Every CheckSpec variant name is listed (serde would reject the others anyway).
        assert_eq!(CHECK_NAMES.len(), 19);
        let unique: HashSet<_> = CHECK_NAMES.iter().collect();
        assert_eq!(unique.len(), CHECK_NAMES.len());
    }
}
