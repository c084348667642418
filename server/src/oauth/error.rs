//! OAuth 2.0 error responses (`{"error","error_description"}`): RFC 6749 §4.1.2.1 and §5.2,
//! RFC 7009 §2.2.1 and RFC 7591 §3.2.2.

use crate::error::ErrorInfo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// An OAuth 2.0 error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    /// A parameter is missing, repeated, malformed or unsupported (RFC 6749).
    InvalidRequest,
    /// Client authentication failed: no or an unknown `client_id` (401, RFC 6749 §5.2).
    InvalidClient,
    /// The code or refresh token is invalid, expired, revoked, already used, or was issued to
    /// another client (RFC 6749 §5.2).
    InvalidGrant,
    /// The client is not registered for this grant or response type (RFC 6749).
    UnauthorizedClient,
    /// The token endpoint does not support this grant type (RFC 6749 §5.2).
    UnsupportedGrantType,
    /// The authorization endpoint does not support this response type (RFC 6749 §4.1.2.1).
    UnsupportedResponseType,
    /// The requested scope is invalid, unknown or malformed (RFC 6749).
    InvalidScope,
    /// The resource owner or the server denied the request (RFC 6749 §4.1.2.1).
    AccessDenied,
    /// The revocation endpoint does not know this `token_type_hint` (RFC 7009 §2.2.1).
    UnsupportedTokenType,
    /// A redirect URI in a client registration is invalid (RFC 7591 §3.2.2).
    InvalidRedirectUri,
    /// A client metadata value is invalid (RFC 7591 §3.2.2).
    InvalidClientMetadata,
}

impl OAuthErrorCode {
    /// The code as the `error` field spells it, e.g. `invalid_grant`.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::UnsupportedTokenType => "unsupported_token_type",
            OAuthErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            OAuthErrorCode::InvalidClientMetadata => "invalid_client_metadata",
        }
    }

    /// The HTTP status a JSON error response with this code gets: 401 for `invalid_client`, 400
    /// for everything else (RFC 6749 §5.2).
    pub fn status(self) -> StatusCode {
        match self {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth 2.0 error: a code and a description for people.
///
/// ```
/// use rotary_server::{OAuthError, OAuthErrorCode};
/// let e = OAuthError::new(OAuthErrorCode::InvalidGrant, "refresh token already used");
/// assert_eq!(e.body()["error"], "invalid_grant");
/// assert_eq!(e.to_string(), "invalid_grant: refresh token already used");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    /// The `error` code.
    pub code: OAuthErrorCode,
    /// The `error_description`.
    pub description: String,
}

impl OAuthError {
    /// An error with this code and description.
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request` with this description.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    /// `invalid_grant` with this description.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, description)
    }

    /// The JSON body `{"error", "error_description"}`.
    pub fn body(&self) -> Value {
        json!({"error": self.code.as_str(), "error_description": self.description})
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let info = ErrorInfo {
            errcode: Some(self.code.as_str().to_owned()),
            soft_logout: None,
        };
        let mut resp = (self.code.status(), axum::Json(self.body())).into_response();
        resp.extensions_mut().insert(info);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_and_the_trace_sees_the_code() {
        let resp = OAuthError::new(OAuthErrorCode::InvalidClient, "unknown client").into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.extensions().get::<ErrorInfo>().unwrap().errcode.as_deref(),
            Some("invalid_client")
        );
        assert_eq!(
            OAuthError::invalid_grant("x").code.status(),
            StatusCode::BAD_REQUEST
        );
    }
}
