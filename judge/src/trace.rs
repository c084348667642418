//! The trace model: one entry per request, in arrival order, with token labels and states — never raw tokens.
//!
//! The mock homeserver writes these entries, the proxy writes them from observed traffic, and the
//! checks and live invariants read them. The JSON shape is part of Rotary's contract (the `trace`
//! of `rotary run --json`, `GET /_rotary/trace`): fields are only ever added.
//!
//! ```
//! use rotary_judge::{AccessState, TraceEntry};
//! let e = TraceEntry::new("whoami", "GET", "/_matrix/client/v3/account/whoami");
//! assert_eq!(e.access_token.state, AccessState::Missing);
//! let json = serde_json::to_value(&e).unwrap();
//! assert_eq!(json["endpoint"], "whoami");
//! ```

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// State of an access token at one instant, as the trace shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessState {
    /// It authenticates.
    Valid,
    /// Its lifetime is over.
    Expired,
    /// Revoked or deleted.
    Revoked,
    /// Never issued.
    Unknown,
    /// The request carried none.
    Missing,
    /// Seen by `rotary proxy`, which cannot ask the server: a newer access token of the same
    /// session has been issued, so this one is no longer the session's current token (the server
    /// may still accept it). The mock never reports it: it knows the real state.
    Superseded,
}

/// State of a refresh token at one instant, as the trace shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshState {
    /// The newest refresh token of its session.
    Current,
    /// Exchanged, but its successor is unused, so it may be exchanged again.
    PreviousUnused,
    /// Exchanged and no longer accepted.
    Consumed,
    /// Its lifetime (or the session's) is over.
    Expired,
    /// Deleted by logout, device deletion or revocation.
    Revoked,
    /// Never issued.
    Unknown,
}

/// A token as the trace names it: a label and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView<S> {
    /// `at#3`, `rt#2`, or `at#?`/`rt#?` for a token the server never issued.
    pub label: String,
    /// The state at that moment.
    pub state: S,
}

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

impl TraceEntry {
    /// An entry for a request that has just arrived: no token, no outcome yet (`seq` and times 0).
    pub fn new(
        endpoint: impl Into<Cow<'static, str>>,
        method: impl Into<Cow<'static, str>>,
        path: impl Into<String>,
    ) -> TraceEntry {
        TraceEntry {
            seq: 0,
            t_ms: 0,
            real_ms: 0,
            endpoint: endpoint.into(),
            method: method.into(),
            path: path.into(),
            status: None,
            errcode: None,
            soft_logout: None,
            access_token: TokenView {
                label: crate::label::NO_TOKEN.to_owned(),
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

    /// Whether the response reached the client.
    pub fn delivered(&self) -> bool {
        self.delivery == Delivery::Sent
    }

    /// Whether this request is a refresh: a legacy `/refresh`, or the OAuth token endpoint with
    /// `grant_type=refresh_token`.
    pub fn is_refresh(&self) -> bool {
        crate::refresh::is_refresh(&self.endpoint, self.grant_type())
    }

    /// Whether an endpoint name as a check or fault rule gives it names this request
    /// ([`crate::refresh::endpoint_matches`]: `refresh` matches a refresh of either mechanism).
    pub fn endpoint_is(&self, name: &str) -> bool {
        crate::refresh::endpoint_matches(name, &self.endpoint, self.grant_type())
    }

    /// The OAuth `grant_type` the request carried, if any.
    pub fn grant_type(&self) -> Option<&str> {
        self.flags.get("grant_type").and_then(serde_json::Value::as_str)
    }
}

/// A short fingerprint of a request body (FNV-1a, 64 bits, hex), recorded as the `body_hash` flag of
/// a `send` so that a resend of the same message can be told from a new one without keeping the
/// message. Not a secret-safe digest: it only tells equal bodies apart.
///
/// ```
/// use rotary_judge::trace::body_hash;
/// assert_eq!(body_hash(b"{\"body\":\"hi\"}"), body_hash(b"{\"body\":\"hi\"}"));
/// assert_ne!(body_hash(b"a"), body_hash(b"b"));
/// assert_eq!(body_hash(b"").len(), 16);
/// ```
pub fn body_hash(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
