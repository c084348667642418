//! Checks on what the client holds and what the server keeps: the newest tokens, a refresh token
//! at all, nothing after a logout, and how many devices the user has at the end.

use super::common::{show, verdict};
use super::kind::{CheckKind, CheckResult, Shape};
use super::scope::StepRef;
use crate::observed::Observed;
use serde::{Deserialize, Serialize};

const SESSION_FIELD: (&str, &str) = ("step", "the `session` step (default: the last one)");

/// The tokens the client holds (a `session` step's result) are the newest the server issued.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLatest {
    /// The `session` step (default: the last one).
    pub step: Option<StepRef>,
    #[serde(skip)]
    index: usize,
}

impl CheckKind for SessionLatest {
    const SUMMARY: &'static str =
        "the tokens the client holds (a `session` step's result) are the newest the server issued";
    const FIELDS: &'static [(&'static str, &'static str)] = &[SESSION_FIELD];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.index = shape.session_step(self.step.as_ref())?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let v = obs.sessions.get(&self.index).cloned().unwrap_or_default();
        let passed = v.access_token.is_some()
            && v.access_token == v.server_access_token
            && v.refresh_token == v.server_refresh_token;
        verdict(
            format!(
                "the tokens the client holds at step {} are the newest the server issued",
                self.index
            ),
            passed,
            format!(
                "{} / {}",
                show(&v.server_access_token),
                show(&v.server_refresh_token)
            ),
            format!("{} / {}", show(&v.access_token), show(&v.refresh_token)),
        )
    }
}

/// The client still holds a refresh token (a `session` step's result).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionHasRefreshToken {
    /// The `session` step (default: the last one).
    pub step: Option<StepRef>,
    #[serde(skip)]
    index: usize,
}

impl CheckKind for SessionHasRefreshToken {
    const SUMMARY: &'static str = "the client still holds a refresh token (a `session` step's result)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[SESSION_FIELD];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.index = shape.session_step(self.step.as_ref())?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let v = obs.sessions.get(&self.index).cloned().unwrap_or_default();
        verdict(
            format!("the client still holds a refresh token at step {}", self.index),
            v.refresh_token.is_some(),
            "a refresh token".to_owned(),
            show(&v.refresh_token),
        )
    }
}

/// The client holds no tokens (a `session` step's result), e.g. after a logout.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionEmpty {
    /// The `session` step (default: the last one).
    pub step: Option<StepRef>,
    #[serde(skip)]
    index: usize,
}

impl CheckKind for SessionEmpty {
    const SUMMARY: &'static str =
        "the client holds no tokens (a `session` step's result), e.g. after a logout";
    const FIELDS: &'static [(&'static str, &'static str)] = &[SESSION_FIELD];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.index = shape.session_step(self.step.as_ref())?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let v = obs.sessions.get(&self.index).cloned().unwrap_or_default();
        verdict(
            format!("the client holds no tokens at step {}", self.index),
            v.access_token.is_none() && v.refresh_token.is_none(),
            "none / none".to_owned(),
            format!("{} / {}", show(&v.access_token), show(&v.refresh_token)),
        )
    }
}

fn alice() -> String {
    "alice".to_owned()
}

/// The number of devices (sessions) the user has on the server at the end.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCount {
    /// Whose (default `alice`).
    #[serde(default = "alice")]
    pub user: String,
    /// How many.
    pub exactly: usize,
}

impl CheckKind for DeviceCount {
    const SUMMARY: &'static str = "the number of devices (sessions) the user has on the server at the end";
    const FIELDS: &'static [(&'static str, &'static str)] =
        &[("user", "whose (default `alice`)"), ("exactly", "how many")];

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let n = obs.devices.get(&self.user).copied().unwrap_or(0);
        verdict(
            format!(
                "{} has {} device(s) on the server at the end",
                self.user, self.exactly
            ),
            n == self.exactly,
            format!("{}", self.exactly),
            format!("{n}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::kind::StepShape;
    use super::*;
    use crate::observed::SessionView;

    #[test]
    fn the_session_step_is_resolved_and_read() {
        let steps = [
            StepShape::driver(1, None, "login"),
            StepShape::driver(2, None, "session"),
        ];
        let shape = Shape {
            steps: &steps,
            rooms: &[],
            endpoints: &[],
        };
        let mut latest = SessionLatest::default();
        latest.resolve(&shape).unwrap();
        let mut obs = Observed::default();
        let view = SessionView {
            access_token: Some("at#2".into()),
            refresh_token: Some("rt#2".into()),
            server_access_token: Some("at#2".into()),
            server_refresh_token: Some("rt#2".into()),
        };
        obs.sessions.insert(2, view.clone());
        assert!(latest.evaluate(&obs).passed);
        obs.sessions.insert(
            2,
            SessionView {
                refresh_token: Some("rt#1".into()),
                ..view
            },
        );
        assert!(!latest.evaluate(&obs).passed);
        let mut empty = SessionEmpty {
            step: Some(StepRef::Index(1)),
            index: 0,
        };
        assert!(
            empty
                .resolve(&shape)
                .unwrap_err()
                .contains("not a `session` step")
        );
    }
}
