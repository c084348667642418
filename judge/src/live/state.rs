//! What the watch remembers per session (a device of a user): the newest tokens delivered to it and
//! when, recent refreshes, an open transient refresh failure, lost sends, and the last few entries
//! for violation windows — all bounded.

use crate::label::label_number;
use crate::trace::TraceEntry;
use std::collections::VecDeque;

/// A token the client received: its label, number, when it reached the client and what was said
/// about its lifetime.
#[derive(Clone, Debug)]
pub(super) struct Delivered {
    pub label: String,
    pub number: u64,
    /// Real ms at which the response was produced (arrival + handling time).
    pub at_ms: i64,
    /// `done_seq` of the response: later requests with a greater `seq` could have read it.
    pub done_seq: u64,
    /// `expires_in_ms` announced with it.
    pub expires_in_ms: Option<i64>,
}

/// One refresh as the watch remembers it.
#[derive(Clone, Debug)]
pub(super) struct RefreshRec {
    pub seq: u64,
    /// The refresh token presented (label).
    pub presented: Option<String>,
    pub arrived_ms: i64,
    pub done_ms: i64,
    /// Answered 2xx, or refused definitively (4xx other than 429): the server decided.
    pub answered: bool,
    /// Whether a 401 on an access token explained it (the server said the token was no good).
    pub explained: bool,
    /// The client went away before the answer (it closed the connection: a timeout, a cancelled
    /// call): from then on it is not in flight for the client, whatever the server still does.
    pub abandoned: bool,
}

/// A send whose response the client may not have seen.
#[derive(Clone, Debug)]
pub(super) struct LostSend {
    pub room: String,
    pub body_hash: String,
    pub txn_id: String,
    pub at_ms: i64,
    pub seq: u64,
}

/// The most access tokens remembered per session for their expiry.
const KEEP_ACCESS: usize = 4;
/// The most refreshes remembered per session.
const KEEP_REFRESHES: usize = 64;
/// The most lost sends remembered per session.
const KEEP_LOST_SENDS: usize = 16;
/// The most transaction ids remembered per session.
const KEEP_TXNS: usize = 64;

/// The state of one session.
#[derive(Clone, Debug, Default)]
pub(super) struct Session {
    pub user: Option<String>,
    /// The last entries of this session, oldest first, for violation windows.
    pub recent: VecDeque<TraceEntry>,
    /// Access tokens delivered, newest last.
    pub access: VecDeque<Delivered>,
    /// The newest refresh token delivered.
    pub refresh: Option<Delivered>,
    /// The lifetime the server announced last.
    pub lifetime_ms: Option<i64>,
    pub refreshes: VecDeque<RefreshRec>,
    /// Real ms of the last 401 on an access token, since the last refresh.
    pub unauthorized_since_refresh: bool,
    /// The last refresh ended in a definitive refusal.
    pub refused: bool,
    /// An open transient refresh failure: (real ms it ended, its seq).
    pub transient: Option<(i64, u64)>,
    pub lost_sends: VecDeque<LostSend>,
    /// Recent (room, transaction id, body hash) of this session's sends.
    pub txns: VecDeque<(String, String, String)>,
    /// Access labels already reported as used past their expiry.
    pub reported_expired: VecDeque<String>,
    /// Until when (real ms) a refresh-loop report covers.
    pub loop_reported_until: i64,
    pub last_seen_ms: i64,
}

impl Session {
    /// Remembers an entry for windows (at most `keep`).
    pub fn remember(&mut self, e: &TraceEntry, keep: usize) {
        if keep == 0 {
            return;
        }
        while self.recent.len() >= keep {
            self.recent.pop_front();
        }
        self.recent.push_back(e.clone());
    }

    /// Records the tokens an answered entry issued.
    pub fn delivered(&mut self, e: &TraceEntry) {
        let Some(issued) = e.issued.as_deref() else {
            return;
        };
        if !e.delivered() {
            return;
        }
        let at_ms = e.real_ms + e.duration_ms.unwrap_or(0);
        let done_seq = e.done_seq.unwrap_or(e.seq);
        if let Some(l) = &issued.access_token
            && let Some(number) = label_number(l)
        {
            while self.access.len() >= KEEP_ACCESS {
                self.access.pop_front();
            }
            self.access.push_back(Delivered {
                label: l.clone(),
                number,
                at_ms,
                done_seq,
                expires_in_ms: issued.expires_in_ms,
            });
        }
        if let Some(l) = &issued.refresh_token
            && let Some(number) = label_number(l)
        {
            self.refresh = Some(Delivered {
                label: l.clone(),
                number,
                at_ms,
                done_seq,
                expires_in_ms: None,
            });
        }
        if issued.expires_in_ms.is_some() {
            self.lifetime_ms = issued.expires_in_ms;
        }
    }

    /// The newest access token the client had received before `e` arrived (`grace_ms` before).
    pub fn newest_access_before(&self, e: &TraceEntry, grace_ms: i64) -> Option<&Delivered> {
        self.access
            .iter()
            .filter(|d| d.done_seq < e.seq && d.at_ms + grace_ms <= e.real_ms)
            .max_by_key(|d| d.number)
    }

    /// Remembers a refresh.
    pub fn push_refresh(&mut self, r: RefreshRec) {
        while self.refreshes.len() >= KEEP_REFRESHES {
            self.refreshes.pop_front();
        }
        self.refreshes.push_back(r);
    }

    /// Remembers a lost send.
    pub fn push_lost_send(&mut self, s: LostSend) {
        while self.lost_sends.len() >= KEEP_LOST_SENDS {
            self.lost_sends.pop_front();
        }
        self.lost_sends.push_back(s);
    }

    /// Whether this session sent into `room` with `txn` recently.
    pub fn seen_txn(&self, room: &str, txn: &str) -> bool {
        self.txns.iter().any(|(r, t, _)| r == room && t == txn)
    }

    /// How many different transaction ids carried this body into `room` recently.
    pub fn ids_for_body(&self, room: &str, body_hash: &str) -> usize {
        self.txns
            .iter()
            .filter(|(r, _, b)| r == room && b == body_hash)
            .count()
    }

    /// Remembers a send's transaction id.
    pub fn note_txn(&mut self, room: &str, txn: &str, body_hash: &str) {
        if self.seen_txn(room, txn) {
            return;
        }
        while self.txns.len() >= KEEP_TXNS {
            self.txns.pop_front();
        }
        self.txns
            .push_back((room.to_owned(), txn.to_owned(), body_hash.to_owned()));
    }

    /// Notes that an expired token was reported; `false` if it already was.
    pub fn note_expired(&mut self, label: &str) -> bool {
        if self.reported_expired.iter().any(|l| l == label) {
            return false;
        }
        while self.reported_expired.len() >= KEEP_ACCESS {
            self.reported_expired.pop_front();
        }
        self.reported_expired.push_back(label.to_owned());
        true
    }
}
