//! The scenario model: one TOML file per scenario, parsed (`parse`) and validated (`validate`) into
//! a [`Scenario`] whose steps ([`crate::steps`]) and checks ([`rotary_judge::check`]) are ready to run.
//!
//! ```
//! use rotary_harness::Scenario;
//! let s = Scenario::from_toml(
//!     r#"
//! id = "expiry.example"
//! title = "A 401 leads to one refresh"
//! level = "must"
//! requirement = "A client refreshes when the server says its token expired."
//! references = ["Matrix spec v1.3, 'Refreshing access tokens'"]
//! needs = ["login", "whoami", "legacy-refresh"]
//! [[step]]
//! do = "login"
//! [[step]]
//! do = "expire_access_tokens"
//! [[step]]
//! do = "whoami"
//! name = "after"
//! [[expect]]
//! check = "refresh_count"
//! exactly = 1
//! [[expect]]
//! check = "step_ok"
//! step = "after"
//! "#,
//!     "scenarios/expiry.example.toml".as_ref(),
//! )
//! .unwrap();
//! assert_eq!(s.steps.len(), 3);
//! ```

pub mod mechanism;
mod parse;
mod validate;

use crate::record::Level;
use crate::steps::{Auth, Step};
use rotary_judge::Check;
use rotary_server::ServerConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default time one driver call may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a whole scenario may take.
pub const DEFAULT_SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// A mistake in a scenario file, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// Where in it (`step 3 (parallel)`, `expect 2 (refresh_count)`, `id`, …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A validated scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// The file it came from.
    pub file: PathBuf,
    /// Stable id of this case: the file's id, or `ID@oauth` for the OAuth case of a file that
    /// holds for both mechanisms ([`mechanism::case_id`]).
    pub id: String,
    /// The file's id (its name without `.toml`).
    pub file_id: String,
    /// The refresh mechanism of this case.
    pub auth: Auth,
    /// Every mechanism the file's requirement holds for (one case each), legacy first.
    pub mechanisms: Vec<Auth>,
    /// Old ids (of scenarios folded into this file) that name this case.
    pub aliases: Vec<String>,
    /// One-line title.
    pub title: String,
    /// Level.
    pub level: Level,
    /// The requirement (spec sentence or behaviour).
    pub requirement: String,
    /// Spec sections, MSCs, SDK bugs.
    pub references: Vec<String>,
    /// Tags (the id's prefix is always one).
    pub tags: Vec<String>,
    /// Driver capabilities it needs.
    pub needs: Vec<String>,
    /// Whole-scenario timeout.
    pub timeout: Duration,
    /// Per-call timeout.
    pub call_timeout: Duration,
    /// The `[server]` table as written (profile and knobs).
    pub server_table: serde_json::Value,
    /// The resulting server configuration.
    #[serde(skip)]
    pub server: ServerConfig,
    /// Fault rules installed before the first step.
    pub faults: Vec<rotary_server::FaultRule>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Checks in order.
    pub checks: Vec<Check>,
}

impl Scenario {
    /// Reads and validates a scenario file: its first case (the legacy one when it has one).
    pub fn load(file: &Path) -> Result<Scenario, ScenarioError> {
        first(Scenario::load_cases(file)?, file)
    }

    /// Reads and validates a scenario file: one case per mechanism, legacy first.
    pub fn load_cases(file: &Path) -> Result<Vec<Scenario>, ScenarioError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| parse::err(file, "file", format!("cannot read: {e}")))?;
        let cases = Scenario::cases_from_toml(&text, file)?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if let Some(s) = cases.first()
            && stem != s.file_id
        {
            return Err(parse::err(
                file,
                "id",
                format!("id {:?} must match the file name ({stem}.toml)", s.file_id),
            ));
        }
        Ok(cases)
    }

    /// Parses and validates scenario text: its first case; `file` is used in error messages only.
    pub fn from_toml(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
        first(Scenario::cases_from_toml(text, file)?, file)
    }

    /// Parses and validates scenario text into one case per mechanism (`auth`), legacy first.
    pub fn cases_from_toml(text: &str, file: &Path) -> Result<Vec<Scenario>, ScenarioError> {
        let raw = parse::parse(text, file)?;
        let listed = raw.auth.clone().unwrap_or_else(|| vec![Auth::Legacy]);
        if listed.is_empty() {
            return Err(parse::err(
                file,
                "auth",
                "name at least one mechanism: \"legacy\", \"oauth\"",
            ));
        }
        let mechanisms: Vec<Auth> = [Auth::Legacy, Auth::Oauth]
            .into_iter()
            .filter(|m| listed.contains(m))
            .collect();
        if mechanisms.len() != listed.len() {
            return Err(parse::err(file, "auth", "a mechanism is listed twice"));
        }
        for key in raw.aliases.keys() {
            if !mechanisms.iter().any(|m| m.name() == key) {
                return Err(parse::err(
                    file,
                    "aliases",
                    format!("{key:?} is not one of the file's mechanisms (`auth`)"),
                ));
            }
        }
        let mut cases = Vec::new();
        for &auth in &mechanisms {
            let adapted = mechanism::adapt(&raw, auth)
                .map_err(|e| parse::err(file, e.field, format!("the {} case: {}", auth.name(), e.message)))?;
            let mut s = validate::validate(adapted, text, file).map_err(|mut e| {
                if mechanisms.len() > 1 {
                    e.message = format!("the {} case: {}", auth.name(), e.message);
                }
                e
            })?;
            s.id = mechanism::case_id(&s.file_id, auth, &mechanisms);
            s.auth = auth;
            s.mechanisms.clone_from(&mechanisms);
            s.aliases = raw.aliases.get(auth.name()).cloned().unwrap_or_default();
            cases.push(s);
        }
        Ok(cases)
    }

    /// Whether a name is this case's id or one of its aliases, as a glob.
    pub fn answers_to(&self, glob: &str) -> bool {
        rotary_server::glob_match(glob, &self.id)
            || self.aliases.iter().any(|a| rotary_server::glob_match(glob, a))
    }

    /// Whether a tag (or the id's prefix) matches.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

fn first(cases: Vec<Scenario>, file: &Path) -> Result<Scenario, ScenarioError> {
    cases
        .into_iter()
        .next()
        .ok_or_else(|| parse::err(file, "auth", "the file has no case"))
}

/// The `[server]` table of a scenario rendered as `key = value` lines, for `rotary explain`.
pub fn server_lines(table: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if let serde_json::Value::Object(m) = table {
        let sorted: BTreeMap<_, _> = m.iter().collect();
        for (k, v) in sorted {
            out.push(format!("{k} = {v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
id = "x.y"
title = "t"
level = "must"
requirement = "r"
needs = ["login", "whoami", "parallel", "send"]
"#;

    fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml(&format!("{BASE}{extra}"), Path::new("scenarios/x.y.toml"))
    }

    #[test]
    fn a_good_scenario_parses() {
        let s = parse(
            r#"
[server]
profile = "mas"
refreshable_access_token_lifetime = "2s"
[[fault]]
endpoint = "refresh"
nth = 1
action = { kind = "commit_then_drop" }
[[step]]
do = "login"
[[step]]
do = "parallel"
name = "storm"
count = 3
op = "whoami"
[[step]]
do = "advance_clock"
by = "10m"
[[expect]]
check = "refresh_count"
at_most = 1
steps = [2, "storm"]
[[expect]]
check = "step_ok"
step = "storm"
"#,
        )
        .unwrap();
        assert_eq!(s.server.profile, rotary_server::Profile::Mas);
        assert_eq!(s.tags, vec!["x".to_owned()]);
        assert_eq!(s.checks[0].name(), "refresh_count");
        assert_eq!(
            s.checks[0]
                .evaluate(&rotary_judge::Observed::default())
                .description,
            "at most 1 refresh call(s) in step 2"
        );
        assert_eq!(s.steps[1].name.as_deref(), Some("storm"));
    }

    fn message(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_name_the_file_and_field() {
        let m = message("[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"refresh_cnt\"\nexactly = 1\n");
        assert!(
            m.starts_with("scenarios/x.y.toml: expect 1 (refresh_cnt): line 9: unknown check"),
            "{m}"
        );
        let m = message("[[step]]\ndo = \"logn\"\n");
        assert!(m.contains("step 1") && m.contains("logn"), "{m}");
        let m = message("[[step]]\ndo = \"sleep\"\nduration = \"3 fortnights\"\n");
        assert!(m.contains("step 1") && m.contains("fortnights"), "{m}");
        let m = message("[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"step_ok\"\nstep = \"nope\"\n");
        assert!(
            m.contains("expect 1 (step_ok)") && m.contains("\"nope\" does not exist"),
            "{m}"
        );
        let m = message("[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"refresh_count\"\n");
        assert!(m.contains("needs `exactly`"), "{m}");
        let m = message("[server]\nrefreshable_access_token_lifetime = \"soon\"\n[[step]]\ndo = \"login\"\n");
        assert!(m.contains(": server:"), "{m}");
        let m = message("[[step]]\ndo = \"sync\"\n[[expect]]\ncheck = \"no_logout\"\n");
        assert!(m.contains("`needs` must list \"sync\""), "{m}");
        let m = message("[[step]]\ndo = \"login\"\ncolour = 3\n");
        assert!(m.contains("colour"), "{m}");
        let m = message("[[step]]\ndo = \"send\"\n[[expect]]\ncheck = \"no_logout\"\n");
        assert!(m.contains("room \"main\""), "{m}");
    }

    #[test]
    fn a_file_for_both_mechanisms_is_two_cases() {
        let text = r#"
id = "x.y"
title = "t"
level = "must"
requirement = "r"
needs = ["login", "whoami", "legacy-refresh"]
auth = ["oauth", "legacy"]
aliases = { oauth = ["oauth.y"] }
[server]
profile = "synapse"
refreshable_access_token_lifetime = "3s"
[[fault]]
endpoint = "refresh"
nth = 1
action = { kind = "reset" }
[[step]]
do = "login"
[[step]]
do = "whoami"
[[expect]]
check = "refresh_count"
exactly = 1
"#;
        let cases = Scenario::cases_from_toml(text, Path::new("scenarios/x.y.toml")).unwrap();
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["x.y", "x.y@oauth"]);
        let (legacy, oauth) = (&cases[0], &cases[1]);
        assert_eq!(legacy.needs, ["login", "whoami", "legacy-refresh"]);
        assert_eq!(oauth.needs, ["restore", "whoami", "oauth-refresh"]);
        assert_eq!(legacy.server.profile, rotary_server::Profile::Synapse);
        assert_eq!(oauth.server.profile, rotary_server::Profile::OAuthSpec);
        assert_eq!(
            oauth.server.refreshable_access_token_lifetime,
            legacy.server.refreshable_access_token_lifetime
        );
        assert_eq!(oauth.steps[0].action.name(), "restore");
        assert!(legacy.aliases.is_empty());
        assert_eq!(oauth.aliases, ["oauth.y"]);
        assert!(oauth.answers_to("oauth.y") && oauth.answers_to("x.*") && !legacy.answers_to("oauth.*"));
        // `oauth_profile` picks the OAuth case's profile and is no knob of the legacy case.
        let mas = text.replace(
            "profile = \"synapse\"",
            "profile = \"synapse\"\noauth_profile = \"mas\"",
        );
        let cases = Scenario::cases_from_toml(&mas, Path::new("scenarios/x.y.toml")).unwrap();
        assert_eq!(cases[1].server.profile, rotary_server::Profile::Mas);
        assert_eq!(cases[0].server.profile, rotary_server::Profile::Synapse);
        // One mechanism: one case under the file's id.
        let only = text
            .replace("auth = [\"oauth\", \"legacy\"]", "auth = [\"oauth\"]")
            .replace("aliases = { oauth = [\"oauth.y\"] }", "");
        let cases = Scenario::cases_from_toml(&only, Path::new("scenarios/x.y.toml")).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].id, "x.y");
        assert_eq!(cases[0].auth, Auth::Oauth);
    }

    #[test]
    fn what_has_no_oauth_counterpart_is_refused() {
        let register = BASE.replace("\"send\"]", "\"send\", \"register\"]")
            + "auth = [\"legacy\", \"oauth\"]\n[[step]]\ndo = \"register\"\nuser = \"bob\"\n[[expect]]\ncheck = \"no_logout\"\n";
        let m = Scenario::from_toml(&register, Path::new("scenarios/x.y.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("step 1 (register)") && m.contains("the oauth case"),
            "{m}"
        );
        let m = message(
            "auth = [\"legacy\", \"oauth\"]\n[[step]]\ndo = \"login\"\nrefresh_token = false\n[[expect]]\ncheck = \"no_logout\"\n",
        );
        assert!(m.contains("without a refresh token"), "{m}");
        let m = message(
            "auth = [\"legacy\", \"oauth\"]\n[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"login_requested_refresh\"\n",
        );
        assert!(m.contains("expect 1 (login_requested_refresh)"), "{m}");
        let m = message(
            "auth = [\"legacy\"]\naliases = { oauth = [\"a.b\"] }\n[[step]]\ndo = \"login\"\n[[expect]]\ncheck = \"no_logout\"\n",
        );
        assert!(m.contains("aliases"), "{m}");
    }
}
