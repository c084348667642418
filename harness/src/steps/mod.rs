//! The steps of the scenario language: each `[[step]]` table of a scenario file is one step.
//!
//! Every step is one type, in the file of its family — `account` (login to logout), `requests`
//! (what the client does with its session), `server` (what the harness does to the mock), `time`
//! — holding its TOML fields (serde), its validation against the scenario so far and how it runs.
//! [`Action`] is the closed set of them, named as `do = "…"` names them; adding a step is one type
//! implementing [`StepKind`] and one line in the registry below. [`Action::docs`] gives the
//! reference table the documentation is generated from.
//!
//! ```
//! use rotary_harness::steps::Action;
//! let table: toml::Table = toml::from_str("do = \"sync\"\ntimeout_ms = 30000").unwrap();
//! let action = Action::from_table(table).unwrap();
//! assert_eq!(action.name(), "sync");
//! assert_eq!(action.driver_method(), Some("sync"));
//! assert_eq!(action.summary(), "timeout_ms=30000");
//! ```

pub mod account;
pub(crate) mod context;
mod kind;
pub mod requests;
pub mod server;
pub mod time;

pub use account::Auth;
pub use context::{Broken, Ctx, StepAt};
pub use kind::{StepKind, Validation};
pub use requests::ParallelOp;

use crate::record::StepOutcome;
use serde::{Deserialize, Serialize};

/// A step's entry in the reference table.
#[derive(Clone, Copy, Debug)]
pub struct StepDoc {
    /// `do = "…"`.
    pub name: &'static str,
    /// [`StepKind::SUMMARY`].
    pub summary: &'static str,
    /// [`StepKind::FIELDS`].
    pub fields: &'static [(&'static str, &'static str)],
    /// [`StepKind::METHOD`].
    pub method: Option<&'static str>,
}

macro_rules! registry {
    ($($name:literal => $ty:ty, $variant:ident;)*) => {
        /// What a step does: a driver call, a server action or a wait, by its `do = "…"` name.
        #[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
        #[serde(tag = "do")]
        pub enum Action {
            $(
                #[doc = concat!("`", $name, "`: see [`", stringify!($ty), "`].")]
                #[serde(rename = $name)]
                $variant($ty),
            )*
        }

        impl Action {
            /// Every step's name, in registry order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The `do` name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Action::$variant(_) => $name,)*
                }
            }

            /// The driver method this step calls, if it is a driver call.
            pub fn driver_method(&self) -> Option<&'static str> {
                match self {
                    $(Action::$variant(_) => <$ty as StepKind>::METHOD,)*
                }
            }

            /// A short rendering of the parameters, for reports.
            pub fn summary(&self) -> String {
                match self {
                    $(Action::$variant(s) => s.summary(),)*
                }
            }

            /// Validates the step against the scenario so far.
            pub fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
                match self {
                    $(Action::$variant(s) => s.validate(v),)*
                }
            }

            /// Runs the step.
            pub async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
                match self {
                    $(Action::$variant(s) => s.run(ctx, at).await,)*
                }
            }

            /// The reference table: every step with its summary and fields.
            pub fn docs() -> Vec<StepDoc> {
                vec![$(StepDoc {
                    name: $name,
                    summary: <$ty as StepKind>::SUMMARY,
                    fields: <$ty as StepKind>::FIELDS,
                    method: <$ty as StepKind>::METHOD,
                }),*]
            }
        }
    };
}

// The registry: one line per step.
registry! {
    "login" => account::Login, Login;
    "register" => account::Register, Register;
    "restore" => account::Restore, Restore;
    "resume" => account::Resume, Resume;
    "whoami" => requests::Whoami, Whoami;
    "sync" => requests::Sync, Sync;
    "send" => requests::Send, Send;
    "parallel" => requests::Parallel, Parallel;
    "session" => account::Session, Session;
    "logout" => account::Logout, Logout;
    "expire_access_tokens" => server::ExpireAccessTokens, ExpireAccessTokens;
    "advance_clock" => server::AdvanceClock, AdvanceClock;
    "rotate_out_of_band" => server::RotateOutOfBand, RotateOutOfBand;
    "revoke_session" => server::RevokeSession, RevokeSession;
    "add_fault" => server::AddFault, AddFault;
    "clear_faults" => server::ClearFaults, ClearFaults;
    "create_room" => server::CreateRoom, CreateRoom;
    "sleep" => time::Sleep, Sleep;
    "kill_driver" => account::KillDriver, KillDriver;
}

impl Action {
    /// Reads one `[[step]]` table without its `name` (any serde map with a `do` key). An unknown
    /// or missing `do` lists the known ones.
    pub fn from_table<T: Serialize>(table: T) -> Result<Action, String> {
        let value = serde_json::to_value(table).map_err(|e| format!("cannot read: {e}"))?;
        let name = value.get("do").and_then(serde_json::Value::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(format!(
                "needs `do = \"…\"`, one of: {}",
                Action::NAMES.join(", ")
            ));
        }
        if !Action::NAMES.contains(&name) {
            return Err(format!(
                "unknown step {name:?}; known: {}",
                Action::NAMES.join(", ")
            ));
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// The reference table as Markdown: name, what it does, fields.
    pub fn docs_markdown() -> String {
        let mut out = String::from("| step | does | fields |\n|---|---|---|\n");
        for d in Action::docs() {
            let fields: Vec<String> = d
                .fields
                .iter()
                .map(|(f, what)| format!("`{f}`: {what}"))
                .collect();
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                d.name,
                d.summary.replace('|', "\\|"),
                if fields.is_empty() {
                    "—".to_owned()
                } else {
                    fields.join("; ").replace('|', "\\|")
                }
            ));
        }
        out
    }
}

/// A step: its position, its optional `name` and what it does.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// 1-based position.
    pub index: usize,
    /// The step's `name`, if given (checks refer to steps by it).
    pub name: Option<String>,
    /// What it does.
    pub action: Action,
}

impl Step {
    /// Where it is, for messages.
    pub fn at(&self) -> StepAt {
        StepAt {
            index: self.index,
            action: self.action.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn names_are_unique_and_documented() {
        let mut names = Action::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::NAMES.len());
        assert_eq!(Action::docs().len(), Action::NAMES.len());
    }

    #[test]
    fn every_documented_field_is_accepted_and_others_are_refused() {
        for d in Action::docs() {
            for (field, _) in d.fields {
                let e = Action::from_table(table(&format!("do = \"{}\"\n{field} = \"?\"", d.name)))
                    .err()
                    .unwrap_or_default();
                assert!(!e.contains("unknown field"), "{}.{field}: {e}", d.name);
            }
            let e = Action::from_table(table(&format!("do = \"{}\"\ncolour = 3", d.name))).unwrap_err();
            assert!(
                e.contains("unknown field `colour`") || e.contains("missing field"),
                "{}: {e}",
                d.name
            );
        }
        assert!(
            Action::from_table(table("do = \"logn\""))
                .unwrap_err()
                .contains("unknown step \"logn\"")
        );
    }
}
