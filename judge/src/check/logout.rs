//! Checks on the end of a session: no logout was signalled, a logout (of the right softness) was,
//! and a logged-out client went quiet.

use super::common::{describe_signals, logout_signals, verdict, with_evidence};
use super::kind::{CheckKind, CheckResult, Shape};
use crate::observed::Observed;
use crate::trace::TraceEntry;
use serde::{Deserialize, Serialize};

/// The client never signalled a logout (no `logged_out` notification, no logout error).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoLogout {}

impl CheckKind for NoLogout {
    const SUMMARY: &'static str =
        "the client never signalled a logout (no `logged_out` notification, no logout error kind)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let signals = logout_signals(obs);
        let around: Vec<u64> = signals
            .first()
            .map(|s| {
                obs.trace
                    .iter()
                    .filter(|e| e.seq <= s.at)
                    .rev()
                    .take(3)
                    .map(|e| e.seq)
                    .collect()
            })
            .unwrap_or_default();
        with_evidence(
            verdict(
                "the client did not signal a logout".to_owned(),
                signals.is_empty(),
                "no logout".to_owned(),
                if signals.is_empty() {
                    "no logout".to_owned()
                } else {
                    describe_signals(&signals)
                },
            ),
            around.into_iter().rev(),
        )
    }
}

/// The client signalled a logout (notification or error kind), with this softness if given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Logout {
    /// Required `soft_logout` value.
    pub soft_logout: Option<bool>,
}

impl CheckKind for Logout {
    const SUMMARY: &'static str =
        "the client signalled a logout (notification or error kind), with this softness if given";
    const FIELDS: &'static [(&'static str, &'static str)] =
        &[("soft_logout", "the required softness (`true` / `false`)")];

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let signals = logout_signals(obs);
        let matching = signals
            .iter()
            .filter(|s| self.soft_logout.is_none_or(|want| s.soft == want))
            .count();
        let expected = match self.soft_logout {
            Some(s) => format!("a logout with soft_logout: {s}"),
            None => "a logout".to_owned(),
        };
        let actual = if signals.is_empty() {
            "no logout signalled".to_owned()
        } else {
            describe_signals(&signals)
        };
        let evidence: Vec<u64> = obs
            .trace
            .iter()
            .filter(|e| e.is_refresh() || e.status == Some(401))
            .map(|e| e.seq)
            .collect();
        with_evidence(
            verdict(
                format!("the client signalled {expected}"),
                matching > 0,
                expected,
                actual,
            ),
            evidence,
        )
    }
}

/// After the first logout signal, at most `at_most` more requests reached the server.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuietAfterLogout {
    /// How many are tolerated (default 0).
    #[serde(default)]
    pub at_most: u64,
    /// Count only this endpoint.
    pub endpoint: Option<String>,
}

impl CheckKind for QuietAfterLogout {
    const SUMMARY: &'static str =
        "after the first logout signal, at most `at_most` more requests reached the server";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("at_most", "how many are tolerated (default 0)"),
        ("endpoint", "count only this endpoint"),
    ];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.endpoint.as_deref().map_or(Ok(()), |e| shape.endpoint(e))
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let at_most = self.at_most;
        let what = self
            .endpoint
            .as_ref()
            .map_or_else(|| "request(s)".to_owned(), |e| format!("`{e}` request(s)"));
        let signals = logout_signals(obs);
        let Some(first) = signals.first() else {
            return verdict(
                format!("at most {at_most} {what} after the logout"),
                false,
                "a logout, then quiet".to_owned(),
                "no logout was signalled".to_owned(),
            );
        };
        let after: Vec<&TraceEntry> = obs
            .trace
            .iter()
            .filter(|e| e.seq > first.at)
            .filter(|e| self.endpoint.as_ref().is_none_or(|x| e.endpoint == x.as_str()))
            .collect();
        let n = after.len() as u64;
        with_evidence(
            verdict(
                format!("at most {at_most} {what} after the first logout signal"),
                n <= at_most,
                format!("at most {at_most}"),
                format!("{n} after {}", first.what),
            ),
            after.iter().map(|e| e.seq),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::fixtures::{entry, login, refresh};
    use super::*;
    use crate::observed::NotificationRecord;

    #[test]
    fn logout_signals_come_from_notifications_and_errors() {
        let mut obs = Observed {
            trace: vec![login(1), entry(2, "whoami", "at#1", 401)],
            ..Observed::default()
        };
        assert!(NoLogout {}.evaluate(&obs).passed);
        obs.notifications.push(NotificationRecord {
            at_ms: 30,
            step: 2,
            trace_len: 2,
            method: "logged_out".into(),
            params: serde_json::json!({"soft_logout": true}),
        });
        assert!(!NoLogout {}.evaluate(&obs).passed);
        assert!(
            Logout {
                soft_logout: Some(true)
            }
            .evaluate(&obs)
            .passed
        );
        assert!(
            !Logout {
                soft_logout: Some(false)
            }
            .evaluate(&obs)
            .passed
        );
        obs.trace.push(refresh(3, "rt#1", None));
        let q = QuietAfterLogout::default().evaluate(&obs);
        assert!(!q.passed);
        assert_eq!(q.evidence, vec![3]);
    }
}
