//! A minimal room model: rooms, members, an event stream, per-device transaction ids, pagination.

use rand::RngExt;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

/// Why a room operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// No such room.
    #[error("unknown room")]
    NotFound,
    /// The user is not joined to the room.
    #[error("user {0} not in room")]
    NotMember(String),
    /// A pagination or sync token the server did not issue.
    #[error("invalid stream token {0:?}")]
    BadToken(String),
}

/// One event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `$…`
    pub event_id: String,
    /// `!…:server`
    pub room_id: String,
    /// The sender's user id.
    pub sender: String,
    /// The event type, e.g. `m.room.message`.
    pub event_type: String,
    /// For state events.
    pub state_key: Option<String>,
    /// The content object.
    pub content: Value,
    /// When it was sent (server clock).
    pub origin_server_ts: i64,
    /// Position in the server's event stream (1-based).
    pub pos: u64,
    /// `(device_id, txn_id)` when sent with a transaction id.
    pub txn: Option<(String, String)>,
}

impl Event {
    /// The client-server JSON form. The transaction id is shown only to its own device.
    pub fn to_json(&self, now_ms: i64, viewer_device: Option<&str>) -> Value {
        let mut unsigned = json!({"age": (now_ms - self.origin_server_ts).max(0)});
        if let (Some((dev, txn)), Some(viewer)) = (&self.txn, viewer_device)
            && dev == viewer
        {
            unsigned["transaction_id"] = json!(txn);
        }
        let mut v = json!({
            "type": self.event_type,
            "content": self.content,
            "event_id": self.event_id,
            "sender": self.sender,
            "origin_server_ts": self.origin_server_ts,
            "room_id": self.room_id,
            "unsigned": unsigned,
        });
        if let Some(k) = &self.state_key {
            v["state_key"] = json!(k);
        }
        v
    }
}

#[derive(Debug)]
struct Room {
    members: BTreeSet<String>,
    events: Vec<usize>,
}

/// What changed in one joined room since a sync token.
#[derive(Debug)]
pub struct RoomUpdate<'a> {
    /// The room.
    pub room_id: &'a str,
    /// Events after the token, oldest first (the last `limit` of them).
    pub timeline: Vec<&'a Event>,
    /// Whether older events after the token were left out.
    pub limited: bool,
    /// Stream position just before the first timeline event.
    pub prev_pos: u64,
}

/// A page of `/messages`.
#[derive(Debug)]
pub struct Page<'a> {
    /// Events in the requested direction.
    pub chunk: Vec<&'a Event>,
    /// The token the page started from.
    pub start: u64,
    /// The token for the next page, if there are more events.
    pub end: Option<u64>,
}

/// Rooms, their members and events, in memory.
///
/// ```
/// use rotary_server::Rooms;
/// let mut rooms = Rooms::new();
/// let room = rooms.create_room("@alice:localhost", None, 0);
/// let (first, fresh) = rooms.send(&room, "@alice:localhost", "DEV", Some("t1"), "m.room.message", serde_json::json!({"body": "hi"}), 1).unwrap();
/// let (again, fresh_again) = rooms.send(&room, "@alice:localhost", "DEV", Some("t1"), "m.room.message", serde_json::json!({"body": "hi"}), 2).unwrap();
/// assert!(fresh && !fresh_again);
/// assert_eq!(first, again);
/// ```
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    events: Vec<Event>,
    txns: HashMap<(String, String, String), String>,
}

fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Parses a stream token `s<pos>`.
pub fn parse_stream_token(token: &str) -> Result<u64, RoomError> {
    token
        .strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| RoomError::BadToken(token.to_owned()))
}

/// Writes a stream token.
pub fn stream_token(pos: u64) -> String {
    format!("s{pos}")
}

impl Rooms {
    /// No rooms yet.
    pub fn new() -> Self {
        Self {
            rooms: HashMap::new(),
            events: Vec::new(),
            txns: HashMap::new(),
        }
    }

    /// The position of the newest event (0 when there is none).
    pub fn position(&self) -> u64 {
        self.events.len() as u64
    }

    fn push(&mut self, mut event: Event) -> String {
        event.pos = self.events.len() as u64 + 1;
        let id = event.event_id.clone();
        let i = self.events.len();
        if let Some(room) = self.rooms.get_mut(&event.room_id) {
            room.events.push(i);
        }
        self.events.push(event);
        id
    }

    fn new_event(
        &self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
        now_ms: i64,
    ) -> Event {
        Event {
            event_id: format!("${}", random_id(43)),
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            content,
            origin_server_ts: now_ms,
            pos: 0,
            txn: None,
        }
    }

    /// Creates a room with the usual initial state, joined by its creator. Returns its id.
    pub fn create_room(&mut self, creator: &str, name: Option<&str>, now_ms: i64) -> String {
        // Room version 12 (Synapse 1.163's default): room ids have no server part.
        let room_id = format!("!{}", random_id(43));
        self.rooms.insert(
            room_id.clone(),
            Room {
                members: BTreeSet::from([creator.to_owned()]),
                events: Vec::new(),
            },
        );
        let initial = [
            ("m.room.create", json!({"room_version": "12"})),
            ("m.room.member", json!({"membership": "join"})),
            (
                "m.room.power_levels",
                json!({"users": {creator: 100}, "users_default": 0, "events_default": 0, "state_default": 50}),
            ),
            ("m.room.join_rules", json!({"join_rule": "invite"})),
            (
                "m.room.history_visibility",
                json!({"history_visibility": "shared"}),
            ),
        ];
        for (event_type, content) in initial {
            let key = if event_type == "m.room.member" {
                creator
            } else {
                ""
            };
            let e = self.new_event(&room_id, creator, event_type, Some(key), content, now_ms);
            self.push(e);
        }
        if let Some(name) = name {
            let e = self.new_event(
                &room_id,
                creator,
                "m.room.name",
                Some(""),
                json!({"name": name}),
                now_ms,
            );
            self.push(e);
        }
        room_id
    }

    /// Joins a user to a room (the harness's `create_room` step uses it). Idempotent.
    pub fn join(&mut self, room_id: &str, user_id: &str, now_ms: i64) -> Result<(), RoomError> {
        let room = self.rooms.get_mut(room_id).ok_or(RoomError::NotFound)?;
        if room.members.insert(user_id.to_owned()) {
            let e = self.new_event(
                room_id,
                user_id,
                "m.room.member",
                Some(user_id),
                json!({"membership": "join"}),
                now_ms,
            );
            self.push(e);
        }
        Ok(())
    }

    fn check_member(&self, room_id: &str, user_id: &str) -> Result<&Room, RoomError> {
        let room = self.rooms.get(room_id).ok_or(RoomError::NotFound)?;
        if room.members.contains(user_id) {
            Ok(room)
        } else {
            Err(RoomError::NotMember(user_id.to_owned()))
        }
    }

    /// Sends an event. A `(device, txn_id)` seen before returns the first event's id and
    /// `false` (no new event); the spec scopes transaction ids to the device, so this holds across
    /// token refreshes.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        room_id: &str,
        sender: &str,
        device_id: &str,
        txn_id: Option<&str>,
        event_type: &str,
        content: Value,
        now_ms: i64,
    ) -> Result<(String, bool), RoomError> {
        self.check_member(room_id, sender)?;
        let key = txn_id.map(|t| (sender.to_owned(), device_id.to_owned(), t.to_owned()));
        if let Some(k) = &key
            && let Some(id) = self.txns.get(k)
        {
            return Ok((id.clone(), false));
        }
        let mut e = self.new_event(room_id, sender, event_type, None, content, now_ms);
        e.txn = txn_id.map(|t| (device_id.to_owned(), t.to_owned()));
        let id = self.push(e);
        if let Some(k) = key {
            self.txns.insert(k, id.clone());
        }
        Ok((id, true))
    }

    /// The rooms a user has joined, sorted.
    pub fn joined_rooms(&self, user_id: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.members.contains(user_id))
            .map(|(id, _)| id.clone())
            .collect();
        v.sort();
        v
    }

    /// What changed in the user's rooms after `since` (everything when `None`), at most `limit`
    /// timeline events per room. Rooms without news are left out of an incremental sync.
    pub fn sync(&self, user_id: &str, since: Option<u64>, limit: usize) -> Vec<RoomUpdate<'_>> {
        let mut out = Vec::new();
        for room_id in self.joined_rooms(user_id) {
            let Some((id, room)) = self.rooms.get_key_value(&room_id) else {
                continue;
            };
            let newer: Vec<&Event> = room
                .events
                .iter()
                .map(|&i| &self.events[i])
                .filter(|e| since.is_none_or(|s| e.pos > s))
                .collect();
            if since.is_some() && newer.is_empty() {
                continue;
            }
            let skip = newer.len().saturating_sub(limit);
            let timeline: Vec<&Event> = newer[skip..].to_vec();
            let prev_pos = timeline.first().map_or(self.position(), |e| e.pos - 1);
            out.push(RoomUpdate {
                room_id: id,
                timeline,
                limited: skip > 0,
                prev_pos,
            });
        }
        out
    }

    /// The newest state event of each `(type, state_key)` in a room.
    pub fn state_events(&self, room_id: &str) -> Vec<&Event> {
        let Some(room) = self.rooms.get(room_id) else {
            return Vec::new();
        };
        let mut latest: Vec<&Event> = Vec::new();
        for e in room.events.iter().map(|&i| &self.events[i]) {
            if let Some(key) = &e.state_key {
                latest.retain(|l| !(l.event_type == e.event_type && l.state_key.as_ref() == Some(key)));
                latest.push(e);
            }
        }
        latest
    }

    /// Every event of a room with this type (the tests count delivered messages with it).
    pub fn events_of_type(&self, room_id: &str, event_type: &str) -> Vec<&Event> {
        self.rooms.get(room_id).map_or_else(Vec::new, |r| {
            r.events
                .iter()
                .map(|&i| &self.events[i])
                .filter(|e| e.event_type == event_type)
                .collect()
        })
    }

    /// `/messages`: backwards (`forward == false`) from `from` (the newest when `None`) or forwards.
    pub fn messages(
        &self,
        room_id: &str,
        user_id: &str,
        from: Option<u64>,
        forward: bool,
        limit: usize,
    ) -> Result<Page<'_>, RoomError> {
        let room = self.check_member(room_id, user_id)?;
        let all: Vec<&Event> = room.events.iter().map(|&i| &self.events[i]).collect();
        let limit = limit.clamp(1, 1000);
        if forward {
            let start = from.unwrap_or(0);
            let chunk: Vec<&Event> = all.into_iter().filter(|e| e.pos > start).take(limit).collect();
            let end = chunk.last().map(|e| e.pos);
            Ok(Page { chunk, start, end })
        } else {
            let start = from.unwrap_or_else(|| self.position());
            let chunk: Vec<&Event> = all
                .into_iter()
                .rev()
                .filter(|e| e.pos <= start)
                .take(limit)
                .collect();
            let end = chunk.last().map(|e| e.pos - 1);
            Ok(Page { chunk, start, end })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "@alice:localhost";

    #[test]
    fn sync_returns_only_new_events_after_the_token() {
        let mut r = Rooms::new();
        let room = r.create_room(A, Some("test"), 0);
        let pos = r.position();
        assert_eq!(r.sync(A, None, 50)[0].timeline.len(), 6);
        assert!(r.sync(A, Some(pos), 50).is_empty());
        r.send(
            &room,
            A,
            "D",
            Some("1"),
            "m.room.message",
            json!({"body": "x"}),
            1,
        )
        .unwrap();
        let upd = r.sync(A, Some(pos), 50);
        assert_eq!(upd[0].timeline.len(), 1);
        assert_eq!(upd[0].timeline[0].content["body"], "x");
    }

    #[test]
    fn txn_ids_are_scoped_to_the_device() {
        let mut r = Rooms::new();
        let room = r.create_room(A, None, 0);
        let (a, _) = r
            .send(&room, A, "D1", Some("t"), "m.room.message", json!({}), 1)
            .unwrap();
        let (b, fresh) = r
            .send(&room, A, "D2", Some("t"), "m.room.message", json!({}), 1)
            .unwrap();
        assert_ne!(a, b);
        assert!(fresh);
        assert_eq!(r.events_of_type(&room, "m.room.message").len(), 2);
    }

    #[test]
    fn non_members_and_unknown_rooms_are_refused() {
        let mut r = Rooms::new();
        let room = r.create_room(A, None, 0);
        assert_eq!(
            r.send(&room, "@bob:localhost", "D", None, "m.room.message", json!({}), 0),
            Err(RoomError::NotMember("@bob:localhost".into()))
        );
        assert!(matches!(
            r.messages("!nope:localhost", A, None, false, 10),
            Err(RoomError::NotFound)
        ));
        assert!(parse_stream_token("x1").is_err());
        assert_eq!(parse_stream_token(&stream_token(7)), Ok(7));
    }

    #[test]
    fn messages_paginate_both_ways() {
        let mut r = Rooms::new();
        let room = r.create_room(A, None, 0);
        for i in 0..5 {
            r.send(&room, A, "D", None, "m.room.message", json!({"n": i}), 0)
                .unwrap();
        }
        let back = r.messages(&room, A, None, false, 3).unwrap();
        assert_eq!(back.chunk[0].content["n"], 4);
        let more = r.messages(&room, A, back.end, false, 3).unwrap();
        assert_eq!(more.chunk[0].content["n"], 1);
        let fwd = r.messages(&room, A, None, true, 100).unwrap();
        assert_eq!(fwd.chunk.len(), 10);
    }
}
