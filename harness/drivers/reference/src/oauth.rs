//! OAuth 2.0 sessions (Matrix v1.15 "next-generation auth"): server metadata discovery, PKCE, the
//! token endpoint's requests and answers, and what a token-endpoint failure means for the session.
//!
//! The session layer (`client.rs`) is the same for legacy and OAuth sessions — single flight,
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

use base64::Engine;
use rand::RngExt;
use reqwest::{Method, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::api::{self, Body, Call, Reply};
use crate::bugs::{Bug, Bugs};
use crate::error::ClientError;
use crate::refresh::{RefreshOutcome, RefreshedTokens};

/// `client_name` in the dynamic client registration.
pub const CLIENT_NAME: &str = "rotary-reference";
/// The redirect URI registered and used for the authorization code grant. Nothing listens there:
/// the code is read from the redirect itself.
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// The scope granting the client-server API.
pub const SCOPE_API: &str = "urn:matrix:client:api:*";
/// The prefix of the scope that names the device.
pub const SCOPE_DEVICE_PREFIX: &str = "urn:matrix:client:device:";
/// Length of the PKCE code verifiers made here (RFC 7636 allows 43 to 128).
pub const VERIFIER_LEN: usize = 64;

/// RFC 3986 "unreserved" characters: what a PKCE verifier may contain.
const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
/// What generated device ids are made of.
const DEVICE_ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

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

// ----- discovery -------------------------------------------------------------------------------

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

// ----- PKCE, state, device ids -----------------------------------------------------------------

/// The S256 code challenge of a verifier: BASE64URL-NOPAD(SHA256(verifier)) (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is a valid PKCE code verifier: 43 to 128 unreserved characters.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len()) && verifier.bytes().all(|b| UNRESERVED.contains(&b))
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// A fresh PKCE code verifier.
pub(crate) fn new_verifier() -> String {
    random_string(VERIFIER_LEN, UNRESERVED)
}

/// A fresh device id for the device scope.
pub(crate) fn new_device_id() -> String {
    random_string(10, DEVICE_ID_CHARS)
}

/// The scope asked for at login: the client-server API on device `device_id`.
pub(crate) fn scope(device_id: &str) -> String {
    format!("{SCOPE_API} {SCOPE_DEVICE_PREFIX}{device_id}")
}

// ----- forms -----------------------------------------------------------------------------------

/// `application/x-www-form-urlencoded` encoding of `pairs`, in order.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

/// The refresh token grant (RFC 6749 §6).
pub(crate) fn refresh_form(refresh_token: &str, client_id: &str) -> String {
    form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id),
    ])
}

/// The authorization code grant's token request (RFC 6749 §4.1.3, with the PKCE verifier).
pub(crate) fn code_form(code: &str, client_id: &str, verifier: &str) -> String {
    form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ])
}

/// A revocation request (RFC 7009 §2.1).
pub(crate) fn revocation_form(token: &str, token_type_hint: &str, client_id: &str) -> String {
    form(&[
        ("token", token),
        ("token_type_hint", token_type_hint),
        ("client_id", client_id),
    ])
}

/// `POST` a form to an OAuth endpoint (no access token: the client is public and names itself).
pub(crate) async fn post_form(
    http: &reqwest::Client,
    url: &Url,
    form: String,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let call = Call {
        method: Method::POST,
        url: url.clone(),
        body: Some(Body::Form(form)),
        timeout,
    };
    api::execute(http, &call, None).await
}

// ----- token responses -------------------------------------------------------------------------

/// `expires_in` (seconds) as a duration; negative values are clamped to zero, fractions kept.
pub(crate) fn expires_in(body: &Value) -> Option<Duration> {
    let v = body.get("expires_in")?;
    if let Some(secs) = v.as_u64() {
        return Some(Duration::from_secs(secs));
    }
    let secs = v.as_f64()?;
    Some(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX))
}

/// The tokens of a successful token response; `None` when it has no access token or one of a
/// type other than `Bearer` (RFC 6749 §7.1: a client must not use a token type it does not know).
pub(crate) fn parse_tokens(body: &Value) -> Option<RefreshedTokens> {
    let access_token = body.get("access_token")?.as_str().filter(|t| !t.is_empty())?;
    match body.get("token_type").and_then(Value::as_str) {
        Some(kind) if !kind.eq_ignore_ascii_case("bearer") => return None,
        _ => {}
    }
    Some(RefreshedTokens {
        access_token: access_token.to_owned(),
        refresh_token: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        expires_in: expires_in(body),
    })
}

/// Whether the body is an RFC 6749 §5.2 error (`{"error": "invalid_grant", …}`, no `errcode`).
fn oauth_error_code(reply: &Reply) -> Option<&str> {
    if reply.errcode().is_some() {
        return None;
    }
    reply.str_field("error")
}

/// A failed OAuth request as a client error. A Matrix-shaped body keeps its `errcode`; an RFC
/// 6749 error puts its code and description in the message.
pub(crate) fn oauth_error(reply: &Reply) -> ClientError {
    match oauth_error_code(reply) {
        Some(code) => {
            let message = match reply.str_field("error_description") {
                Some(description) => format!("{code}: {description}"),
                None => code.to_owned(),
            };
            ClientError::Http {
                status: reply.status,
                errcode: None,
                message,
            }
        }
        None => reply.to_error(),
    }
}

/// What one token-endpoint answer to a refresh means. `bugs` are the client's switches
/// (`oauth-4xx-not-logout`, `oauth-matrix-error-logout` change the answer).
pub(crate) fn classify(reply: &Reply, bugs: Bugs) -> RefreshOutcome {
    let status = reply.status;
    if reply.is_success() {
        return match reply.body.as_ref().and_then(parse_tokens) {
            Some(tokens) => RefreshOutcome::Tokens(tokens),
            None => RefreshOutcome::Transient {
                error: ClientError::Http {
                    status,
                    errcode: None,
                    message: "token response is not JSON with a Bearer access_token".into(),
                },
                retry_after: None,
            },
        };
    }
    let error = oauth_error(reply);
    // The bug: a Matrix error is read as "the homeserver refused the session".
    if reply.errcode().is_some() && bugs.has(Bug::OauthMatrixErrorLogout) {
        return RefreshOutcome::Definitive {
            error,
            soft_logout: false,
        };
    }
    if status == 429 {
        // Rate limited, whoever said it (a Matrix-shaped body comes from a rate limiter or a proxy
        // in front of the token endpoint): wait as long as asked, then try again.
        let retry_after = crate::refresh::retry_after_of(reply);
        return RefreshOutcome::Transient { error, retry_after };
    }
    if (400..500).contains(&status) {
        if bugs.has(Bug::Oauth4xxNotLogout) {
            return RefreshOutcome::Transient {
                error,
                retry_after: None,
            };
        }
        // The spec: any 4xx from the token endpoint means the session is over. OAuth has no soft
        // logout.
        return RefreshOutcome::Definitive {
            error,
            soft_logout: false,
        };
    }
    // 5xx (JSON or not), or anything else unexpected (1xx, 3xx): passing, as far as we can tell.
    RefreshOutcome::Transient {
        error,
        retry_after: None,
    }
}

/// A token response to a login (authorization code grant): the tokens, or what went wrong.
pub(crate) fn login_tokens(reply: Reply) -> Result<RefreshedTokens, ClientError> {
    if !reply.is_success() {
        return Err(oauth_error(&reply));
    }
    reply
        .body
        .as_ref()
        .and_then(parse_tokens)
        .ok_or_else(|| ClientError::Other("the token response has no Bearer access_token".into()))
}

// ----- login -----------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: Option<Value>) -> Reply {
        Reply {
            status,
            retry_after: None,
            body,
        }
    }

    fn bugs(list: &[Bug]) -> Bugs {
        list.iter().copied().collect()
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_valid_verifier(verifier));
        assert_eq!(
            code_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        for _ in 0..20 {
            let v = new_verifier();
            assert!(is_valid_verifier(&v), "{v}");
            assert_eq!(code_challenge(&v).len(), 43);
        }
        assert_ne!(new_verifier(), new_verifier());
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(50))));
    }

    #[test]
    fn forms_are_encoded() {
        assert_eq!(
            refresh_form("mcr_a+b/c=d&e", "01J CLIENT"),
            "grant_type=refresh_token&refresh_token=mcr_a%2Bb%2Fc%3Dd%26e&client_id=01J+CLIENT"
        );
        assert_eq!(
            code_form("c0de", "cid", "v~._-"),
            "grant_type=authorization_code&code=c0de&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&client_id=cid&code_verifier=v%7E._-"
        );
        assert_eq!(
            revocation_form("t", "refresh_token", "cid"),
            "token=t&token_type_hint=refresh_token&client_id=cid"
        );
        // Round trip through a decoder.
        let decoded: Vec<(String, String)> = form_urlencoded::parse(refresh_form("a b+c", "ü").as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded[1], ("refresh_token".into(), "a b+c".into()));
        assert_eq!(decoded[2], ("client_id".into(), "ü".into()));
    }

    fn metadata() -> AuthMetadata {
        let base = Url::parse("http://127.0.0.1:8008").unwrap_or_else(|e| panic!("{e}"));
        AuthMetadata::from_json(
            &json!({
                "issuer": "http://127.0.0.1:8008/",
                "authorization_endpoint": "http://127.0.0.1:8008/oauth2/authorize?x=1",
                "token_endpoint": "/oauth2/token",
                "revocation_endpoint": "http://127.0.0.1:8008/oauth2/revoke",
                "registration_endpoint": "http://127.0.0.1:8008/oauth2/registration",
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
            }),
            &base,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn metadata_is_read() {
        let m = metadata();
        assert_eq!(m.token_endpoint.as_str(), "http://127.0.0.1:8008/oauth2/token");
        assert_eq!(m.code_challenge_methods_supported, vec!["S256"]);
        assert!(m.revocation_endpoint.is_some() && m.registration_endpoint.is_some());
        let base = Url::parse("http://h").unwrap_or_else(|e| panic!("{e}"));
        let no_token = json!({"issuer": "i", "authorization_endpoint": "http://h/a"});
        assert!(AuthMetadata::from_json(&no_token, &base).is_err());
        let bad_type =
            json!({"issuer": 3, "authorization_endpoint": "http://h/a", "token_endpoint": "http://h/t"});
        assert!(AuthMetadata::from_json(&bad_type, &base).is_err());
    }

    #[test]
    fn authorization_request_and_redirect() -> anyhow::Result<()> {
        let m = metadata();
        let req = authorization_request(&m, "cid", "DEVICEABCD", Some("mxid:@alice:localhost"));
        let query = req.url.query().unwrap_or_default().to_owned();
        assert!(
            query.starts_with("x=1&response_type=code&client_id=cid&"),
            "{query}"
        );
        assert!(
            query.contains(
                "&scope=urn%3Amatrix%3Aclient%3Aapi%3A*%20urn%3Amatrix%3Aclient%3Adevice%3ADEVICEABCD&"
            ),
            "{query}"
        );
        assert!(
            query.contains("&code_challenge_method=S256&response_mode=query&"),
            "{query}"
        );
        assert!(
            query.ends_with("&login_hint=mxid%3A%40alice%3Alocalhost"),
            "{query}"
        );
        let pairs: std::collections::HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs["scope"],
            "urn:matrix:client:api:* urn:matrix:client:device:DEVICEABCD"
        );
        assert_eq!(pairs["code_challenge"], code_challenge(&req.verifier));
        assert_eq!(pairs["state"], req.state);
        assert_eq!(pairs["redirect_uri"], REDIRECT_URI);

        let ok = format!("http://127.0.0.1/callback?code=abc&state={}", req.state);
        assert_eq!(code_from_redirect(&ok, &req.state)?, "abc");
        let wrong_state = "http://127.0.0.1/callback?code=abc&state=other";
        assert!(code_from_redirect(wrong_state, &req.state).is_err());
        let elsewhere = format!("http://evil.example/callback?code=abc&state={}", req.state);
        assert!(code_from_redirect(&elsewhere, &req.state).is_err());
        let refused = format!(
            "http://127.0.0.1/callback?error=access_denied&state={}",
            req.state
        );
        let e = code_from_redirect(&refused, &req.state)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("access_denied")));
        Ok(())
    }

    #[test]
    fn token_responses() {
        let full = json!({"access_token": "a", "token_type": "Bearer", "expires_in": 300,
                          "refresh_token": "r", "scope": "urn:matrix:client:api:*"});
        assert_eq!(
            parse_tokens(&full),
            Some(RefreshedTokens {
                access_token: "a".into(),
                refresh_token: Some("r".into()),
                expires_in: Some(Duration::from_secs(300)),
            })
        );
        // No refresh_token: keep the old one; no expires_in: no known expiry.
        let bare = json!({"access_token": "a", "token_type": "bearer"});
        assert_eq!(
            parse_tokens(&bare),
            Some(RefreshedTokens {
                access_token: "a".into(),
                refresh_token: None,
                expires_in: None,
            })
        );
        assert_eq!(
            parse_tokens(&json!({"access_token": "a", "token_type": "mac"})),
            None
        );
        assert_eq!(parse_tokens(&json!({"token_type": "Bearer"})), None);
    }

    #[test]
    fn expires_in_is_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(expires_in(&json!({"expires_in": 300})), Some(ms(300_000)));
        assert_eq!(expires_in(&json!({"expires_in": 0})), Some(ms(0)));
        assert_eq!(expires_in(&json!({"expires_in": 1.5})), Some(ms(1500)));
        assert_eq!(expires_in(&json!({"expires_in": -5})), Some(ms(0)));
        assert_eq!(expires_in(&json!({"expires_in": "300"})), None);
        assert_eq!(expires_in(&json!({"expires_in_ms": 300})), None);
        assert_eq!(expires_in(&json!({})), None);
    }

    #[test]
    fn classification() {
        let none = Bugs::NONE;
        let ok = reply(
            200,
            Some(json!({"access_token": "a", "token_type": "Bearer", "expires_in": 60})),
        );
        assert!(
            matches!(classify(&ok, none), RefreshOutcome::Tokens(t) if t.expires_in == Some(Duration::from_secs(60)))
        );

        // The RFC 6749 refusal: the session is over, hard.
        let invalid_grant = reply(
            400,
            Some(json!({"error": "invalid_grant", "error_description": "refresh token consumed"})),
        );
        match classify(&invalid_grant, none) {
            RefreshOutcome::Definitive { error, soft_logout } => {
                assert!(!soft_logout);
                assert_eq!(
                    error,
                    ClientError::Http {
                        status: 400,
                        errcode: None,
                        message: "invalid_grant: refresh token consumed".into()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        for r in [
            reply(401, Some(json!({"error": "invalid_client"}))),
            reply(400, Some(json!({"error": "unsupported_grant_type"}))),
            reply(403, Some(json!({"errcode": "M_FORBIDDEN", "error": "no"}))),
            reply(404, None),
        ] {
            assert!(
                matches!(
                    classify(&r, none),
                    RefreshOutcome::Definitive {
                        soft_logout: false,
                        ..
                    }
                ),
                "{r:?}"
            );
        }

        // A Matrix-shaped 429 from a rate limiter: wait and retry.
        let limited = Reply {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
            body: Some(json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1000})),
        };
        match classify(&limited, none) {
            RefreshOutcome::Transient { error, retry_after } => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)));
                assert_eq!(error.errcode(), Some("M_LIMIT_EXCEEDED"));
            }
            other => panic!("{other:?}"),
        }
        let limited_rfc = Reply {
            status: 429,
            retry_after: Some(Duration::from_secs(3)),
            body: None,
        };
        assert!(matches!(
            classify(&limited_rfc, none),
            RefreshOutcome::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));

        // 5xx, with HTML, JSON or nothing; a success that is not a token response.
        for r in [
            reply(503, None),
            reply(500, Some(json!({"error": "server_error"}))),
            reply(502, Some(json!({"errcode": "M_UNKNOWN"}))),
            reply(200, None),
            reply(200, Some(json!({"refresh_token": "r"}))),
            reply(302, None),
        ] {
            assert!(
                matches!(classify(&r, none), RefreshOutcome::Transient { .. }),
                "{r:?}"
            );
        }

        // oauth-4xx-not-logout: the refusal is taken as passing.
        let b = bugs(&[Bug::Oauth4xxNotLogout]);
        assert!(matches!(
            classify(&invalid_grant, b),
            RefreshOutcome::Transient { .. }
        ));
        assert!(matches!(classify(&limited, b), RefreshOutcome::Transient { .. }));

        // oauth-matrix-error-logout: the rate limiter's 429 ends the session.
        let b = bugs(&[Bug::OauthMatrixErrorLogout]);
        assert!(matches!(
            classify(&limited, b),
            RefreshOutcome::Definitive {
                soft_logout: false,
                ..
            }
        ));
        assert!(matches!(
            classify(&limited_rfc, b),
            RefreshOutcome::Transient { .. }
        ));
        assert!(matches!(
            classify(&reply(503, None), b),
            RefreshOutcome::Transient { .. }
        ));
    }

    #[test]
    fn ids_and_scope() {
        let d = new_device_id();
        assert_eq!(d.len(), 10);
        assert!(d.bytes().all(|b| DEVICE_ID_CHARS.contains(&b)));
        assert_eq!(
            scope("ABC"),
            "urn:matrix:client:api:* urn:matrix:client:device:ABC"
        );
        assert_eq!(full_user_id("@alice:localhost"), Some("@alice:localhost"));
        assert_eq!(full_user_id("alice"), None);
        assert_eq!(login_hint("@alice:localhost"), "mxid:@alice:localhost");
        assert_eq!(login_hint("alice"), "alice");
        let reg = registration_body();
        assert_eq!(reg["token_endpoint_auth_method"], "none");
        assert_eq!(reg["grant_types"], json!(["authorization_code", "refresh_token"]));
    }
}
