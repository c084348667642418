//! OAuth 2.0 sessions (Matrix v1.15 "next-generation auth"): server metadata discovery, PKCE, the
//! token endpoint's requests and answers, and what a token-endpoint failure means for the session.
//!
//! The session layer (`client/mod.rs`) is the same for legacy and OAuth sessions — single flight,
//! waiters, retry of the failed request, preemptive refresh, persistence before use, bounded
//! attempts. Only how one refresh attempt is made and how its answer is read differ, and that is
//! here:
//!
//! - **Discovery**: `GET /_matrix/client/v1/auth_metadata` (RFC 8414 fields). A session restored
//!   without known endpoints discovers them lazily; a failed discovery is a transient refresh
//!   failure, tried again at the next attempt.
//! - **Refresh** (RFC 6749 §6): `POST token_endpoint`, form-encoded
//!   `grant_type=refresh_token&refresh_token=…&client_id=…`. `expires_in` is in *seconds*; a
//!   response without `refresh_token` means "keep the old one"; without `expires_in`, no known expiry.
//! - **What a failure means** (spec v1.15, "Refresh token grant"): no response, a timeout, a 5xx
//!   or a 429 is passing — retry later with the *old* refresh token. Any other 4xx ends the session
//!   (a hard logout: OAuth has no soft logout), whatever its body: an RFC 6749 error
//!   (`invalid_grant`…), a Matrix error, or no JSON at all.
//! - **Login**: the authorization code grant with PKCE (RFC 7636, S256) for a client registered on
//!   the fly (RFC 7591), done headless: the mock server approves at once and redirects to our
//!   `redirect_uri` with the code, which we read from the `Location` header without following it.
//! - **Logout**: RFC 7009 revocation of the refresh token (or the access token when there is none).
//!
//! The parts: `discovery` (the server's metadata), `pkce` (verifiers, challenges and the other
//! random strings), `forms` (the requests to the token and revocation endpoints), `token` (what
//! the token endpoint's answers mean) and `login` (registration, the authorization request and its
//! redirect).

mod discovery;
mod forms;
mod login;
mod pkce;
#[cfg(test)]
mod tests;
mod token;

pub use discovery::AuthMetadata;
pub(crate) use discovery::{Endpoints, discover};
pub(crate) use forms::{code_form, post_form, refresh_form, revocation_form};
pub use login::{CLIENT_NAME, REDIRECT_URI, SCOPE_API, SCOPE_DEVICE_PREFIX};
pub(crate) use login::{
    authorization_request, authorize, code_from_redirect, full_user_id, login_hint, register_client,
};
pub(crate) use pkce::new_device_id;
pub use pkce::{VERIFIER_LEN, code_challenge, is_valid_verifier};
pub(crate) use token::{classify, login_tokens, oauth_error};

/// The OAuth side of a session the client holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OAuthSession {
    /// The client id the tokens were issued to; every token request names it.
    pub client_id: String,
    /// The issuer the session belongs to, if known.
    pub issuer: Option<String>,
    /// The endpoints, once discovered (or persisted).
    pub endpoints: Option<Endpoints>,
}
