//! Discovery: the server's auth metadata (RFC 8414), read from `GET /_matrix/client/v1/auth_metadata`,
//! and the endpoints a session keeps from it.

use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

use crate::api::{self, Call};
use crate::error::ClientError;

/// The parts of the server's auth metadata (RFC 8414) the client uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthMetadata {
    /// The authorization server's issuer identifier.
    pub issuer: String,
    /// Where the user authorizes the client.
    pub authorization_endpoint: Url,
    /// Where codes and refresh tokens are exchanged for tokens.
    pub token_endpoint: Url,
    /// Where tokens are revoked (RFC 7009), if the server has one.
    pub revocation_endpoint: Option<Url>,
    /// Where clients register (RFC 7591), if the server has one.
    pub registration_endpoint: Option<Url>,
    /// `grant_types_supported` (empty when not given).
    pub grant_types_supported: Vec<String>,
    /// `code_challenge_methods_supported` (empty when not given).
    pub code_challenge_methods_supported: Vec<String>,
}

impl AuthMetadata {
    /// Reads an `auth_metadata` body; relative endpoint URLs are resolved against `base`.
    pub(crate) fn from_json(body: &Value, base: &Url) -> Result<AuthMetadata, String> {
        let text = |name: &str| -> Result<Option<&str>, String> {
            match body.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("`{name}` is not a string")),
            }
        };
        let url = |name: &str| -> Result<Option<Url>, String> {
            text(name)?
                .map(|s| {
                    base.join(s)
                        .map_err(|e| format!("`{name}` {s:?} is not a URL: {e}"))
                })
                .transpose()
        };
        let required =
            |name: &str| -> Result<Url, String> { url(name)?.ok_or_else(|| format!("no `{name}`")) };
        let list = |name: &str| -> Vec<String> {
            body.get(name)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Ok(AuthMetadata {
            issuer: text("issuer")?.ok_or("no `issuer`")?.to_owned(),
            authorization_endpoint: required("authorization_endpoint")?,
            token_endpoint: required("token_endpoint")?,
            revocation_endpoint: url("revocation_endpoint")?,
            registration_endpoint: url("registration_endpoint")?,
            grant_types_supported: list("grant_types_supported"),
            code_challenge_methods_supported: list("code_challenge_methods_supported"),
        })
    }

    /// The endpoints a session keeps using after login.
    pub(crate) fn endpoints(&self) -> Endpoints {
        Endpoints {
            token: self.token_endpoint.clone(),
            revocation: self.revocation_endpoint.clone(),
        }
    }
}

/// The endpoints an OAuth session needs after login: refresh and revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoints {
    /// The token endpoint.
    pub token: Url,
    /// The revocation endpoint, if the server has one.
    pub revocation: Option<Url>,
}

/// `GET /_matrix/client/v1/auth_metadata`.
pub(crate) async fn discover(
    http: &reqwest::Client,
    base: &Url,
    timeout: Duration,
) -> Result<AuthMetadata, ClientError> {
    let call = Call {
        method: Method::GET,
        url: api::client_url(base, &["v1", "auth_metadata"])?,
        body: None,
        timeout,
    };
    let reply = api::execute(http, &call, None).await?;
    if !reply.is_success() {
        return Err(reply.to_error());
    }
    let body = reply.into_success_body()?;
    AuthMetadata::from_json(&body, base)
        .map_err(|e| ClientError::Other(format!("unusable auth_metadata: {e}")))
}
