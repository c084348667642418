//! The client-server API: classification, tracing and fault injection around every request, then
//! dispatch to the endpoint handlers.

mod account;
mod misc;
mod oauth;
mod room;
mod session;

use crate::config::ServerConfig;
use crate::conn::RawAction;
use crate::core::{Core, lock};
use crate::endpoint::{Classified, Endpoint, classify};
use crate::error::{ErrorInfo, MatrixError};
use crate::fault::RequestFacts;
use crate::inject::{self, Plan};
use crate::store::{Issued, IssuedShared, Owner};
use crate::trace::{Completion, Delivery, FiredFault, IssuedLabels, Ticket, TraceEntry};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Everything a handler needs about its request.
pub(crate) struct Ctx {
    pub core: Arc<Core>,
    pub cfg: Arc<ServerConfig>,
    pub params: Vec<String>,
    pub query: Vec<(String, String)>,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    parsed: Option<Result<Value, ()>>,
    token: Result<Option<Presented>, MatrixError>,
    /// Who the presented token belongs to, as the trace entry already says.
    owner: Option<Owner>,
    /// The refresh token of a `/refresh` body that held nothing else (then `parsed` is empty).
    pub refresh_token: Option<String>,
    pub done: Completion,
}

/// The access token a request presented: its `Authorization` header (shared, not copied), or
/// the decoded `access_token` query parameter.
#[derive(Clone, Debug)]
pub(crate) enum Presented {
    /// `Bearer <token>`, checked by [`access_token`].
    Header(HeaderValue),
    /// From the query string.
    Query(String),
}

impl Presented {
    /// The token itself.
    pub fn as_str(&self) -> &str {
        match self {
            Presented::Header(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.strip_prefix("Bearer "))
                .unwrap_or(""),
            Presented::Query(t) => t,
        }
    }
}

impl Ctx {
    /// The body as a JSON object, with Synapse's errors.
    pub fn json(&mut self) -> Result<Map<String, Value>, MatrixError> {
        self.json_ref().cloned()
    }

    /// The body as a borrowed JSON object (no copy of the map), with Synapse's errors.
    pub fn json_ref(&mut self) -> Result<&Map<String, Value>, MatrixError> {
        let parsed = self
            .parsed
            .get_or_insert_with(|| serde_json::from_slice::<Value>(&self.body).map_err(|_| ()));
        match parsed {
            Err(()) => Err(MatrixError::not_json()),
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(MatrixError::bad_json("Content must be a JSON object.")),
        }
    }

    /// Takes a string field out of the body (JSON object), with Synapse's errors: missing →
    /// `M_MISSING_PARAM`, not a string → `M_INVALID_PARAM`. The body keeps a null there.
    pub fn take_string(&mut self, name: &str) -> Result<String, MatrixError> {
        self.json_ref()?;
        let Some(Ok(Value::Object(m))) = self.parsed.as_mut() else {
            return Err(MatrixError::not_json());
        };
        match m.get_mut(name) {
            None => Err(MatrixError::missing_param(name)),
            Some(Value::String(t)) => Ok(std::mem::take(t)),
            Some(_) => Err(MatrixError::invalid_param(format!("Invalid param: {name}"))),
        }
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer query parameter, with Synapse's error.
    pub fn query_int(&self, name: &str) -> Result<Option<i64>, MatrixError> {
        match self.query(name) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                MatrixError::invalid_param(format!("Query parameter {name:?} must be an integer"))
            }),
        }
    }

    /// A path parameter.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// Authenticates the request. (The trace already names the token's user and device: they
    /// were looked up on arrival for the same token.)
    pub fn auth(&mut self, allow_expired: bool) -> Result<Owner, MatrixError> {
        let token = match &self.token {
            Ok(Some(t)) => t.as_str(),
            Ok(None) => return Err(MatrixError::missing_token()),
            Err(e) => return Err(e.clone()),
        };
        let now = self.core.clock.now_ms();
        lock(&self.core.store)
            .authenticate_shared(&self.cfg, now, token, allow_expired)
            .map_err(|e| crate::error::access_error(&self.cfg, e))
    }

    /// Notes issued tokens for the trace (labels, `expires_in_ms` as of `now`, expiry, owner).
    pub fn note_issued(&mut self, issued: &Issued, now: i64) -> Option<i64> {
        let labels = (issued.access_label.clone(), issued.refresh_label.clone());
        self.note_issued_parts(
            labels,
            issued.valid_until_ms,
            (&issued.user_id, &issued.device_id),
            now,
        )
    }

    /// [`note_issued`](Self::note_issued) for the shared form: the labels are moved, not copied.
    pub fn note_issued_shared(&mut self, issued: &mut IssuedShared, now: i64) -> Option<i64> {
        let labels = (
            std::mem::take(&mut issued.access_label),
            issued.refresh_label.take(),
        );
        let owner = (&*issued.owner.user_id, &*issued.owner.device_id);
        self.note_issued_parts(labels, issued.valid_until_ms, owner, now)
    }

    fn note_issued_parts(
        &mut self,
        (access_label, refresh_label): (String, Option<String>),
        valid_until_ms: Option<i64>,
        (user_id, device_id): (&str, &str),
        now: i64,
    ) -> Option<i64> {
        let expires_in = valid_until_ms.map(|v| v - now);
        self.done.issued = Some(IssuedLabels {
            access_token: Some(access_label),
            refresh_token: refresh_label,
            expires_in_ms: expires_in,
            expires_at_ms: valid_until_ms.map(|v| self.core.to_trace_time(v)),
        });
        // The entry names the presented token's owner already; a login (or a token of
        // someone else) changes it.
        let same = self
            .owner
            .as_ref()
            .is_some_and(|o| *o.user_id == *user_id && *o.device_id == *device_id);
        if !same {
            self.done.user_id = Some(user_id.to_owned());
            self.done.device_id = Some(device_id.to_owned());
        }
        expires_in
    }

    /// Notes issued tokens for the trace and builds the common response fields.
    pub fn issued_body(&mut self, issued: &Issued) -> Map<String, Value> {
        let now = self.core.clock.now_ms();
        let expires_in = self.note_issued(issued, now);
        let mut body = Map::new();
        body.insert("access_token".into(), json!(issued.access_token));
        if let Some(rt) = &issued.refresh_token {
            body.insert("refresh_token".into(), json!(rt));
        }
        if let Some(ms) = expires_in
            && self.cfg.send_expires_in_ms
        {
            body.insert("expires_in_ms".into(), json!(ms));
        }
        body
    }
}

/// A 200 JSON response.
pub(crate) fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

/// A JSON response serialized into a buffer sized for the usual answers (axum's `Json` starts at
/// 128 bytes and grows, which a `/refresh` answer always made it do). Same bytes and header.
pub(crate) fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let mut buf = Vec::with_capacity(256);
    match serde_json::to_writer(&mut buf, body) {
        Ok(()) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            Bytes::from(buf),
        )
            .into_response(),
        Err(e) => {
            MatrixError::new(500, "M_UNKNOWN", format!("response not serializable: {e}")).into_response()
        }
    }
}

type HandlerResult = Result<Response, MatrixError>;

async fn dispatch(ctx: &mut Ctx, endpoint: Endpoint) -> HandlerResult {
    match (endpoint, ctx.method.as_str()) {
        (Endpoint::Versions, _) => misc::versions(ctx),
        (Endpoint::WellKnown, _) => misc::well_known(ctx),
        (Endpoint::Login, "GET") => session::login_flows(),
        (Endpoint::Login, _) => session::login(ctx),
        (Endpoint::Register, _) => session::register(ctx),
        (Endpoint::Refresh, _) => session::refresh(ctx),
        (Endpoint::Logout, _) => session::logout(ctx),
        (Endpoint::LogoutAll, _) => session::logout_all(ctx),
        (Endpoint::Whoami, _) => account::whoami(ctx),
        (Endpoint::Devices, _) => account::devices(ctx),
        (Endpoint::Device, "GET") => account::get_device(ctx),
        (Endpoint::Device, "PUT") => account::put_device(ctx),
        (Endpoint::Device, _) => account::delete_device(ctx),
        (Endpoint::Sync, _) => room::sync(ctx).await,
        (Endpoint::CreateRoom, _) => room::create_room(ctx),
        (Endpoint::Send, _) => room::send(ctx),
        (Endpoint::Messages, _) => room::messages(ctx),
        (Endpoint::JoinedRooms, _) => room::joined_rooms(ctx),
        (Endpoint::Capabilities, _) => misc::capabilities(ctx),
        (Endpoint::Pushrules, _) => misc::pushrules(ctx),
        (Endpoint::Filter, "POST") => misc::upload_filter(ctx),
        (Endpoint::Filter, _) => misc::get_filter(ctx),
        (Endpoint::Profile, "PUT") => misc::put_profile(ctx),
        (Endpoint::Profile, _) => misc::get_profile(ctx),
        (Endpoint::AuthMetadata, _) => oauth::auth_metadata(ctx),
        (Endpoint::OAuthRegistration, _) => oauth::register(ctx),
        (Endpoint::OAuthAuthorize, _) => oauth::authorize(ctx),
        (Endpoint::OAuthToken, _) => oauth::token(ctx),
        (Endpoint::OAuthRevoke, _) => oauth::revoke(ctx),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A `/refresh` body with exactly one field, a string `refresh_token` (duplicates and other
/// fields fail, and the body is read as a general JSON value).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OnlyRefreshToken {
    refresh_token: String,
}

/// Synapse's `get_access_token_from_request`.
fn access_token(headers: &HeaderMap, query: &[(String, String)]) -> Result<Option<Presented>, MatrixError> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let from_query = query
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| Presented::Query(v.clone()));
    let Some(first) = auth.next() else {
        return Ok(from_query);
    };
    let missing = |msg: &str| MatrixError::new(401, "M_MISSING_TOKEN", msg);
    if from_query.is_some() {
        return Err(missing(
            "Mixing Authorization headers and access_token query parameters.",
        ));
    }
    if auth.next().is_some() {
        return Err(missing("Too many Authorization headers."));
    }
    let value = first
        .to_str()
        .map_err(|_| missing("Invalid Authorization header."))?;
    let mut parts = value.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("Bearer"), Some(_), None) => Ok(Some(Presented::Header(first.clone()))),
        _ => Err(missing("Invalid Authorization header.")),
    }
}

fn path_for_trace(parts: &Parts) -> String {
    let path = parts.uri.path();
    match parts.uri.query() {
        None => path.to_owned(),
        Some(q) => {
            let shown: Vec<String> = q
                .split('&')
                .map(|p| {
                    if p.starts_with("access_token=") {
                        "access_token=<redacted>".to_owned()
                    } else {
                        p.to_owned()
                    }
                })
                .collect();
            format!("{path}?{}", shown.join("&"))
        }
    }
}

/// Fields of a request body worth showing in the trace.
fn body_flags(endpoint: &str, body: &Value, flags: &mut BTreeMap<String, Value>) {
    let Value::Object(m) = body else { return };
    for key in [
        "refresh_token",
        "org.matrix.msc2918.refresh_token",
        "inhibit_login",
        "device_id",
    ] {
        if let Some(v) = m.get(key) {
            // The refresh token itself is a secret; its label is recorded instead.
            if endpoint == "refresh" && key == "refresh_token" {
                continue;
            }
            flags.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(t) = m.get("type").and_then(Value::as_str) {
        flags.insert("type".to_owned(), json!(t));
    }
}

/// Marks an entry abandoned when the client goes away before the handler finishes.
struct FinishGuard {
    core: Arc<Core>,
    ticket: Ticket,
    started: Instant,
    armed: bool,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if self.armed {
            self.core.trace.finish(
                self.ticket,
                Completion {
                    delivery: Some(Delivery::Abandoned),
                    duration_ms: elapsed_ms(self.started),
                    ..Default::default()
                },
            );
        }
    }
}

fn method_name(m: &Method) -> Cow<'static, str> {
    match *m {
        Method::GET => Cow::Borrowed("GET"),
        Method::POST => Cow::Borrowed("POST"),
        Method::PUT => Cow::Borrowed("PUT"),
        Method::DELETE => Cow::Borrowed("DELETE"),
        Method::HEAD => Cow::Borrowed("HEAD"),
        Method::PATCH => Cow::Borrowed("PATCH"),
        Method::OPTIONS => Cow::Borrowed("OPTIONS"),
        _ => Cow::Owned(m.to_string()),
    }
}

fn elapsed_ms(t: Instant) -> i64 {
    i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Adds the CORS headers Synapse sends on every client-server response.
fn add_cors(resp: &mut Response) {
    let h = resp.headers_mut();
    // One growth instead of several.
    h.reserve(4);
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization, Date"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Synapse-Trace-Id, Server"),
    );
}

/// How long a request body may take to arrive once its headers are in (as long as hyper gives the
/// headers): a client that stalls mid-body gets 408 instead of holding its connection forever.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request body within [`BODY_READ_TIMEOUT`] and `limit` bytes.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, MatrixError>
where
    B: hyper::body::Body<Data = Bytes>,
{
    match tokio::time::timeout(BODY_READ_TIMEOUT, collect_body(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(BodyError::TooLarge)) => Err(MatrixError::too_large(limit)),
        Ok(Err(BodyError::Broken)) => Err(MatrixError::new(
            400,
            "M_UNKNOWN",
            "Could not read the request body",
        )),
        Err(_) => Err(MatrixError::new(
            408,
            "M_UNKNOWN",
            "Timed out reading the request body",
        )),
    }
}

/// Why a body could not be read.
enum BodyError {
    /// More than the limit.
    TooLarge,
    /// The connection failed mid-body (or the body was malformed, e.g. bad chunks).
    Broken,
}

/// Collects a body of at most `limit` bytes. A body that comes in one frame (the usual) is
/// handed on as it is: no copy, no list of chunks.
async fn collect_body<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut first = Bytes::new();
    let mut joined: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
            continue; // trailers
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(BodyError::TooLarge);
        }
        match joined.as_mut() {
            Some(buf) => buf.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut buf = bytes::BytesMut::with_capacity(len);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(first, bytes::BytesMut::freeze))
}

/// Serves one client-server API request: classify, read the body, trace, inject, handle.
pub(crate) async fn serve<B>(core: Arc<Core>, req: hyper::Request<B>) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
{
    if req.method() == Method::OPTIONS {
        // A CORS preflight, answered like Synapse for any path; not part of the trace.
        let mut resp = StatusCode::NO_CONTENT.into_response();
        add_cors(&mut resp);
        return resp;
    }
    let mut response = serve_traced(core, req).await;
    add_cors(&mut response);
    response
}

async fn serve_traced<B>(core: Arc<Core>, req: hyper::Request<B>) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
{
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let conn = crate::conn::current();
    let cfg = core.config();
    // Synapse answers HEAD like GET.
    let method = if parts.method == Method::HEAD {
        Method::GET
    } else {
        parts.method.clone()
    };
    let classified = classify(parts.uri.path(), method.as_str(), &cfg);
    let endpoint_name = classified.name();
    let query = parse_query(parts.uri.query());
    let token = access_token(&parts.headers, &query);

    // hyper's header timeout does not cover the body: a body that stalls is cut off here. A
    // request without a body (most GETs) needs neither the timer nor the collector.
    let (body, arrived) = if hyper::body::Body::size_hint(&body).exact() == Some(0) {
        (Ok(Bytes::new()), started)
    } else {
        // The arrival's times are taken once the body is in, as they always were.
        (read_body(body, cfg.max_body_bytes).await, Instant::now())
    };

    let mut flags = BTreeMap::new();
    let mut parsed = None;
    let mut presented_refresh = None;
    // The usual `/refresh` body, `{"refresh_token": "…"}` and nothing else, read straight into
    // a string (no map, no flags to record); anything else takes the general path below.
    let mut refresh_body = false;
    if let Ok(bytes) = &body
        && endpoint_name == "refresh"
        // serde reads a struct from a JSON array too (`["rt"]`): only an object takes this path.
        && bytes.trim_ascii_start().first() == Some(&b'{')
        && let Ok(only) = serde_json::from_slice::<OnlyRefreshToken>(bytes)
    {
        presented_refresh = Some(only.refresh_token);
        refresh_body = true;
    }
    if let Ok(bytes) = &body
        && !bytes.is_empty()
        && !refresh_body
        && matches!(endpoint_name, "login" | "register" | "refresh")
    {
        let value = serde_json::from_slice::<Value>(bytes).map_err(|_| ());
        if let Ok(v) = &value {
            body_flags(endpoint_name, v, &mut flags);
            if endpoint_name == "refresh" {
                presented_refresh = v.get("refresh_token").and_then(Value::as_str).map(str::to_owned);
            }
        }
        parsed = Some(value);
    }
    if let Classified::Found {
        endpoint: Endpoint::Send,
        params,
    } = &classified
    {
        flags.insert("txn_id".into(), json!(params.get(2)));
        if let Ok(bytes) = &body {
            flags.insert("body_hash".into(), json!(rotary_judge::trace::body_hash(bytes)));
        }
    }
    if endpoint_name == "sync" {
        for (k, v) in &query {
            if k == "timeout" || k == "since" {
                flags.insert(k.clone(), json!(v));
            }
        }
    }
    // OAuth: the form's public fields; the refresh token (by label) like /refresh; the token
    // being revoked (by label).
    let mut revoked_token = None;
    if let Ok(bytes) = &body
        && matches!(endpoint_name, "oauth_token" | "oauth_revoke")
    {
        for (k, v) in oauth::form_pairs(bytes) {
            match k.as_str() {
                "grant_type" | "client_id" | "token_type_hint" => {
                    flags.entry(k).or_insert_with(|| json!(v));
                }
                "refresh_token" if endpoint_name == "oauth_token" => {
                    presented_refresh.get_or_insert(v);
                }
                "token" if endpoint_name == "oauth_revoke" => {
                    revoked_token.get_or_insert(v);
                }
                _ => {}
            }
        }
        if flags.get("grant_type").and_then(Value::as_str) != Some("refresh_token") {
            presented_refresh = None;
        }
    }
    if endpoint_name == "oauth_authorize" {
        for (k, v) in &query {
            if matches!(
                k.as_str(),
                "client_id" | "response_mode" | "response_type" | "login_hint"
            ) {
                flags.entry(k.clone()).or_insert_with(|| json!(v));
            }
        }
    }

    // One clock read for the arrival's figures.
    let now = core.clock.now_ms_at(arrived);
    let shown_token = token
        .as_ref()
        .ok()
        .and_then(|t| t.as_ref())
        .map(Presented::as_str);
    let (at_view, rt_view, owner, revoked_label) = {
        let store = lock(&core.store);
        let (at_view, access_owner) = store.inspect_access_with_owner(&cfg, now, shown_token);
        let (rt_view, refresh_owner) = match presented_refresh.as_deref() {
            Some(t) => {
                let (view, owner) = store.inspect_refresh_with_owner(&cfg, now, t);
                (Some(view), owner)
            }
            None => (None, None),
        };
        let owner = access_owner
            .or(refresh_owner)
            .or_else(|| revoked_token.as_deref().and_then(|t| store.token_owner(t)));
        let revoked_label = revoked_token.as_deref().map(|t| store.label_of(t));
        (at_view, rt_view, owner, revoked_label)
    };
    if let Some(label) = &revoked_label {
        flags.insert("token".into(), json!(label.as_deref().unwrap_or("unknown")));
    }
    let revoked_label = revoked_label.flatten();

    let fired = {
        if !core.has_faults() {
            None
        } else {
            lock(&core.faults).decide(&RequestFacts {
                endpoint: endpoint_name,
                method: parts.method.as_str(),
                path: parts.uri.path(),
                access_label: (at_view.label.starts_with("at#") && at_view.label != "at#?")
                    .then_some(at_view.label.as_str())
                    .or_else(|| revoked_label.as_deref().filter(|l| l.starts_with("at#"))),
                refresh_label: rt_view
                    .as_ref()
                    .map(|v| v.label.as_str())
                    .filter(|l| *l != "rt#?")
                    .or_else(|| revoked_label.as_deref().filter(|l| l.starts_with("rt#"))),
                user_id: owner.as_ref().map(|o| &*o.user_id),
                refresh_grant: endpoint_name == "oauth_token"
                    && flags.get("grant_type").and_then(Value::as_str) == Some("refresh_token"),
            })
        }
    };

    let user_id = owner.as_ref().map(|o| o.user_id.to_string());
    let device_id = owner.as_ref().map(|o| o.device_id.to_string());
    let ticket = core.trace.begin(TraceEntry {
        seq: 0,
        t_ms: core.trace_time_at(arrived),
        real_ms: core.clock.real_elapsed_ms_at(arrived),
        endpoint: Cow::Borrowed(endpoint_name),
        method: method_name(&parts.method),
        path: path_for_trace(&parts),
        status: None,
        errcode: None,
        soft_logout: None,
        access_token: at_view,
        refresh_token: rt_view,
        user_id,
        device_id,
        issued: None,
        fault: fired.as_ref().map(|r| {
            Box::new(FiredFault {
                id: r.id.unwrap_or(0),
                name: r.name.clone(),
                action: r.action.kind().to_owned(),
            })
        }),
        delivery: Delivery::Pending,
        flags,
        duration_ms: None,
        done_seq: None,
    });
    let seq = ticket.seq;
    let mut guard = FinishGuard {
        core: core.clone(),
        ticket,
        started,
        armed: true,
    };

    let (target, params) = match classified {
        Classified::Found { endpoint, params } => (Ok(endpoint), params),
        Classified::MethodNotAllowed(_) => (Err(MatrixError::method_not_allowed()), Vec::new()),
        Classified::NotFound | Classified::Unserved(_) => (Err(MatrixError::unrecognized()), Vec::new()),
    };
    let mut ctx = Ctx {
        core: core.clone(),
        cfg: cfg.clone(),
        params,
        query,
        method,
        headers: std::mem::take(&mut parts.headers),
        body: Bytes::new(),
        parsed,
        refresh_token: presented_refresh.filter(|_| refresh_body),
        token,
        owner,
        done: Completion::default(),
    };

    let handle = async |ctx: &mut Ctx| -> Response {
        let body = match &body {
            Ok(b) => b.clone(),
            Err(e) => return e.clone().into_response(),
        };
        ctx.body = body;
        match &target {
            Err(e) => e.clone().into_response(),
            Ok(endpoint) => dispatch(ctx, *endpoint)
                .await
                .unwrap_or_else(IntoResponse::into_response),
        }
    };

    let set_raw = |action: RawAction| match &conn {
        Some(c) => c.set(action),
        None => tracing::warn!("connection-level fault without a connection handle"),
    };
    let (response, delivery) = match inject::plan(fired.as_ref()) {
        Plan::Handle => (handle(&mut ctx).await, Delivery::Sent),
        Plan::Respond(resp) => (resp, Delivery::Sent),
        Plan::Delay(duration) => {
            let resp = tokio::select! {
                _ = tokio::time::sleep(duration) => handle(&mut ctx).await,
                _ = core.shutdown.cancelled() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            };
            (resp, Delivery::Sent)
        }
        Plan::Hang => {
            core.shutdown.cancelled().await;
            guard.armed = false;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Plan::Raw(action, delivery) => {
            set_raw(action);
            (StatusCode::OK.into_response(), delivery)
        }
        Plan::HandleThenDrop => {
            let resp = handle(&mut ctx).await;
            set_raw(RawAction::Empty);
            (resp, Delivery::Dropped)
        }
        Plan::HandleThenTruncate => {
            let (resp, raw) = inject::truncated_bytes(handle(&mut ctx).await).await;
            set_raw(RawAction::Bytes(raw));
            (resp, Delivery::Truncated)
        }
    };

    let produced = !matches!(delivery, Delivery::Reset | Delivery::Empty | Delivery::Garbage);
    let info = response
        .extensions()
        .get::<ErrorInfo>()
        .cloned()
        .unwrap_or_default();
    let mut done = std::mem::take(&mut ctx.done);
    done.status = produced.then(|| response.status().as_u16());
    done.errcode = info.errcode.filter(|_| produced);
    done.soft_logout = info.soft_logout.filter(|_| produced);
    done.delivery = Some(delivery);
    done.duration_ms = elapsed_ms(started);
    tracing::debug!(
        seq,
        endpoint = endpoint_name,
        status = done.status,
        errcode = done.errcode.as_deref(),
        fault = fired.as_ref().map(|r| r.action.kind()),
        "request"
    );
    core.trace.finish(ticket, done);
    guard.armed = false;
    response
}
