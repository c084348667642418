//! Login with the authorization code grant, done headless: the client registers itself (RFC 7591),
//! builds the authorization request with PKCE, and reads the code from the redirect without
//! following it.

use reqwest::{Method, Url};
use serde_json::{Value, json};
use std::time::Duration;

use super::discovery::AuthMetadata;
use super::forms::form;
use super::pkce::{DEVICE_ID_CHARS, code_challenge, new_verifier, random_string};
use super::token::oauth_error;
use crate::api::{self, Body, Call, Reply};
use crate::error::ClientError;

/// `client_name` in the dynamic client registration.
pub const CLIENT_NAME: &str = "rotary-reference";
/// The redirect URI registered and used for the authorization code grant. Nothing listens there:
/// the code is read from the redirect itself.
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// The scope granting the client-server API.
pub const SCOPE_API: &str = "urn:matrix:client:api:*";
/// The prefix of the scope that names the device.
pub const SCOPE_DEVICE_PREFIX: &str = "urn:matrix:client:device:";

/// The scope asked for at login: the client-server API on device `device_id`.
pub(crate) fn scope(device_id: &str) -> String {
    format!("{SCOPE_API} {SCOPE_DEVICE_PREFIX}{device_id}")
}

/// The RFC 7591 registration of this client: a public native client using the code grant.
pub(crate) fn registration_body() -> Value {
    json!({
        "client_name": CLIENT_NAME,
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    })
}

/// Registers the client: its `client_id`.
pub(crate) async fn register_client(
    http: &reqwest::Client,
    registration_endpoint: &Url,
    timeout: Duration,
) -> Result<String, ClientError> {
    let call = Call {
        method: Method::POST,
        url: registration_endpoint.clone(),
        body: Some(Body::Json(registration_body())),
        timeout,
    };
    let reply = api::execute(http, &call, None).await?;
    if !reply.is_success() {
        return Err(oauth_error(&reply));
    }
    reply
        .str_field("client_id")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Other("the client registration has no client_id".into()))
}

/// One authorization request, with the secrets its answer is checked against.
#[derive(Clone, Debug)]
pub(crate) struct AuthorizationRequest {
    /// The URL to open (here: to `GET` without following the redirect).
    pub url: Url,
    /// The `state` the redirect must carry back.
    pub state: String,
    /// The PKCE verifier for the token request.
    pub verifier: String,
}

/// The authorization request for `client_id` on a new device `device_id`.
pub(crate) fn authorization_request(
    metadata: &AuthMetadata,
    client_id: &str,
    device_id: &str,
    login_hint: Option<&str>,
) -> AuthorizationRequest {
    let state = random_string(24, DEVICE_ID_CHARS);
    let verifier = new_verifier();
    let challenge = code_challenge(&verifier);
    let scope = scope(device_id);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", scope.as_str()),
        ("state", state.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("response_mode", "query"),
    ];
    if let Some(hint) = login_hint {
        pairs.push(("login_hint", hint));
    }
    let mut url = metadata.authorization_endpoint.clone();
    // `+` only ever stands for a space in form encoding (a literal `+` is `%2B`); `%20` is read
    // as a space by every query parser, `+` only by form-aware ones.
    let mut query = form(&pairs).replace('+', "%20");
    if let Some(existing) = url.query().filter(|q| !q.is_empty()) {
        query = format!("{existing}&{query}");
    }
    url.set_query(Some(&query));
    AuthorizationRequest { url, state, verifier }
}

/// `GET`s the authorization URL with a client that does not follow redirects: the `Location` of
/// the redirect the server answers with.
pub(crate) async fn authorize(
    no_redirect_http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<String, ClientError> {
    let resp = no_redirect_http
        .get(url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ClientError::network(&e))?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if (300..400).contains(&status)
        && let Some(location) = location
    {
        return Ok(location);
    }
    let bytes = resp.bytes().await.map_err(|e| ClientError::network(&e))?;
    let reply = Reply {
        status,
        retry_after: None,
        body: serde_json::from_slice(&bytes).ok(),
    };
    if reply.is_success() {
        return Err(ClientError::Other(format!(
            "the authorization endpoint answered {status} instead of redirecting (interactive login is not supported)"
        )));
    }
    Err(oauth_error(&reply))
}

/// The authorization code in the redirect to [`REDIRECT_URI`], after checking that it is that
/// redirect and carries our `state`.
pub(crate) fn code_from_redirect(location: &str, state: &str) -> Result<String, ClientError> {
    let redirect = Url::parse(REDIRECT_URI).map_err(|e| ClientError::Other(e.to_string()))?;
    let url = redirect
        .join(location)
        .map_err(|e| ClientError::Other(format!("a redirect to {location:?}, not a URL: {e}")))?;
    if url.scheme() != redirect.scheme()
        || url.host_str() != redirect.host_str()
        || url.port_or_known_default() != redirect.port_or_known_default()
        || url.path() != redirect.path()
    {
        return Err(ClientError::Other(format!(
            "the authorization endpoint redirected to {}, not to our redirect_uri",
            url.origin().ascii_serialization() + url.path()
        )));
    }
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(state) {
        return Err(ClientError::Other(
            "the authorization redirect carries the wrong state".into(),
        ));
    }
    if let Some(error) = param("error") {
        let description = param("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(ClientError::Other(format!(
            "authorization refused: {error}{description}"
        )));
    }
    param("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ClientError::Other("the authorization redirect carries no code".into()))
}

/// The user id named by a login `user`: itself if it is a full user id.
pub(crate) fn full_user_id(user: &str) -> Option<&str> {
    (user.starts_with('@') && user.contains(':')).then_some(user)
}

/// The `login_hint` for a login `user`: `mxid:<user id>` (spec v1.15) for a full user id. A bare
/// localpart is sent as it is: the client does not know the server name (it is not the homeserver
/// URL's host), and a hint a server cannot read is only ignored.
pub(crate) fn login_hint(user: &str) -> String {
    match full_user_id(user) {
        Some(user_id) => format!("mxid:{user_id}"),
        None => user.to_owned(),
    }
}
