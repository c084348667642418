//! The checks of the scenario language: each `[[expect]]` table of a scenario file is one check.
//!
//! Every check is one type, in the file of its family, that holds its TOML fields (serde), its
//! resolution against the scenario's shape (step names to indices, rooms, endpoints) and its
//! evaluation over what a run [`Observed`]. [`Check`] is the closed set of them, named as
//! `check = "…"` names them; adding a check is one type implementing [`CheckKind`] and one line in
//! the registry below. [`Check::docs`] gives the reference table the documentation is generated
//! from.
//!
//! ```
//! use rotary_judge::check::{Check, Shape, StepShape};
//! use rotary_judge::Observed;
//! let table: toml::Table = toml::from_str("check = \"refresh_count\"\nat_most = 1\nsteps = [1, \"storm\"]").unwrap();
//! let mut check = Check::from_table(table).unwrap();
//! let steps = [StepShape::driver(1, None, "login"), StepShape::driver(2, Some("storm"), "parallel")];
//! check.resolve(&Shape { steps: &steps, rooms: &[], endpoints: &["refresh", "whoami"] }).unwrap();
//! let result = check.evaluate(&Observed::default());
//! assert!(result.passed, "no refresh at all is at most one");
//! assert_eq!(result.check, "refresh_count");
//! assert_eq!(result.description, "at most 1 refresh call(s) in steps 1–2");
//! ```

mod common;
pub mod counts;
mod kind;
pub mod logout;
pub mod messages;
mod scope;
pub mod session;
pub mod steps;
pub mod tokens;

pub use kind::{CheckDoc, CheckKind, CheckResult, Shape, StepShape};
pub use scope::{Bounds, StepRange, StepRef};

use crate::observed::Observed;
use serde::{Deserialize, Serialize};

macro_rules! registry {
    ($($name:literal => $ty:ty, $variant:ident;)*) => {
        /// A check of the scenario language, by its `check = "…"` name.
        #[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
        #[serde(tag = "check")]
        pub enum Check {
            $(
                #[doc = concat!("`", $name, "`: see [`", stringify!($ty), "`].")]
                #[serde(rename = $name)]
                $variant($ty),
            )*
        }

        impl Check {
            /// Every check's name, in registry order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The name as written in scenario files.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Check::$variant(_) => $name,)*
                }
            }

            /// Resolves step references and validates the fields against the scenario.
            pub fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
                match self {
                    $(Check::$variant(c) => c.resolve(shape),)*
                }
            }

            /// Judges what was observed.
            pub fn evaluate(&self, obs: &Observed) -> CheckResult {
                let mut r = match self {
                    $(Check::$variant(c) => c.evaluate(obs),)*
                };
                r.check = self.name().to_owned();
                r
            }

            /// The reference table: every check with its summary and fields.
            pub fn docs() -> Vec<CheckDoc> {
                vec![$(CheckDoc {
                    name: $name,
                    summary: <$ty as CheckKind>::SUMMARY,
                    fields: <$ty as CheckKind>::FIELDS,
                }),*]
            }
        }
    };
}

// The registry: one line per check.
registry! {
    "refresh_count" => counts::RefreshCount, RefreshCount;
    "request_count" => counts::RequestCount, RequestCount;
    "no_401" => counts::No401, No401;
    "refresh_rate" => counts::RefreshRate, RefreshRate;
    "refresh_backoff" => counts::RefreshBackoff, RefreshBackoff;
    "newest_refresh_token" => tokens::NewestRefreshToken, NewestRefreshToken;
    "no_stale_access_token" => tokens::NoStaleAccessToken, NoStaleAccessToken;
    "preemptive_refresh" => tokens::PreemptiveRefresh, PreemptiveRefresh;
    "login_requested_refresh" => tokens::LoginRequestedRefresh, LoginRequestedRefresh;
    "step_ok" => steps::StepOk, StepOk;
    "step_error" => steps::StepError, StepError;
    "no_logout" => logout::NoLogout, NoLogout;
    "logout" => logout::Logout, Logout;
    "quiet_after_logout" => logout::QuietAfterLogout, QuietAfterLogout;
    "messages_once" => messages::MessagesOnce, MessagesOnce;
    "session_latest" => session::SessionLatest, SessionLatest;
    "session_has_refresh_token" => session::SessionHasRefreshToken, SessionHasRefreshToken;
    "session_empty" => session::SessionEmpty, SessionEmpty;
    "device_count" => session::DeviceCount, DeviceCount;
}

/// Why an `[[expect]]` table is not a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The `check` name as written (`?` when missing).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckError {}

impl Check {
    /// Reads one `[[expect]]` table (any serde format's map with a `check` key works; TOML is what
    /// scenario files use). An unknown or missing name lists the known ones.
    pub fn from_table<T: Serialize>(table: T) -> Result<Check, CheckError> {
        let value = serde_json::to_value(table).map_err(|e| CheckError {
            name: "?".to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        let name = value
            .get("check")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned();
        if name.is_empty() {
            return Err(CheckError {
                name: "?".to_owned(),
                message: format!("needs `check = \"…\"`, one of: {}", Check::NAMES.join(", ")),
            });
        }
        if !Check::NAMES.contains(&name.as_str()) {
            return Err(CheckError {
                message: format!("unknown check {name:?}; known: {}", Check::NAMES.join(", ")),
                name,
            });
        }
        serde_json::from_value(value).map_err(|e| CheckError {
            name,
            message: e.to_string(),
        })
    }

    /// The reference table as Markdown: name, what it demands, fields.
    pub fn docs_markdown() -> String {
        let mut out = String::from("| check | demands | fields |\n|---|---|---|\n");
        for d in Check::docs() {
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

#[cfg(test)]
mod tests {
    use super::common::fixtures::{login, refresh};
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn names_are_unique_and_documented() {
        let mut names: Vec<&str> = Check::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Check::NAMES.len());
        assert_eq!(Check::docs().len(), Check::NAMES.len());
        assert!(Check::docs_markdown().contains("| `no_401` |"));
    }

    #[test]
    fn every_documented_field_is_accepted_and_others_are_refused() {
        for d in Check::docs() {
            for (field, _) in d.fields {
                let e = Check::from_table(table(&format!("check = \"{}\"\n{field} = \"?\"", d.name)))
                    .err()
                    .map(|e| e.message)
                    .unwrap_or_default();
                assert!(!e.contains("unknown field"), "{}.{field}: {e}", d.name);
            }
            let e = Check::from_table(table(&format!("check = \"{}\"\ncolour = 3", d.name))).unwrap_err();
            assert!(
                e.message.contains("unknown field `colour`"),
                "{}: {}",
                d.name,
                e.message
            );
        }
    }

    #[test]
    fn unknown_and_missing_names_list_the_known_ones() {
        let e = Check::from_table(table("check = \"refresh_cnt\"")).unwrap_err();
        assert_eq!(e.name, "refresh_cnt");
        assert!(
            e.message
                .starts_with("unknown check \"refresh_cnt\"; known: refresh_count")
        );
        let e = Check::from_table(table("exactly = 1")).unwrap_err();
        assert!(e.message.starts_with("needs `check"), "{}", e.message);
    }

    fn resolved(table: &str) -> Check {
        let mut c = Check::from_table(toml::from_str::<toml::Table>(table).unwrap()).unwrap();
        c.resolve(&Shape {
            steps: &[],
            rooms: &[],
            endpoints: &["refresh"],
        })
        .unwrap();
        c
    }

    #[test]
    fn counts_rates_and_backoff() {
        let obs = Observed {
            trace: vec![
                login(1),
                refresh(2, "rt#1", None),
                refresh(3, "rt#1", None),
                refresh(40, "rt#1", Some(("at#2", "rt#2"))),
            ],
            ..Observed::default()
        };
        assert!(
            resolved("check = \"refresh_count\"\nexactly = 3")
                .evaluate(&obs)
                .passed
        );
        assert!(
            !resolved("check = \"refresh_count\"\nat_most = 2")
                .evaluate(&obs)
                .passed
        );
        let rate = resolved("check = \"refresh_rate\"\nat_most = 1\nper = 100").evaluate(&obs);
        assert!(!rate.passed);
        assert_eq!(rate.evidence, vec![2, 3]);
        let backoff = resolved("check = \"refresh_backoff\"\nmin_ms = 50").evaluate(&obs);
        assert!(!backoff.passed);
        assert_eq!(backoff.evidence, vec![2, 3]);
        assert_eq!(
            resolved("check = \"request_count\"\nendpoint = \"refresh\"\nstatus = 200\nexactly = 1")
                .evaluate(&obs)
                .evidence,
            vec![40]
        );
    }

    #[test]
    fn bad_fields_are_refused_at_resolution() {
        let mut c =
            Check::from_table(toml::from_str::<toml::Table>("check = \"refresh_count\"").unwrap()).unwrap();
        let shape = Shape {
            steps: &[],
            rooms: &[],
            endpoints: &[],
        };
        assert!(c.resolve(&shape).unwrap_err().contains("needs `exactly`"));
        let mut c = Check::from_table(
            toml::from_str::<toml::Table>("check = \"request_count\"\nendpoint = \"fly\"\nexactly = 1")
                .unwrap(),
        )
        .unwrap();
        assert!(
            c.resolve(&shape)
                .unwrap_err()
                .contains("unknown endpoint \"fly\"")
        );
        let mut c = Check::from_table(
            toml::from_str::<toml::Table>("check = \"refresh_rate\"\nat_most = 1\nper = 0").unwrap(),
        )
        .unwrap();
        assert!(c.resolve(&shape).unwrap_err().contains("longer than 0"));
    }
}
