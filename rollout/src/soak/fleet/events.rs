//! What happens to a session, as it happens: actions and their outcomes, message fates, and the
//! observer that sees every event.

use rotary_reference::ClientError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an action was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// `GET /account/whoami`.
    Whoami,
    /// A message sent.
    Send,
    /// `POST /createRoom` (once per session, before its first message).
    CreateRoom,
}

impl ActionKind {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Whoami => "whoami",
            ActionKind::Send => "send",
            ActionKind::CreateRoom => "create_room",
        }
    }
}

/// How a request ended, as the app saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Ok,
    /// The client says the session is over.
    LoggedOut,
    /// A 401 reached the app (a correct client refreshes and retries instead).
    Unauthorized,
    /// No usable response.
    Network,
    /// Another error status.
    Http(u16),
    /// Anything else.
    Other,
}

impl Outcome {
    /// How the app sees this error.
    pub fn of(e: &ClientError) -> Outcome {
        match e {
            ClientError::LoggedOut { .. } => Outcome::LoggedOut,
            ClientError::Http { status: 401, .. } => Outcome::Unauthorized,
            ClientError::Http { status, .. } => Outcome::Http(*status),
            ClientError::Network(_) => Outcome::Network,
            ClientError::Unsupported(_) | ClientError::Other(_) => Outcome::Other,
        }
    }

    /// The outcome of a result.
    pub fn of_result<T>(r: &Result<T, ClientError>) -> Outcome {
        r.as_ref().err().map_or(Outcome::Ok, Outcome::of)
    }

    /// How it reads in a timeline.
    pub fn describe(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::LoggedOut => "logged out".into(),
            Outcome::Unauthorized => "401 reached the app".into(),
            Outcome::Network => "network error".into(),
            Outcome::Http(s) => format!("HTTP {s}"),
            Outcome::Other => "error".into(),
        }
    }
}

/// What became of a message, when it is not simply seen once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageFate {
    /// Sync showed it again: the server stored it twice.
    Duplicated,
    /// The send succeeded and sync never showed it (by the deadline, or by the end).
    Lost,
    /// Sync showed it after it had been given up.
    Late,
    /// It may be in a gap of a limited timeline, or the final sync failed: neither seen nor lost.
    Unverified,
}

/// One thing that happened to a session, as it happens.
#[derive(Clone, Copy, Debug)]
pub enum SessionEvent<'a> {
    /// Logged in (the first time, or again after a logout).
    LoggedIn {
        /// The user id.
        user_id: &'a str,
        /// The new device.
        device_id: &'a str,
    },
    /// A login failed; it is tried again.
    LoginFailed {
        /// Why.
        error: &'a ClientError,
    },
    /// The client ended the session.
    LoggedOut {
        /// The user id.
        user_id: &'a str,
        /// The device that ended.
        device_id: &'a str,
        /// A soft logout.
        soft: bool,
    },
    /// One request of the app finished.
    Action {
        /// What it was.
        kind: ActionKind,
        /// How long the app waited (refreshes included).
        latency: Duration,
        /// How it ended.
        outcome: Outcome,
    },
    /// A sync failed; it is tried again after a pause.
    SyncFailed {
        /// How it ended.
        outcome: Outcome,
    },
    /// A message did not come back exactly once.
    Message {
        /// Its number in the session.
        n: u64,
        /// What became of it.
        fate: MessageFate,
    },
    /// The session was suspended (no requests) for this long.
    Suspended {
        /// For how long.
        duration: Duration,
    },
}

/// Sees every [`SessionEvent`] of every session. Called on the sessions' tasks: keep it quick.
pub trait SessionObserver: Send + Sync {
    /// One event of session `session` (its index in the accounts).
    fn on_event(&self, session: usize, event: &SessionEvent<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl SessionObserver for NoObserver {
    fn on_event(&self, _: usize, _: &SessionEvent<'_>) {}
}
