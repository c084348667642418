//! What SDKs fetch at start-up: `/versions`, well-known, capabilities, push rules, filters, profiles.

use super::{Ctx, HandlerResult, ok};
use crate::core::lock;
use crate::error::MatrixError;
use axum::http::header;
use serde_json::{Map, Value, json};

/// The spec versions `/versions` advertises.
pub const SPEC_VERSIONS: &[&str] = &[
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3",
    "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15",
];

/// `GET /_matrix/client/versions`.
pub(super) fn versions(ctx: &mut Ctx) -> HandlerResult {
    let mut unstable = Map::new();
    if ctx.cfg.serve_unstable_refresh {
        unstable.insert("org.matrix.msc2918.refresh_token".into(), json!(true));
    }
    Ok(ok(
        json!({"versions": SPEC_VERSIONS, "unstable_features": unstable}),
    ))
}

/// `GET /.well-known/matrix/client`, pointing at the address the client used.
pub(super) fn well_known(ctx: &mut Ctx) -> HandlerResult {
    let host = ctx
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    Ok(ok(
        json!({"m.homeserver": {"base_url": format!("http://{host}")}}),
    ))
}

/// `GET /capabilities`.
pub(super) fn capabilities(ctx: &mut Ctx) -> HandlerResult {
    ctx.auth(false)?;
    let versions: Map<String, Value> = (1..=12).map(|v| (v.to_string(), json!("stable"))).collect();
    Ok(ok(json!({"capabilities": {
        "m.change_password": {"enabled": true},
        "m.room_versions": {"default": "12", "available": versions},
        "m.set_displayname": {"enabled": true},
        "m.set_avatar_url": {"enabled": true},
        "m.3pid_changes": {"enabled": true},
        "m.get_login_token": {"enabled": false},
        "m.profile_fields": {"enabled": true},
    }})))
}

/// Synapse 1.163's default push rules for a user (as `GET /pushrules/` returned them).
pub(super) fn default_pushrules(user_id: &str) -> Value {
    let local = user_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default();
    let text = include_str!("default_pushrules.json").replace("__LOCALPART__", local);
    serde_json::from_str(&text).unwrap_or_else(|_| json!({"global": {}}))
}

/// `GET /pushrules/…`: Synapse's default rules.
pub(super) fn pushrules(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let rules = default_pushrules(&authed.user_id);
    match ctx.param(0).trim_end_matches('/') {
        "" => Ok(ok(rules)),
        "global" => Ok(ok(rules["global"].clone())),
        _ => Err(MatrixError::not_found("Unknown pushrule")),
    }
}

fn same_user(ctx: &Ctx, authed: &str, what: &str) -> Result<(), MatrixError> {
    if ctx.param(0) == authed {
        Ok(())
    } else {
        Err(MatrixError::forbidden(format!("Cannot {what} for other users")))
    }
}

/// `POST /user/{userId}/filter`.
pub(super) fn upload_filter(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    same_user(ctx, &authed.user_id, "create filters")?;
    let body = ctx.json()?;
    let mut filters = lock(&ctx.core.filters);
    let id = filters.len().to_string();
    filters.insert(format!("{}|{id}", authed.user_id), Value::Object(body));
    Ok(ok(json!({"filter_id": id})))
}

/// `GET /user/{userId}/filter/{filterId}`.
pub(super) fn get_filter(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    same_user(ctx, &authed.user_id, "get filters")?;
    let id = ctx.param(1);
    if id.parse::<u64>().is_err() {
        return Err(MatrixError::invalid_param("Invalid filter_id"));
    }
    lock(&ctx.core.filters)
        .get(&format!("{}|{id}", authed.user_id))
        .cloned()
        .map(ok)
        .ok_or_else(|| MatrixError::not_found("No such filter"))
}

/// `GET /profile/{userId}` and `GET /profile/{userId}/{field}` (no auth needed, as in Synapse).
pub(super) fn get_profile(ctx: &mut Ctx) -> HandlerResult {
    let user_id = ctx.param(0).to_owned();
    if !user_id.starts_with('@') || !user_id.contains(':') {
        return Err(MatrixError::invalid_param("Invalid user id"));
    }
    if !lock(&ctx.core.store).has_user(&user_id) {
        // Synapse 1.163 answers a StoreError here, not the spec's M_NOT_FOUND.
        return Err(MatrixError::new(404, "M_UNKNOWN", "No row found (profiles)"));
    }
    let name = lock(&ctx.core.displaynames)
        .get(&user_id)
        .cloned()
        .unwrap_or_else(|| {
            user_id
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned()
        });
    match ctx.params.get(1).map(String::as_str) {
        None => Ok(ok(json!({"displayname": name}))),
        Some("displayname") => Ok(ok(json!({"displayname": name}))),
        Some("avatar_url") => Ok(ok(json!({}))),
        Some(_) => Err(MatrixError::not_found("Profile field not found")),
    }
}

/// `PUT /profile/{userId}/displayname`.
pub(super) fn put_profile(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    if ctx.param(0) != &*authed.user_id {
        return Err(MatrixError::forbidden("Cannot set another user's profile"));
    }
    let body = ctx.json()?;
    match (ctx.param(1), body.get("displayname")) {
        ("displayname", Some(Value::String(name))) => {
            lock(&ctx.core.displaynames).insert(authed.user_id.to_string(), name.clone());
            Ok(ok(json!({})))
        }
        ("displayname", _) => Err(MatrixError::missing_param("displayname")),
        ("avatar_url", _) => Ok(ok(json!({}))),
        _ => Err(MatrixError::not_found("Profile field not found")),
    }
}
