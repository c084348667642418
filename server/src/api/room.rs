//! Rooms over HTTP: `/createRoom`, `/send` (idempotent per device and txnId), `/messages`,
//! `/joined_rooms` and the long-polling `/sync`.

use super::{Ctx, HandlerResult, ok};
use crate::core::lock;
use crate::error::MatrixError;
use crate::rooms::{RoomError, parse_stream_token, stream_token};
use serde_json::{Map, Value, json};
use std::time::Duration;

fn room_error(e: RoomError, room_id: &str) -> MatrixError {
    match e {
        RoomError::NotMember(user) => MatrixError::forbidden(format!("User {user} not in room {room_id}")),
        RoomError::NotFound => MatrixError::forbidden(format!("Unknown room {room_id}")),
        RoomError::BadToken(t) => MatrixError::invalid_param(format!("Invalid stream token {t:?}")),
    }
}

/// `POST /createRoom`.
pub(super) fn create_room(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let body = ctx.json()?;
    match body.get("preset") {
        None | Some(Value::Null) => {}
        Some(Value::String(p))
            if ["private_chat", "public_chat", "trusted_private_chat"].contains(&p.as_str()) => {}
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), str::to_owned);
            return Err(MatrixError::bad_json(format!("'{shown}' is not a valid preset")));
        }
    }
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(MatrixError::invalid_param("Invalid param: name")),
    };
    let now = ctx.core.clock.now_ms();
    let room_id = lock(&ctx.core.rooms).create_room(&authed.user_id, name.as_deref(), now);
    ctx.core.notify_events();
    Ok(ok(json!({"room_id": room_id})))
}

/// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`.
pub(super) fn send(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let content = ctx.json()?;
    let (room_id, event_type) = (ctx.param(0).to_owned(), ctx.param(1).to_owned());
    let txn_id = ctx.params.get(2).cloned();
    let now = ctx.core.clock.now_ms();
    let (event_id, fresh) = lock(&ctx.core.rooms)
        .send(
            &room_id,
            &authed.user_id,
            &authed.device_id,
            txn_id.as_deref(),
            &event_type,
            Value::Object(content),
            now,
        )
        .map_err(|e| match e {
            // Synapse checks membership first, so an unknown room reads as "not in room".
            RoomError::NotFound => room_error(RoomError::NotMember(authed.user_id.to_string()), &room_id),
            other => room_error(other, &room_id),
        })?;
    ctx.done.flags.insert("duplicate_txn".into(), json!(!fresh));
    if fresh {
        ctx.core.notify_events();
    }
    Ok(ok(json!({"event_id": event_id})))
}

/// `GET /rooms/{roomId}/messages`.
pub(super) fn messages(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let room_id = ctx.param(0).to_owned();
    let forward = match ctx.query("dir").unwrap_or("f") {
        "f" => true,
        "b" => false,
        _ => {
            return Err(MatrixError::invalid_param(
                "Query parameter 'dir' must be one of ['b', 'f']",
            ));
        }
    };
    let from = ctx
        .query("from")
        .map(parse_stream_token)
        .transpose()
        .map_err(|e| room_error(e, &room_id))?;
    let limit = usize::try_from(ctx.query_int("limit")?.unwrap_or(10).max(0)).unwrap_or(10);
    let now = ctx.core.clock.now_ms();
    let rooms = lock(&ctx.core.rooms);
    let page = rooms
        .messages(&room_id, &authed.user_id, from, forward, limit)
        .map_err(|e| match e {
            RoomError::NotMember(_) | RoomError::NotFound => MatrixError::forbidden(format!(
                "User {} not in room {room_id}, and room previews are disabled",
                authed.user_id
            )),
            other => room_error(other, &room_id),
        })?;
    let chunk: Vec<Value> = page
        .chunk
        .iter()
        .map(|e| e.to_json(now, Some(&authed.device_id)))
        .collect();
    let mut out = json!({"chunk": chunk, "start": stream_token(page.start)});
    if let Some(end) = page.end {
        out["end"] = json!(stream_token(end));
    }
    Ok(ok(out))
}

/// `GET /joined_rooms`.
pub(super) fn joined_rooms(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    Ok(ok(
        json!({"joined_rooms": lock(&ctx.core.rooms).joined_rooms(&authed.user_id)}),
    ))
}

fn events(list: Vec<Value>) -> Value {
    json!({"events": list})
}

/// `GET /sync`: answers at once on an initial sync or when there is news, otherwise waits up to
/// `timeout` ms for an event in one of the user's rooms.
pub(super) async fn sync(ctx: &mut Ctx) -> HandlerResult {
    let authed = ctx.auth(false)?;
    let timeout = match ctx.query("timeout") {
        None => 0,
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| MatrixError::invalid_param("Query parameter timeout must be an integer"))?
            .max(0),
    };
    if let Some(filter) = ctx.query("filter")
        && !filter.starts_with('{')
    {
        if filter.parse::<u64>().is_err() {
            return Err(MatrixError::invalid_param("Invalid filter ID"));
        }
        if !lock(&ctx.core.filters).contains_key(&format!("{}|{filter}", authed.user_id)) {
            return Err(MatrixError::invalid_param("No such filter"));
        }
    }
    let timeout = Duration::from_millis(u64::try_from(timeout).unwrap_or(0)).min(ctx.cfg.max_sync_timeout);
    let since = ctx
        .query("since")
        .map(parse_stream_token)
        .transpose()
        .map_err(|e| room_error(e, ""))?;
    if since.is_some_and(|s| s > lock(&ctx.core.rooms).position()) {
        return Err(MatrixError::invalid_param(
            "Invalid stream token: from the future",
        ));
    }
    let mut rx = ctx.core.events.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let expired = tokio::time::Instant::now() >= deadline;
        {
            let now = ctx.core.clock.now_ms();
            let rooms = lock(&ctx.core.rooms);
            let updates = rooms.sync(&authed.user_id, since, 10);
            if since.is_none() || !updates.is_empty() || expired {
                let mut join = Map::new();
                for u in &updates {
                    let timeline: Vec<Value> = u
                        .timeline
                        .iter()
                        .map(|e| e.to_json(now, Some(&authed.device_id)))
                        .collect();
                    let in_timeline: Vec<&str> = u.timeline.iter().map(|e| e.event_id.as_str()).collect();
                    let state: Vec<Value> = if since.is_none() {
                        rooms
                            .state_events(u.room_id)
                            .into_iter()
                            .filter(|e| !in_timeline.contains(&e.event_id.as_str()))
                            .map(|e| e.to_json(now, None))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    join.insert(
                        u.room_id.to_owned(),
                        json!({
                            "timeline": {"events": timeline, "limited": u.limited, "prev_batch": stream_token(u.prev_pos)},
                            "state": events(state),
                            "account_data": events(vec![]),
                            "ephemeral": events(vec![]),
                            "unread_notifications": {"highlight_count": 0, "notification_count": 0},
                            "summary": {},
                        }),
                    );
                }
                // Like Synapse, empty sections are left out.
                let mut out = json!({
                    "next_batch": stream_token(rooms.position()),
                    "device_one_time_keys_count": {},
                    "device_unused_fallback_key_types": [],
                });
                if !join.is_empty() {
                    out["rooms"] = json!({"join": join});
                }
                if since.is_none() {
                    let rules = super::misc::default_pushrules(&authed.user_id);
                    out["account_data"] = events(vec![json!({"type": "m.push_rules", "content": rules})]);
                }
                return Ok(ok(out));
            }
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(deadline).await;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = ctx.core.shutdown.cancelled() => {
                return Err(MatrixError::new(503, "M_UNKNOWN", "Server is shutting down"));
            }
        }
    }
}
