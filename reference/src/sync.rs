//! What a `/sync` brought, as an application reads it: the next batch token and, per joined room,
//! the timeline events — enough to check that every message sent comes back exactly once.

use serde_json::Value;

use crate::error::ClientError;

/// One `/sync` answer, read ([`Client::sync_events`](crate::Client::sync_events)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncBatch {
    /// The token to pass as `since` to the next sync.
    pub next_batch: String,
    /// The joined rooms with news, in the server's order.
    pub rooms: Vec<RoomTimeline>,
}

/// The timeline of one joined room in a sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomTimeline {
    /// The room id.
    pub room_id: String,
    /// The server left out older events (`timeline.limited`): there is a gap before `events`.
    pub limited: bool,
    /// The events, oldest first.
    pub events: Vec<TimelineEvent>,
}

/// One timeline event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineEvent {
    /// The event id.
    pub event_id: String,
    /// Who sent it.
    pub sender: String,
    /// Its type, e.g. `m.room.message`.
    pub event_type: String,
    /// `content.body`, if it is a string (messages have one).
    pub body: Option<String>,
    /// `unsigned.transaction_id`: the servers echo it to the device that sent the event.
    pub transaction_id: Option<String>,
}

impl SyncBatch {
    /// Reads a sync response body. Only `next_batch` is required; rooms and events that are not
    /// shaped as the spec says are skipped.
    ///
    /// ```
    /// use rotary_reference::SyncBatch;
    /// let body = serde_json::json!({
    ///     "next_batch": "s7",
    ///     "rooms": {"join": {"!r:localhost": {"timeline": {"limited": false, "events": [
    ///         {"type": "m.room.message", "event_id": "$1", "sender": "@a:localhost",
    ///          "content": {"msgtype": "m.text", "body": "hi"}, "unsigned": {"transaction_id": "t1"}}
    ///     ]}}}}
    /// });
    /// let batch = SyncBatch::from_body(&body).unwrap();
    /// assert_eq!(batch.next_batch, "s7");
    /// assert_eq!(batch.rooms[0].events[0].body.as_deref(), Some("hi"));
    /// assert_eq!(batch.rooms[0].events[0].transaction_id.as_deref(), Some("t1"));
    /// ```
    pub fn from_body(body: &Value) -> Result<SyncBatch, ClientError> {
        let next_batch = body
            .get("next_batch")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Other("the response has no string `next_batch`".into()))?
            .to_owned();
        let rooms = body
            .pointer("/rooms/join")
            .and_then(Value::as_object)
            .map(|join| {
                join.iter()
                    .map(|(room_id, room)| RoomTimeline {
                        room_id: room_id.clone(),
                        limited: room
                            .pointer("/timeline/limited")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        events: room
                            .pointer("/timeline/events")
                            .and_then(Value::as_array)
                            .map(|events| events.iter().filter_map(TimelineEvent::from_json).collect())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(SyncBatch { next_batch, rooms })
    }
}

impl TimelineEvent {
    /// Reads one event; `None` without a string `event_id`, `sender` and `type`.
    fn from_json(e: &Value) -> Option<TimelineEvent> {
        let text = |pointer: &str| e.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        Some(TimelineEvent {
            event_id: text("/event_id")?,
            sender: text("/sender")?,
            event_type: text("/type")?,
            body: text("/content/body"),
            transaction_id: text("/unsigned/transaction_id"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_rooms_and_skips_what_is_malformed() {
        let body = json!({
            "next_batch": "s9",
            "rooms": {"join": {
                "!a:h": {"timeline": {"limited": true, "events": [
                    {"type": "m.room.message", "event_id": "$1", "sender": "@u:h", "content": {"body": "one"}},
                    {"type": "m.room.message", "sender": "@u:h", "content": {"body": "no id"}},
                    {"type": "m.room.member", "event_id": "$2", "sender": "@u:h", "content": {"membership": "join"}}
                ]}},
                "!b:h": {}
            }}
        });
        let batch = SyncBatch::from_body(&body).unwrap_or_default();
        assert_eq!(batch.next_batch, "s9");
        assert_eq!(batch.rooms.len(), 2);
        let a = &batch.rooms[0];
        assert!(a.limited);
        assert_eq!(a.events.len(), 2);
        assert_eq!(a.events[0].body.as_deref(), Some("one"));
        assert_eq!(a.events[1].body, None);
        assert!(batch.rooms[1].events.is_empty() && !batch.rooms[1].limited);
    }

    #[test]
    fn next_batch_is_required() {
        assert!(SyncBatch::from_body(&json!({"rooms": {}})).is_err());
        let empty = SyncBatch::from_body(&json!({"next_batch": "s1"}));
        assert_eq!(
            empty,
            Ok(SyncBatch {
                next_batch: "s1".into(),
                rooms: vec![]
            })
        );
    }
}
