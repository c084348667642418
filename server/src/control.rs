//! The control API under `/_rotary/`: config, faults, clock, users, sessions, rooms, trace, reset.
//! Loopback clients only, unless a control token is set and presented.

use crate::core::{Core, MintRequest, OAuthMintRequest, OpError};
use crate::duration;
use crate::error::MatrixError;
use crate::fault::FaultRule;
use crate::oauth::{ClientMetadata, GrantType};
use crate::trace::TracePage;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Who may use the control API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ControlAccess {
    /// Only clients on the loopback interface (the default).
    #[default]
    LoopbackOnly,
    /// Loopback clients, and others that send `Authorization: Bearer <token>`.
    Token(String),
}

#[derive(Clone)]
struct ControlState {
    core: Arc<Core>,
    access: ControlAccess,
}

type ApiResult = Result<Response, MatrixError>;

impl From<OpError> for MatrixError {
    fn from(e: OpError) -> Self {
        let status = match &e {
            OpError::UnknownUser(_) | OpError::UnknownSession { .. } | OpError::UnknownOAuthClient(_) => 404,
            OpError::Refresh(_) | OpError::NoRefreshToken(_) | OpError::OAuthOff => 409,
            OpError::Room(crate::rooms::RoomError::NotFound) => 404,
            _ => 400,
        };
        let code = match status {
            404 => "M_NOT_FOUND",
            409 => "M_UNKNOWN",
            _ => "M_INVALID_PARAM",
        };
        MatrixError::new(status, code, e.to_string())
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, MatrixError> {
    let text = if body.is_empty() { &b"{}"[..] } else { &body[..] };
    serde_json::from_slice(text)
        .map_err(|e| MatrixError::bad_json(format!("invalid control request body: {e}")))
}

fn json_ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}

/// Whether a control request from `peer` with this `Authorization` header may pass.
pub fn control_allowed(peer: Option<IpAddr>, authorization: Option<&str>, access: &ControlAccess) -> bool {
    if peer.is_none_or(|ip| ip.is_loopback() || ip.to_canonical().is_loopback()) {
        return true;
    }
    match access {
        ControlAccess::LoopbackOnly => false,
        ControlAccess::Token(t) => authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|given| !t.is_empty() && given == t),
    }
}

async fn guard(State(st): State<ControlState>, req: Request, next: Next) -> Response {
    let peer = crate::conn::current().map(|c| c.peer.ip());
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if control_allowed(peer, auth, &st.access) {
        next.run(req).await
    } else {
        MatrixError::forbidden(
            "the control API answers loopback clients only (start `rotary serve --control-token T` and send `Authorization: Bearer T` to allow others)",
        )
        .into_response()
    }
}

async fn index() -> ApiResult {
    json_ok(json!({"routes": [
        "GET    /_rotary/config",
        "PATCH  /_rotary/config                     {knob: value, ...} (a profile resets the others first)",
        "GET    /_rotary/faults",
        "POST   /_rotary/faults                     a rule, or [rules]",
        "DELETE /_rotary/faults                     remove every rule",
        "DELETE /_rotary/faults/{id}",
        "GET    /_rotary/clock",
        "POST   /_rotary/clock/advance              {\"by\": \"5m\"}",
        "GET    /_rotary/users",
        "POST   /_rotary/users                      {\"user\", \"password\"}",
        "GET    /_rotary/sessions?user=alice",
        "POST   /_rotary/sessions                   {\"user\", \"device_id\"?, \"refresh_token\"?: true, \"oauth\"?: false, \"client_id\"?}",
        "POST   /_rotary/sessions/{user}/{device}/expire",
        "POST   /_rotary/sessions/{user}/{device}/revoke",
        "POST   /_rotary/sessions/{user}/{device}/rotate   {\"use\"?: true}",
        "GET    /_rotary/oauth/clients",
        "POST   /_rotary/oauth/clients              RFC 7591 client metadata ({} = a harness client)",
        "POST   /_rotary/rooms                      {\"user\", \"name\"?}",
        "POST   /_rotary/rooms/{room_id}/join       {\"user\"}",
        "GET    /_rotary/trace?after=SEQ&limit=N   a page: {trace, next_after, more, first_seq, last_seq, evicted, missed}",
        "POST   /_rotary/labels                     {\"tokens\": [..]}",
        "POST   /_rotary/reset",
    ]}))
}

async fn get_config(State(st): State<ControlState>) -> ApiResult {
    json_ok(serde_json::to_value(&*st.core.config()).unwrap_or(Value::Null))
}

async fn patch_config(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let patch: Value = parse(&body)?;
    let cfg = st.core.patch_config(&patch)?;
    json_ok(serde_json::to_value(&*cfg).unwrap_or(Value::Null))
}

async fn list_faults(State(st): State<ControlState>) -> ApiResult {
    json_ok(json!({"faults": st.core.faults()}))
}

async fn add_faults(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let v: Value = parse(&body)?;
    let rules: Vec<FaultRule> = match v {
        Value::Array(_) => parse(&body)?,
        Value::Object(ref m) if m.contains_key("faults") => {
            serde_json::from_value(m["faults"].clone()).map_err(|e| MatrixError::bad_json(e.to_string()))?
        }
        _ => vec![parse(&body)?],
    };
    // Check every rule first, so that a bad one in a list adds none of them.
    for rule in &rules {
        rule.validate(&crate::endpoint::endpoint_names())
            .map_err(OpError::from)?;
    }
    let ids: Result<Vec<u64>, OpError> = rules.into_iter().map(|r| st.core.add_fault(r)).collect();
    json_ok(json!({"ids": ids?}))
}

async fn clear_faults(State(st): State<ControlState>) -> ApiResult {
    st.core.clear_faults();
    json_ok(json!({}))
}

async fn remove_fault(State(st): State<ControlState>, Path(id): Path<String>) -> ApiResult {
    let id: u64 = id
        .parse()
        .map_err(|_| MatrixError::invalid_param(format!("fault id {id:?} is not a number")))?;
    if st.core.remove_fault(id) {
        json_ok(json!({}))
    } else {
        Err(MatrixError::not_found(format!("no fault rule {id}")))
    }
}

fn clock_json(core: &Core) -> Value {
    json!({
        "now_ms": core.clock.now_ms(),
        "offset_ms": core.clock.offset().as_millis() as u64,
        "trace_time_ms": core.trace_time(),
    })
}

async fn get_clock(State(st): State<ControlState>) -> ApiResult {
    json_ok(clock_json(&st.core))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(with = "duration::required")]
    by: Duration,
}

async fn advance_clock(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let a: Advance = parse(&body)?;
    st.core.advance_clock(a.by);
    json_ok(clock_json(&st.core))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    user: String,
    password: String,
}

async fn list_users(State(st): State<ControlState>) -> ApiResult {
    json_ok(json!({"users": st.core.users()}))
}

async fn add_user(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let u: NewUser = parse(&body)?;
    let user_id = st.core.add_user(&u.user, &u.password)?;
    json_ok(json!({"user_id": user_id}))
}

#[derive(Deserialize)]
struct SessionQuery {
    user: Option<String>,
}

async fn list_sessions(State(st): State<ControlState>, Query(q): Query<SessionQuery>) -> ApiResult {
    json_ok(json!({"sessions": st.core.sessions(q.user.as_deref())}))
}

fn issued_json(core: &Core, i: &crate::store::Issued) -> Value {
    json!({
        "user_id": i.user_id,
        "device_id": i.device_id,
        "access_token": i.access_token,
        "access_label": i.access_label,
        "refresh_token": i.refresh_token,
        "refresh_label": i.refresh_label,
        "expires_in_ms": i.expires_in_ms(core.clock.now_ms()),
    })
}

/// `POST /_rotary/sessions`: a legacy session, or an OAuth one with `"oauth": true` or a
/// `client_id`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    user: String,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    refresh_token: Option<bool>,
    #[serde(default)]
    oauth: bool,
    #[serde(default)]
    client_id: Option<String>,
}

async fn mint_session(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let req: MintBody = parse(&body)?;
    if !req.oauth && req.client_id.is_none() {
        let issued = st.core.mint_session(&MintRequest {
            user: req.user,
            device_id: req.device_id,
            refresh_token: req.refresh_token.unwrap_or(true),
        })?;
        return json_ok(issued_json(&st.core, &issued));
    }
    if req.refresh_token == Some(false) {
        return Err(MatrixError::invalid_param(
            "an OAuth session always gets a refresh token (when refresh is on): drop \"refresh_token\": false",
        ));
    }
    let minted = st.core.mint_oauth_session(&OAuthMintRequest {
        user: req.user,
        device_id: req.device_id,
        client_id: req.client_id,
    })?;
    let mut out = issued_json(&st.core, &minted.issued);
    out["client_id"] = json!(minted.client_id);
    out["scope"] = json!(minted.scope);
    json_ok(out)
}

async fn list_oauth_clients(State(st): State<ControlState>) -> ApiResult {
    json_ok(json!({"clients": st.core.oauth_clients()}))
}

/// `POST /_rotary/oauth/clients`: RFC 7591 metadata; `{}` (or grant types left out) registers a
/// client with both grants, and `redirect_uris` defaults to the harness's.
async fn register_oauth_client(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let mut metadata: ClientMetadata = parse(&body)?;
    if metadata.grant_types.is_none() {
        metadata.grant_types = Some(vec![
            GrantType::AuthorizationCode.as_str().to_owned(),
            GrantType::RefreshToken.as_str().to_owned(),
        ]);
    }
    if metadata.redirect_uris.is_empty() {
        metadata.redirect_uris = vec![crate::core::HARNESS_REDIRECT_URI.to_owned()];
    }
    let client = st.core.register_oauth_client(&metadata)?;
    json_ok(serde_json::to_value(&client).unwrap_or(Value::Null))
}

async fn expire_session(
    State(st): State<ControlState>,
    Path((user, device)): Path<(String, String)>,
) -> ApiResult {
    let labels = st.core.expire_session(&user, &device)?;
    json_ok(json!({"expired": labels}))
}

async fn revoke_session(
    State(st): State<ControlState>,
    Path((user, device)): Path<(String, String)>,
) -> ApiResult {
    st.core.revoke_session(&user, &device)?;
    json_ok(json!({}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default = "yes", rename = "use")]
    use_new: bool,
}

fn yes() -> bool {
    true
}

async fn rotate_session(
    State(st): State<ControlState>,
    Path((user, device)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let r: Rotate = parse(&body)?;
    let issued = st.core.rotate_out_of_band(&user, &device, r.use_new)?;
    json_ok(issued_json(&st.core, &issued))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoom {
    user: String,
    #[serde(default)]
    name: Option<String>,
}

async fn create_room(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let r: NewRoom = parse(&body)?;
    let room_id = st.core.create_room(&r.user, r.name.as_deref())?;
    json_ok(json!({"room_id": room_id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    user: String,
}

async fn join_room(State(st): State<ControlState>, Path(room): Path<String>, body: Bytes) -> ApiResult {
    let j: Join = parse(&body)?;
    st.core.join_room(&room, &j.user)?;
    json_ok(json!({}))
}

/// Entries per `GET /_rotary/trace` page when `limit` is not given.
pub const TRACE_PAGE_DEFAULT: usize = 10_000;
/// The largest `limit` served (larger ones are cut to it; `more` then says so).
pub const TRACE_PAGE_MAX: usize = 100_000;
/// Entries serialized per body chunk; the connection's task yields between chunks, so that a big
/// page never holds up other requests on the same runtime thread.
const TRACE_CHUNK: usize = 256;

#[derive(Deserialize)]
struct TraceQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /_rotary/trace?after=SEQ&limit=N`: a page of the trace, streamed.
async fn get_trace(State(st): State<ControlState>, Query(q): Query<TraceQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(TRACE_PAGE_DEFAULT).min(TRACE_PAGE_MAX);
    let page = st.core.trace.page(q.after.unwrap_or(0), limit);
    Ok(trace_body(page))
}

/// The page as `{"evicted", "first_seq", "last_seq", "missed", "more", "next_after", "trace":
/// [...]}` (keys in the order a `json!` map sorts them), serialized chunk by chunk as hyper asks
/// for the body: the page is shared `Arc`s, the lock long released.
fn trace_body(page: TracePage) -> Response {
    let head = format!(
        "{{\"evicted\":{},\"first_seq\":{},\"last_seq\":{},\"missed\":{},\"more\":{},\"next_after\":{},\"trace\":[",
        page.evicted, page.first_seq, page.last_seq, page.missed, page.more, page.next_after
    );
    let entries = page.entries;
    let chunks = futures_util::stream::unfold(Some(0usize), move |at| {
        let entries = entries.clone();
        async move {
            let at = at?;
            if at > 0 {
                tokio::task::yield_now().await;
            }
            let end = (at + TRACE_CHUNK).min(entries.len());
            let mut buf = Vec::with_capacity((end - at) * 640 + 2);
            for (i, e) in entries[at..end].iter().enumerate() {
                if at + i > 0 {
                    buf.push(b',');
                }
                let mark = buf.len();
                if let Err(err) = serde_json::to_writer(&mut buf, &**e) {
                    tracing::warn!(seq = e.seq, error = %err, "trace entry not serializable");
                    buf.truncate(mark);
                    buf.extend_from_slice(b"null");
                }
            }
            let next = if end < entries.len() {
                Some(end)
            } else {
                buf.extend_from_slice(b"]}");
                None
            };
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(buf)), next))
        }
    });
    let head = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(head, chunks));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Labels {
    tokens: Vec<String>,
}

async fn labels(State(st): State<ControlState>, body: Bytes) -> ApiResult {
    let l: Labels = parse(&body)?;
    let labels: Vec<Option<String>> = l.tokens.iter().map(|t| st.core.label_of(t)).collect();
    json_ok(json!({"labels": labels}))
}

async fn reset(State(st): State<ControlState>) -> ApiResult {
    st.core.reset()?;
    json_ok(json!({}))
}

/// Turns axum's plain-text rejections (bad query string, body too large, …) into Matrix errors.
async fn matrix_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_owned();
    let errcode = match status.as_u16() {
        413 => "M_TOO_LARGE",
        404 | 405 => "M_UNRECOGNIZED",
        400 | 415 | 422 => "M_BAD_JSON",
        _ => "M_UNKNOWN",
    };
    let mut e = MatrixError::new(status.as_u16(), errcode, detail);
    if e.error.is_empty() {
        e.error = status.canonical_reason().unwrap_or("error").to_owned();
    }
    let mut out = e.into_response();
    *out.status_mut() = parts.status;
    out
}

async fn method_not_allowed() -> Response {
    MatrixError::new(
        405,
        "M_UNRECOGNIZED",
        "This control route does not take that method; GET /_rotary lists them",
    )
    .into_response()
}

async fn not_found() -> Response {
    MatrixError::new(
        404,
        "M_UNRECOGNIZED",
        "Unknown control route; GET /_rotary lists them",
    )
    .into_response()
}

/// The `/_rotary` router.
pub(crate) fn router(core: Arc<Core>, access: ControlAccess) -> Router {
    let st = ControlState { core, access };
    Router::new()
        .route("/", get(index))
        .route("/config", get(get_config).patch(patch_config).put(patch_config))
        .route("/faults", get(list_faults).post(add_faults).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/clock", get(get_clock))
        .route("/clock/advance", post(advance_clock))
        .route("/users", get(list_users).post(add_user))
        .route("/sessions", get(list_sessions).post(mint_session))
        .route("/sessions/{user}/{device}/expire", post(expire_session))
        .route("/sessions/{user}/{device}/revoke", post(revoke_session))
        .route("/sessions/{user}/{device}/rotate", post(rotate_session))
        .route(
            "/oauth/clients",
            get(list_oauth_clients).post(register_oauth_client),
        )
        .route("/rooms", post(create_room))
        .route("/rooms/{room}/join", post(join_room))
        .route("/trace", get(get_trace))
        .route("/labels", post(labels))
        .route("/reset", post(reset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(matrix_errors))
        .layer(middleware::from_fn_with_state(st.clone(), guard))
        .with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_the_token_passes() {
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let v6_loop: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let lo = ControlAccess::LoopbackOnly;
        let tok = ControlAccess::Token("s3cret".into());
        assert!(control_allowed(Some("127.0.0.1".parse().unwrap()), None, &lo));
        assert!(control_allowed(Some(v6_loop), None, &lo));
        assert!(control_allowed(Some(mapped), None, &lo));
        assert!(!control_allowed(Some(remote), None, &lo));
        assert!(!control_allowed(Some(remote), Some("Bearer s3cret"), &lo));
        assert!(control_allowed(Some(remote), Some("Bearer s3cret"), &tok));
        assert!(!control_allowed(Some(remote), Some("Bearer wrong"), &tok));
        assert!(!control_allowed(Some(remote), None, &tok));
        assert!(!control_allowed(
            Some(remote),
            Some("Bearer "),
            &ControlAccess::Token(String::new())
        ));
    }
}
