//! Rotary's mock Matrix homeserver: Synapse-faithful refresh tokens, behaviour profiles, fault
//! injection, a control API and a request trace — as a library that starts in-process.
//!
//! # The front door: [`MockHomeserver`]
//!
//! [`MockHomeserver::builder()`] gives a [`MockHomeserverBuilder`] with the `synapse` profile and
//! the user `alice` / `wonderland`; every knob of a [`Profile`] can then be set on its own, fault
//! rules added, and the trace configured. [`start`](MockHomeserverBuilder::start) binds
//! `127.0.0.1` on an ephemeral port and serves in the background until the server is dropped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rotary_server::{FaultAction, FaultRule, MockHomeserver, Profile};
//! use std::time::Duration;
//!
//! let server = MockHomeserver::builder()
//!     .profile(Profile::Synapse)
//!     .refreshable_access_token_lifetime(Duration::from_secs(60))
//!     .fault(FaultRule::on("refresh", FaultAction::CommitThenDrop).nth(1))
//!     .start()
//!     .await?;
//! let session = server.mint_session("alice")?; // tokens without a login request
//! assert_eq!(session.user_id, "@alice:localhost");
//! // … point the client under test at server.url() …
//! server.advance_clock(Duration::from_secs(61)); // expire without waiting
//! for entry in server.trace() {
//!     println!("{} {} {:?} {}", entry.seq, entry.endpoint, entry.status, entry.access_token.label);
//! }
//!
//! // The OAuth 2.0 API (Matrix v1.15) as MAS serves it: the `mas` and `oauth-spec` profiles.
//! let mas = MockHomeserver::builder().profile(Profile::Mas).start().await?;
//! let oauth = mas.mint_oauth_session("alice")?;
//! assert!(oauth.issued.access_token.starts_with("mat_"));
//! assert_eq!(mas.issuer(), format!("{}/", mas.url()));
//! # Ok(()) }
//! ```
//!
//! # The trace
//!
//! Every client request becomes a [`TraceEntry`] (token labels and states, never raw tokens).
//! The server keeps the newest [`trace::DEFAULT_WINDOW`] entries in memory
//! ([`MockHomeserverBuilder::trace_window`]), can write every entry to NDJSON files
//! ([`MockHomeserverBuilder::trace_spill`]), and feeds completed entries to live subscribers
//! ([`MockHomeserver::subscribe_trace`]). [`MockHomeserver::trace`] returns what memory holds;
//! [`MockHomeserver::trace_evicted`] says whether that is everything. See [`trace`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let server = rotary_server::MockHomeserver::builder().trace_window(10_000).start().await.unwrap();
//! let page = server.trace_page(0, 100); // what `GET /_rotary/trace?after=0&limit=100` serves
//! assert_eq!((page.entries.len(), page.evicted, page.more), (0, 0, false));
//! # }
//! ```
//!
//! # The concepts, one module each
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | profiles and every knob ([`ServerConfig`]) |
//! | [`store`] | the token state machine: users, devices, access and refresh tokens, rotation rules |
//! | [`oauth`] | the OAuth 2.0 authorization server's clients, codes, scopes and PKCE |
//! | [`fault`] | fault rules: which requests to hit and what to do to them |
//! | [`inject`], [`conn`] | what a fired rule does to a request, and the fault-aware sockets (shared with `rotary proxy`) |
//! | [`trace`] | the request trace: window, pages, spill, subscribers (model from `rotary-judge`) |
//! | [`endpoint`] | the endpoint catalogue and path classification |
//! | [`error`] | Matrix error bodies and how each profile words token failures |
//! | [`token`] | token strings: generation and shape checks |
//! | [`rooms`] | the minimal room model |
//! | [`control`] | who may use the control API under `/_rotary` |
//! | [`clock`], [`duration`] | the advanceable server clock; `5m`-style durations |
#![forbid(unsafe_code)]

mod api;
pub mod clock;
pub mod config;
pub mod conn;
pub mod control;
mod core;
pub mod duration;
pub mod endpoint;
pub mod error;
pub mod fault;
pub mod inject;
pub mod oauth;
pub mod rooms;
mod server;
pub mod store;
pub mod token;
pub mod trace;

pub use crate::core::{MintRequest, OAuthIssued, OAuthMintRequest, OpError};
pub use config::{Profile, ServerConfig};
pub use fault::{FaultAction, FaultRule};
pub use server::{MockHomeserver, MockHomeserverBuilder, StartError};
pub use store::Issued;
pub use trace::{
    AccessState, Delivery, RefreshState, SpillConfig, TraceConfig, TraceEntry, TracePage, TraceStats,
    TraceSubscription,
};

// Kept for compatibility: these names were re-exported at the crate root before the concept
// modules became public. New code uses the module paths (`rotary_server::fault::FaultSet`, …).
#[doc(hidden)]
pub use clock::Clock;
#[doc(hidden)]
pub use config::{ConfigError, Dialect, OAuthReusePolicy, RateLimit, ReusePolicy, UnknownProfile};
#[doc(hidden)]
pub use control::{ControlAccess, control_allowed};
#[doc(hidden)]
pub use duration::{DurationError, format_duration, parse_duration, parse_optional_duration};
#[doc(hidden)]
pub use endpoint::{Classified, Endpoint, classify, endpoint_names};
#[doc(hidden)]
pub use error::{ErrorInfo, MatrixError, access_error, refresh_error};
#[doc(hidden)]
pub use fault::{FaultError, FaultSet, FaultStatus, RequestFacts, faults_from_toml, glob_match};
#[doc(hidden)]
pub use oauth::{
    API_SCOPE, API_SCOPE_UNSTABLE, ApplicationType, ClientMetadata, DEVICE_PREFIX, DEVICE_PREFIX_UNSTABLE,
    GrantType, MatrixScope, OAuthError, OAuthErrorCode, RegisteredClient, check_redirect_uri,
    is_valid_device_id, is_valid_verifier, new_device_id, parse_scope, s256_challenge, verify_s256,
};
#[doc(hidden)]
pub use rooms::{Event, RoomError, Rooms};
#[doc(hidden)]
pub use store::{
    AccessError, Authed, DeviceInfo, LoginError, OAuthGrant, RefreshError, RegisterError, TokenStore,
    TokenView, access_label, refresh_label, validate_localpart,
};
#[doc(hidden)]
pub use token::{
    TokenKind, check_oauth_token_shape, check_token_shape, generate_oauth_token, generate_token,
};
#[doc(hidden)]
pub use trace::{Completion, FiredFault, IssuedLabels, Trace};
