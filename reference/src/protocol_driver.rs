//! The driver: turns each call of Rotary's driver protocol (`docs/protocol.md`; the transport is
//! `rotary_protocol::run`) into a call of the [`Client`].
//!
//! Responses and notifications share the protocol crate's single writer, so a notification sent
//! while a call is in progress (e.g. `session_changed` during a `parallel`) never interleaves with
//! another line.

use anyhow::Context;
use rotary_protocol::{DriverEnv, ErrorKind, Handler, Output, ParallelOp, Params, RpcError};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tracing::{info, warn};

use crate::bugs::{BUGS, Bug, Bugs};
use crate::client::{
    Client, ClientConfig, ClientEvent, DEFAULT_MARGIN, DEFAULT_MAX_REFRESH_ATTEMPTS, DEFAULT_REFRESH_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, EventSink,
};
use crate::error::ClientError;
use crate::session::SessionData;

/// The driver's name in `initialize`.
pub const DRIVER_NAME: &str = "rotary-reference";
/// The driver protocol version spoken.
pub const PROTOCOL_VERSION: u64 = rotary_protocol::PROTOCOL_VERSION;
/// What `initialize` lists: every capability of the protocol.
pub const CAPABILITIES: &[&str] = rotary_protocol::CAPABILITIES;
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
            http_client: None,
        }
    }
}

/// The `--list-bugs` output: every bug name, one per line.
pub fn bug_list() -> String {
    BUGS.iter().map(|b| format!("{}\n", b.name)).collect()
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
    info!(bugs = ?opts.bug_set().names(), "reference driver started");
    rotary_protocol::run(input, output, |out| Driver {
        opts,
        env,
        out,
        client: None,
    })
    .await
    .context("talking to the harness")
}

/// Runs one operation of `whoami`, `sync`, `send` or a `parallel` call on the client.
async fn run_op(op: &ParallelOp, client: &Client) -> Result<Value, ClientError> {
    match op {
        ParallelOp::Whoami => Ok(json!({"user_id": client.whoami().await?})),
        ParallelOp::Sync { timeout_ms, since } => Ok(
            json!({"next_batch": client.sync(Duration::from_millis(*timeout_ms), since.as_deref()).await?}),
        ),
        ParallelOp::Send { room_id, body } => Ok(json!({"event_id": client.send_text(room_id, body).await?})),
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
    match Params(params).opt_str("auth")?.as_deref() {
        None | Some("legacy") => Ok(Auth::Legacy),
        Some("oauth") => Ok(Auth::OAuth),
        Some(other) => Err(RpcError::call(
            ErrorKind::Unsupported,
            format!("the reference client does not know {other:?} sessions"),
        )),
    }
}

fn outcome(result: Result<Value, ClientError>) -> Value {
    rotary_protocol::rpc::outcome(result.map_err(RpcError::from))
}

struct Driver {
    opts: DriverOptions,
    env: DriverEnv,
    out: Output,
    client: Option<Arc<Client>>,
}

impl Handler for Driver {
    async fn handle(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        info!(%method, "call");
        let answer = self.dispatch(method, params).await;
        if let Err(e) = &answer {
            info!(%method, error = %e.describe(), "call failed");
        }
        answer
    }
}

impl Driver {
    async fn dispatch(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => self.initialize(params),
            "login" => {
                let client = self.client()?;
                let device_id = Params(params).opt_str("device_id")?;
                let user = Params(params).req_str("user")?;
                let info = match auth_param(params)? {
                    Auth::Legacy => {
                        client
                            .login(
                                &user,
                                &Params(params).req_str("password")?,
                                Params(params).opt_bool("refresh_token")?.unwrap_or(false),
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
                        &Params(params).req_str("user")?,
                        &Params(params).req_str("password")?,
                        Params(params).opt_bool("refresh_token")?.unwrap_or(false),
                    )
                    .await?;
                Ok(json!({"user_id": info.user_id, "device_id": info.device_id}))
            }
            "restore" => {
                let client = self.client()?;
                let session = Params(params)
                    .field("session")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| RpcError::invalid_params("missing object param `session`"))?;
                let auth = auth_param(session)?;
                let data = SessionData {
                    user_id: Params(session).req_str("user_id")?,
                    device_id: Params(session).req_str("device_id")?,
                    access_token: Params(session).req_str("access_token")?,
                    refresh_token: Params(session).opt_str("refresh_token")?,
                    expires_in: Params(session)
                        .opt_u64("expires_in_ms")?
                        .map(Duration::from_millis),
                };
                match auth {
                    Auth::Legacy => client.restore(data),
                    Auth::OAuth => {
                        let client_id = Params(session).req_str("client_id")?;
                        let issuer = Params(session).opt_str("issuer")?;
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
                let op = ParallelOp::parse(method, params)?;
                let client = self.client()?;
                run_op(&op, &client).await.map_err(RpcError::from)
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
            other => Err(RpcError::method_not_found(other)),
        }
    }

    fn initialize(&mut self, params: &Value) -> Result<Value, RpcError> {
        match Params(params).opt_u64("protocol") {
            Ok(Some(PROTOCOL_VERSION)) => {}
            other => warn!(?other, "the harness speaks another protocol version; carrying on"),
        }
        if let Some(url) = Params(params).opt_str("homeserver_url")? {
            self.env.homeserver_url = Some(url);
        }
        if let Some(scenario) = Params(params).opt_str("scenario")? {
            self.env.scenario = Some(scenario);
        }
        if let Some(dir) = Params(params).opt_str("state_dir")? {
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
        let (count, op, interval_ms) = ParallelOp::parse_call(params, MAX_PARALLEL)?;
        // Extension: start task i after i × interval_ms instead of all at once.
        let interval = Duration::from_millis(interval_ms);
        let client = self.client()?;
        let tasks = (0..count).map(|i| {
            let (op, client) = (&op, &client);
            async move {
                if !interval.is_zero() && i > 0 {
                    tokio::time::sleep(interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX))).await;
                }
                outcome(run_op(op, client).await)
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
            RpcError::call(
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
        let client = Arc::new(Client::new(config, events).map_err(RpcError::from)?);
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
