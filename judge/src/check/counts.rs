//! Checks that count requests: refreshes, requests to an endpoint, 401s, and how refreshes are
//! spread over time (rate, backoff after a failure).

use super::common::{in_window, verdict, window_text, with_evidence};
use super::kind::{CheckKind, CheckResult, Shape};
use super::scope::{Bounds, StepRange, StepRef};
use crate::observed::Observed;
use crate::trace::TraceEntry;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const WINDOW_FIELD: (&str, &str) = (
    "steps",
    "`[from, to]`: only requests that arrived during these steps (numbers or names)",
);

fn count(what: &str, bounds: Bounds, matching: &[&TraceEntry]) -> CheckResult {
    let n = matching.len() as u64;
    with_evidence(
        verdict(
            format!("{bounds} {what}"),
            bounds.holds(n),
            format!("{bounds}"),
            format!("{n}"),
        ),
        matching.iter().map(|e| e.seq),
    )
}

/// The number of refresh calls the server saw (legacy `/refresh` or the OAuth refresh grant).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshCount {
    /// Exactly.
    pub exactly: Option<u64>,
    /// At least.
    pub at_least: Option<u64>,
    /// At most.
    pub at_most: Option<u64>,
    /// Only requests during these steps.
    pub steps: Option<(StepRef, StepRef)>,
    #[serde(skip)]
    bounds: Bounds,
    #[serde(skip)]
    window: Option<StepRange>,
}

impl CheckKind for RefreshCount {
    const SUMMARY: &'static str =
        "the number of refresh calls (legacy `/refresh` or the OAuth refresh grant)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("exactly", "this many"),
        ("at_least", "at least"),
        ("at_most", "at most"),
        WINDOW_FIELD,
    ];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.bounds = Bounds::new(self.exactly, self.at_least, self.at_most)?;
        self.window = shape.window(self.steps.as_ref())?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let m: Vec<&TraceEntry> = obs
            .trace
            .iter()
            .filter(|e| e.is_refresh() && in_window(obs, self.window, e))
            .collect();
        count(
            &format!("refresh call(s){}", window_text(self.window)),
            self.bounds,
            &m,
        )
    }
}

/// The number of requests to one endpoint, optionally only those answered with one status.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCount {
    /// Endpoint name (`whoami`, `sync`, `send`, `login`, …; see `rotary serve --help`).
    pub endpoint: String,
    /// Only responses with this status.
    pub status: Option<u16>,
    /// Exactly.
    pub exactly: Option<u64>,
    /// At least.
    pub at_least: Option<u64>,
    /// At most.
    pub at_most: Option<u64>,
    /// Only requests during these steps.
    pub steps: Option<(StepRef, StepRef)>,
    #[serde(skip)]
    bounds: Bounds,
    #[serde(skip)]
    window: Option<StepRange>,
}

impl CheckKind for RequestCount {
    const SUMMARY: &'static str = "the number of requests to an endpoint";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        (
            "endpoint",
            "the endpoint's name (`whoami`, `sync`, `send`, `login`, …; `refresh` counts the refreshes of either mechanism, `legacy_refresh` only `/refresh`)",
        ),
        ("status", "only responses with this status"),
        ("exactly", "this many"),
        ("at_least", "at least"),
        ("at_most", "at most"),
        WINDOW_FIELD,
    ];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        shape.endpoint(&self.endpoint)?;
        self.bounds = Bounds::new(self.exactly, self.at_least, self.at_most)?;
        self.window = shape.window(self.steps.as_ref())?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let m: Vec<&TraceEntry> = obs
            .trace
            .iter()
            .filter(|e| e.endpoint_is(&self.endpoint) && in_window(obs, self.window, e))
            .filter(|e| self.status.is_none_or(|s| e.status == Some(s)))
            .collect();
        let (endpoint, window) = (&self.endpoint, window_text(self.window));
        let what = match self.status {
            Some(s) => format!("`{endpoint}` request(s) answered {s}{window}"),
            None => format!("`{endpoint}` request(s){window}"),
        };
        count(&what, self.bounds, &m)
    }
}

/// No request was answered 401.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct No401 {
    /// Only requests during these steps.
    pub steps: Option<(StepRef, StepRef)>,
    #[serde(skip)]
    window: Option<StepRange>,
}

impl CheckKind for No401 {
    const SUMMARY: &'static str = "no request was answered 401";
    const FIELDS: &'static [(&'static str, &'static str)] = &[WINDOW_FIELD];

    fn resolve(&mut self, shape: &Shape<'_>) -> Result<(), String> {
        self.window = shape.window(self.steps.as_ref())?;
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let hits: Vec<u64> = obs
            .trace
            .iter()
            .filter(|e| e.status == Some(401) && in_window(obs, self.window, e))
            .map(|e| e.seq)
            .collect();
        with_evidence(
            verdict(
                format!("no request was answered 401{}", window_text(self.window)),
                hits.is_empty(),
                "no 401".to_owned(),
                format!("{} answered 401", hits.len()),
            ),
            hits,
        )
    }
}

/// At most `at_most` refresh calls in any window of length `per` (real time).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRate {
    /// How many.
    pub at_most: u64,
    /// The window (`"1m"`, or ms).
    #[serde(with = "crate::duration::required")]
    pub per: Duration,
}

impl CheckKind for RefreshRate {
    const SUMMARY: &'static str = "at most `at_most` refresh calls in any window of length `per` (real time)";
    const FIELDS: &'static [(&'static str, &'static str)] =
        &[("at_most", "how many"), ("per", "the window, e.g. `\"1m\"`")];

    fn resolve(&mut self, _: &Shape<'_>) -> Result<(), String> {
        if self.per.is_zero() {
            return Err("`per` must be longer than 0".to_owned());
        }
        Ok(())
    }

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let refreshes: Vec<&TraceEntry> = obs.trace.iter().filter(|e| e.is_refresh()).collect();
        let per_ms = u64::try_from(self.per.as_millis()).unwrap_or(u64::MAX);
        let per = i64::try_from(per_ms).unwrap_or(i64::MAX);
        let mut worst: (usize, usize) = (0, 0);
        let mut start = 0;
        for end in 0..refreshes.len() {
            while refreshes[end].real_ms - refreshes[start].real_ms >= per {
                start += 1;
            }
            if end + 1 - start > worst.1 - worst.0 {
                worst = (start, end + 1);
            }
        }
        let n = (worst.1 - worst.0) as u64;
        let at_most = self.at_most;
        with_evidence(
            verdict(
                format!("at most {at_most} refresh call(s) in any {per_ms} ms"),
                n <= at_most,
                format!("at most {at_most} per {per_ms} ms"),
                format!("{n} in the busiest {per_ms} ms"),
            ),
            refreshes[worst.0..worst.1].iter().map(|e| e.seq),
        )
    }
}

/// After each failed refresh call, the next one came at least `min_ms` later.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshBackoff {
    /// The least gap, ms.
    pub min_ms: u64,
}

impl CheckKind for RefreshBackoff {
    const SUMMARY: &'static str = "after each failed refresh call, the next one came at least `min_ms` later";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("min_ms", "the least gap, ms")];

    fn evaluate(&self, obs: &Observed) -> CheckResult {
        let refreshes: Vec<&TraceEntry> = obs.trace.iter().filter(|e| e.is_refresh()).collect();
        let mut bad = Vec::new();
        let mut notes = Vec::new();
        let min = i64::try_from(self.min_ms).unwrap_or(i64::MAX);
        for pair in refreshes.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.status == Some(200) && a.delivered() {
                continue;
            }
            let gap = b.real_ms - (a.real_ms + a.duration_ms.unwrap_or(0));
            if gap < min {
                bad.extend([a.seq, b.seq]);
                notes.push(format!("#{} came {gap} ms after #{} failed", b.seq, a.seq));
            }
        }
        let min_ms = self.min_ms;
        with_evidence(
            verdict(
                format!("after a failed refresh, the next one waited at least {min_ms} ms"),
                bad.is_empty(),
                format!("gaps ≥ {min_ms} ms"),
                if bad.is_empty() {
                    "every retry waited".to_owned()
                } else {
                    notes.join("; ")
                },
            ),
            bad,
        )
    }
}
