//! Rotary's mock Matrix homeserver: Synapse-faithful refresh tokens, behaviour profiles, fault
//! injection, a control API and a request trace — as a library that starts in-process.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let server = rotary_server::MockHomeserver::builder().start().await.unwrap();
//! let session = server.mint_session("alice").unwrap();
//! assert_eq!(session.user_id, "@alice:localhost");
//!
//! // The OAuth 2.0 API (Matrix v1.15) as MAS serves it: the `mas` and `oauth-spec` profiles.
//! let mas = rotary_server::MockHomeserver::builder()
//!     .profile(rotary_server::Profile::Mas)
//!     .start()
//!     .await
//!     .unwrap();
//! let oauth = mas.mint_oauth_session("alice").unwrap();
//! assert!(oauth.issued.access_token.starts_with("mat_"));
//! assert_eq!(mas.issuer(), format!("{}/", mas.url()));
//! # }
//! ```
#![forbid(unsafe_code)]

mod api;
mod clock;
mod config;
mod conn;
mod control;
mod core;
mod duration;
mod endpoint;
mod error;
mod fault;
mod oauth;
mod rooms;
mod server;
mod store;
mod token;
mod trace;

pub use clock::Clock;
pub use config::{
    ConfigError, Dialect, OAuthReusePolicy, Profile, RateLimit, ReusePolicy, ServerConfig, UnknownProfile,
};
pub use control::{ControlAccess, control_allowed};
pub use core::{MintRequest, OAuthIssued, OAuthMintRequest, OpError};
pub use duration::{DurationError, format_duration, parse_duration, parse_optional_duration};
pub use endpoint::{Classified, Endpoint, classify, endpoint_names};
pub use error::{ErrorInfo, MatrixError, access_error, refresh_error};
pub use fault::{
    FaultAction, FaultError, FaultRule, FaultSet, FaultStatus, RequestFacts, faults_from_toml, glob_match,
};
pub use oauth::{
    API_SCOPE, API_SCOPE_UNSTABLE, ApplicationType, ClientMetadata, DEVICE_PREFIX, DEVICE_PREFIX_UNSTABLE,
    GrantType, MatrixScope, OAuthError, OAuthErrorCode, RegisteredClient, check_redirect_uri,
    is_valid_device_id, is_valid_verifier, new_device_id, parse_scope, s256_challenge, verify_s256,
};
pub use rooms::{Event, RoomError, Rooms};
pub use server::{MockHomeserver, MockHomeserverBuilder, StartError};
pub use store::{
    AccessError, AccessState, Authed, DeviceInfo, Issued, LoginError, OAuthGrant, RefreshError, RefreshState,
    RegisterError, TokenStore, TokenView, access_label, refresh_label, validate_localpart,
};
pub use token::{
    TokenKind, check_oauth_token_shape, check_token_shape, generate_oauth_token, generate_token,
};
pub use trace::{Completion, Delivery, FiredFault, IssuedLabels, Trace, TraceEntry};
