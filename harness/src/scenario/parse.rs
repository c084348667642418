//! Reading a scenario file's TOML: the raw tables, and where in the text each entry is, so that a
//! mistake names its line.

use super::ScenarioError;
use crate::record::Level;
use crate::steps::Auth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A scenario file as written, before validation.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioFile {
    pub id: String,
    pub title: String,
    pub level: Level,
    pub requirement: String,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    /// The mechanisms the requirement holds for (default: legacy alone).
    #[serde(default)]
    pub auth: Option<Vec<Auth>>,
    /// Old ids that now name one of this file's cases, by mechanism (`oauth = ["oauth.x"]`).
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    #[serde(default, with = "rotary_judge::duration::optional")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "rotary_judge::duration::optional")]
    pub call_timeout: Option<Duration>,
    #[serde(default)]
    pub server: toml::Table,
    #[serde(default)]
    pub fault: Vec<toml::Table>,
    #[serde(default)]
    pub step: Vec<toml::Table>,
    #[serde(default)]
    pub expect: Vec<toml::Table>,
}

pub(super) fn err(file: &Path, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        file: file.to_owned(),
        field: field.into(),
        message: message.into(),
    }
}

/// Parses the text; a syntax or type error names its line and the entry it is in.
pub(super) fn parse(text: &str, file: &Path) -> Result<ScenarioFile, ScenarioError> {
    toml::from_str(text).map_err(|e| {
        let (before, upto) = e.span().map_or(("", ""), |span| {
            (
                text.get(..span.start).unwrap_or(""),
                text.get(..span.end).unwrap_or(""),
            )
        });
        let line = before.matches('\n').count() + 1;
        let field = locate(upto).unwrap_or_else(|| "toml".to_owned());
        err(file, field, format!("line {line}: {}", e.message().trim_end()))
    })
}

/// `step N` / `expect N` for the entry the text up to an error ends in.
fn locate(before: &str) -> Option<String> {
    let steps = before.matches("[[step]]").count();
    let expects = before.matches("[[expect]]").count();
    match (before.rfind("[[step]]"), before.rfind("[[expect]]")) {
        (Some(s), Some(x)) if s > x => Some(format!("step {steps}")),
        (Some(_), None) => Some(format!("step {steps}")),
        (_, Some(_)) => Some(format!("expect {expects}")),
        _ => None,
    }
}

/// `line N: ` for the `n`-th (1-based) `[[header]]` in the text, or nothing.
pub(super) fn header_line(text: &str, header: &str, n: usize) -> String {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(header))
        .nth(n.saturating_sub(1))
        .map_or(String::new(), |(i, _)| format!("line {}: ", i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_located() {
        assert_eq!(
            locate("[[step]]\n[[step]]\n[[expect]]\n"),
            Some("expect 1".into())
        );
        assert_eq!(locate("[[step]]\n[[expect]]\n[[step]]\n"), Some("step 2".into()));
        assert_eq!(locate("id = 1"), None);
        assert_eq!(header_line("a\n[[step]]\n [[step]]\n", "[[step]]", 2), "line 3: ");
        assert_eq!(header_line("a\n", "[[step]]", 1), "");
    }
}
