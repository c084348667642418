//! The request trace: every client request in arrival order, with token labels and states, never raw tokens.

use crate::store::{AccessState, RefreshState, TokenView};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How the response reached the client — or did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Still being handled (a long-poll, a delay, or a hang).
    Pending,
    /// The response was sent.
    Sent,
    /// The request was performed, then the connection closed without a response.
    Dropped,
    /// The connection was reset (RST) without a response.
    Reset,
    /// The connection closed without a byte.
    Empty,
    /// Bytes that are not HTTP were sent, then the connection closed.
    Garbage,
    /// The response was cut off halfway through its body.
    Truncated,
    /// The client closed the connection before the server answered.
    Abandoned,
}

/// Tokens a request was issued, by label.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedLabels {
    /// Label of the new access token.
    pub access_token: Option<String>,
    /// Label of the new refresh token.
    pub refresh_token: Option<String>,
    /// `expires_in_ms` as sent.
    pub expires_in_ms: Option<i64>,
    /// When the access token expires, in trace time (ms since the server started).
    pub expires_at_ms: Option<i64>,
}

/// The fault rule that fired on a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiredFault {
    /// The rule's id.
    pub id: u64,
    /// The rule's name, if it has one.
    pub name: Option<String>,
    /// The action's kind, e.g. `commit_then_drop`.
    pub action: String,
}

/// One request as the trace records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Arrival order, from 1.
    pub seq: u64,
    /// Arrival time on the server clock, ms since the server started (includes clock advances).
    pub t_ms: i64,
    /// Arrival time in real ms since the server started.
    pub real_ms: i64,
    /// The endpoint's name (`refresh`, `whoami`, …; `unknown` for unrecognised paths).
    pub endpoint: Cow<'static, str>,
    /// The HTTP method.
    pub method: Cow<'static, str>,
    /// The path, with any `access_token` query parameter hidden.
    pub path: String,
    /// The status the server produced; `None` when it produced none (hang, reset, garbage).
    pub status: Option<u16>,
    /// The Matrix `errcode` of an error response.
    pub errcode: Option<String>,
    /// The `soft_logout` flag of an error response.
    pub soft_logout: Option<bool>,
    /// The access token presented, as a label with its state on arrival.
    pub access_token: TokenView<AccessState>,
    /// The refresh token presented (on `/refresh`), with its state on arrival.
    pub refresh_token: Option<TokenView<RefreshState>>,
    /// The user the presented token belongs to.
    pub user_id: Option<String>,
    /// The device the presented token belongs to.
    pub device_id: Option<String>,
    /// Tokens the response issued (boxed: most requests issue none).
    pub issued: Option<Box<IssuedLabels>>,
    /// The fault rule that fired (boxed: most requests meet none).
    pub fault: Option<Box<FiredFault>>,
    /// How the response was delivered.
    pub delivery: Delivery,
    /// Relevant request fields, e.g. `{"refresh_token": true}` on login, `txn_id` on send.
    pub flags: BTreeMap<String, serde_json::Value>,
    /// Real time from arrival to the end of handling, in ms.
    pub duration_ms: Option<i64>,
    /// How many requests had arrived when this one finished handling (its own `seq` included).
    /// A request with a greater `seq` arrived after this response was produced, so
    /// `later.seq > done_seq` proves the client could have read the response before sending it.
    pub done_seq: Option<u64>,
}

/// What a finished request adds to its entry.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    /// See [`TraceEntry::status`].
    pub status: Option<u16>,
    /// See [`TraceEntry::errcode`].
    pub errcode: Option<String>,
    /// See [`TraceEntry::soft_logout`].
    pub soft_logout: Option<bool>,
    /// See [`TraceEntry::issued`].
    pub issued: Option<IssuedLabels>,
    /// Overrides the user found on arrival (login and register learn it only then).
    pub user_id: Option<String>,
    /// Overrides the device found on arrival.
    pub device_id: Option<String>,
    /// How it was delivered.
    pub delivery: Option<Delivery>,
    /// Real ms spent.
    pub duration_ms: i64,
    /// Extra flags learnt while handling.
    pub flags: BTreeMap<String, serde_json::Value>,
}

/// Entries per storage chunk: appending never moves older entries, so a long run never pays for
/// copying a huge vector while holding the lock.
const CHUNK: usize = 4096;

/// The trace of one server. Appending takes a short lock; nothing is ever dropped.
///
/// ```
/// use rotary_server::Trace;
/// let trace = Trace::default();
/// assert!(trace.snapshot(0).is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Trace {
    chunks: Mutex<Chunks>,
}

#[derive(Debug, Default)]
struct Chunks {
    chunks: Vec<Vec<TraceEntry>>,
    len: usize,
}

impl Chunks {
    fn get_mut(&mut self, index: usize) -> Option<&mut TraceEntry> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }
}

impl Trace {
    fn lock(&self) -> std::sync::MutexGuard<'_, Chunks> {
        self.chunks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an entry; its `seq` is set here. Returns the seq.
    pub fn begin(&self, mut entry: TraceEntry) -> u64 {
        let mut c = self.lock();
        let seq = c.len as u64 + 1;
        entry.seq = seq;
        if c.chunks.last().is_none_or(|last| last.len() == CHUNK) {
            c.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = c.chunks.last_mut() {
            last.push(entry);
        }
        c.len += 1;
        seq
    }

    /// Adds a request's outcome to its entry.
    pub fn finish(&self, seq: u64, done: Completion) {
        let mut c = self.lock();
        let arrived = c.len as u64;
        let Some(e) = usize::try_from(seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|i| c.get_mut(i))
        else {
            return;
        };
        e.status = done.status;
        e.errcode = done.errcode;
        e.soft_logout = done.soft_logout;
        e.issued = done.issued.map(Box::new);
        if done.user_id.is_some() {
            e.user_id = done.user_id;
        }
        if done.device_id.is_some() {
            e.device_id = done.device_id;
        }
        e.delivery = done.delivery.unwrap_or(Delivery::Sent);
        e.duration_ms = Some(done.duration_ms);
        e.flags.extend(done.flags);
        e.done_seq = Some(arrived);
    }

    /// Entries with `seq` greater than `after`, in order.
    pub fn snapshot(&self, after: u64) -> Vec<TraceEntry> {
        let c = self.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(c.len);
        let mut out = Vec::with_capacity(c.len - start);
        for (n, chunk) in c.chunks.iter().enumerate() {
            let first = n * CHUNK;
            if first + chunk.len() <= start {
                continue;
            }
            out.extend_from_slice(&chunk[start.saturating_sub(first)..]);
        }
        out
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether the trace is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        *self.lock() = Chunks::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> TraceEntry {
        TraceEntry {
            seq: 0,
            t_ms: 0,
            real_ms: 0,
            endpoint: "whoami".into(),
            method: "GET".into(),
            path: "/".into(),
            status: None,
            errcode: None,
            soft_logout: None,
            access_token: TokenView {
                label: "-".into(),
                state: AccessState::Missing,
            },
            refresh_token: None,
            user_id: None,
            device_id: None,
            issued: None,
            fault: None,
            delivery: Delivery::Pending,
            flags: BTreeMap::new(),
            duration_ms: None,
            done_seq: None,
        }
    }

    #[test]
    fn snapshots_cross_chunk_boundaries() {
        let trace = Trace::default();
        for _ in 0..(2 * CHUNK + 5) {
            trace.begin(entry());
        }
        let all = trace.snapshot(0);
        assert_eq!(all.len(), 2 * CHUNK + 5);
        assert!(all.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
        let tail = trace.snapshot(CHUNK as u64 - 1);
        assert_eq!(tail[0].seq, CHUNK as u64);
        assert_eq!(tail.len(), CHUNK + 6);
        trace.finish(
            2 * CHUNK as u64 + 1,
            Completion {
                status: Some(201),
                ..Default::default()
            },
        );
        assert_eq!(trace.snapshot(2 * CHUNK as u64)[0].status, Some(201));
        trace.clear();
        assert!(trace.is_empty());
    }

    #[test]
    fn concurrent_appends_are_never_lost() {
        let trace = std::sync::Arc::new(Trace::default());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let t = trace.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let seq = t.begin(entry());
                        t.finish(
                            seq,
                            Completion {
                                status: Some(200),
                                ..Default::default()
                            },
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let all = trace.snapshot(0);
        assert_eq!(all.len(), 4000);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, e)| e.seq == i as u64 + 1 && e.status == Some(200))
        );
        assert_eq!(trace.snapshot(3990).len(), 10);
        assert_eq!(trace.snapshot(4000).len(), 0);
        assert_eq!(trace.snapshot(u64::MAX).len(), 0);
        trace.finish(999_999, Completion::default());
    }
}
