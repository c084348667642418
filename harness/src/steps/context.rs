//! What steps act on while a scenario runs: the mock homeserver, the driver process and the
//! scenario's running state (rooms made, sends, `session` views, the last sync batch, time waited),
//! with the calls every step uses.

use crate::driver_process::{Driver, DriverFailure, RpcError, Sink};
use crate::record::{CallError, DriverInfo, StepOutcome, Verdict};
use crate::redact::preview;
use rotary_judge::SessionView;
use rotary_server::MockHomeserver;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A failure that ends the scenario: a broken driver, a timeout, or a step the harness could not
/// carry out. The message names the scenario and the step.
#[derive(Clone, Debug)]
pub struct Broken {
    /// `error`, `timeout` or `skipped`.
    pub verdict: Verdict,
    /// What happened.
    pub message: String,
}

/// Which step is running, for messages.
#[derive(Clone, Copy, Debug)]
pub struct StepAt {
    /// 1-based position.
    pub index: usize,
    /// Its `do`.
    pub action: &'static str,
}

/// The scenario's running state, shared by every step.
pub struct Ctx {
    /// The scenario's id.
    pub scenario: String,
    /// The driver's command line.
    pub driver_cmd: String,
    /// Time one driver call may take.
    pub call_timeout: Duration,
    /// The scenario's mock homeserver.
    pub server: Arc<MockHomeserver>,
    /// When the scenario started (the report's time scale).
    pub t0: Instant,
    /// The state folder that survives `kill_driver`.
    pub state_dir: tempfile::TempDir,
    /// Where the driver's notifications and transcript go.
    pub sink: Sink,
    /// The running driver.
    pub driver: Option<Driver>,
    /// What `initialize` said.
    pub info: Option<DriverInfo>,
    /// stderr of drivers that ended.
    pub stderr: String,
    /// Room handle → room id.
    pub rooms: HashMap<String, String>,
    /// Room handle → the outcome of each send aimed at it.
    pub room_sends: BTreeMap<String, Vec<StepOutcome>>,
    /// `session` step → what the client and the server held.
    pub sessions: BTreeMap<usize, SessionView>,
    /// The last successful sync's `next_batch`.
    pub last_next_batch: Option<String>,
    /// Real time spent in `sleep` steps.
    pub waited: Duration,
    /// Extra facts for the report.
    pub facts: BTreeMap<String, String>,
    /// Sessions minted for `restore` steps (the checks' "login" of a restored session).
    pub minted: Vec<rotary_judge::MintedSession>,
}

/// Turns a JSON-RPC error answer into the record's form.
pub fn call_error(e: RpcError) -> CallError {
    if e.code == -32601 {
        return CallError {
            kind: "method_not_found".to_owned(),
            message: e.message,
            status: None,
            errcode: None,
        };
    }
    let data = e.data.unwrap_or(Value::Null);
    CallError {
        kind: data
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("other")
            .to_owned(),
        message: e.message,
        status: data
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok()),
        errcode: data.get("errcode").and_then(Value::as_str).map(str::to_owned),
    }
}

impl Ctx {
    /// A closure that labels the tokens this scenario's server issued.
    pub fn label_of(&self) -> impl Fn(&str) -> Option<String> + 'static {
        let server = Arc::clone(&self.server);
        move |t: &str| server.label_of(t)
    }

    /// `scenario X, step N (do)` or `scenario X, start-up`.
    pub fn where_(&self, at: Option<StepAt>) -> String {
        match at {
            Some(at) => format!("scenario {}, step {} ({})", self.scenario, at.index, at.action),
            None => format!("scenario {}, start-up", self.scenario),
        }
    }

    /// Ends the scenario with `error` at this step.
    pub fn error(&self, at: Option<StepAt>, what: impl std::fmt::Display) -> Broken {
        Broken {
            verdict: Verdict::Error,
            message: format!("{}: {what}", self.where_(at)),
        }
    }

    fn broken(&self, at: Option<StepAt>, f: &DriverFailure) -> Broken {
        Broken {
            verdict: if f.is_timeout() {
                Verdict::Timeout
            } else {
                Verdict::Error
            },
            message: format!("{}: {f}", self.where_(at)),
        }
    }

    /// Starts (or restarts) the driver and asks it to `initialize`.
    pub async fn start_driver(&mut self, at: Option<StepAt>) -> Result<(), Broken> {
        if let Some(mut old) = self.driver.take() {
            old.kill().await;
            self.stderr.push_str(&old.stderr());
        }
        let driver = Driver::spawn(
            &self.driver_cmd,
            &self.server.url(),
            &self.scenario,
            self.state_dir.path(),
            self.sink.clone(),
        )
        .map_err(|f| self.broken(at, &f))?;
        self.driver = Some(driver);
        let params = json!({
            "protocol": rotary_protocol::PROTOCOL_VERSION,
            "homeserver_url": self.server.url(),
            "scenario": self.scenario,
            "state_dir": self.state_dir.path(),
        });
        let result = match self.raw_call(at, "initialize", params).await? {
            Ok(r) => r,
            Err(e) => return Err(self.error(at, format!("the driver refused `initialize`: {}", e.message))),
        };
        let caps = result.get("capabilities").and_then(Value::as_array);
        let Some(caps) = caps.filter(|c| c.iter().all(Value::is_string)) else {
            return Err(self.error(
                at,
                format!(
                    "the `initialize` result needs \"capabilities\": [strings], got {}",
                    preview(&result)
                ),
            ));
        };
        let text = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        self.info = Some(DriverInfo {
            name: text("name"),
            version: text("version"),
            capabilities: caps
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            command: self.driver_cmd.clone(),
        });
        Ok(())
    }

    /// One call: the driver's answer, or `Err` when the driver broke or ran out of time.
    pub async fn raw_call(
        &mut self,
        at: Option<StepAt>,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, RpcError>, Broken> {
        let timeout = self.call_timeout;
        let Some(driver) = self.driver.as_mut() else {
            return Err(self.error(at, "no driver is running"));
        };
        match driver.call(method, params, timeout).await {
            Ok(answer) => Ok(answer),
            Err(f) => Err(self.broken(at, &f)),
        }
    }

    /// One call, its answer as a step outcome.
    pub async fn call(&mut self, at: StepAt, method: &str, params: Value) -> Result<StepOutcome, Broken> {
        Ok(match self.raw_call(Some(at), method, params).await? {
            Ok(result) => StepOutcome::Ok { result },
            Err(e) => StepOutcome::Failed { error: call_error(e) },
        })
    }

    /// The room id of a handle made by `create_room` (or a literal `!room:id`).
    pub fn room_id(&self, handle: &str) -> String {
        if handle.starts_with('!') {
            return handle.to_owned();
        }
        self.rooms
            .get(handle)
            .cloned()
            .unwrap_or_else(|| handle.to_owned())
    }

    /// The user's device ids on the server.
    pub fn devices_of(&self, user: &str) -> Vec<String> {
        self.server
            .sessions(Some(user))
            .into_iter()
            .map(|d| d.device_id)
            .collect()
    }
}
