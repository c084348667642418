//! `whoami` and device management (`/devices`, `/devices/{id}` with password UIA on delete).

use super::session::uia_challenge;
use super::{Ctx, HandlerResult, ok};
use crate::core::lock;
use crate::error::MatrixError;
use serde_json::{Value, json};

/// The whoami body, serialized straight from borrowed strings (no `Value` map per request). The
/// fields are in the order `json!` would sort them, so the bytes are the same.
#[derive(serde::Serialize)]
struct WhoamiBody<'a> {
    device_id: &'a str,
    is_guest: bool,
    user_id: &'a str,
}

/// `GET /account/whoami`.
pub(super) fn whoami(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let body = WhoamiBody {
        device_id: &authed.device_id,
        is_guest: false,
        user_id: &authed.user_id,
    };
    Ok(super::json_response(axum::http::StatusCode::OK, &body))
}

fn device_json(d: &crate::store::DeviceInfo) -> Value {
    json!({
        "user_id": d.user_id,
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": null,
        "last_seen_ts": null,
    })
}

/// `GET /devices`.
pub(super) fn devices(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let list: Vec<Value> = lock(&ctx.core.store)
        .devices(Some(&authed.user_id))
        .iter()
        .map(device_json)
        .collect();
    Ok(ok(json!({"devices": list})))
}

/// `GET /devices/{deviceId}`.
pub(super) fn get_device(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let id = ctx.param(0).to_owned();
    lock(&ctx.core.store)
        .devices(Some(&authed.user_id))
        .iter()
        .find(|d| d.device_id == id)
        .map(|d| ok(device_json(d)))
        .ok_or_else(|| MatrixError::not_found("Not found"))
}

/// `PUT /devices/{deviceId}`: sets the display name.
pub(super) fn put_device(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let body = ctx.json()?;
    let name = match body.get("display_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(MatrixError::invalid_param("Invalid param: display_name")),
    };
    let id = ctx.param(0).to_owned();
    if lock(&ctx.core.store).set_device_display_name(&authed.user_id, &id, name) {
        Ok(ok(json!({})))
    } else {
        Err(MatrixError::not_found("Unknown device"))
    }
}

/// `DELETE /devices/{deviceId}`: password UIA, then the device and its tokens are deleted.
pub(super) fn delete_device(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let body = if ctx.body.is_empty() {
        serde_json::Map::new()
    } else {
        ctx.json()?
    };
    let Some(Value::Object(auth)) = body.get("auth") else {
        return Ok(uia_challenge("m.login.password", None));
    };
    if auth.get("type").and_then(Value::as_str) != Some("m.login.password") {
        return Ok(uia_challenge(
            "m.login.password",
            Some(MatrixError::new(401, "M_UNRECOGNIZED", "Unrecognised login type")),
        ));
    }
    let user = auth
        .get("identifier")
        .and_then(|i| i.get("user"))
        .or_else(|| auth.get("user"))
        .and_then(Value::as_str)
        .unwrap_or(&authed.user_id)
        .to_owned();
    let password = auth.get("password").and_then(Value::as_str).unwrap_or("");
    let mut store = lock(&ctx.core.store);
    match store.check_password(&user, password) {
        Ok(uid) if *uid == *authed.user_id => {}
        _ => {
            drop(store);
            return Ok(uia_challenge(
                "m.login.password",
                Some(MatrixError::forbidden("Invalid username or password")),
            ));
        }
    }
    let id = ctx.param(0).to_owned();
    store.delete_device(&authed.user_id, &id);
    Ok(ok(json!({})))
}
