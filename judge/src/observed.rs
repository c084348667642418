//! What a scripted run observed, as the checks see it: the trace, the steps and how they ended,
//! the driver's notifications, what the client said it holds, and the server's state at the end.
//!
//! ```
//! use rotary_judge::observed::{Observed, StepOutcome};
//! let obs = Observed::default();
//! assert!(obs.trace.is_empty());
//! let ok = StepOutcome::Ok { result: serde_json::json!({}) };
//! assert!(ok.is_ok() && ok.errors().is_empty());
//! ```

use crate::trace::TraceEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A driver error as the protocol reports it (`data.kind`, `status`, `errcode`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// `logged_out`, `soft_logged_out`, `http`, `network`, `unsupported`, `other`, or
    /// `method_not_found` for a JSON-RPC -32601.
    pub kind: String,
    /// The driver's message.
    pub message: String,
    /// HTTP status, for `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Matrix errcode, for `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<String>,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    /// A driver call answered with a result (tokens replaced by labels), or a server action
    /// succeeded (`result` describes it).
    Ok {
        /// The result.
        result: serde_json::Value,
    },
    /// A driver call answered with an error.
    Failed {
        /// The error.
        error: CallError,
    },
    /// A `parallel` call: one outcome per operation, in start order.
    Parallel {
        /// `Ok` or `Failed` per operation.
        results: Vec<StepOutcome>,
    },
    /// The step did not finish: the driver broke, or time ran out (see the scenario's message).
    Aborted {
        /// What happened.
        reason: String,
    },
}

impl StepOutcome {
    /// Whether the step (every operation of a `parallel`) succeeded.
    pub fn is_ok(&self) -> bool {
        match self {
            StepOutcome::Ok { .. } => true,
            StepOutcome::Failed { .. } | StepOutcome::Aborted { .. } => false,
            StepOutcome::Parallel { results } => results.iter().all(StepOutcome::is_ok),
        }
    }

    /// The errors of the step (all failing operations of a `parallel`).
    pub fn errors(&self) -> Vec<&CallError> {
        match self {
            StepOutcome::Ok { .. } | StepOutcome::Aborted { .. } => Vec::new(),
            StepOutcome::Failed { error } => vec![error],
            StepOutcome::Parallel { results } => results.iter().flat_map(StepOutcome::errors).collect(),
        }
    }
}

/// One step as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based position in the scenario.
    pub index: usize,
    /// The step's name, if the scenario gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action (`login`, `parallel`, `expire_access_tokens`, …).
    pub action: String,
    /// A short rendering of its parameters (`count=5 op=whoami`).
    pub summary: String,
    /// Start, real ms since the scenario's server started (the trace's `real_ms` scale).
    pub started_ms: i64,
    /// End, same scale.
    pub ended_ms: i64,
    /// Trace entries with `seq > trace_from` arrived after the step started.
    pub trace_from: u64,
    /// Trace entries with `seq <= trace_to` arrived before the step ended.
    pub trace_to: u64,
    /// How it ended.
    pub outcome: StepOutcome,
}

/// A notification the driver sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// When it arrived, real ms since the server started.
    pub at_ms: i64,
    /// The step running when it arrived (1-based; 0 = during start-up).
    pub step: usize,
    /// How many requests the trace held when it arrived.
    pub trace_len: u64,
    /// `session_changed`, `logged_out`, `log`, or an unknown method name.
    pub method: String,
    /// Its params, with every token replaced by its label.
    pub params: serde_json::Value,
}

/// A `session` step's result and the server's view at that moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionView {
    /// The access token the client said it holds (label, or `at#?` for an unknown one).
    pub access_token: Option<String>,
    /// The refresh token it said it holds.
    pub refresh_token: Option<String>,
    /// The newest live access token of the client's device(s) on the server.
    pub server_access_token: Option<String>,
    /// The current refresh token of the device on the server.
    pub server_refresh_token: Option<String>,
}

/// Everything the checks look at.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The trace.
    pub trace: Vec<TraceEntry>,
    /// The steps as they ran.
    pub steps: Vec<StepRecord>,
    /// Notifications, tokens as labels.
    pub notifications: Vec<NotificationRecord>,
    /// `session` steps' views, by step index.
    pub sessions: BTreeMap<usize, SessionView>,
    /// Per room handle: the event ids of its `m.room.message` events at the end.
    pub room_events: BTreeMap<String, Vec<String>>,
    /// Per room handle: the send operations aimed at it (step, outcome of each operation).
    pub room_sends: BTreeMap<String, Vec<StepOutcome>>,
    /// Devices per user at the end.
    pub devices: BTreeMap<String, usize>,
    /// Sessions the harness minted and handed to the client (`restore`), which the trace does not
    /// show: "the login" of a minted session.
    pub minted: Vec<MintedSession>,
}

/// A session the harness minted on the server (not a request, so not in the trace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MintedSession {
    /// When, in trace time.
    pub t_ms: i64,
    /// Its device.
    pub device_id: Option<String>,
    /// What it holds (labels, expiry in trace time).
    pub issued: crate::trace::IssuedLabels,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_outcome_is_ok_only_when_all_are() {
        let ok = StepOutcome::Ok {
            result: serde_json::json!({}),
        };
        let bad = StepOutcome::Failed {
            error: CallError {
                kind: "http".into(),
                message: "401".into(),
                status: Some(401),
                errcode: None,
            },
        };
        assert!(
            StepOutcome::Parallel {
                results: vec![ok.clone(), ok.clone()]
            }
            .is_ok()
        );
        let mixed = StepOutcome::Parallel {
            results: vec![ok, bad],
        };
        assert!(!mixed.is_ok());
        assert_eq!(mixed.errors().len(), 1);
    }
}
