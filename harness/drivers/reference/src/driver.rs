//! The driver: speaks Rotary's driver protocol (JSON-RPC 2.0, one object per line, see
//! `PROTOCOL.md`) on stdin/stdout and turns each call into a call of the [`Client`].
//!
//! Responses and notifications share one writer task, fed through a channel, so a notification sent
//! while a call is in progress (e.g. `session_changed` during a `parallel`) never interleaves with
//! another line. Every line is flushed as soon as it is written.

use anyhow::Context;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::bugs::{BUGS, Bug, Bugs};
use crate::client::{
    Client, ClientConfig, ClientEvent, DEFAULT_MARGIN, DEFAULT_MAX_REFRESH_ATTEMPTS, DEFAULT_REFRESH_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, EventSink,
};
use crate::error::{ClientError, ErrorKind};
use crate::session::SessionData;

/// The driver's name in `initialize`.
pub const DRIVER_NAME: &str = "rotary-reference";
/// The driver protocol version spoken.
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
/// The most tasks one `parallel` call may start.
pub const MAX_PARALLEL: u64 = 10_000;

/// The reference client's command-line options (embeddable with `#[command(flatten)]`).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct DriverOptions {
    /// Make a known client mistake (repeatable); `--list-bugs` lists them.
    #[arg(long = "bug", value_name = "NAME", value_parser = parse_bug)]
    pub bugs: Vec<Bug>,
    /// Print the bug names, one per line, and exit.
    #[arg(long)]
    pub list_bugs: bool,
    /// Refresh when less than this is left of the access token's lifetime (at most half of it).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub margin: Duration,
    /// Time limit of one /refresh request.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub refresh_timeout: Duration,
    /// Time limit of other requests (a sync adds its long-poll timeout).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// /refresh attempts before a transient failure is given up.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_REFRESH_ATTEMPTS)]
    pub max_refresh_attempts: u32,
}

fn parse_bug(name: &str) -> Result<Bug, crate::bugs::UnknownBug> {
    Bug::from_name(name)
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            bugs: Vec::new(),
            list_bugs: false,
            margin: DEFAULT_MARGIN,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_refresh_attempts: DEFAULT_MAX_REFRESH_ATTEMPTS,
        }
    }
}

impl DriverOptions {
    /// The active bug switches as a set.
    pub fn bug_set(&self) -> Bugs {
        self.bugs.iter().copied().collect()
    }

    /// The client configuration these options give for a homeserver and state dir.
    pub fn client_config(&self, homeserver_url: &str, state_dir: Option<PathBuf>) -> ClientConfig {
        ClientConfig {
            homeserver_url: homeserver_url.to_owned(),
            state_dir,
            margin: self.margin,
            refresh_timeout: self.refresh_timeout,
            request_timeout: self.request_timeout,
            max_refresh_attempts: self.max_refresh_attempts,
            bugs: self.bug_set(),
        }
    }
}

/// The `--list-bugs` output: every bug name, one per line.
pub fn bug_list() -> String {
    BUGS.iter().map(|b| format!("{}\n", b.name)).collect()
}

/// What the harness tells the driver through its environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverEnv {
    /// `ROTARY_HOMESERVER_URL`.
    pub homeserver_url: Option<String>,
    /// `ROTARY_SCENARIO`.
    pub scenario: Option<String>,
    /// `ROTARY_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
}

impl DriverEnv {
    /// Reads the `ROTARY_*` variables (empty ones count as unset).
    pub fn from_env() -> DriverEnv {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        DriverEnv {
            homeserver_url: var("ROTARY_HOMESERVER_URL"),
            scenario: var("ROTARY_SCENARIO"),
            state_dir: var("ROTARY_STATE_DIR").map(PathBuf::from),
        }
    }
}

/// Runs the driver on stdin/stdout with the environment's `ROTARY_*` variables. Returns after
/// `shutdown` or at the end of stdin.
pub async fn run_stdio(opts: DriverOptions) -> anyhow::Result<()> {
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    run(opts, DriverEnv::from_env(), input, tokio::io::stdout()).await
}

/// Runs the driver on any pair of streams. Returns after `shutdown` (answered) or at the end of
/// `input`, once every line has been written.
pub async fn run<R, W>(opts: DriverOptions, env: DriverEnv, input: R, output: W) -> anyhow::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let mut driver = Driver {
        opts,
        env,
        out: Output(tx),
        client: None,
    };
    info!(bugs = ?driver.opts.bug_set().names(), "reference driver started");
    // The driver (and with it every sender) is dropped when `serve` ends, which ends the writer.
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

/// The single writer's input: whole JSON lines.
#[derive(Clone, Debug)]
struct Output(mpsc::UnboundedSender<String>);

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

    fn notify(&self, method: &str, params: Value) -> bool {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    fn respond(&self, id: Value, answer: Result<Value, RpcError>) -> bool {
        match answer {
            Ok(result) => self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result})),
            Err(error) => self.send(&json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    const PARSE_ERROR: i64 = -32700;
    const INVALID_REQUEST: i64 = -32600;
    const METHOD_NOT_FOUND: i64 = -32601;
    const INVALID_PARAMS: i64 = -32602;
    /// The protocol's code for a failed call.
    const CALL_FAILED: i64 = -32000;

    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(RpcError::INVALID_PARAMS, message)
    }

    /// A failed call of kind `kind`, with nothing more to say.
    fn kind(kind: ErrorKind, message: impl Into<String>) -> RpcError {
        RpcError {
            code: RpcError::CALL_FAILED,
            message: message.into(),
            data: Some(json!({"kind": kind.as_str()})),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            v["data"] = data.clone();
        }
        v
    }
}

impl From<ClientError> for RpcError {
    fn from(e: ClientError) -> RpcError {
        let mut data = Map::new();
        data.insert("kind".into(), json!(e.kind().as_str()));
        if let Some(status) = e.status() {
            data.insert("status".into(), json!(status));
        }
        if let Some(errcode) = e.errcode() {
            data.insert("errcode".into(), json!(errcode));
        }
        RpcError {
            code: RpcError::CALL_FAILED,
            message: e.to_string(),
            data: Some(Value::Object(data)),
        }
    }
}

/// A call that `parallel` can run: parsed before anything starts.
#[derive(Clone, Debug)]
enum Op {
    Whoami,
    Sync {
        timeout: Duration,
        since: Option<String>,
    },
    Send {
        room_id: String,
        body: String,
    },
}

impl Op {
    fn parse(method: &str, params: &Value) -> Result<Op, RpcError> {
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

    async fn run(&self, client: &Client) -> Result<Value, ClientError> {
        match self {
            Op::Whoami => Ok(json!({"user_id": client.whoami().await?})),
            Op::Sync { timeout, since } => {
                Ok(json!({"next_batch": client.sync(*timeout, since.as_deref()).await?}))
            }
            Op::Send { room_id, body } => Ok(json!({"event_id": client.send_text(room_id, body).await?})),
        }
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

/// Which authentication API a `login` or a restored session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    Legacy,
    OAuth,
}

/// The `auth` param: `"legacy"` (the default) or `"oauth"`.
fn auth_param(params: &Value) -> Result<Auth, RpcError> {
    match opt_str(params, "auth")?.as_deref() {
        None | Some("legacy") => Ok(Auth::Legacy),
        Some("oauth") => Ok(Auth::OAuth),
        Some(other) => Err(RpcError::kind(
            ErrorKind::Unsupported,
            format!("the reference client does not know {other:?} sessions"),
        )),
    }
}

fn outcome(result: Result<Value, ClientError>) -> Value {
    match result {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(e) => json!({"ok": false, "error": RpcError::from(e).to_json()}),
    }
}

struct Driver {
    opts: DriverOptions,
    env: DriverEnv,
    out: Output,
    client: Option<Arc<Client>>,
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
                return Ok(());
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let request: Value = match serde_json::from_slice(&buf) {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "a request line that is not JSON");
                    let error = RpcError::new(RpcError::PARSE_ERROR, format!("parse error: {e}"));
                    if !self.out.respond(Value::Null, Err(error)) {
                        return Ok(());
                    }
                    continue;
                }
            };
            let id = request.get("id").cloned();
            let method = request.get("method").and_then(Value::as_str);
            let (Some(id), Some(method)) = (id, method) else {
                if request.get("id").is_none() && method.is_some() {
                    warn!(?method, "ignoring a notification from the harness");
                    continue;
                }
                let error = RpcError::new(
                    RpcError::INVALID_REQUEST,
                    "invalid request: need `id` and `method`",
                );
                let id = request.get("id").cloned().unwrap_or(Value::Null);
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
                info!(%method, code = e.code, message = %e.message, "call failed");
            }
            let shutdown = method == "shutdown" && answer.is_ok();
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

    async fn dispatch(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => self.initialize(params),
            "login" => {
                let client = self.client()?;
                let device_id = opt_str(params, "device_id")?;
                let user = req_str(params, "user")?;
                let info = match auth_param(params)? {
                    Auth::Legacy => {
                        client
                            .login(
                                &user,
                                &req_str(params, "password")?,
                                opt_bool(params, "refresh_token")?.unwrap_or(false),
                                device_id.as_deref(),
                            )
                            .await?
                    }
                    // The authorization code grant: no password, and a refresh token always.
                    Auth::OAuth => client.login_oauth(&user, device_id.as_deref()).await?,
                };
                Ok(json!({"user_id": info.user_id, "device_id": info.device_id}))
            }
            "register" => {
                let client = self.client()?;
                let info = client
                    .register(
                        &req_str(params, "user")?,
                        &req_str(params, "password")?,
                        opt_bool(params, "refresh_token")?.unwrap_or(false),
                    )
                    .await?;
                Ok(json!({"user_id": info.user_id, "device_id": info.device_id}))
            }
            "restore" => {
                let client = self.client()?;
                let session = field(params, "session")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| RpcError::invalid_params("missing object param `session`"))?;
                let auth = auth_param(session)?;
                let data = SessionData {
                    user_id: req_str(session, "user_id")?,
                    device_id: req_str(session, "device_id")?,
                    access_token: req_str(session, "access_token")?,
                    refresh_token: opt_str(session, "refresh_token")?,
                    expires_in: opt_u64(session, "expires_in_ms")?.map(Duration::from_millis),
                };
                match auth {
                    Auth::Legacy => client.restore(data),
                    Auth::OAuth => {
                        let client_id = req_str(session, "client_id")?;
                        let issuer = opt_str(session, "issuer")?;
                        client.restore_oauth(data, client_id, issuer).await;
                    }
                }
                Ok(json!({}))
            }
            "resume" => {
                self.client()?.resume()?;
                Ok(json!({}))
            }
            "whoami" | "sync" | "send" => {
                let op = Op::parse(method, params)?;
                let client = self.client()?;
                Ok(op.run(&client).await?)
            }
            "parallel" => self.parallel(params).await,
            "session" => {
                let tokens = self.client.as_ref().map(|c| c.tokens()).unwrap_or_default();
                Ok(json!({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token}))
            }
            "logout" => {
                self.client()?.logout().await?;
                Ok(json!({}))
            }
            "shutdown" => Ok(json!({})),
            other => Err(RpcError::new(
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
            self.env.homeserver_url = Some(url);
        }
        if let Some(scenario) = opt_str(params, "scenario")? {
            self.env.scenario = Some(scenario);
        }
        if let Some(dir) = opt_str(params, "state_dir")? {
            self.env.state_dir = Some(PathBuf::from(dir));
        }
        info!(scenario = ?self.env.scenario, url = ?self.env.homeserver_url, "initialize");
        // A fresh client for what initialize said.
        self.client = None;
        self.client()?;
        Ok(json!({
            "name": DRIVER_NAME,
            "version": env!("CARGO_PKG_VERSION"),
            "capabilities": CAPABILITIES,
            "bugs": self.opts.bug_set().names(),
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
        let op = Op::parse(&op_name, &op_params)?;
        // Extension: start task i after i × interval_ms instead of all at once.
        let interval = Duration::from_millis(opt_u64(params, "interval_ms")?.unwrap_or(0));
        let client = self.client()?;
        let tasks = (0..count).map(|i| {
            let (op, client) = (&op, &client);
            async move {
                if !interval.is_zero() && i > 0 {
                    tokio::time::sleep(interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX))).await;
                }
                outcome(op.run(client).await)
            }
        });
        let results = futures_util::future::join_all(tasks).await;
        Ok(json!({ "results": results }))
    }

    /// The client, created on first use from what `initialize` or the environment said.
    fn client(&mut self) -> Result<Arc<Client>, RpcError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let url = self.env.homeserver_url.clone().ok_or_else(|| {
            RpcError::kind(
                ErrorKind::Other,
                "no homeserver URL: set ROTARY_HOMESERVER_URL or pass it to initialize",
            )
        })?;
        let config = self.opts.client_config(&url, self.env.state_dir.clone());
        let out = self.out.clone();
        let events: EventSink = Arc::new(move |event| {
            let _ = match event {
                ClientEvent::SessionChanged {
                    access_token,
                    refresh_token,
                } => out.notify(
                    "session_changed",
                    json!({"access_token": access_token, "refresh_token": refresh_token}),
                ),
                ClientEvent::LoggedOut { soft_logout } => {
                    out.notify("logged_out", json!({ "soft_logout": soft_logout }))
                }
                ClientEvent::Log(message) => out.notify("log", json!({ "message": message })),
            };
        });
        let client = Arc::new(Client::new(config, events)?);
        self.client = Some(client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: DriverOptions,
    }

    #[test]
    fn options_parse_with_defaults() -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(["x"])?;
        assert_eq!(cli.opts, DriverOptions::default());
        let cli = Cli::try_parse_from([
            "x",
            "--bug",
            "no-retry",
            "--bug",
            "refresh-per-401",
            "--margin",
            "2m",
            "--refresh-timeout",
            "500ms",
            "--max-refresh-attempts",
            "7",
        ])?;
        assert_eq!(cli.opts.bugs, vec![Bug::NoRetry, Bug::RefreshPer401]);
        assert_eq!(cli.opts.margin, Duration::from_secs(120));
        assert_eq!(cli.opts.refresh_timeout, Duration::from_millis(500));
        assert_eq!(cli.opts.max_refresh_attempts, 7);
        let err = Cli::try_parse_from(["x", "--bug", "bogus"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("unknown bug 'bogus'") && err.contains("no-persist"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn the_stdio_driver_can_be_spawned() {
        fn is_send<T: Send>(_: &T) {}
        let driver = run_stdio(DriverOptions::default());
        is_send(&driver);
    }

    #[test]
    fn bug_list_is_one_name_per_line() {
        let list = bug_list();
        assert_eq!(list.lines().count(), BUGS.len());
        assert!(list.lines().all(|l| Bug::from_name(l).is_ok()));
    }

    #[test]
    fn client_errors_become_protocol_errors() {
        let e = RpcError::from(ClientError::Http {
            status: 403,
            errcode: Some("M_FORBIDDEN".into()),
            message: "no".into(),
        });
        assert_eq!(
            e.to_json(),
            json!({"code": -32000, "message": "HTTP 403 M_FORBIDDEN: no",
                   "data": {"kind": "http", "status": 403, "errcode": "M_FORBIDDEN"}})
        );
        let e = RpcError::from(ClientError::LoggedOut { soft: true });
        assert_eq!(e.to_json()["data"], json!({"kind": "soft_logged_out"}));
    }
}
