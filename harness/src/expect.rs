//! Known-failure lists (`--expect FILE`): scenarios a client is known to fail, so that a run can
//! be a regression suite that stays green until something changes.
//!
//! The file has one scenario id (or id glob) per line; `#` starts a comment, which is a good place
//! for the reason and a link to the bug:
//!
//! ```text
//! # matrix-js-sdk 43.0.0
//! lost-response.mas        # retries with the consumed token forever — matrix-js-sdk#1234
//! faults.refresh-hang
//! concurrency.401-storm    # flaky: a late 401 starts a second /refresh — fails in some runs only
//! ```
//!
//! An entry is **flaky** when the word `flaky` appears in its comment before the comment's first
//! `:` (`# flaky: why`, `# should, flaky: why`, `# flaky`). With `rotary run --repeat N`, a run
//! flags a flaky entry whose scenario never failed in N runs, and a plain entry whose scenario
//! passed in some of them (it should be marked flaky).

use rotary_server::glob_match;
use std::path::Path;

/// A parsed expectations file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    /// (pattern, line number, reason).
    entries: Vec<(String, usize, String)>,
}

/// What the expectations file says about one scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Not listed: it must pass.
    Pass,
    /// Listed: a known failure, in every run.
    Failure,
    /// Listed with `flaky` in the comment: fails in some runs only.
    Flaky,
}

/// Whether a reason comment marks its entry flaky: the word `flaky` before the first `:`.
///
/// ```
/// use rotary_harness::is_flaky_reason;
/// assert!(is_flaky_reason("flaky: a late 401 starts a second /refresh"));
/// assert!(is_flaky_reason("should, flaky: same cause"));
/// assert!(!is_flaky_reason("retries forever — see the flaky-test issue: #12"));
/// ```
pub fn is_flaky_reason(reason: &str) -> bool {
    let head = reason.split(':').next().unwrap_or("");
    head.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .any(|w| w.eq_ignore_ascii_case("flaky"))
}

/// A mistake in an expectations file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ExpectError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Expectations {
    /// Parses the text of an expectations file (`file` is for messages).
    pub fn parse(text: &str, file: &str) -> Result<Expectations, ExpectError> {
        let mut entries = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let (body, reason) = match raw.split_once('#') {
                Some((b, r)) => (b.trim(), r.trim()),
                None => (raw.trim(), ""),
            };
            if body.is_empty() {
                continue;
            }
            if body.split_whitespace().count() > 1 {
                return Err(ExpectError {
                    file: file.to_owned(),
                    line: n + 1,
                    message: format!("{body:?}: one scenario id per line (put reasons after `#`)"),
                });
            }
            entries.push((body.to_owned(), n + 1, reason.to_owned()));
        }
        Ok(Expectations { entries })
    }

    /// Reads an expectations file.
    pub fn load(path: &Path) -> Result<Expectations, ExpectError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExpectError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Expectations::parse(&text, &path.display().to_string())
    }

    /// Whether a scenario is listed.
    pub fn lists(&self, id: &str) -> bool {
        self.entries.iter().any(|(p, _, _)| glob_match(p, id))
    }

    /// What the file expects of a scenario: the first matching entry decides whether it is
    /// marked flaky.
    pub fn expected(&self, id: &str) -> Expected {
        match self.entries.iter().find(|(p, _, _)| glob_match(p, id)) {
            None => Expected::Pass,
            Some((_, _, r)) if is_flaky_reason(r) => Expected::Flaky,
            Some(_) => Expected::Failure,
        }
    }

    /// The reason given for a scenario, if any.
    pub fn reason(&self, id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(p, _, r)| glob_match(p, id) && !r.is_empty())
            .map(|(_, _, r)| r.as_str())
    }

    /// Entries that match none of `ids` (stale lines), as `line: pattern`.
    pub fn unmatched<'a>(&self, ids: impl IntoIterator<Item = &'a str> + Clone) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(p, _, _)| !ids.clone().into_iter().any(|id| glob_match(p, id)))
            .map(|(p, line, _)| format!("line {line}: {p}"))
            .collect()
    }

    /// The patterns, in file order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(p, _, _)| p.as_str())
    }

    /// Whether a case is listed, by its id or by one of its aliases (old ids).
    pub fn lists_case(&self, id: &str, aliases: &[String]) -> bool {
        self.lists(id) || aliases.iter().any(|a| self.lists(a))
    }

    /// What the list expects of a case, by its id or, failing that, by one of its old ids.
    pub fn expected_case(&self, id: &str, aliases: &[String]) -> Expected {
        std::iter::once(id)
            .chain(aliases.iter().map(String::as_str))
            .map(|i| self.expected(i))
            .find(|e| *e != Expected::Pass)
            .unwrap_or(Expected::Pass)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_globs_and_reasons() {
        let e = Expectations::parse("# header\nfaults.* # flaky server\n\nlogin.x\n", "f").unwrap();
        assert!(e.lists("faults.refresh-500"));
        assert!(e.lists("login.x"));
        assert!(!e.lists("login.y"));
        assert_eq!(e.reason("faults.a"), Some("flaky server"));
        assert_eq!(e.unmatched(["login.x"]), vec!["line 2: faults.*".to_owned()]);
        assert_eq!(e.expected("faults.a"), Expected::Flaky);
        assert_eq!(e.expected("login.x"), Expected::Failure);
        assert_eq!(e.expected("login.y"), Expected::Pass);
        // A case is listed by its id or by an old id (alias).
        assert!(e.lists_case("concurrency.x@oauth", &["login.x".to_owned()]));
        assert!(!e.lists_case("concurrency.x@oauth", &[]));
        assert_eq!(
            e.expected_case("concurrency.x@oauth", &["faults.y".to_owned()]),
            Expected::Flaky
        );
        assert_eq!(e.expected_case("concurrency.x@oauth", &[]), Expected::Pass);
        assert_eq!(e.patterns().collect::<Vec<_>>(), ["faults.*", "login.x"]);
        let err = Expectations::parse("a b\n", "f").unwrap_err().to_string();
        assert_eq!(
            err,
            "f:1: \"a b\": one scenario id per line (put reasons after `#`)"
        );
    }

    #[test]
    fn flaky_is_a_word_before_the_first_colon() {
        for yes in [
            "flaky",
            "flaky: same cause",
            "Flaky, see below",
            "should, flaky: same cause, 2 refreshes within 1 s",
        ] {
            assert!(is_flaky_reason(yes), "{yes}");
        }
        for no in [
            "",
            "retries forever",
            "not judged: the test is flaky",
            "auth-metadata-flaky is broken",
            "flakyness",
        ] {
            assert!(!is_flaky_reason(no), "{no}");
        }
    }

    #[test]
    fn the_repositorys_flaky_comments_are_recognised() {
        let text = include_str!("../../drivers/matrix-rust-sdk/expected-failures.txt");
        let e = Expectations::parse(text, "rust").unwrap();
        assert_eq!(e.expected("concurrency.401-storm"), Expected::Flaky);
        assert_eq!(e.expected("concurrency.refresh-storm-rate"), Expected::Flaky);
        let js = include_str!("../../drivers/matrix-js-sdk/expected-failures-43.txt");
        let e = Expectations::parse(js, "js").unwrap();
        assert_eq!(e.expected("oauth.auth-metadata-flaky"), Expected::Failure);
    }
}
