//! Rotary's driver protocol, version 1, for drivers written in Rust (the reference client's and
//! matrix-rust-sdk's): the one place its names and shapes are spelled out in code.
//!
//! The front door is [`run`]: give it stdin, stdout and your [`Handler`], and it reads one
//! JSON-RPC 2.0 request per line, answers each with your handler's result or [`RpcError`], writes
//! every line through one writer (so a [`Output::notify`] during a call never splits a line) and
//! returns after `shutdown` or at the end of input. [`Params`] reads a call's parameters with
//! errors the harness understands. The reference document is `docs/protocol.md`.
//!
//! ```
//! use rotary_protocol::{Handler, Output, Params, RpcError, run};
//! use serde_json::{Value, json};
//!
//! struct Echo(Output);
//! impl Handler for Echo {
//!     async fn handle(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
//!         match method {
//!             "initialize" => Ok(json!({"name": "echo", "version": "1", "capabilities": ["whoami"]})),
//!             "whoami" => {
//!                 self.0.notify("log", json!({"message": "asked"}));
//!                 Ok(json!({"user_id": Params(params).opt_str("user")?.unwrap_or_default()}))
//!             }
//!             "shutdown" => Ok(json!({})),
//!             other => Err(RpcError::method_not_found(other)),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let input: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"whoami\",\"params\":{\"user\":\"@a:b\"}}\n\
//!                      {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"shutdown\"}\n";
//! let mut output = Vec::new();
//! run(input, &mut output, Echo).await.unwrap();
//! let lines: Vec<&str> = std::str::from_utf8(&output).unwrap().lines().collect();
//! assert_eq!(lines.len(), 3); // the notification, then two answers
//! assert!(lines[1].contains("\"user_id\":\"@a:b\""));
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod names;
pub mod params;
pub mod rpc;
#[cfg(feature = "io")]
pub mod stdio;

pub use names::{
    CAPABILITIES, DriverEnv, ENV_HOMESERVER_URL, ENV_SCENARIO, ENV_STATE_DIR, ERROR_KINDS, ErrorKind,
    FEATURES, METHODS, PROTOCOL_VERSION,
};
pub use params::{ParallelOp, Params};
pub use rpc::RpcError;
#[cfg(feature = "io")]
pub use stdio::{Handler, Output, run};
