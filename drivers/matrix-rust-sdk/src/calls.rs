//! The protocol's calls turned into calls of the SDK (the transport — one JSON-RPC 2.0 object per
//! line, one writer — is `rotary_protocol::run`; the reference is `docs/protocol.md`).

use anyhow::Context;
use rotary_protocol::{DriverEnv, Handler, Output, ParallelOp, Params, RpcError};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tracing::{info, warn};

use crate::errors::{Failure, Kind};
use crate::persist::Persisted;
use crate::sdk::{Op, Sdk};

/// The name reported by `initialize`.
pub const DRIVER_NAME: &str = "matrix-rust-sdk";
/// The `matrix-sdk` crate version compiled in (read from `Cargo.lock` by `build.rs`).
pub const SDK_VERSION: &str = env!("MATRIX_SDK_VERSION");
/// The protocol version spoken.
pub const PROTOCOL_VERSION: u64 = rotary_protocol::PROTOCOL_VERSION;
/// What `initialize` lists: every capability of the protocol.
pub const CAPABILITIES: &[&str] = rotary_protocol::CAPABILITIES;
/// The most operations one `parallel` call may start.
pub const MAX_PARALLEL: u64 = 1000;

/// Runs the driver on stdin/stdout with the `ROTARY_*` environment.
pub async fn run_stdio() -> anyhow::Result<()> {
    let env = DriverEnv::from_env();
    info!(sdk_version = SDK_VERSION, "matrix-rust-sdk driver started");
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    rotary_protocol::run(input, tokio::io::stdout(), |out| Driver {
        homeserver_url: env.homeserver_url,
        state_dir: env.state_dir,
        out,
        sdk: None,
    })
    .await
    .context("talking to the harness")
}

fn outcome(result: Result<Value, Failure>) -> Value {
    rotary_protocol::rpc::outcome(result.map_err(RpcError::from))
}

struct Driver {
    homeserver_url: Option<String>,
    state_dir: Option<PathBuf>,
    out: Output,
    sdk: Option<Sdk>,
}

impl Handler for Driver {
    async fn handle(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        info!(%method, "call");
        let answer = self.dispatch(method, params).await;
        if let Err(e) = &answer {
            info!(%method, error = %e.describe(), "call failed");
        }
        // Notifications first: the harness attributes them to the call that is still open.
        if let Some(sdk) = &self.sdk {
            sdk.flush_session_changes();
        }
        if method == "shutdown" && answer.is_ok() {
            // Drop the SDK (and its listener, which holds an Output) so the writer can end.
            self.sdk = None;
        }
        answer
    }

    fn end_of_input(&mut self) {
        info!("input closed; exiting");
        self.sdk = None;
    }
}

impl Driver {
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
                let user = Params(params).req_str("user")?;
                let device_id = Params(params).opt_str("device_id")?;
                let (user_id, device_id) = match Params(params).opt_str("auth")?.as_deref() {
                    None | Some("legacy") => {
                        let password = Params(params).req_str("password")?;
                        let refresh = Params(params).opt_bool("refresh_token")?.unwrap_or(false);
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
                let user = Params(params).req_str("user")?;
                let password = Params(params).req_str("password")?;
                let refresh = Params(params).opt_bool("refresh_token")?.unwrap_or(false);
                let (user_id, device_id) = self.sdk()?.register(&user, &password, refresh).await?;
                Ok(json!({"user_id": user_id, "device_id": device_id}))
            }
            "restore" => {
                let session = Params(params).field("session")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| RpcError::invalid_params("missing object param `session`"))?;
                let persisted = Persisted {
                    auth: Params(session).opt_str("auth")?.unwrap_or_else(|| "legacy".into()),
                    user_id: Params(session).req_str("user_id")?,
                    device_id: Params(session).req_str("device_id")?,
                    access_token: Params(session).req_str("access_token")?,
                    refresh_token: Params(session).opt_str("refresh_token")?,
                    client_id: Params(session).opt_str("client_id")?,
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
                let op = Op::from(ParallelOp::parse(method, params)?);
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
            other => Err(RpcError::method_not_found(other)),
        }
    }

    fn initialize(&mut self, params: &Value) -> Result<Value, RpcError> {
        match Params(params).opt_u64("protocol") {
            Ok(Some(PROTOCOL_VERSION)) => {}
            other => warn!(?other, "the harness speaks another protocol version; carrying on"),
        }
        if let Some(url) = Params(params).opt_str("homeserver_url")? {
            self.homeserver_url = Some(url);
        }
        if let Some(dir) = Params(params).opt_str("state_dir")? {
            self.state_dir = Some(PathBuf::from(dir));
        }
        info!(scenario = ?Params(params).opt_str("scenario")?, url = ?self.homeserver_url, "initialize");
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
        let (count, op, interval_ms) = ParallelOp::parse_call(params, MAX_PARALLEL)?;
        let op = Op::from(op);
        // Extension: start operation i after i × interval_ms.
        let interval = Duration::from_millis(interval_ms);
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
