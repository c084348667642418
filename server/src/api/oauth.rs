//! The OAuth 2.0 API (Matrix v1.15, as matrix-authentication-service serves it): server metadata,
//! dynamic client registration, the authorization endpoint (approves at once, no UI), the token
//! endpoint (`authorization_code` with PKCE, `refresh_token`) and token revocation.

use super::{Ctx, HandlerResult, ok};
use crate::core::lock;
use crate::error::ErrorInfo;
use crate::oauth::AuthorizationRequest;
use crate::oauth::{
    ClientMetadata, CodeExchange, CodeRules, GrantType, OAuthError, OAuthErrorCode, RegisteredClient,
    is_valid_verifier, new_device_id, parse_scope,
};
use crate::store::{Issued, OAuthGrant, RefreshError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// The pairs of a form-encoded body, decoded leniently (for the trace and the handlers).
pub(super) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Request parameters (a form body or a query string) with RFC 6749 §3.1's rules: an empty
/// value counts as absent; a repeated parameter is an error.
struct Params<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Params<'a> {
    fn get(&self, name: &str) -> Result<Option<&'a str>, OAuthError> {
        let mut found = self
            .pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name:?} is given more than once"
            )));
        }
        Ok(first)
    }
}

fn read_form(ctx: &Ctx) -> Result<Vec<(String, String)>, OAuthError> {
    let content_type = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        let got = if content_type.is_empty() {
            "no Content-Type".to_owned()
        } else {
            format!("Content-Type {content_type:?}")
        };
        return Err(OAuthError::invalid_request(format!(
            "the body must be application/x-www-form-urlencoded (got {got})"
        )));
    }
    Ok(form_pairs(&ctx.body))
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1, RFC 7591 §3.2.1).
fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `http://<Host>` of the request, or the server's own address.
fn base_url(ctx: &Ctx) -> String {
    let host = ctx
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    match host {
        Some(h) => format!("http://{h}"),
        None => ctx
            .core
            .base_url
            .get()
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1".to_owned()),
    }
}

/// `GET /_matrix/client/v1/auth_metadata`: the authorization server metadata (RFC 8414 fields
/// the Matrix spec requires).
pub(super) fn auth_metadata(ctx: &mut Ctx) -> HandlerResult {
    let base = base_url(ctx);
    let mut grants = vec![GrantType::AuthorizationCode.as_str()];
    if ctx.cfg.refresh_enabled() {
        grants.push(GrantType::RefreshToken.as_str());
    }
    Ok(ok(json!({
        "issuer": format!("{base}/"),
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "registration_endpoint": format!("{base}/oauth2/registration"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": grants,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
    })))
}

/// `POST /oauth2/registration` (RFC 7591): 201 with the client id and the accepted metadata.
pub(super) fn register(ctx: &mut Ctx) -> HandlerResult {
    Ok(register_client(ctx).unwrap_or_else(IntoResponse::into_response))
}

fn register_client(ctx: &mut Ctx) -> Result<Response, OAuthError> {
    let value: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| OAuthError::invalid_request(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidClientMetadata,
            "the body must be a JSON object of client metadata",
        ));
    }
    let metadata: ClientMetadata = serde_json::from_value(value)
        .map_err(|e| OAuthError::new(OAuthErrorCode::InvalidClientMetadata, e.to_string()))?;
    let now = ctx.core.clock.now_ms();
    let client = lock(&ctx.core.oauth).register(&metadata, now)?;
    ctx.done.flags.insert("client_id".into(), json!(client.client_id));
    let mut resp = (StatusCode::CREATED, axum::Json(client)).into_response();
    no_store(&mut resp);
    Ok(resp)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseMode {
    Query,
    Fragment,
}

/// A 302 to the redirect URI with `params` in its query or fragment.
fn redirect(uri: &str, mode: ResponseMode, params: &[(&str, &str)]) -> Result<Response, OAuthError> {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let encoded = ser.finish();
    let location = match mode {
        ResponseMode::Fragment => format!("{uri}#{encoded}"),
        ResponseMode::Query if uri.contains('?') => format!("{uri}&{encoded}"),
        ResponseMode::Query => format!("{uri}?{encoded}"),
    };
    let value = HeaderValue::from_str(&location)
        .map_err(|_| OAuthError::invalid_request("the redirect URI cannot be sent in a Location header"))?;
    let mut resp = StatusCode::FOUND.into_response();
    resp.headers_mut().insert(header::LOCATION, value);
    Ok(resp)
}

/// `GET /oauth2/authorize` (RFC 6749 §4.1.1, RFC 7636 §4.3): approves at once, as `login_hint`'s
/// user (`mxid:@bob:localhost`) or `alice`, and redirects with `code` and `state`. A missing or
/// unknown client or redirect URI is a 400 without redirect (§4.1.2.1); other errors redirect.
pub(super) fn authorize(ctx: &mut Ctx) -> HandlerResult {
    Ok(authorize_request(ctx).unwrap_or_else(IntoResponse::into_response))
}

fn authorize_request(ctx: &mut Ctx) -> Result<Response, OAuthError> {
    let query = ctx.query.clone();
    let q = Params { pairs: &query };
    let client_id = q
        .get("client_id")?
        .ok_or_else(|| OAuthError::invalid_request("client_id is missing"))?;
    let client = lock(&ctx.core.oauth)
        .client(client_id)
        .cloned()
        .ok_or_else(|| OAuthError::invalid_request(format!("unknown client_id {client_id:?}")))?;
    let given = q.get("redirect_uri")?;
    let redirect_uri = match given {
        Some(uri) => {
            client.matching_redirect_uri(uri).ok_or_else(|| {
                OAuthError::invalid_request(format!("redirect_uri {uri:?} is not registered for this client"))
            })?;
            uri.to_owned()
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(OAuthError::invalid_request(
                    "redirect_uri is required (the client registered several, or none)",
                ));
            }
        },
    };
    // From here on, errors go back to the client through the redirect URI.
    let (mode, mode_error) = match q.get("response_mode") {
        Ok(None | Some("query")) => (ResponseMode::Query, None),
        Ok(Some("fragment")) => (ResponseMode::Fragment, None),
        Ok(Some(other)) => (
            ResponseMode::Query,
            Some(OAuthError::invalid_request(format!(
                "response_mode {other:?} is not supported (query, fragment)"
            ))),
        ),
        Err(e) => (ResponseMode::Query, Some(e)),
    };
    let state = ctx
        .query
        .iter()
        .find(|(k, v)| k == "state" && !v.is_empty())
        .map(|(_, v)| v.clone());
    let outcome = match mode_error {
        Some(e) => Err(e),
        None => approve(ctx, &q, &client, &redirect_uri, given.is_some()),
    };
    let mut params: Vec<(&str, &str)> = Vec::new();
    let code;
    match &outcome {
        Ok(c) => {
            code = c.clone();
            params.push(("code", &code));
        }
        Err(e) => {
            params.push(("error", e.code.as_str()));
            params.push(("error_description", &e.description));
        }
    }
    if let Some(s) = &state {
        params.push(("state", s));
    }
    let mut resp = redirect(&redirect_uri, mode, &params)?;
    if let Err(e) = &outcome {
        resp.extensions_mut().insert(ErrorInfo {
            errcode: Some(e.code.as_str().to_owned()),
            soft_logout: None,
        });
    }
    Ok(resp)
}

/// Checks the rest of an authorization request and issues its code.
fn approve(
    ctx: &mut Ctx,
    q: &Params<'_>,
    client: &RegisteredClient,
    redirect_uri: &str,
    redirect_uri_given: bool,
) -> Result<String, OAuthError> {
    match q.get("response_type")? {
        None => return Err(OAuthError::invalid_request("response_type is missing")),
        Some("code") => {}
        Some(other) => {
            return Err(OAuthError::new(
                OAuthErrorCode::UnsupportedResponseType,
                format!("response_type {other:?} is not supported (only \"code\")"),
            ));
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "the client is not registered for the authorization_code grant",
        ));
    }
    let challenge = q
        .get("code_challenge")?
        .ok_or_else(|| OAuthError::invalid_request("code challenge required (PKCE, S256)"))?;
    match q.get("code_challenge_method")? {
        Some("S256") => {}
        // RFC 7636 §4.3: an absent method means "plain", which is not supported.
        _ => {
            return Err(OAuthError::invalid_request(
                "transform algorithm not supported: code_challenge_method must be S256",
            ));
        }
    }
    if !is_valid_verifier(challenge) {
        return Err(OAuthError::invalid_request(
            "code_challenge must be 43 to 128 of A-Z a-z 0-9 - . _ ~",
        ));
    }
    let scope = parse_scope(q.get("scope")?.unwrap_or(crate::oauth::API_SCOPE))?;
    let device_id = scope.device_id.clone().unwrap_or_else(new_device_id);
    let scope = scope.with_device(&device_id);
    // Repeated parameters are refused (RFC 6749 §3.1); `state` is echoed all the same.
    for name in ["state", "nonce", "prompt"] {
        q.get(name)?;
    }
    let hint = q.get("login_hint")?;
    let user = hint.map_or("alice", |h| h.strip_prefix("mxid:").unwrap_or(h));
    let user_id = {
        let store = lock(&ctx.core.store);
        let id = store.user_id_for(user);
        if !store.has_user(&id) {
            return Err(OAuthError::new(
                OAuthErrorCode::AccessDenied,
                format!("no user {user:?} to approve the request"),
            ));
        }
        id
    };
    ctx.done.user_id = Some(user_id.clone());
    ctx.done.device_id = Some(device_id.clone());
    let now = ctx.core.clock.now_ms();
    let code = lock(&ctx.core.oauth).issue_code(
        AuthorizationRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            redirect_uri_given,
            code_challenge: challenge.to_owned(),
            user_id,
            device_id,
            scope: scope.to_scope_string(),
        },
        now,
    );
    Ok(code)
}

/// `POST /oauth2/token` (RFC 6749 §4.1.3 and §6; RFC 7636 §4.5).
pub(super) fn token(ctx: &mut Ctx) -> HandlerResult {
    Ok(token_request(ctx).unwrap_or_else(IntoResponse::into_response))
}

fn token_request(ctx: &mut Ctx) -> Result<Response, OAuthError> {
    let pairs = read_form(ctx)?;
    let form = Params { pairs: &pairs };
    let client_id = form.get("client_id")?.ok_or_else(|| {
        OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "client authentication failed: no client_id (a public client sends it in the body)",
        )
    })?;
    let client = lock(&ctx.core.oauth)
        .client(client_id)
        .cloned()
        .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidClient, "unknown client"))?;
    let grant_type = form
        .get("grant_type")?
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    let grant = GrantType::parse(grant_type)
        .filter(|g| *g != GrantType::RefreshToken || ctx.cfg.refresh_enabled())
        .ok_or_else(|| {
            OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                format!("grant_type {grant_type:?} is not supported"),
            )
        })?;
    if !client.allows(grant) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            format!("the client is not registered for the {} grant", grant.as_str()),
        ));
    }
    let now = ctx.core.clock.now_ms();
    match grant {
        GrantType::AuthorizationCode => code_grant(ctx, &form, client_id, now),
        GrantType::RefreshToken => refresh_grant(ctx, &form, client_id, now),
    }
}

fn code_grant(ctx: &mut Ctx, form: &Params<'_>, client_id: &str, now: i64) -> Result<Response, OAuthError> {
    let code = form
        .get("code")?
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let exchange = CodeExchange {
        code,
        client_id,
        redirect_uri: form.get("redirect_uri")?,
        code_verifier: form.get("code_verifier")?,
    };
    let rules = CodeRules {
        lifetime: ctx.cfg.oauth_code_lifetime,
        replay_grace: ctx.cfg.oauth_code_replay_grace,
    };
    let mut registry = lock(&ctx.core.oauth);
    let request = match registry.redeem_code(now, rules, exchange) {
        Ok(r) => r,
        Err(refusal) => {
            if let Some((user, device)) = refusal.revoke {
                let revoked = lock(&ctx.core.store).delete_device(&user, &device);
                ctx.done.flags.insert("session_revoked".into(), json!(revoked));
                ctx.done.user_id = Some(user);
                ctx.done.device_id = Some(device);
            }
            return Err(refusal.error);
        }
    };
    let grant = OAuthGrant {
        client_id: client_id.to_owned(),
        scope: request.scope.clone(),
    };
    let issued = lock(&ctx.core.store)
        .login_oauth(&ctx.cfg, now, &request.user_id, Some(&request.device_id), &grant)
        .map_err(|_| OAuthError::invalid_grant("the user who approved the request no longer exists"))?;
    drop(registry);
    Ok(token_response(ctx, &issued, &grant.scope, now))
}

fn refresh_grant(
    ctx: &mut Ctx,
    form: &Params<'_>,
    client_id: &str,
    now: i64,
) -> Result<Response, OAuthError> {
    let token = form
        .get("refresh_token")?
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let requested_scope = form.get("scope")?;
    let mut store = lock(&ctx.core.store);
    let scope = store
        .oauth_grant_of(token)
        .filter(|_| store.is_oauth_refresh_token(token))
        .map(|g| g.scope.clone());
    // RFC 6749 §6: a scope may narrow the grant, never widen it.
    if let (Some(requested), Some(granted)) = (requested_scope, &scope) {
        let granted: Vec<&str> = granted.split(' ').collect();
        if let Some(extra) = requested
            .split(' ')
            .find(|t| !t.is_empty() && !granted.contains(t))
        {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                format!("scope token {extra:?} was not granted to this session"),
            ));
        }
    }
    let result = store.refresh_oauth(&ctx.cfg, now, token, Some(client_id));
    drop(store);
    match result {
        Ok(issued) => Ok(token_response(ctx, &issued, scope.as_deref().unwrap_or(""), now)),
        Err(e) => {
            if e == RefreshError::ReplayRevokedSession {
                ctx.done.flags.insert("session_revoked".into(), json!(true));
            }
            Err(OAuthError::invalid_grant(e.to_string()))
        }
    }
}

/// The token response (RFC 6749 §5.1): `expires_in` in whole seconds, rounded down; no
/// `refresh_token` when rotation is off (the client keeps its old one).
fn token_response(ctx: &mut Ctx, issued: &Issued, scope: &str, now: i64) -> Response {
    let expires_in_ms = ctx.note_issued(issued, now);
    let mut body = Map::new();
    body.insert("access_token".into(), json!(issued.access_token));
    body.insert("token_type".into(), json!("Bearer"));
    if let Some(ms) = expires_in_ms
        && ctx.cfg.send_expires_in_ms
    {
        body.insert("expires_in".into(), json!(ms.max(0) / 1000));
    }
    if let Some(rt) = &issued.refresh_token {
        body.insert("refresh_token".into(), json!(rt));
    }
    body.insert("scope".into(), json!(scope));
    let mut resp = ok(Value::Object(body));
    no_store(&mut resp);
    resp
}

/// `POST /oauth2/revoke` (RFC 7009): 200 whether or not the token was known; a valid OAuth
/// access or refresh token ends its whole session (device), as MAS does.
pub(super) fn revoke(ctx: &mut Ctx) -> HandlerResult {
    Ok(revoke_request(ctx).unwrap_or_else(IntoResponse::into_response))
}

fn revoke_request(ctx: &mut Ctx) -> Result<Response, OAuthError> {
    let pairs = read_form(ctx)?;
    let form = Params { pairs: &pairs };
    let token = form
        .get("token")?
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    match form.get("token_type_hint")? {
        None | Some("access_token" | "refresh_token") => {}
        Some(other) => {
            return Err(OAuthError::new(
                OAuthErrorCode::UnsupportedTokenType,
                format!("token_type_hint {other:?} is not supported (access_token, refresh_token)"),
            ));
        }
    }
    // The client id is optional, and a wrong one does not stop the revocation (spec v1.15).
    form.get("client_id")?;
    let now = ctx.core.clock.now_ms();
    let revoked = lock(&ctx.core.store).revoke_oauth_token(&ctx.cfg, now, token);
    ctx.done
        .flags
        .insert("session_revoked".into(), json!(revoked.is_some()));
    if let Some((user, device)) = revoked {
        ctx.done.user_id = Some(user);
        ctx.done.device_id = Some(device);
    }
    Ok(ok(json!({})))
}
