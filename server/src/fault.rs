//! Fault rules: which requests to hit (match) and what to do to them (action), with seeded randomness.

use crate::duration;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this status and a Matrix error body, without performing the request.
    Error {
        /// HTTP status (default 500).
        #[serde(default = "default_error_status")]
        status: u16,
        /// `errcode` (default by status: 429 `M_LIMIT_EXCEEDED`, 401 `M_UNKNOWN_TOKEN`,
        /// 403 `M_FORBIDDEN`, 404 `M_NOT_FOUND`, else `M_UNKNOWN`).
        #[serde(default)]
        errcode: Option<String>,
        /// `error` text (a default names the fault).
        #[serde(default)]
        error: Option<String>,
        /// `soft_logout` field, if any.
        #[serde(default)]
        soft_logout: Option<bool>,
        /// `retry_after_ms` field (and a `Retry-After` header), if any.
        #[serde(default)]
        retry_after_ms: Option<u64>,
    },
    /// Answer an OAuth 2.0 error as a token endpoint would (RFC 6749 §5.2 JSON
    /// `{"error", "error_description"}`), without performing the request.
    OauthError {
        /// HTTP status (default 400).
        #[serde(default = "default_oauth_status")]
        status: u16,
        /// `error` (default `invalid_request`; any string, e.g. `temporarily_unavailable`).
        #[serde(default = "default_oauth_error")]
        error: String,
        /// `error_description` (a default names the fault).
        #[serde(default)]
        error_description: Option<String>,
        /// A `Retry-After` header, in ms (sent rounded up to whole seconds).
        #[serde(default)]
        retry_after_ms: Option<u64>,
    },
    /// Wait, then handle the request normally.
    Delay {
        /// How long (`"2s"` or ms).
        #[serde(with = "duration::required")]
        duration: Duration,
    },
    /// Never answer (until the client gives up or the server stops).
    Hang,
    /// Reset the connection (TCP RST) without a response.
    Reset,
    /// Close the connection without sending a byte.
    EmptyReply,
    /// Send bytes that are not HTTP, then close.
    Garbage {
        /// The bytes, as text (a default mixes binary and text).
        #[serde(default)]
        bytes: Option<String>,
    },
    /// Perform the request and send the response with its full `Content-Length` but only half
    /// the body, then close.
    Truncate,
    /// Answer an HTML error page, as a reverse proxy would, without performing the request.
    Html {
        /// HTTP status (default 502).
        #[serde(default = "default_html_status")]
        status: u16,
    },
    /// Perform the request (e.g. rotate the tokens), then close the connection so the client
    /// never sees the response.
    CommitThenDrop,
}

fn default_error_status() -> u16 {
    500
}

fn default_html_status() -> u16 {
    502
}

fn default_oauth_status() -> u16 {
    400
}

fn default_oauth_error() -> String {
    "invalid_request".to_owned()
}

impl FaultAction {
    /// The action's kind as written in rules.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Error { .. } => "error",
            FaultAction::OauthError { .. } => "oauth_error",
            FaultAction::Delay { .. } => "delay",
            FaultAction::Hang => "hang",
            FaultAction::Reset => "reset",
            FaultAction::EmptyReply => "empty_reply",
            FaultAction::Garbage { .. } => "garbage",
            FaultAction::Truncate => "truncate",
            FaultAction::Html { .. } => "html",
            FaultAction::CommitThenDrop => "commit_then_drop",
        }
    }
}

/// A fault rule: a match and an action.
///
/// Every field of the match that is set must hold. Among the requests that match, `nth` picks
/// one (1-based), `first` the first N, `after` skips the first N, and `probability` (with `seed`)
/// picks at random — reproducibly.
///
/// ```
/// use rotary_server::FaultRule;
/// let rule = FaultRule::from_toml(r#"endpoint = "refresh"
/// nth = 1
/// action = { kind = "commit_then_drop" }"#).unwrap();
/// assert_eq!(rule.endpoint.as_deref(), Some("refresh"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Assigned when the rule is added; ignored on input.
    #[serde(default)]
    pub id: Option<u64>,
    /// A name to find it by in the trace.
    #[serde(default)]
    pub name: Option<String>,
    /// Endpoint name, e.g. `refresh`, `whoami`, `sync`, `send`. `refresh` is mechanism-neutral: it
    /// matches the legacy `/refresh` and the OAuth token endpoint's `grant_type=refresh_token`
    /// (see [`rotary_judge::refresh`]); `legacy_refresh` and `oauth_token` name one of them exactly.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// HTTP method, e.g. `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// Request path; `*` matches any run of characters.
    #[serde(default)]
    pub path: Option<String>,
    /// Label of the presented access or refresh token, e.g. `at#2`, `rt#1`.
    #[serde(default)]
    pub token: Option<String>,
    /// The user of the presented token (`alice` or `@alice:localhost`).
    #[serde(default)]
    pub user: Option<String>,
    /// Only the n-th matching request (1-based).
    #[serde(default)]
    pub nth: Option<u64>,
    /// Only the first N matching requests.
    #[serde(default)]
    pub first: Option<u64>,
    /// Skip the first N matching requests.
    #[serde(default)]
    pub after: Option<u64>,
    /// Fire with this probability (0..=1).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Seed for `probability` (default 0), so a run can be repeated exactly.
    #[serde(default)]
    pub seed: Option<u64>,
    /// What to do.
    pub action: FaultAction,
}

/// A rule that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    /// Bad TOML/JSON, an unknown field, or an impossible value.
    #[error("invalid fault rule: {0}")]
    Invalid(String),
}

impl FaultRule {
    /// A rule for every request to `endpoint` doing `action`.
    pub fn on(endpoint: &str, action: FaultAction) -> Self {
        FaultRule {
            id: None,
            name: None,
            endpoint: Some(endpoint.to_owned()),
            method: None,
            path: None,
            token: None,
            user: None,
            nth: None,
            first: None,
            after: None,
            probability: None,
            seed: None,
            action,
        }
    }

    /// Only the n-th matching request.
    pub fn nth(mut self, n: u64) -> Self {
        self.nth = Some(n);
        self
    }

    /// Only the first `n` matching requests.
    pub fn first(mut self, n: u64) -> Self {
        self.first = Some(n);
        self
    }

    /// Reads one rule from TOML: a table body (`key = value` lines) or the inside of an inline
    /// table (`endpoint = "refresh", nth = 1, action = { kind = "reset" }`, the form
    /// `serve --fault` takes).
    pub fn from_toml(text: &str) -> Result<Self, FaultError> {
        match toml::from_str::<FaultRule>(text) {
            Ok(rule) => Ok(rule),
            Err(doc_err) => {
                #[derive(Deserialize)]
                struct Wrapped {
                    rule: FaultRule,
                }
                match toml::from_str::<Wrapped>(&format!("rule = {{ {text} }}")) {
                    Ok(w) => Ok(w.rule),
                    // A comma-separated rule is meant inline: its error is the helpful one.
                    Err(inline_err) if text.contains(',') => Err(FaultError::Invalid(inline_err.to_string())),
                    Err(_) => Err(FaultError::Invalid(doc_err.to_string())),
                }
            }
        }
    }

    /// Checks the values against the endpoint names the server knows.
    /// Besides the endpoints' names, `legacy_refresh` (`/refresh` alone) is understood.
    pub fn validate(&self, known_endpoints: &[&str]) -> Result<(), FaultError> {
        let extra = rotary_judge::refresh::EXTRA_NAMES;
        if let Some(e) = &self.endpoint
            && !known_endpoints.contains(&e.as_str())
            && !extra.contains(&e.as_str())
        {
            return Err(FaultError::Invalid(format!(
                "unknown endpoint {e:?}; known: {}, {}",
                known_endpoints.join(", "),
                extra.join(", ")
            )));
        }
        if self.nth == Some(0) {
            return Err(FaultError::Invalid("nth counts from 1".to_owned()));
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(FaultError::Invalid(format!(
                "probability {p} is not within 0..=1"
            )));
        }
        let status = match &self.action {
            FaultAction::Error { status, .. } | FaultAction::Html { status } => Some(*status),
            _ => None,
        };
        if let Some(s) = status
            && !(100..=599).contains(&s)
        {
            return Err(FaultError::Invalid(format!("status {s} is not an HTTP status")));
        }
        Ok(())
    }
}

/// Reads a TOML file of rules: `[[fault]]` tables.
///
/// ```
/// let rules = rotary_server::faults_from_toml(r#"
/// [[fault]]
/// endpoint = "refresh"
/// action = { kind = "error", status = 503 }
/// "#).unwrap();
/// assert_eq!(rules.len(), 1);
/// ```
pub fn faults_from_toml(text: &str) -> Result<Vec<FaultRule>, FaultError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        fault: Vec<FaultRule>,
    }
    let file: File = toml::from_str(text).map_err(|e| FaultError::Invalid(e.to_string()))?;
    Ok(file.fault)
}

/// The facts about a request that rules match on.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// Endpoint name.
    pub endpoint: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Label of the presented access token.
    pub access_label: Option<&'a str>,
    /// Label of the presented refresh token.
    pub refresh_label: Option<&'a str>,
    /// Owner of the presented token.
    pub user_id: Option<&'a str>,
    /// Whether the request is an OAuth `grant_type=refresh_token` request (which the neutral
    /// endpoint name `refresh` matches too).
    pub refresh_grant: bool,
}

impl RequestFacts<'_> {
    /// Whether a rule's `endpoint` names this request: its own name, `refresh` for a refresh of
    /// either mechanism, `legacy_refresh` for `/refresh` alone ([`rotary_judge::refresh`]).
    pub fn endpoint_is(&self, name: &str) -> bool {
        let grant = self.refresh_grant.then_some("refresh_token");
        rotary_judge::refresh::endpoint_matches(name, self.endpoint, grant)
    }
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    seen: u64,
    fired: u64,
    rng: ChaCha8Rng,
}

/// A rule as listed, with its counters.
#[derive(Clone, Debug, Serialize)]
pub struct FaultStatus {
    /// The rule.
    #[serde(flatten)]
    pub rule: FaultRule,
    /// How many requests matched its predicate so far.
    pub matched: u64,
    /// How many times it fired.
    pub fired: u64,
}

/// The active rules of one server. The first rule (in order of addition) that fires wins; every
/// rule counts every request that matches its predicate, whether or not another rule fired.
#[derive(Debug, Default)]
pub struct FaultSet {
    rules: Vec<ActiveRule>,
    next_id: u64,
}

/// Matches `text` against a pattern where `*` is any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

fn user_matches(want: &str, have: &str) -> bool {
    if want.starts_with('@') {
        want == have
    } else {
        have.strip_prefix('@')
            .and_then(|h| h.split(':').next())
            .is_some_and(|local| local == want)
    }
}

impl FaultSet {
    /// Adds a rule; returns its id.
    pub fn add(&mut self, mut rule: FaultRule) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        rule.id = Some(id);
        let rng = ChaCha8Rng::seed_from_u64(rule.seed.unwrap_or(0));
        self.rules.push(ActiveRule {
            rule,
            seen: 0,
            fired: 0,
            rng,
        });
        id
    }

    /// Removes one rule. Returns whether it existed.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.rule.id != Some(id));
        before != self.rules.len()
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rules with their counters.
    pub fn list(&self) -> Vec<FaultStatus> {
        self.rules
            .iter()
            .map(|r| FaultStatus {
                rule: r.rule.clone(),
                matched: r.seen,
                fired: r.fired,
            })
            .collect()
    }

    /// Whether there is no rule (the fast path skips matching then).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides which rule, if any, fires on this request.
    pub fn decide(&mut self, req: &RequestFacts<'_>) -> Option<FaultRule> {
        let mut winner = None;
        for active in &mut self.rules {
            let r = &active.rule;
            let predicate = r.endpoint.as_deref().is_none_or(|e| req.endpoint_is(e))
                && r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(req.method))
                && r.path.as_deref().is_none_or(|p| glob_match(p, req.path))
                && r.token
                    .as_deref()
                    .is_none_or(|t| req.access_label == Some(t) || req.refresh_label == Some(t))
                && r.user
                    .as_deref()
                    .is_none_or(|u| req.user_id.is_some_and(|have| user_matches(u, have)));
            if !predicate {
                continue;
            }
            active.seen += 1;
            let n = active.seen;
            let selected = r.nth.is_none_or(|k| n == k)
                && r.first.is_none_or(|k| n <= k)
                && r.after.is_none_or(|k| n > k)
                && r.probability.is_none_or(|p| active.rng.random_bool(p));
            if selected && winner.is_none() {
                active.fired += 1;
                winner = Some(active.rule.clone());
            }
        }
        winner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(endpoint: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            endpoint,
            method: "POST",
            path: "/_matrix/client/v3/refresh",
            access_label: None,
            refresh_label: Some("rt#1"),
            user_id: Some("@alice:localhost"),
            refresh_grant: false,
        }
    }

    #[test]
    fn refresh_names_the_refresh_of_either_mechanism() {
        let grant = |refresh_grant| RequestFacts {
            refresh_grant,
            ..facts("oauth_token")
        };
        for (name, legacy, oauth_refresh, oauth_code) in [
            ("refresh", true, true, false),
            ("legacy_refresh", true, false, false),
            ("oauth_token", false, true, true),
        ] {
            assert_eq!(facts("refresh").endpoint_is(name), legacy, "{name} on /refresh");
            assert_eq!(
                grant(true).endpoint_is(name),
                oauth_refresh,
                "{name} on a refresh grant"
            );
            assert_eq!(
                grant(false).endpoint_is(name),
                oauth_code,
                "{name} on another grant"
            );
        }
        let rule = FaultRule::on("legacy_refresh", FaultAction::Reset);
        assert!(rule.validate(&crate::endpoint::endpoint_names()).is_ok());
    }

    #[test]
    fn nth_first_and_after_select_the_right_requests() {
        let mut set = FaultSet::default();
        set.add(FaultRule::on("refresh", FaultAction::Hang).nth(2));
        let fired: Vec<bool> = (0..4).map(|_| set.decide(&facts("refresh")).is_some()).collect();
        assert_eq!(fired, [false, true, false, false]);
        let mut set = FaultSet::default();
        set.add(FaultRule::on("refresh", FaultAction::Reset).first(2));
        let fired: Vec<bool> = (0..4).map(|_| set.decide(&facts("refresh")).is_some()).collect();
        assert_eq!(fired, [true, true, false, false]);
        let mut rule = FaultRule::on("refresh", FaultAction::Reset);
        rule.after = Some(3);
        let mut set = FaultSet::default();
        set.add(rule);
        let fired: Vec<bool> = (0..5).map(|_| set.decide(&facts("refresh")).is_some()).collect();
        assert_eq!(fired, [false, false, false, true, true]);
        assert!(set.decide(&facts("whoami")).is_none());
    }

    #[test]
    fn probability_is_reproducible_with_a_seed() {
        let run = || {
            let mut rule = FaultRule::on("refresh", FaultAction::Reset);
            rule.probability = Some(0.5);
            rule.seed = Some(42);
            let mut set = FaultSet::default();
            set.add(rule);
            (0..64)
                .map(|_| set.decide(&facts("refresh")).is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }

    #[test]
    fn token_user_method_and_path_predicates() {
        let mut rule = FaultRule::on("refresh", FaultAction::Hang);
        rule.token = Some("rt#1".into());
        rule.user = Some("alice".into());
        rule.method = Some("post".into());
        rule.path = Some("/_matrix/client/*/refresh".into());
        let mut set = FaultSet::default();
        set.add(rule.clone());
        assert!(set.decide(&facts("refresh")).is_some());
        rule.user = Some("@bob:localhost".into());
        let mut set = FaultSet::default();
        set.add(rule);
        assert!(set.decide(&facts("refresh")).is_none());
    }

    #[test]
    fn rules_parse_from_toml_and_validate() {
        let rules = faults_from_toml(
            "[[fault]]\nendpoint = \"refresh\"\nfirst = 2\naction = { kind = \"error\", status = 429, retry_after_ms = 500 }\n\
             [[fault]]\nendpoint = \"sync\"\naction = { kind = \"delay\", duration = \"2s\" }\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].validate(&["refresh", "sync"]).is_ok());
        assert!(rules[0].validate(&["sync"]).is_err());
        assert!(FaultRule::from_toml("endpoint = \"refresh\"\naction = { kind = \"explode\" }").is_err());
        assert!(FaultRule::from_toml("endpont = \"refresh\"\naction = { kind = \"hang\" }").is_err());
        let inline =
            FaultRule::from_toml("endpoint = \"sync\", first = 2, action = { kind = \"reset\" }").unwrap();
        assert_eq!(
            (inline.endpoint.as_deref(), inline.first),
            (Some("sync"), Some(2))
        );
        let err = FaultRule::from_toml("endpoint = \"sync\", action = { kind = \"boom\" }").unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        let bad = FaultRule::from_toml("action = { kind = \"error\", status = 9999 }").unwrap();
        assert!(bad.validate(&[]).is_err());
    }

    #[test]
    fn glob() {
        assert!(glob_match("/a/*/c", "/a/b/c"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("/a/*/c", "/a/b/d"));
        assert!(glob_match("/exact", "/exact"));
    }
}
