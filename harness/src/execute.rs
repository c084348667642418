//! Running one scenario: a fresh mock homeserver, the driver process, the steps, then the checks.

use crate::checks::{Observed, SessionView, evaluate, label_number};
use crate::driver::{Driver, DriverFailure, RawNotification, RpcError, Sink, kill_stragglers};
use crate::record::Level;
use crate::record::{
    CallError, DriverInfo, NotificationRecord, ScenarioReport, StepOutcome, StepRecord, TranscriptLine,
    Verdict,
};
use crate::scenario::{Action, Auth, ParallelOp, Scenario, Step};
use rotary_server::{MintRequest, MockHomeserver};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `shutdown` may take before the driver is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a scenario run needs besides the scenario.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// The driver's shell command line.
    pub driver: String,
    /// Overrides the scenario's per-call timeout.
    pub call_timeout: Option<Duration>,
}

/// A protocol-level failure that ends the scenario.
struct Broken {
    verdict: Verdict,
    message: String,
}

struct Exec<'a> {
    s: &'a Scenario,
    opts: &'a ExecOptions,
    server: Arc<MockHomeserver>,
    t0: Instant,
    state_dir: tempfile::TempDir,
    sink: Sink,
    driver: Option<Driver>,
    info: Option<DriverInfo>,
    stderr: String,
    steps: Vec<StepRecord>,
    rooms: HashMap<String, String>,
    room_sends: BTreeMap<String, Vec<StepOutcome>>,
    sessions: BTreeMap<usize, SessionView>,
    raw_sessions: Vec<(usize, Value)>,
    last_next_batch: Option<String>,
    waited: Duration,
    facts: BTreeMap<String, String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn since(t0: Instant) -> i64 {
    i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Turns a JSON-RPC error answer into the record's form.
fn call_error(e: RpcError) -> CallError {
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

fn outcome_of(answer: Result<Value, RpcError>) -> StepOutcome {
    match answer {
        Ok(result) => StepOutcome::Ok { result },
        Err(e) => StepOutcome::Failed { error: call_error(e) },
    }
}

fn toml_to_json(t: &toml::Table) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

const TOKEN_PREFIXES: &[&str] = &["syt_", "syr_", "mct_", "mcr_", "mat_", "mar_"];

/// Replaces every token-shaped word in `text` with its label (or `[token]` when unknown).
pub fn redact_tokens(text: &str, label_of: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = TOKEN_PREFIXES.iter().filter_map(|p| rest.find(p)).min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let token = &tail[..len];
        match label_of(token) {
            Some(l) => out.push_str(&l),
            None if len > 12 => out.push_str("[token]"),
            None => out.push_str(token),
        }
        rest = &tail[len..];
    }
}

/// A transcript line with its tokens labelled: parsed and relabelled when it is JSON, else
/// scanned for token-shaped words.
fn redact_json_line(line: &str, label_of: &dyn Fn(&str) -> Option<String>) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => label_json(&v, label_of).to_string(),
        Err(_) => redact_tokens(line, label_of),
    }
}

/// Replaces every string in a JSON value that is a token the server issued with its label;
/// token-looking strings it never issued become `at#?` / `rt#?`.
fn label_json(v: &Value, label_of: &dyn Fn(&str) -> Option<String>) -> Value {
    match v {
        Value::String(s) => match label_of(s) {
            Some(l) => Value::String(l),
            None if TOKEN_PREFIXES.iter().any(|p| s.starts_with(p)) => {
                Value::String(redact_tokens(s, label_of))
            }
            None => Value::String(s.clone()),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| label_json(x, label_of)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let labelled = if matches!(k.as_str(), "access_token" | "refresh_token") {
                        match x {
                            Value::String(s) => Value::String(label_of(s).unwrap_or_else(|| {
                                if k == "access_token" {
                                    "at#?".to_owned()
                                } else {
                                    "rt#?".to_owned()
                                }
                            })),
                            other => label_json(other, label_of),
                        }
                    } else {
                        label_json(x, label_of)
                    };
                    (k.clone(), labelled)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

impl<'a> Exec<'a> {
    fn label_of(&self) -> impl Fn(&str) -> Option<String> + 'static {
        let server = Arc::clone(&self.server);
        move |t: &str| server.label_of(t)
    }

    fn call_timeout(&self) -> Duration {
        self.opts.call_timeout.unwrap_or(self.s.call_timeout)
    }

    fn where_(&self, step: Option<&Step>) -> String {
        match step {
            Some(st) => format!("scenario {}, step {} ({})", self.s.id, st.index, st.action.name()),
            None => format!("scenario {}, start-up", self.s.id),
        }
    }

    fn broken(&self, step: Option<&Step>, f: &DriverFailure) -> Broken {
        Broken {
            verdict: if f.is_timeout() {
                Verdict::Timeout
            } else {
                Verdict::Error
            },
            message: format!("{}: {f}", self.where_(step)),
        }
    }

    async fn start_driver(&mut self, step: Option<&Step>) -> Result<(), Broken> {
        if let Some(mut old) = self.driver.take() {
            old.kill().await;
            self.stderr.push_str(&old.stderr());
        }
        let driver = Driver::spawn(
            &self.opts.driver,
            &self.server.url(),
            &self.s.id,
            self.state_dir.path(),
            self.sink.clone(),
        )
        .map_err(|f| self.broken(step, &f))?;
        self.driver = Some(driver);
        let params = json!({
            "protocol": 1,
            "homeserver_url": self.server.url(),
            "scenario": self.s.id,
            "state_dir": self.state_dir.path(),
        });
        let answer = self.raw_call(step, "initialize", params).await?;
        let result = match answer {
            Ok(r) => r,
            Err(e) => {
                return Err(Broken {
                    verdict: Verdict::Error,
                    message: format!(
                        "{}: the driver refused `initialize`: {}",
                        self.where_(step),
                        e.message
                    ),
                });
            }
        };
        let caps = result.get("capabilities").and_then(Value::as_array);
        let Some(caps) = caps.filter(|c| c.iter().all(Value::is_string)) else {
            return Err(Broken {
                verdict: Verdict::Error,
                message: format!(
                    "{}: the `initialize` result needs \"capabilities\": [strings], got {}",
                    self.where_(step),
                    preview(&result)
                ),
            });
        };
        let text = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        self.info = Some(DriverInfo {
            name: text("name"),
            version: text("version"),
            capabilities: caps
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            command: self.opts.driver.clone(),
        });
        Ok(())
    }

    async fn raw_call(
        &mut self,
        step: Option<&Step>,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, RpcError>, Broken> {
        let timeout = self.call_timeout();
        let Some(driver) = self.driver.as_mut() else {
            return Err(Broken {
                verdict: Verdict::Error,
                message: format!("{}: no driver is running", self.where_(step)),
            });
        };
        match driver.call(method, params, timeout).await {
            Ok(answer) => Ok(answer),
            Err(f) => Err(self.broken(step, &f)),
        }
    }

    async fn call(&mut self, step: &Step, method: &str, params: Value) -> Result<StepOutcome, Broken> {
        let answer = self.raw_call(Some(step), method, params).await?;
        Ok(outcome_of(answer))
    }

    fn room_id(&self, handle: &str) -> String {
        if handle.starts_with('!') {
            return handle.to_owned();
        }
        self.rooms
            .get(handle)
            .cloned()
            .unwrap_or_else(|| handle.to_owned())
    }

    fn devices_of(&self, user: &str) -> Vec<String> {
        self.server
            .sessions(Some(user))
            .into_iter()
            .map(|d| d.device_id)
            .collect()
    }

    /// Runs one step; `Err` ends the scenario.
    async fn step(&mut self, step: &Step) -> Result<StepOutcome, Broken> {
        let ok = |v: Value| Ok(StepOutcome::Ok { result: v });
        match &step.action {
            Action::Login {
                user,
                password,
                refresh_token,
                device_id,
                auth,
                ..
            } => {
                let mut p = json!({"user": user, "password": password, "refresh_token": refresh_token});
                if let Some(d) = device_id {
                    p["device_id"] = json!(d);
                }
                if *auth == Auth::Oauth {
                    p["auth"] = json!(auth.name());
                }
                self.call(step, "login", p).await
            }
            Action::Register {
                user,
                password,
                refresh_token,
                ..
            } => {
                self.call(
                    step,
                    "register",
                    json!({"user": user, "password": password, "refresh_token": refresh_token}),
                )
                .await
            }
            Action::Restore {
                user,
                refresh_token,
                expired,
                omit_expiry,
                auth,
                ..
            } => {
                let minted = match auth {
                    Auth::Legacy => self
                        .server
                        .mint_session_with(&MintRequest {
                            user: user.clone(),
                            device_id: None,
                            refresh_token: *refresh_token,
                        })
                        .map(|i| (i, None)),
                    Auth::Oauth => self
                        .server
                        .mint_oauth_session(user)
                        .map(|o| (o.issued, Some(o.client_id))),
                };
                let (issued, client_id) = match minted {
                    Ok(m) => m,
                    Err(e) => {
                        return Err(Broken {
                            verdict: Verdict::Error,
                            message: format!("{}: cannot mint a session: {e}", self.where_(Some(step))),
                        });
                    }
                };
                if *expired {
                    let _ = self.server.expire_session(user, &issued.device_id);
                }
                let mut session = json!({
                    "auth": auth.name(),
                    "user_id": issued.user_id,
                    "device_id": issued.device_id,
                    "access_token": issued.access_token,
                });
                if let Some(rt) = &issued.refresh_token {
                    session["refresh_token"] = json!(rt);
                }
                if let Some(c) = client_id {
                    session["client_id"] = json!(c);
                    session["issuer"] = json!(self.server.issuer());
                }
                if !*omit_expiry
                    && !*expired
                    && let Some(e) = issued.expires_in_ms(self.server.now_ms())
                {
                    session["expires_in_ms"] = json!(e);
                }
                self.call(step, "restore", json!({"session": session})).await
            }
            Action::Resume { .. } => self.call(step, "resume", json!({})).await,
            Action::Whoami { .. } => self.call(step, "whoami", json!({})).await,
            Action::Sync {
                timeout_ms, since, ..
            } => {
                let mut p = json!({"timeout_ms": timeout_ms});
                match since.as_deref() {
                    Some("last") => {
                        if let Some(b) = &self.last_next_batch {
                            p["since"] = json!(b);
                        }
                    }
                    Some(s) => p["since"] = json!(s),
                    None => {}
                }
                let out = self.call(step, "sync", p).await?;
                if let StepOutcome::Ok { result } = &out
                    && let Some(b) = result.get("next_batch").and_then(Value::as_str)
                {
                    self.last_next_batch = Some(b.to_owned());
                }
                Ok(out)
            }
            Action::Send { room, body, .. } => {
                let room_id = self.room_id(room);
                let out = self
                    .call(step, "send", json!({"room_id": room_id, "body": body}))
                    .await?;
                self.room_sends.entry(room.clone()).or_default().push(out.clone());
                Ok(out)
            }
            Action::Parallel {
                count,
                op,
                params,
                interval_ms,
                ..
            } => {
                let mut p = match toml_to_json(params) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let room_handle = p.get("room").and_then(Value::as_str).unwrap_or("main").to_owned();
                match op {
                    ParallelOp::Send => {
                        p.remove("room");
                        p.insert("room_id".into(), json!(self.room_id(&room_handle)));
                        p.entry("body").or_insert_with(|| json!("hello"));
                    }
                    ParallelOp::Sync => {
                        p.entry("timeout_ms").or_insert_with(|| json!(0));
                    }
                    ParallelOp::Whoami => {}
                }
                let mut call = json!({"count": count, "op": op.name(), "params": Value::Object(p)});
                if let Some(i) = interval_ms {
                    call["interval_ms"] = json!(i);
                }
                let answer = self.raw_call(Some(step), "parallel", call).await?;
                let out = match answer {
                    Err(e) => StepOutcome::Failed { error: call_error(e) },
                    Ok(result) => {
                        let Some(results) = result.get("results").and_then(Value::as_array) else {
                            return Err(Broken {
                                verdict: Verdict::Error,
                                message: format!(
                                    "{}: the `parallel` result needs \"results\": [..], got {}",
                                    self.where_(Some(step)),
                                    preview(&result)
                                ),
                            });
                        };
                        if results.len() != *count as usize {
                            return Err(Broken {
                                verdict: Verdict::Error,
                                message: format!(
                                    "{}: `parallel` asked for {count} operations but {} results came back",
                                    self.where_(Some(step)),
                                    results.len()
                                ),
                            });
                        }
                        let mut outs = Vec::new();
                        for r in results {
                            outs.push(parse_outcome(r).map_err(|why| Broken {
                                verdict: Verdict::Error,
                                message: format!(
                                    "{}: a `parallel` result is malformed: {why}",
                                    self.where_(Some(step))
                                ),
                            })?);
                        }
                        StepOutcome::Parallel { results: outs }
                    }
                };
                if *op == ParallelOp::Send {
                    let each: Vec<StepOutcome> = match &out {
                        StepOutcome::Parallel { results } => results.clone(),
                        other => vec![other.clone(); *count as usize],
                    };
                    self.room_sends.entry(room_handle).or_default().extend(each);
                }
                Ok(out)
            }
            Action::Session { .. } => {
                let out = self.call(step, "session", json!({})).await?;
                let mut view = SessionView::default();
                if let StepOutcome::Ok { result } = &out {
                    self.raw_sessions.push((step.index, result.clone()));
                    let label = |k: &str, unknown: &str| {
                        result
                            .get(k)
                            .and_then(Value::as_str)
                            .map(|t| self.server.label_of(t).unwrap_or_else(|| unknown.to_owned()))
                    };
                    view.access_token = label("access_token", "at#?");
                    view.refresh_token = label("refresh_token", "rt#?");
                }
                // The server's newest tokens of the client's device (found from the token it holds,
                // else the newest device of the scenario's users).
                let devices = self.server.sessions(None);
                let device = devices.iter().find(|d| {
                    view.access_token
                        .as_ref()
                        .is_some_and(|a| d.live_access_tokens.contains(a))
                        || view
                            .refresh_token
                            .as_ref()
                            .is_some_and(|r| d.live_refresh_tokens.contains(r))
                });
                let device = device.or_else(|| devices.last());
                if let Some(d) = device {
                    view.server_access_token = d
                        .live_access_tokens
                        .iter()
                        .max_by_key(|l| label_number(l))
                        .cloned();
                    view.server_refresh_token = d.current_refresh_token.clone();
                }
                self.sessions.insert(step.index, view);
                Ok(out)
            }
            Action::Logout { .. } => self.call(step, "logout", json!({})).await,
            Action::ExpireAccessTokens { user, .. } => {
                let mut labels = Vec::new();
                for d in self.devices_of(user) {
                    labels.extend(self.server.expire_session(user, &d).unwrap_or_default());
                }
                ok(json!({"expired": labels}))
            }
            Action::AdvanceClock { by, .. } => {
                self.server.advance_clock(*by);
                ok(json!({"advanced_ms": ms(*by)}))
            }
            Action::RotateOutOfBand { user, use_new, .. } => {
                let mut issued = Vec::new();
                for d in self.devices_of(user) {
                    if let Ok(i) = self.server.rotate_out_of_band(user, &d, *use_new) {
                        issued.push(json!({"device_id": d, "access_token": i.access_label, "refresh_token": i.refresh_label}));
                    }
                }
                ok(json!({"rotated": issued}))
            }
            Action::RevokeSession { user, .. } => {
                let devices = self.devices_of(user);
                for d in &devices {
                    let _ = self.server.revoke_session(user, d);
                }
                ok(json!({"revoked_devices": devices.len()}))
            }
            Action::AddFault { fault, .. } => match self.server.add_fault((**fault).clone()) {
                Ok(id) => ok(json!({"fault_id": id})),
                Err(e) => Err(Broken {
                    verdict: Verdict::Error,
                    message: format!("{}: the fault rule was refused: {e}", self.where_(Some(step))),
                }),
            },
            Action::ClearFaults { .. } => {
                self.server.clear_faults();
                ok(json!({}))
            }
            Action::CreateRoom { room, user, .. } => match self.server.create_room(user, Some(room)) {
                Ok(id) => {
                    self.rooms.insert(room.clone(), id.clone());
                    ok(json!({"room_id": id}))
                }
                Err(e) => Err(Broken {
                    verdict: Verdict::Error,
                    message: format!("{}: cannot create the room: {e}", self.where_(Some(step))),
                }),
            },
            Action::Sleep { duration, .. } => {
                tokio::time::sleep(*duration).await;
                self.waited += *duration;
                ok(json!({}))
            }
            Action::KillDriver { .. } => {
                if let Some(d) = self.driver.as_mut() {
                    d.kill().await;
                }
                self.start_driver(Some(step)).await?;
                self.call(step, "resume", json!({})).await
            }
        }
    }

    async fn run_steps(&mut self) -> Result<(), Broken> {
        for step in &self.s.steps {
            self.sink.step.store(step.index, Ordering::SeqCst);
            let started_ms = since(self.t0);
            let trace_from = self.server.trace_len();
            let out = self.step(step).await;
            // Let the server finish recording what the last response produced.
            let trace_to = self.server.trace_len();
            let label_of = self.label_of();
            let (outcome, result) = match out {
                Ok(o) => (label_outcome(&o, &label_of), Ok(())),
                Err(b) => (
                    StepOutcome::Aborted {
                        reason: b.message.clone(),
                    },
                    Err(b),
                ),
            };
            self.steps.push(StepRecord {
                index: step.index,
                name: step.action.step_name().map(str::to_owned),
                action: step.action.name().to_owned(),
                summary: step.action.summary(),
                started_ms,
                ended_ms: since(self.t0),
                trace_from,
                trace_to,
                outcome,
            });
            result?;
        }
        Ok(())
    }
}

fn label_outcome(o: &StepOutcome, label_of: &dyn Fn(&str) -> Option<String>) -> StepOutcome {
    match o {
        StepOutcome::Ok { result } => StepOutcome::Ok {
            result: label_json(result, label_of),
        },
        StepOutcome::Failed { error } => StepOutcome::Failed {
            error: CallError {
                message: redact_tokens(&error.message, label_of),
                ..error.clone()
            },
        },
        StepOutcome::Parallel { results } => StepOutcome::Parallel {
            results: results.iter().map(|r| label_outcome(r, label_of)).collect(),
        },
        StepOutcome::Aborted { reason } => StepOutcome::Aborted {
            reason: reason.clone(),
        },
    }
}

fn preview(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}…", &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

fn parse_outcome(v: &Value) -> Result<StepOutcome, String> {
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(StepOutcome::Ok {
            result: v.get("result").cloned().unwrap_or(Value::Null),
        }),
        Some(false) => {
            let e = v.get("error").cloned().unwrap_or(Value::Null);
            Ok(StepOutcome::Failed {
                error: CallError {
                    kind: e
                        .get("data")
                        .and_then(|d| d.get("kind"))
                        .or_else(|| e.get("kind"))
                        .and_then(Value::as_str)
                        .unwrap_or("other")
                        .to_owned(),
                    message: e.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
                    status: e
                        .get("data")
                        .and_then(|d| d.get("status"))
                        .or_else(|| e.get("status"))
                        .and_then(Value::as_u64)
                        .and_then(|s| u16::try_from(s).ok()),
                    errcode: e
                        .get("data")
                        .and_then(|d| d.get("errcode"))
                        .or_else(|| e.get("errcode"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                },
            })
        }
        None => Err(format!("an Outcome needs \"ok\": true|false, got {}", preview(v))),
    }
}

/// A report with the scenario's own fields and nothing observed (also what a scenario that could
/// not even start gets, e.g. when the server would not bind).
fn early(s: &Scenario, verdict: Verdict, message: Option<String>, started: Instant) -> ScenarioReport {
    ScenarioReport {
        id: s.id.clone(),
        title: s.title.clone(),
        level: s.level,
        tags: s.tags.clone(),
        requirement: s.requirement.clone(),
        references: s.references.clone(),
        verdict,
        expected_failure: false,
        message,
        duration_ms: ms(started.elapsed()),
        waited_ms: 0,
        server: s.server_table.clone(),
        checks: Vec::new(),
        steps: Vec::new(),
        trace: Vec::new(),
        notifications: Vec::new(),
        stderr: String::new(),
        transcript: Vec::new(),
        facts: BTreeMap::new(),
    }
}

/// Runs one scenario with a fresh server and driver. Never panics on driver misbehaviour: every
/// problem becomes a verdict with a message naming the scenario and step.
pub async fn run_scenario(s: &Scenario, opts: &ExecOptions) -> (ScenarioReport, Option<DriverInfo>) {
    let started = Instant::now();
    let mut builder = MockHomeserver::builder().config(s.server.clone());
    for f in &s.faults {
        builder = builder.fault(f.clone());
    }
    let server = match builder.start().await {
        Ok(server) => server,
        Err(e) => {
            return (
                early(
                    s,
                    Verdict::Error,
                    Some(format!(
                        "scenario {}: cannot start the mock homeserver: {e}",
                        s.id
                    )),
                    started,
                ),
                None,
            );
        }
    };
    let state_dir = match tempfile::Builder::new().prefix("rotary-state-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            return (
                early(
                    s,
                    Verdict::Error,
                    Some(format!("scenario {}: cannot make a state folder: {e}", s.id)),
                    started,
                ),
                None,
            );
        }
    };
    let t0 = Instant::now();
    let trace_len = server.trace_len_reader();
    let sink = Sink {
        notifications: Arc::new(Mutex::new(Vec::new())),
        transcript: Arc::new(Mutex::new(Vec::new())),
        counts: Arc::default(),
        dropped: Arc::default(),
        step: Arc::default(),
        t0,
        trace_len: Arc::new(trace_len),
    };
    let mut exec = Exec {
        s,
        opts,
        server: Arc::new(server),
        t0,
        state_dir,
        sink,
        driver: None,
        info: None,
        stderr: String::new(),
        steps: Vec::new(),
        rooms: HashMap::new(),
        room_sends: BTreeMap::new(),
        sessions: BTreeMap::new(),
        raw_sessions: Vec::new(),
        last_next_batch: None,
        waited: Duration::ZERO,
        facts: BTreeMap::new(),
    };

    let mut verdict: Option<Verdict> = None;
    let mut message = None;
    let body = async {
        exec.start_driver(None).await?;
        let caps = exec
            .info
            .as_ref()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let missing: Vec<&String> = s.needs.iter().filter(|n| !caps.contains(n)).collect();
        if !missing.is_empty() {
            return Err(Broken {
                verdict: Verdict::Skipped,
                message: format!(
                    "scenario {}: the driver lacks {}",
                    s.id,
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        exec.run_steps().await
    };
    match tokio::time::timeout(s.timeout, body).await {
        Ok(Ok(())) => {}
        Ok(Err(b)) => {
            verdict = Some(b.verdict);
            message = Some(b.message);
        }
        Err(_) => {
            let at = exec.sink.step.load(Ordering::SeqCst);
            let what = s
                .steps
                .get(at.wrapping_sub(1))
                .map_or("start-up".to_owned(), |st| {
                    format!("step {} ({})", st.index, st.action.name())
                });
            verdict = Some(Verdict::Timeout);
            message = Some(format!(
                "scenario {}: {what}: the scenario did not finish within its timeout of {}",
                s.id,
                humantime::format_duration(s.timeout)
            ));
        }
    }
    // Stop the driver (politely if it is healthy), then gather what happened.
    if let Some(mut d) = exec.driver.take() {
        if verdict.is_none() {
            d.shutdown(SHUTDOWN_GRACE).await;
        } else {
            d.kill().await;
        }
        // The stderr reader may still be draining the pipe.
        tokio::time::sleep(Duration::from_millis(20)).await;
        exec.stderr.push_str(&d.stderr());
    }
    // Whatever escaped the process group (setsid, daemons) still carries the state folder in its
    // environment.
    let stragglers = kill_stragglers(exec.state_dir.path());
    if stragglers > 0 {
        exec.facts.insert(
            "stragglers_killed".to_owned(),
            format!("{stragglers} process(es) that left the driver's process group"),
        );
    }
    let info = exec.info.clone();
    let label_of = exec.label_of();
    let raw: Vec<RawNotification> =
        std::mem::take(&mut *exec.sink.notifications.lock().unwrap_or_else(|p| p.into_inner()));
    let notifications: Vec<NotificationRecord> = raw
        .into_iter()
        .map(|n| NotificationRecord {
            at_ms: n.at_ms,
            step: n.step,
            trace_len: n.trace_len,
            method: n.method,
            params: label_json(&n.params, &label_of),
        })
        .collect();
    let stderr = redact_tokens(&exec.stderr, &label_of);
    let transcript: Vec<TranscriptLine> =
        std::mem::take(&mut *exec.sink.transcript.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .map(|l| TranscriptLine {
                at_ms: l.at_ms,
                dir: if l.to_driver { "→" } else { "←" }.to_owned(),
                line: redact_json_line(&l.line, &label_of),
            })
            .collect();
    let trace = exec.server.trace();
    let mut room_events = BTreeMap::new();
    for (handle, id) in &exec.rooms {
        room_events.insert(handle.clone(), exec.server.event_ids(id, "m.room.message"));
    }
    let mut devices = BTreeMap::new();
    for d in exec.server.sessions(None) {
        let local = d
            .user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        *devices.entry(local).or_insert(0) += 1;
    }
    let observed = Observed {
        trace,
        steps: std::mem::take(&mut exec.steps),
        notifications,
        sessions: std::mem::take(&mut exec.sessions),
        room_events,
        room_sends: std::mem::take(&mut exec.room_sends),
        devices,
    };
    let checks: Vec<_> = if verdict.is_none() {
        s.checks.iter().map(|c| evaluate(c, &observed)).collect()
    } else {
        Vec::new()
    };
    let verdict = verdict.unwrap_or_else(|| {
        let all = checks.iter().all(|c| c.passed);
        match (s.level, all) {
            (Level::Info, _) => Verdict::Info,
            (_, true) => Verdict::Pass,
            (Level::Must, false) => Verdict::Fail,
            (Level::Should, false) => Verdict::NonStrict,
        }
    });
    let dropped = exec.sink.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        exec.facts.insert(
            "notifications_dropped".to_owned(),
            format!("{dropped} (over the per-method limits; the driver flooded)"),
        );
    }
    if exec.waited > Duration::ZERO {
        exec.facts.insert(
            "waited".to_owned(),
            humantime::format_duration(exec.waited).to_string(),
        );
    }
    let report = ScenarioReport {
        waited_ms: ms(exec.waited),
        server: serde_json::to_value(exec.server.config()).unwrap_or(Value::Null),
        checks,
        steps: observed.steps,
        trace: observed.trace,
        notifications: observed.notifications,
        stderr,
        transcript,
        facts: std::mem::take(&mut exec.facts),
        message,
        ..early(s, verdict, None, started)
    };
    (report, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_replaced_by_labels() {
        let label_of = |t: &str| (t == "syt_known_1234567890abcdef").then(|| "at#1".to_owned());
        assert_eq!(
            redact_tokens(
                "using syt_known_1234567890abcdef and syr_other_1234567890abc.",
                &label_of
            ),
            "using at#1 and [token]."
        );
        let v = json!({"access_token": "syt_known_1234567890abcdef", "refresh_token": "weird", "x": ["syt_known_1234567890abcdef"]});
        assert_eq!(
            label_json(&v, &label_of),
            json!({"access_token": "at#1", "refresh_token": "rt#?", "x": ["at#1"]})
        );
    }

    #[test]
    fn outcomes_parse_from_both_error_shapes() {
        let o = parse_outcome(&json!({"ok": false, "error": {"code": -32000, "message": "m", "data": {"kind": "http", "status": 401}}})).unwrap();
        assert_eq!(o.errors()[0].status, Some(401));
        assert!(parse_outcome(&json!({"fine": 1})).is_err());
    }
}
