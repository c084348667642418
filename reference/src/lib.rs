//! Rotary's reference client: a small, correct, refresh-aware Matrix client, its driver for the
//! Rotary harness, and bug switches that make it repeat real SDK mistakes.
//!
//! It speaks both refresh APIs: the legacy `/refresh` (spec v1.3, MSC2918) and OAuth 2.0 (spec
//! v1.15: discovery, the token endpoint, a headless authorization-code login with PKCE, RFC 7009
//! revocation at logout).
//!
//! The client ([`Client`]) knows nothing about the harness: it is what an SDK's session layer looks
//! like when it gets refresh right, and is meant to be read. The driver ([`run`], [`run_stdio`])
//! speaks the driver protocol on stdin/stdout and turns each call into a client call.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rotary_reference::ClientError> {
//! use rotary_reference::{Client, ClientConfig};
//! use std::sync::Arc;
//!
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:8008"), Arc::new(|event| println!("{event:?}")))?;
//! client.login("alice", "wonderland", true, None).await?;
//! let me = client.whoami().await?; // refreshes first if the token is about to expire, and on a 401
//! # let _ = me; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod api;
mod bugs;
mod client;
mod error;
mod oauth;
mod persist;
mod protocol_driver;
mod refresh;
mod session;
mod sync;

pub use bugs::{BUGS, Bug, BugInfo, Bugs, UnknownBug};
pub use client::{
    Client, ClientConfig, ClientEvent, DEFAULT_MARGIN, DEFAULT_MAX_REFRESH_ATTEMPTS, DEFAULT_REFRESH_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, EventSink, LoginInfo, MAX_REFRESH_ROUNDS, Tokens,
};
pub use error::{ClientError, ErrorKind};
pub use oauth::{
    AuthMetadata, CLIENT_NAME, REDIRECT_URI, SCOPE_API, SCOPE_DEVICE_PREFIX, VERIFIER_LEN, code_challenge,
    is_valid_verifier,
};
pub use persist::{PersistError, PersistedOAuth, PersistedSession, SESSION_FILE, SessionStore};
pub use protocol_driver::{
    CAPABILITIES, DRIVER_NAME, DriverOptions, MAX_PARALLEL, PROTOCOL_VERSION, bug_list, run, run_stdio,
};
pub use refresh::{BACKOFF_CAP, BACKOFF_START, RETRY_AFTER_CAP, retry_delay};
pub use rotary_protocol::DriverEnv;
pub use session::{Expiry, SessionData, effective_margin};
pub use sync::{RoomTimeline, SyncBatch, TimelineEvent};
