//! The protocol loop: JSON-RPC 2.0 requests on stdin, one per line; responses and notifications on
//! stdout through one writer task (so a notification sent during a call never splits a line),
//! flushed after each line. Structure copied from the reference driver.

use anyhow::Context;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::errors::{Failure, Kind};
use crate::persist::Persisted;
use crate::sdk::{Op, Sdk};

/// The name reported by `initialize`.
pub const DRIVER_NAME: &str = "matrix-rust-sdk";
/// The `matrix-sdk` crate version compiled in (read from `Cargo.lock` by `build.rs`).
pub const SDK_VERSION: &str = env!("MATRIX_SDK_VERSION");
/// The protocol version spoken.
pub const PROTOCOL_VERSION: u64 = 1;
/// What `initialize` lists.
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
/// The most operations one `parallel` call may start.
pub const MAX_PARALLEL: u64 = 1000;

/// The single writer's input: whole JSON lines.
#[derive(Clone, Debug)]
pub struct Output(mpsc::UnboundedSender<String>);

impl Output {
    /// Queues one message; `false` once the writer is gone.
    fn send(&self, message: &Value) -> bool {
        match serde_json::to_string(message) {
            Ok(line) => self.0.send(line).is_ok(),
            Err(e) => {
                warn!(error = %e, "cannot serialize a message");
                true
            }
        }
    }

    /// Sends a notification (no `id`).
    pub fn notify(&self, method: &str, params: Value) {
        if !self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params})) {
            warn!(method, "the writer is gone; notification dropped");
        }
    }

    fn respond(&self, id: Value, answer: Result<Value, RpcError>) -> bool {
        match answer {
            Ok(result) => self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result})),
            Err(error) => self.send(&json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})),
        }
    }
}

/// A JSON-RPC error.
#[derive(Debug)]
enum RpcError {
    /// A protocol-level error (parse error, invalid params, method not found).
    Rpc { code: i64, message: String },
    /// A failed call (`-32000` with `data.kind`).
    Call(Failure),
}

impl RpcError {
    const PARSE_ERROR: i64 = -32700;
    const INVALID_REQUEST: i64 = -32600;
    const METHOD_NOT_FOUND: i64 = -32601;
    const INVALID_PARAMS: i64 = -32602;

    fn rpc(code: i64, message: impl Into<String>) -> RpcError {
        RpcError::Rpc {
            code,
            message: message.into(),
        }
    }

    fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::rpc(RpcError::INVALID_PARAMS, message)
    }

    fn to_json(&self) -> Value {
        match self {
            RpcError::Rpc { code, message } => json!({"code": code, "message": message}),
            RpcError::Call(f) => f.to_json(),
        }
    }

    fn describe(&self) -> String {
        match self {
            RpcError::Rpc { code, message } => format!("{code}: {message}"),
            RpcError::Call(f) => format!("{}: {}", f.kind.as_str(), f.message),
        }
    }
}

impl From<Failure> for RpcError {
    fn from(f: Failure) -> RpcError {
        RpcError::Call(f)
    }
}

fn field<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    params.get(name).filter(|v| !v.is_null())
}

fn req_str(params: &Value, name: &str) -> Result<String, RpcError> {
    opt_str(params, name)?.ok_or_else(|| RpcError::invalid_params(format!("missing string param `{name}`")))
}

fn opt_str(params: &Value, name: &str) -> Result<Option<String>, RpcError> {
    match field(params, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RpcError::invalid_params(format!(
            "param `{name}` must be a string"
        ))),
    }
}

fn opt_u64(params: &Value, name: &str) -> Result<Option<u64>, RpcError> {
    match field(params, name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            RpcError::invalid_params(format!("param `{name}` must be a non-negative integer"))
        }),
    }
}

fn opt_bool(params: &Value, name: &str) -> Result<Option<bool>, RpcError> {
    match field(params, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(RpcError::invalid_params(format!(
            "param `{name}` must be a boolean"
        ))),
    }
}

fn parse_op(method: &str, params: &Value) -> Result<Op, RpcError> {
    match method {
        "whoami" => Ok(Op::Whoami),
        "sync" => Ok(Op::Sync {
            timeout: Duration::from_millis(opt_u64(params, "timeout_ms")?.unwrap_or(0)),
            since: opt_str(params, "since")?,
        }),
        "send" => Ok(Op::Send {
            room_id: req_str(params, "room_id")?,
            body: req_str(params, "body")?,
        }),
        other => Err(RpcError::invalid_params(format!(
            "op must be whoami, sync or send, not {other:?}"
        ))),
    }
}

fn outcome(result: Result<Value, Failure>) -> Value {
    match result {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(f) => json!({"ok": false, "error": f.to_json()}),
    }
}

/// Runs the driver on stdin/stdout with the `ROTARY_*` environment.
pub async fn run_stdio() -> anyhow::Result<()> {
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    run(input, tokio::io::stdout()).await
}

async fn run<R, W>(input: R, output: W) -> anyhow::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let mut driver = Driver {
        homeserver_url: var("ROTARY_HOMESERVER_URL"),
        state_dir: var("ROTARY_STATE_DIR").map(PathBuf::from),
        out: Output(tx),
        sdk: None,
    };
    info!(sdk_version = SDK_VERSION, "matrix-rust-sdk driver started");
    let serve = async move { driver.serve(input).await };
    let (served, written) = tokio::join!(serve, write_lines(rx, output));
    written.context("writing to the harness")?;
    served
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<String>,
    mut out: W,
) -> anyhow::Result<()> {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        out.write_all(line.as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}

struct Driver {
    homeserver_url: Option<String>,
    state_dir: Option<PathBuf>,
    out: Output,
    sdk: Option<Sdk>,
}

impl Driver {
    async fn serve<R: AsyncBufRead + Unpin>(&mut self, mut input: R) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = input
                .read_until(b'\n', &mut buf)
                .await
                .context("reading from the harness")?;
            if n == 0 {
                info!("input closed; exiting");
                // Drop the SDK (and its listener) so the writer ends.
                self.sdk = None;
                return Ok(());
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let request: Value = match serde_json::from_slice(&buf) {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "a request line that is not JSON");
                    let error = RpcError::rpc(RpcError::PARSE_ERROR, format!("parse error: {e}"));
                    if !self.out.respond(Value::Null, Err(error)) {
                        return Ok(());
                    }
                    continue;
                }
            };
            let method = request.get("method").and_then(Value::as_str);
            let (Some(id), Some(method)) = (request.get("id").cloned(), method) else {
                if request.get("id").is_none() && method.is_some() {
                    warn!(?method, "ignoring a notification from the harness");
                    continue;
                }
                let id = request.get("id").cloned().unwrap_or(Value::Null);
                let error = RpcError::rpc(
                    RpcError::INVALID_REQUEST,
                    "invalid request: need `id` and `method`",
                );
                if !self.out.respond(id, Err(error)) {
                    return Ok(());
                }
                continue;
            };
            let method = method.to_owned();
            let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
            info!(%method, "call");
            let answer = self.dispatch(&method, &params).await;
            if let Err(e) = &answer {
                info!(%method, error = %e.describe(), "call failed");
            }
            if let Some(sdk) = &self.sdk {
                sdk.flush_session_changes();
            }
            let shutdown = method == "shutdown" && answer.is_ok();
            if shutdown {
                self.sdk = None;
            }
            if !self.out.respond(id, answer) {
                warn!("the harness stopped reading; exiting");
                return Ok(());
            }
            if shutdown {
                info!("shutdown");
                return Ok(());
            }
        }
    }

    fn sdk(&mut self) -> Result<&mut Sdk, RpcError> {
        if self.sdk.is_none() {
            let url = self.homeserver_url.clone().ok_or_else(|| {
                Failure::new(
                    Kind::Other,
                    "no homeserver URL: set ROTARY_HOMESERVER_URL or pass it to initialize",
                )
            })?;
            self.sdk = Some(Sdk::new(url, self.state_dir.clone(), self.out.clone()));
        }
        self.sdk
            .as_mut()
            .ok_or_else(|| Failure::new(Kind::Other, "no SDK").into())
    }

    async fn dispatch(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => self.initialize(params),
            "login" => {
                let user = req_str(params, "user")?;
                let device_id = opt_str(params, "device_id")?;
                let (user_id, device_id) = match opt_str(params, "auth")?.as_deref() {
                    None | Some("legacy") => {
                        let password = req_str(params, "password")?;
                        let refresh = opt_bool(params, "refresh_token")?.unwrap_or(false);
                        self.sdk()?
                            .login(&user, &password, refresh, device_id.as_deref())
                            .await?
                    }
                    Some("oauth") => self.sdk()?.login_oauth(&user, device_id.as_deref()).await?,
                    Some(other) => {
                        return Err(
                            Failure::new(Kind::Unsupported, format!("unknown login auth {other:?}")).into(),
                        );
                    }
                };
                Ok(json!({"user_id": user_id, "device_id": device_id}))
            }
            "register" => {
                let user = req_str(params, "user")?;
                let password = req_str(params, "password")?;
                let refresh = opt_bool(params, "refresh_token")?.unwrap_or(false);
                let (user_id, device_id) = self.sdk()?.register(&user, &password, refresh).await?;
                Ok(json!({"user_id": user_id, "device_id": device_id}))
            }
            "restore" => {
                let session = field(params, "session")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| RpcError::invalid_params("missing object param `session`"))?;
                let persisted = Persisted {
                    auth: opt_str(session, "auth")?.unwrap_or_else(|| "legacy".into()),
                    user_id: req_str(session, "user_id")?,
                    device_id: req_str(session, "device_id")?,
                    access_token: req_str(session, "access_token")?,
                    refresh_token: opt_str(session, "refresh_token")?,
                    client_id: opt_str(session, "client_id")?,
                };
                // `expires_in_ms` and `issuer` have no place in the SDK's session types: it does
                // not refresh ahead of expiry, and it discovers the issuer from the homeserver.
                self.sdk()?.restore(&persisted).await?;
                Ok(json!({}))
            }
            "resume" => {
                self.sdk()?.resume().await?;
                Ok(json!({}))
            }
            "whoami" | "sync" | "send" => {
                let op = parse_op(method, params)?;
                let client = self.sdk()?.client()?;
                Ok(op.run(&client).await?)
            }
            "parallel" => self.parallel(params).await,
            "session" => {
                let (access_token, refresh_token) =
                    self.sdk.as_ref().map(Sdk::tokens).unwrap_or((None, None));
                Ok(json!({"access_token": access_token, "refresh_token": refresh_token}))
            }
            "logout" => {
                self.sdk()?.logout().await?;
                Ok(json!({}))
            }
            "shutdown" => Ok(json!({})),
            other => Err(RpcError::rpc(
                RpcError::METHOD_NOT_FOUND,
                format!("method not found: {other}"),
            )),
        }
    }

    fn initialize(&mut self, params: &Value) -> Result<Value, RpcError> {
        match opt_u64(params, "protocol") {
            Ok(Some(PROTOCOL_VERSION)) => {}
            other => warn!(?other, "the harness speaks another protocol version; carrying on"),
        }
        if let Some(url) = opt_str(params, "homeserver_url")? {
            self.homeserver_url = Some(url);
        }
        if let Some(dir) = opt_str(params, "state_dir")? {
            self.state_dir = Some(PathBuf::from(dir));
        }
        info!(scenario = ?opt_str(params, "scenario")?, url = ?self.homeserver_url, "initialize");
        self.sdk = None;
        Ok(json!({
            "name": DRIVER_NAME,
            "version": SDK_VERSION,
            "capabilities": CAPABILITIES,
            "request_config": {
                "timeout_ms": crate::sdk::REQUEST_TIMEOUT.as_millis() as u64,
                "retry_limit": crate::sdk::RETRY_LIMIT,
                "max_retry_time_ms": crate::sdk::MAX_RETRY_DELAY.as_millis() as u64,
            },
        }))
    }

    async fn parallel(&mut self, params: &Value) -> Result<Value, RpcError> {
        let count =
            opt_u64(params, "count")?.ok_or_else(|| RpcError::invalid_params("missing param `count`"))?;
        if count > MAX_PARALLEL {
            return Err(RpcError::invalid_params(format!(
                "count is at most {MAX_PARALLEL}"
            )));
        }
        let op_name = req_str(params, "op")?;
        let op_params = field(params, "params").cloned().unwrap_or_else(|| json!({}));
        let op = parse_op(&op_name, &op_params)?;
        // Extension: start operation i after i × interval_ms.
        let interval = Duration::from_millis(opt_u64(params, "interval_ms")?.unwrap_or(0));
        let client = self.sdk()?.client()?;
        let tasks = (0..count).map(|i| {
            let (op, client) = (&op, &client);
            async move {
                if !interval.is_zero() && i > 0 {
                    let n = u32::try_from(i).unwrap_or(u32::MAX);
                    tokio::time::sleep(interval.saturating_mul(n)).await;
                }
                outcome(op.run(client).await)
            }
        });
        let results = futures_util::future::join_all(tasks).await;
        Ok(json!({ "results": results }))
    }
}
