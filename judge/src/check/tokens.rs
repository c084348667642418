//! Checks on which tokens the client used: the newest refresh token on every refresh, no access
//! token older than one it had received, refreshing ahead of expiry, asking for a refresh token.

use super::common::{delivered_before, in_window, verdict, window_text, with_evidence};
use super::kind::{CheckKind, CheckResult, Shape};
use super::scope::{StepRange, StepRef};
use crate::label::label_number;
use crate::observed::Observed;
use crate::trace::TraceEntry;
use serde::{Deserialize, Serialize};

/// Every refresh presented the newest refresh token the client had received.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewestRefreshToken {}

impl CheckKind for NewestRefreshToken {
    const SUMMARY: &'static str = "every refresh presented the newest refresh token the client had received (a lost response is not received)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let mut bad = Vec::new();
        let mut notes = Vec::new();
        let mut checked = 0;
        for e in obs.trace.iter().filter(|e| e.is_refresh()) {
            let Some(presented) = &e.refresh_token else {
                continue;
            };
            checked += 1;
            let newest = delivered_before(&obs.trace, e)
                .filter_map(|i| i.issued.as_ref().and_then(|x| x.refresh_token.clone()))
                .filter_map(|l| label_number(&l).map(|n| (n, l)))
                .max();
            if let Some((n, label)) = newest
                && label_number(&presented.label).is_none_or(|p| p < n)
            {
                bad.push(e.seq);
                notes.push(format!(
                    "#{} presented {} although {} had been delivered",
                    e.seq, presented.label, label
                ));
            }
        }
        with_evidence(
            verdict(
                "every refresh presented the newest refresh token the client had received".to_owned(),
                bad.is_empty(),
                "no refresh with an older refresh token".to_owned(),
                if bad.is_empty() {
                    format!("{checked} refresh call(s), all with the newest token")
                } else {
                    notes.join("; ")
                },
            ),
            bad,
        )
    }
}

/// No request carried an access token older than the newest one the client had received.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoStaleAccessToken {
    /// Only requests during these steps.
    pub steps: Option<(StepRef, StepRef)>,
    #[serde(skip)]
    window: Option<StepRange>,
}

impl CheckKind for NoStaleAccessToken {
    const SUMMARY: &'static str =
        "no request carried an access token older than the newest one the client had received";
    const FIELDS: &'static [(&'static str, &'static str)] = &[(
        "steps",
        "`[from, to]`: only requests that arrived during these steps (numbers or names)",
    )];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.window = shape.window(self.steps.as_ref())?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let mut bad = Vec::new();
        let mut notes = Vec::new();
        for e in obs.trace.iter().filter(|e| in_window(obs, self.window, e)) {
            let Some(p) = label_number(&e.access_token.label) else {
                continue;
            };
            let newest = delivered_before(&obs.trace, e)
                .filter_map(|i| i.issued.as_ref().and_then(|x| x.access_token.clone()))
                .filter_map(|l| label_number(&l).map(|n| (n, l)))
                .max();
            if let Some((n, label)) = newest
                && p < n
            {
                bad.push(e.seq);
                notes.push(format!(
                    "#{} {} carried {} although {} had been delivered",
                    e.seq, e.endpoint, e.access_token.label, label
                ));
            }
        }
        with_evidence(
            verdict(
                format!(
                    "no request carried an access token older than the newest one received{}",
                    window_text(self.window)
                ),
                bad.is_empty(),
                "every request with the newest access token".to_owned(),
                if bad.is_empty() {
                    "none stale".to_owned()
                } else {
                    notes.join("; ")
                },
            ),
            bad,
        )
    }
}

/// A refresh happened at least `margin_ms` before the expiry of the access token it replaced.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PreemptiveRefresh {
    /// The margin, ms.
    pub margin_ms: u64,
}

impl CheckKind for PreemptiveRefresh {
    const SUMMARY: &'static str =
        "a successful refresh happened at least `margin_ms` before the access token it replaced expired";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("margin_ms", "the margin, ms")];

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let mut best: Option<(i64, u64)> = None;
        for e in obs
            .trace
            .iter()
            .filter(|e| e.is_refresh() && e.status == Some(200))
        {
            // The newest access token the client held: issued by a delivered response, or minted
            // by the harness (a restored session) before the refresh.
            let from_trace = delivered_before(&obs.trace, e).filter_map(|i| i.issued.as_deref());
            let from_mint = obs
                .minted
                .iter()
                .filter(|m| m.t_ms <= e.t_ms && (e.device_id.is_none() || m.device_id == e.device_id))
                .map(|m| &m.issued);
            let held = from_trace
                .chain(from_mint)
                .filter(|x| x.access_token.is_some())
                .max_by_key(|x| x.access_token.as_deref().and_then(label_number));
            let Some(expiry) = held.and_then(|x| x.expires_at_ms) else {
                continue;
            };
            let margin = expiry - e.t_ms;
            if best.is_none_or(|(m, _)| margin > m) {
                best = Some((margin, e.seq));
            }
        }
        let margin_ms = self.margin_ms;
        let margin = i64::try_from(margin_ms).unwrap_or(i64::MAX);
        let (passed, actual, evidence) = match best {
            None => (
                false,
                "no successful refresh of a token with a known expiry".to_owned(),
                vec![],
            ),
            Some((m, seq)) if m >= margin => {
                (true, format!("#{seq} refreshed {m} ms before expiry"), vec![seq])
            }
            Some((m, seq)) if m < 0 => (
                false,
                format!("at best #{seq}, {} ms after expiry", -m),
                vec![seq],
            ),
            Some((m, seq)) => (false, format!("at best #{seq}, {m} ms before expiry"), vec![seq]),
        };
        with_evidence(
            verdict(
                format!("a refresh at least {margin_ms} ms before the access token expired"),
                passed,
                format!("≥ {margin_ms} ms before expiry"),
                actual,
            ),
            evidence,
        )
    }
}

/// Every login and registration asked for a refresh token.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequestedRefresh {}

impl CheckKind for LoginRequestedRefresh {
    const SUMMARY: &'static str =
        "every login and registration asked for a refresh token (`refresh_token: true`)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let logins: Vec<&TraceEntry> = obs
            .trace
            .iter()
            .filter(|e| matches!(e.endpoint.as_ref(), "login" | "register") && e.method == "POST")
            .collect();
        let bad: Vec<u64> = logins
            .iter()
            .filter(|e| e.flags.get("refresh_token").and_then(serde_json::Value::as_bool) != Some(true))
            .map(|e| e.seq)
            .collect();
        let passed = bad.is_empty() && !logins.is_empty();
        let evidence = if bad.is_empty() {
            logins.iter().map(|e| e.seq).collect()
        } else {
            bad.clone()
        };
        with_evidence(
            verdict(
                "every login and registration asked for a refresh token".to_owned(),
                passed,
                "refresh_token: true on each".to_owned(),
                if logins.is_empty() {
                    "no login or registration request".to_owned()
                } else {
                    format!("{} of {} without it", bad.len(), logins.len())
                },
            ),
            evidence,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::fixtures::{entry, login, refresh};
    use super::*;
    use crate::trace::Delivery;

    #[test]
    fn a_stale_refresh_token_is_caught() {
        let obs = Observed {
            trace: vec![
                login(1),
                refresh(2, "rt#1", Some(("at#2", "rt#2"))),
                refresh(3, "rt#1", None),
            ],
            ..Observed::default()
        };
        let r = NewestRefreshToken {}.evaluate(&obs);
        assert!(!r.passed);
        assert_eq!(r.evidence, vec![3]);
        // The same token presented while the first refresh's response was still in flight is fine.
        let mut racing = obs.clone();
        racing.trace[1].done_seq = Some(3);
        assert!(NewestRefreshToken {}.evaluate(&racing).passed);
    }

    #[test]
    fn a_lost_response_does_not_count_as_received() {
        let mut lost = refresh(2, "rt#1", Some(("at#2", "rt#2")));
        lost.delivery = Delivery::Dropped;
        let obs = Observed {
            trace: vec![
                login(1),
                lost,
                refresh(3, "rt#1", Some(("at#3", "rt#3"))),
                entry(4, "whoami", "at#3", 200),
            ],
            ..Observed::default()
        };
        assert!(NewestRefreshToken {}.evaluate(&obs).passed);
        assert!(NoStaleAccessToken::default().evaluate(&obs).passed);
        let mut stale = obs.clone();
        stale.trace.push(entry(5, "whoami", "at#1", 401));
        let r = NoStaleAccessToken::default().evaluate(&stale);
        assert!(!r.passed);
        assert_eq!(r.evidence, vec![5]);
    }

    #[test]
    fn preemptive_margin_uses_the_held_tokens_expiry() {
        // Login at t=10 expires at t=1010; refresh at t=500 is 510 ms early.
        let obs = Observed {
            trace: vec![login(1), refresh(50, "rt#1", Some(("at#2", "rt#2")))],
            ..Observed::default()
        };
        assert!(PreemptiveRefresh { margin_ms: 500 }.evaluate(&obs).passed);
        assert!(!PreemptiveRefresh { margin_ms: 600 }.evaluate(&obs).passed);
    }

    #[test]
    fn login_must_ask_for_refresh() {
        let mut obs = Observed {
            trace: vec![login(1)],
            ..Observed::default()
        };
        assert!(LoginRequestedRefresh {}.evaluate(&obs).passed);
        obs.trace[0]
            .flags
            .insert("refresh_token".into(), serde_json::json!(false));
        assert!(!LoginRequestedRefresh {}.evaluate(&obs).passed);
    }
}
