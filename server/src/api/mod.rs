//! The client-server API: classification, tracing and fault injection around every request, then
//! dispatch to the endpoint handlers.

mod account;
mod inject;
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
use crate::store::{Authed, Issued};
use crate::trace::{Completion, Delivery, FiredFault, IssuedLabels, TraceEntry};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use inject::Plan;
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
    token: Result<Option<String>, MatrixError>,
    pub done: Completion,
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

    /// Authenticates the request; notes the user and device for the trace.
    pub fn auth(&mut self, allow_expired: bool) -> Result<Authed, MatrixError> {
        let token = match &self.token {
            Ok(Some(t)) => t,
            Ok(None) => return Err(MatrixError::missing_token()),
            Err(e) => return Err(e.clone()),
        };
        let now = self.core.clock.now_ms();
        let authed = lock(&self.core.store)
            .authenticate(&self.cfg, now, token, allow_expired)
            .map_err(|e| crate::error::access_error(&self.cfg, e))?;
        self.done.user_id = Some(authed.user_id.clone());
        self.done.device_id = Some(authed.device_id.clone());
        Ok(authed)
    }

    /// Notes issued tokens for the trace (labels, `expires_in_ms` as of `now`, expiry, owner).
    pub fn note_issued(&mut self, issued: &Issued, now: i64) -> Option<i64> {
        let expires_in = issued.expires_in_ms(now);
        self.done.issued = Some(IssuedLabels {
            access_token: Some(issued.access_label.clone()),
            refresh_token: issued.refresh_label.clone(),
            expires_in_ms: expires_in,
            expires_at_ms: issued.valid_until_ms.map(|v| self.core.to_trace_time(v)),
        });
        self.done.user_id = Some(issued.user_id.clone());
        self.done.device_id = Some(issued.device_id.clone());
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
    (StatusCode::OK, axum::Json(body)).into_response()
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

/// Synapse's `get_access_token_from_request`.
fn access_token(headers: &HeaderMap, query: &[(String, String)]) -> Result<Option<String>, MatrixError> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let from_query = query
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.clone());
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
        (Some("Bearer"), Some(token), None) => Ok(Some(token.to_owned())),
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
    seq: u64,
    started: Instant,
    armed: bool,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if self.armed {
            self.core.trace.finish(
                self.seq,
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

/// Serves one client-server API request: classify, read the body, trace, inject, handle.
pub(crate) async fn serve(core: Arc<Core>, req: axum::extract::Request) -> Response {
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

async fn serve_traced(core: Arc<Core>, req: axum::extract::Request) -> Response {
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

    // hyper's header timeout does not cover the body: a body that stalls is cut off here.
    let collect = Limited::new(body, cfg.max_body_bytes).collect();
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, collect).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(MatrixError::too_large(cfg.max_body_bytes))
        }
        Ok(Err(_)) => Err(MatrixError::new(
            400,
            "M_UNKNOWN",
            "Could not read the request body",
        )),
        Err(_) => Err(MatrixError::new(
            408,
            "M_UNKNOWN",
            "Timed out reading the request body",
        )),
    };

    let mut flags = BTreeMap::new();
    let mut parsed = None;
    let mut presented_refresh = None;
    if let Ok(bytes) = &body
        && !bytes.is_empty()
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

    let now = core.clock.now_ms();
    let shown_token = token.as_ref().ok().and_then(|t| t.as_deref());
    let (at_view, rt_view, owner, revoked_label) = {
        let store = lock(&core.store);
        let at_view = store.inspect_access(&cfg, now, shown_token);
        let rt_view = presented_refresh
            .as_deref()
            .map(|t| store.inspect_refresh(&cfg, now, t));
        let owner = shown_token
            .and_then(|t| store.owner_of(t))
            .or_else(|| presented_refresh.as_deref().and_then(|t| store.owner_of(t)))
            .or_else(|| revoked_token.as_deref().and_then(|t| store.owner_of(t)));
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
                user_id: owner.as_ref().map(|(u, _)| u.as_str()),
            })
        }
    };

    // The owner is not needed after this: move its strings into the entry.
    let (user_id, device_id) = owner.unzip();
    let seq = core.trace.begin(TraceEntry {
        seq: 0,
        t_ms: core.trace_time(),
        real_ms: core.clock.real_elapsed_ms(),
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
    let mut guard = FinishGuard {
        core: core.clone(),
        seq,
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
        token,
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
    core.trace.finish(seq, done);
    guard.armed = false;
    response
}
