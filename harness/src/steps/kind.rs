//! What every step is: a type with TOML fields that validates against what came before it in the
//! scenario and runs against the scenario's [`Ctx`].

use super::context::{Broken, Ctx, StepAt};
use crate::record::StepOutcome;
use std::collections::HashSet;
use std::future::Future;

/// What a step is validated against: the scenario's `needs`, the rooms made by earlier steps,
/// and the endpoint names the server knows.
pub struct Validation<'a> {
    /// The scenario's `needs`.
    pub needs: &'a [String],
    /// Room handles made by earlier `create_room` steps (a `create_room` adds its own).
    pub rooms: &'a mut HashSet<String>,
    /// Endpoint names (`refresh`, `whoami`, …), for fault rules.
    pub endpoints: &'a [&'a str],
}

impl Validation<'_> {
    /// `Ok` when `needs` lists `cap`; else an error saying why the step needs it.
    pub fn need(&self, cap: &str, why: &str) -> Result<(), String> {
        if self.needs.iter().any(|n| n == cap) {
            Ok(())
        } else {
            Err(format!("{why}, so `needs` must list {cap:?}"))
        }
    }

    /// `Ok` when an earlier `create_room` made the room (or it is a literal `!room:id`).
    pub fn room(&self, room: &str) -> Result<(), String> {
        if room.starts_with('!') || self.rooms.contains(room) {
            Ok(())
        } else {
            Err(format!(
                "room {room:?} is not made by an earlier `create_room` step (nor a literal !room id)"
            ))
        }
    }
}

/// One step type: its TOML fields are the type's serde fields (unknown fields are refused; `do`
/// and `name` are read by the scenario loader).
pub trait StepKind {
    /// One line saying what it does, for the reference table.
    const SUMMARY: &'static str;
    /// Its fields and what each means, for the reference table.
    const FIELDS: &'static [(&'static str, &'static str)];
    /// The driver method it calls, if it is a driver call (then `needs` must list it, except
    /// `session`).
    const METHOD: Option<&'static str> = None;

    /// A short rendering of its parameters, for reports (`alice, refresh_token=true`).
    fn summary(&self) -> String {
        String::new()
    }

    /// Validates the step against the scenario so far.
    fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
        let _ = v;
        Ok(())
    }

    /// Runs the step. `Err` ends the scenario (the driver broke, or the harness could not act).
    fn run(&self, ctx: &mut Ctx, at: StepAt) -> impl Future<Output = Result<StepOutcome, Broken>> + Send;
}
