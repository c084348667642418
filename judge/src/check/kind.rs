//! What every check is: a type with TOML fields that resolves against the scenario's [`Shape`] and
//! evaluates to a [`CheckResult`]; and what the reference table says of it.

use crate::observed::Observed;
use serde::{Deserialize, Serialize};

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name as written in the scenario (`refresh_count`, …).
    pub check: String,
    /// What it demands, in words (`exactly 1 refresh call in steps 2–3`).
    pub description: String,
    /// Whether it held.
    pub passed: bool,
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// `seq` of the trace entries that prove the result (for a failure: the offending requests).
    pub evidence: Vec<u64>,
}

/// One step of the scenario as the checks may refer to it (the harness's steps reduced to what
/// resolution needs, so that this crate knows nothing of how steps run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepShape {
    /// 1-based position.
    pub index: usize,
    /// The step's `name`, if given.
    pub name: Option<String>,
    /// Its `do` (`login`, `parallel`, `session`, `advance_clock`, …).
    pub action: String,
    /// Whether it calls the driver (and so has an outcome a client produced).
    pub driver_call: bool,
}

impl StepShape {
    /// A driver call.
    pub fn driver(index: usize, name: Option<&str>, action: &str) -> StepShape {
        StepShape {
            index,
            name: name.map(str::to_owned),
            action: action.to_owned(),
            driver_call: true,
        }
    }

    /// A server action or a wait.
    pub fn server(index: usize, name: Option<&str>, action: &str) -> StepShape {
        StepShape {
            driver_call: false,
            ..StepShape::driver(index, name, action)
        }
    }
}

/// What a check is resolved against: the scenario's steps, the rooms its `create_room` steps make,
/// and the endpoint names the server knows.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'a> {
    /// The steps, in order.
    pub steps: &'a [StepShape],
    /// Room handles made by `create_room` steps.
    pub rooms: &'a [String],
    /// Endpoint names (`refresh`, `whoami`, …).
    pub endpoints: &'a [&'a str],
}

/// One check type: its TOML fields are the type's serde fields (unknown fields are refused).
pub trait CheckKind: Sized {
    /// One line saying what it demands, for the reference table.
    const SUMMARY: &'static str;
    /// Its fields and what each means, for the reference table.
    const FIELDS: &'static [(&'static str, &'static str)];

    /// Resolves step references and validates fields against the scenario; the error says what is
    /// wrong, without the file or the entry (the caller adds them).
    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        let _ = shape;
        Ok(())
    }

    /// Judges what was observed. The result's `check` is filled in by `Check::evaluate`.
    fn evaluate(&self, obs: &Observed) -> CheckResult;
}

/// A check's entry in the reference table.
#[derive(Clone, Copy, Debug)]
pub struct CheckDoc {
    /// `check = "…"`.
    pub name: &'static str,
    /// [`CheckKind::SUMMARY`].
    pub summary: &'static str,
    /// [`CheckKind::FIELDS`].
    pub fields: &'static [(&'static str, &'static str)],
}
