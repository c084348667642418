//! Checks on what the room holds: every message sent is stored exactly once (a send retried after
//! a lost response or a refresh reuses its transaction id).

use super::common::{verdict, with_evidence};
use super::kind::{CheckKind, CheckResult, Shape};
use crate::observed::{Observed, StepOutcome};
use serde::{Deserialize, Serialize};

fn main_room() -> String {
    "main".to_owned()
}

/// Every message sent into the room is stored exactly once.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesOnce {
    /// The room handle (default `main`).
    #[serde(default = "main_room")]
    pub room: String,
}

impl CheckKind for MessagesOnce {
    const SUMMARY: &'static str =
        "every message sent into the room is stored exactly once, and every event id returned is in the room";
    const FIELDS: &'static [(&'static str, &'static str)] =
        &[("room", "the room handle of a `create_room` step (default `main`)")];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        shape.room(&self.room)
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let room = &self.room;
        let events = obs.room_events.get(room).cloned().unwrap_or_default();
        let sends = obs.room_sends.get(room).cloned().unwrap_or_default();
        let ok_ids: Vec<String> = sends
            .iter()
            .filter_map(|o| match o {
                StepOutcome::Ok { result } => {
                    result.get("event_id").and_then(|v| v.as_str()).map(str::to_owned)
                }
                _ => None,
            })
            .collect();
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in &ok_ids {
            if !seen.insert(id) {
                problems.push(format!("the driver returned {id} twice"));
            }
            if !events.contains(id) {
                problems.push(format!("{id} returned by the driver is not in the room"));
            }
        }
        if events.len() > sends.len() {
            problems.push(format!(
                "{} messages stored for {} send(s): duplicates",
                events.len(),
                sends.len()
            ));
        }
        let send_seqs: Vec<u64> = obs
            .trace
            .iter()
            .filter(|e| e.endpoint == "send")
            .map(|e| e.seq)
            .collect();
        with_evidence(
            verdict(
                format!("every message sent to room {room:?} is stored exactly once"),
                problems.is_empty(),
                format!(
                    "{} send(s) → at most {} stored, each returned id stored once",
                    sends.len(),
                    sends.len()
                ),
                if problems.is_empty() {
                    format!("{} stored, {} confirmed", events.len(), ok_ids.len())
                } else {
                    problems.join("; ")
                },
            ),
            send_seqs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_caught() {
        let sent = |id: &str| StepOutcome::Ok {
            result: serde_json::json!({"event_id": id}),
        };
        let mut obs = Observed::default();
        obs.room_sends.insert("main".into(), vec![sent("$a"), sent("$b")]);
        obs.room_events
            .insert("main".into(), vec!["$a".into(), "$b".into()]);
        let check = MessagesOnce { room: "main".into() };
        assert!(check.evaluate(&obs).passed);
        obs.room_events
            .insert("main".into(), vec!["$a".into(), "$b".into(), "$c".into()]);
        assert!(!check.evaluate(&obs).passed);
    }
}
