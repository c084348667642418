//! Login, registration, refresh and logout — the endpoints that issue and revoke tokens.

use super::{Ctx, HandlerResult, ok};
use crate::core::lock;
use crate::error::{MatrixError, refresh_error};
use crate::store::{LoginError, RegisterError};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rand::RngExt;
use serde_json::{Map, Value, json};

/// `GET /login`.
pub(super) fn login_flows() -> HandlerResult {
    Ok(ok(
        json!({"flows": [{"type": "m.login.password"}, {"type": "m.login.application_service"}]}),
    ))
}

/// Reads `refresh_token` (and, where enabled, the unstable MSC2918 name) as Synapse does.
fn wants_refresh(ctx: &Ctx, body: &Map<String, Value>) -> Result<bool, MatrixError> {
    let mut want = false;
    let mut names = vec!["refresh_token"];
    if ctx.cfg.accept_unstable_refresh_flag {
        names.push("org.matrix.msc2918.refresh_token");
    }
    for name in names {
        match body.get(name) {
            None => {}
            Some(Value::Bool(b)) => want |= *b,
            Some(_) => {
                return Err(MatrixError::new(
                    400,
                    "M_UNKNOWN",
                    format!("`{name}` should be true or false."),
                ));
            }
        }
    }
    Ok(want && ctx.cfg.refresh_enabled())
}

fn optional_string(body: &Map<String, Value>, name: &str) -> Result<Option<String>, MatrixError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MatrixError::invalid_param(format!("Invalid param: {name}"))),
    }
}

/// The user named by a login body: `identifier` (`m.id.user`) or the deprecated top-level `user`.
fn login_user(body: &Map<String, Value>) -> Result<String, MatrixError> {
    let identifier = match body.get("identifier") {
        Some(Value::Object(id)) => id.clone(),
        Some(_) => return Err(MatrixError::invalid_param("'identifier' must be a dict")),
        None => match body.get("user") {
            Some(user) => {
                let mut id = Map::new();
                id.insert("type".into(), json!("m.id.user"));
                id.insert("user".into(), user.clone());
                id
            }
            None => return Err(MatrixError::invalid_param("Invalid login submission")),
        },
    };
    match identifier.get("type") {
        Some(Value::String(t)) if t == "m.id.user" => {}
        Some(_) => {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                "Unknown login identifier type",
            ));
        }
        None => {
            return Err(MatrixError::new(
                400,
                "M_MISSING_PARAM",
                "'identifier' dict has no key 'type'",
            ));
        }
    }
    match identifier.get("user") {
        Some(Value::String(u)) if !u.is_empty() => Ok(u.clone()),
        _ => Err(MatrixError::new(
            400,
            "M_UNKNOWN",
            "User identifier is missing 'user' key",
        )),
    }
}

/// `POST /login` with `m.login.password`.
pub(super) fn login(ctx: &mut Ctx) -> HandlerResult {
    let body = ctx.json()?;
    let want_refresh = wants_refresh(ctx, &body)?;
    let login_type = match body.get("type") {
        None => return Err(MatrixError::new(400, "M_UNKNOWN", "Missing JSON keys.")),
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(MatrixError::invalid_param("Bad parameter: type")),
    };
    // Synapse's order: the password of a password login, then the identifier, then the type.
    let password = match body.get("password") {
        Some(Value::String(p)) => Some(p.clone()),
        _ if login_type == "m.login.password" => {
            return Err(MatrixError::invalid_param("Bad parameter: password"));
        }
        _ => None,
    };
    let user = login_user(&body)?;
    let Some(password) = password.filter(|_| login_type == "m.login.password") else {
        return Err(MatrixError::new(
            400,
            "M_UNKNOWN",
            format!("Unknown login type {login_type}"),
        ));
    };
    let device_id = optional_string(&body, "device_id")?;
    if device_id.as_ref().is_some_and(|d| d.len() > 512) {
        return Err(MatrixError::invalid_param(
            "device_id cannot be longer than 512 characters.",
        ));
    }
    let display_name = optional_string(&body, "initial_device_display_name")?;
    let now = ctx.core.clock.now_ms();
    let issued = {
        let mut store = lock(&ctx.core.store);
        let invalid = |_: LoginError| MatrixError::forbidden("Invalid username or password");
        let user_id = store.check_password(&user, &password).map_err(invalid)?;
        store
            .login(
                &ctx.cfg,
                now,
                &user_id,
                device_id.as_deref(),
                display_name.as_deref(),
                want_refresh,
            )
            .map_err(invalid)?
    };
    let mut out = ctx.issued_body(&issued);
    out.insert("user_id".into(), json!(issued.user_id));
    out.insert("device_id".into(), json!(issued.device_id));
    out.insert("home_server".into(), json!(ctx.cfg.server_name));
    Ok(ok(Value::Object(out)))
}

fn uia_session() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())]))
        .collect()
}

/// The 401 of user-interactive auth: the flows to follow.
pub(super) fn uia_challenge(stage: &str, error: Option<MatrixError>) -> axum::response::Response {
    let mut body = json!({
        "session": uia_session(),
        "flows": [{"stages": [stage]}],
        "params": {},
    });
    let info = error.as_ref().map(|e| crate::error::ErrorInfo {
        errcode: Some(e.errcode.clone()),
        soft_logout: None,
    });
    if let Some(e) = error {
        body["completed"] = json!([]);
        body["errcode"] = json!(e.errcode);
        body["error"] = json!(e.error);
    }
    let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    if let Some(info) = info {
        resp.extensions_mut().insert(info);
    }
    resp
}

/// `POST /register` with `m.login.dummy` user-interactive auth.
pub(super) fn register(ctx: &mut Ctx) -> HandlerResult {
    let body = ctx.json()?;
    match ctx.query("kind").unwrap_or("user") {
        "user" => {}
        "guest" => return Err(MatrixError::new(403, "M_UNKNOWN", "Guest access is disabled")),
        other => {
            return Err(MatrixError::new(
                400,
                "M_UNRECOGNIZED",
                format!("Do not understand membership kind: {other}"),
            ));
        }
    }
    let want_refresh = wants_refresh(ctx, &body)?;
    if !matches!(ctx.token, Ok(None)) {
        return Err(MatrixError::new(
            400,
            "M_UNKNOWN",
            "An access token should not be provided on requests to /register (except if type is m.login.application_service)",
        ));
    }
    let username = match body.get("username") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if u.len() <= 512 => Some(u.to_lowercase()),
        Some(_) => return Err(MatrixError::new(400, "M_UNKNOWN", "Invalid username")),
    };
    let password = match body.get("password") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.len() <= 512 => Some(p.clone()),
        Some(_) => return Err(MatrixError::new(400, "M_UNKNOWN", "Invalid password")),
    };
    if let Some(u) = &username {
        let store = lock(&ctx.core.store);
        crate::store::validate_localpart(u).map_err(register_error)?;
        if store.has_user(u) {
            return Err(register_error(RegisterError::UserInUse));
        }
    }
    match body.get("auth") {
        None => return Ok(uia_challenge("m.login.dummy", None)),
        Some(Value::Object(auth)) => match auth.get("type").and_then(Value::as_str) {
            Some("m.login.dummy") => {}
            _ => {
                return Ok(uia_challenge(
                    "m.login.dummy",
                    Some(MatrixError::new(401, "M_UNRECOGNIZED", "Unrecognised login type")),
                ));
            }
        },
        Some(_) => return Err(MatrixError::bad_json("auth must be an object")),
    }
    let Some(password) = password else {
        return Err(MatrixError::new(
            400,
            "M_MISSING_PARAM",
            "Missing params: password",
        ));
    };
    let inhibit_login = body
        .get("inhibit_login")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let device_id = optional_string(&body, "device_id")?;
    let display_name = optional_string(&body, "initial_device_display_name")?;
    let now = ctx.core.clock.now_ms();
    let (user_id, issued) = {
        let mut store = lock(&ctx.core.store);
        let local = match username {
            Some(u) => u,
            None => (1..)
                .map(|n: u64| n.to_string())
                .find(|n| !store.has_user(n))
                .unwrap_or_default(),
        };
        let user_id = store.add_user(&local, &password).map_err(register_error)?;
        let issued = if inhibit_login {
            None
        } else {
            let issued = store
                .login(
                    &ctx.cfg,
                    now,
                    &user_id,
                    device_id.as_deref(),
                    display_name.as_deref(),
                    want_refresh,
                )
                .map_err(|_| MatrixError::new(500, "M_UNKNOWN", "Internal server error"))?;
            Some(issued)
        };
        (user_id, issued)
    };
    let mut out = match &issued {
        Some(issued) => {
            let mut out = ctx.issued_body(issued);
            out.insert("device_id".into(), json!(issued.device_id));
            out
        }
        None => {
            ctx.done.user_id = Some(user_id.clone());
            Map::new()
        }
    };
    out.insert("user_id".into(), json!(user_id));
    out.insert("home_server".into(), json!(ctx.cfg.server_name));
    Ok(ok(Value::Object(out)))
}

fn register_error(e: RegisterError) -> MatrixError {
    match e {
        RegisterError::UserInUse => MatrixError::new(400, "M_USER_IN_USE", "User ID already taken."),
        RegisterError::InvalidUsername(msg) => MatrixError::new(400, "M_INVALID_USERNAME", msg),
    }
}

/// `POST /refresh`.
pub(super) fn refresh(ctx: &mut Ctx) -> HandlerResult {
    let now = ctx.core.clock.now_ms();
    if let Some(limit) = ctx.cfg.refresh_rate_limit
        && let Err(wait) = lock(&ctx.core.refresh_bucket).take(limit, now)
    {
        return Err(MatrixError::limit_exceeded(wait));
    }
    let token = match ctx.refresh_token.take() {
        Some(t) => t,
        None => ctx.take_string("refresh_token")?,
    };
    let mut issued = lock(&ctx.core.store)
        .refresh_shared(&ctx.cfg, now, &token)
        .map_err(|e| refresh_error(&ctx.cfg, e))?;
    // Synapse computes expires_in_ms from the same `now` it used for the expiry: exact.
    let expires_in_ms = ctx.note_issued_shared(&mut issued, now);
    let body = RefreshBody {
        access_token: &issued.access_token,
        expires_in_ms: expires_in_ms.filter(|_| ctx.cfg.send_expires_in_ms),
        refresh_token: issued.refresh_token.as_deref(),
    };
    Ok(super::json_response(StatusCode::OK, &body))
}

/// The `/refresh` answer, serialized from borrowed strings; fields in the order a `json!` map
/// sorts them, absent ones left out, so the bytes are what a `Value` map gave.
#[derive(serde::Serialize)]
struct RefreshBody<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// `POST /logout`: deletes the device and all its tokens; an expired token may log out.
pub(super) fn logout(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(true)?;
    lock(&ctx.core.store).delete_device(&authed.user_id, &authed.device_id);
    Ok(ok(json!({})))
}

/// `POST /logout/all`: deletes every device of the user.
pub(super) fn logout_all(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(true)?;
    lock(&ctx.core.store).delete_all_devices(&authed.user_id);
    Ok(ok(json!({})))
}
