//! Translation of the SDK's errors into the protocol's error kinds.
//!
//! The rule is to translate, never to judge: an error is `http` when the SDK passed up a server's
//! answer, `network` when no usable answer arrived, and `logged_out` / `soft_logged_out` only when
//! the SDK itself signalled the end of the session for this failure — i.e. it broadcast
//! `SessionChange::UnknownToken` while the call ran *and* the error is one the SDK pairs with that
//! broadcast (see `matrix-sdk/src/client/futures.rs`, `SendRequest::into_future`): a 401
//! `M_UNKNOWN_TOKEN` it could not refresh (no refresh token), any failed legacy `/refresh`, or an
//! OAuth 2.0 `invalid_grant`.

use matrix_sdk::authentication::oauth::OAuthError;
use matrix_sdk::authentication::oauth::error::{BasicErrorResponseType, HttpClientError, RequestTokenError};
use matrix_sdk::ruma::api::client::uiaa::UiaaResponse;
use matrix_sdk::ruma::api::error::{ErrorBody, ErrorKind, FromHttpResponseError};
use matrix_sdk::{HttpError, RefreshTokenError};
use serde_json::Value;

/// The protocol's error kinds (one list for every Rust driver, in `rotary-protocol`).
pub use rotary_protocol::ErrorKind as Kind;

/// A failed call, sorted.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The protocol kind.
    pub kind: Kind,
    /// The HTTP status of the server's answer, when the SDK kept it.
    pub status: Option<u16>,
    /// The Matrix `errcode` (or the OAuth 2.0 `error`), when there was one.
    pub errcode: Option<String>,
    /// Human text.
    pub message: String,
    /// Whether the SDK broadcasts `SessionChange::UnknownToken` together with this error.
    pub pairs_with_logout: bool,
}

impl Failure {
    /// A failure of kind `kind` with a message and nothing else.
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            status: None,
            errcode: None,
            message: message.into(),
            pairs_with_logout: false,
        }
    }

    /// Turns the failure into a logout of the given softness if the SDK signalled one for it.
    pub fn with_logout_signal(mut self, signalled: Option<bool>) -> Failure {
        if let (true, Some(soft)) = (self.pairs_with_logout, signalled) {
            self.kind = if soft {
                Kind::SoftLoggedOut
            } else {
                Kind::LoggedOut
            };
            self.message = format!(
                "the SDK signalled SessionChange::UnknownToken {{ soft_logout: {soft} }}: {}",
                self.message
            );
        }
        self
    }
}

/// The JSON-RPC error of a failed call: `-32000` with `data.kind`, `status`, `errcode`.
impl From<Failure> for rotary_protocol::RpcError {
    fn from(f: Failure) -> rotary_protocol::RpcError {
        let mut e = rotary_protocol::RpcError::call(f.kind, f.message);
        if let Some(status) = f.status {
            e = e.status(status);
        }
        if let Some(errcode) = f.errcode {
            e = e.errcode(errcode);
        }
        e
    }
}

/// An error and its causes, `: `-separated (reqwest's own message is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Sorts a top-level SDK error.
pub fn from_sdk(e: &matrix_sdk::Error) -> Failure {
    match e {
        matrix_sdk::Error::Http(h) => from_http(h),
        matrix_sdk::Error::OAuth(o) => from_oauth(o),
        other => Failure::new(Kind::Other, chain(other)),
    }
}

/// Sorts an HTTP-layer error.
pub fn from_http(e: &HttpError) -> Failure {
    match e {
        HttpError::Reqwest(r) => Failure::new(Kind::Network, chain(r)),
        HttpError::Api(api) => match api.as_ref() {
            FromHttpResponseError::Server(UiaaResponse::MatrixError(err)) => {
                let status = err.status_code.as_u16();
                let (errcode, unknown_token) = match &err.body {
                    ErrorBody::Standard(body) => (
                        Some(body.kind.errcode().to_string()),
                        matches!(body.kind, ErrorKind::UnknownToken(_)),
                    ),
                    ErrorBody::Json(v) => {
                        (v.get("errcode").and_then(Value::as_str).map(str::to_owned), false)
                    }
                    ErrorBody::NotJson { .. } => (None, false),
                };
                Failure {
                    kind: Kind::Http,
                    status: Some(status),
                    errcode,
                    message: err.to_string(),
                    pairs_with_logout: unknown_token,
                }
            }
            FromHttpResponseError::Server(UiaaResponse::AuthResponse(info)) => Failure {
                kind: Kind::Http,
                status: Some(401),
                errcode: info.auth_error.as_ref().map(|e| e.kind.errcode().to_string()),
                message: "user-interactive authentication required".into(),
                pairs_with_logout: false,
            },
            other => Failure::new(
                Kind::Other,
                format!("the SDK could not read the server's answer: {}", chain(other)),
            ),
        },
        HttpError::RefreshToken(r) => from_refresh(r),
        HttpError::Cached(inner) => from_http(inner),
        other => Failure::new(Kind::Other, chain(other)),
    }
}

/// Sorts a failed token refresh (as the SDK returns it to the request that waited for it).
fn from_refresh(e: &RefreshTokenError) -> Failure {
    match e {
        RefreshTokenError::RefreshTokenRequired => {
            Failure::new(Kind::Other, "token refresh impossible: no refresh token")
        }
        RefreshTokenError::MatrixAuth(inner) => {
            // futures.rs broadcasts UnknownToken for every failed legacy refresh.
            let mut f = from_http(inner);
            f.message = format!("token refresh (/refresh) failed: {}", f.message);
            f.pairs_with_logout = true;
            f
        }
        RefreshTokenError::OAuth(inner) => {
            let mut f = from_oauth(inner);
            f.message = format!("token refresh (OAuth 2.0) failed: {}", f.message);
            // futures.rs broadcasts UnknownToken only for invalid_grant.
            f.pairs_with_logout = matches!(
                inner.as_ref(),
                OAuthError::RefreshToken(RequestTokenError::ServerResponse(r))
                    if *r.error() == BasicErrorResponseType::InvalidGrant
            );
            f
        }
    }
}

/// Sorts an OAuth 2.0 error.
pub fn from_oauth(e: &OAuthError) -> Failure {
    match e {
        OAuthError::RefreshToken(r) => match r {
            // The SDK keeps neither the status nor a Matrix errcode here: only the OAuth 2.0
            // `error` field as its parser read it (in the message).
            RequestTokenError::ServerResponse(_) => Failure {
                kind: Kind::Http,
                status: None,
                errcode: None,
                message: format!("token endpoint refused: {}", chain(e)),
                pairs_with_logout: false,
            },
            RequestTokenError::Request(HttpClientError::Reqwest(_)) => Failure::new(Kind::Network, chain(e)),
            _ => Failure::new(Kind::Other, chain(e)),
        },
        other => Failure::new(Kind::Other, chain(other)),
    }
}
