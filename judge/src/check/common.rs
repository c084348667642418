//! What the checks share: building a result, step windows over the trace, what the client had
//! received before a request, and the logout signals a run saw.

use super::kind::CheckResult;
use super::scope::StepRange;
use crate::observed::{CallError, Observed, StepOutcome, StepRecord};
use crate::trace::TraceEntry;

/// A result (its `check` name is filled in by the registry).
pub(super) fn verdict(description: String, passed: bool, expected: String, actual: String) -> CheckResult {
    CheckResult {
        check: String::new(),
        description,
        passed,
        expected,
        actual,
        evidence: Vec::new(),
    }
}

/// The result with these trace entries as its evidence.
pub(super) fn with_evidence(mut r: CheckResult, evidence: impl IntoIterator<Item = u64>) -> CheckResult {
    r.evidence = evidence.into_iter().collect();
    r
}

/// Whether `e` arrived during the window's steps (every request when there is no window).
pub(super) fn in_window(obs: &Observed, range: Option<StepRange>, e: &TraceEntry) -> bool {
    match range {
        None => true,
        Some(r) => {
            let from = obs.steps.get(r.from - 1).map_or(0, |s| s.trace_from);
            let to = obs.steps.get(r.to - 1).map_or(u64::MAX, |s| s.trace_to);
            e.seq > from && e.seq <= to
        }
    }
}

/// ` in steps 2–3`, or nothing.
pub(super) fn window_text(range: Option<StepRange>) -> String {
    range.map_or_else(String::new, |r| format!(" in {r}"))
}

/// Issuances delivered to `e`'s device strictly before `e` arrived (the client could have read
/// them): the response was sent, and produced before `e` arrived (`done_seq < e.seq`).
pub(super) fn delivered_before<'a>(
    trace: &'a [TraceEntry],
    e: &TraceEntry,
) -> impl Iterator<Item = &'a TraceEntry> {
    let device = e.device_id.clone();
    trace.iter().filter(move |i| {
        i.seq < e.seq
            && i.delivered()
            && i.done_seq.is_some_and(|d| d < e.seq)
            && i.issued.is_some()
            && (device.is_none() || i.device_id == device)
    })
}

/// One logout signal: when (as a trace length), whether soft, and where it came from in words.
pub(super) struct Signal {
    pub at: u64,
    pub soft: bool,
    pub what: String,
}

/// Every logout signal — `logged_out` notifications and logout error kinds — in trace order.
pub(super) fn logout_signals(obs: &Observed) -> Vec<Signal> {
    let mut out = Vec::new();
    for n in &obs.notifications {
        if n.method == "logged_out" {
            let soft = n
                .params
                .get("soft_logout")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            out.push(Signal {
                at: n.trace_len,
                soft,
                what: format!(
                    "`logged_out` notification (soft_logout: {soft}) during step {}",
                    n.step
                ),
            });
        }
    }
    for s in &obs.steps {
        for e in s.outcome.errors() {
            let soft = match e.kind.as_str() {
                "logged_out" => false,
                "soft_logged_out" => true,
                _ => continue,
            };
            out.push(Signal {
                at: s.trace_to,
                soft,
                what: format!("step {} ({}) failed with kind {}", s.index, s.action, e.kind),
            });
        }
    }
    out.sort_by_key(|s| s.at);
    out
}

/// The logout signals in words, `; `-separated.
pub(super) fn describe_signals(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(|s| s.what.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a step went wrong, in words.
pub(super) fn describe_failure(s: &StepRecord) -> String {
    match &s.outcome {
        StepOutcome::Ok { .. } => format!("step {} ({}) succeeded", s.index, s.action),
        StepOutcome::Aborted { reason } => format!("step {} ({}) aborted: {reason}", s.index, s.action),
        StepOutcome::Failed { error } => {
            format!(
                "step {} ({}) failed: {}",
                s.index,
                s.action,
                describe_error(error)
            )
        }
        StepOutcome::Parallel { results } => {
            let failed: Vec<String> = results
                .iter()
                .enumerate()
                .filter_map(|(i, r)| match r {
                    StepOutcome::Failed { error } => Some(format!("#{}: {}", i + 1, describe_error(error))),
                    _ => None,
                })
                .collect();
            format!(
                "step {} ({}): {} of {} failed ({})",
                s.index,
                s.action,
                failed.len(),
                results.len(),
                failed.join(", ")
            )
        }
    }
}

/// A driver error in words: `http 401 M_UNKNOWN_TOKEN (message)`.
pub(super) fn describe_error(e: &CallError) -> String {
    let mut s = e.kind.clone();
    if let Some(st) = e.status {
        s.push_str(&format!(" {st}"));
    }
    if let Some(c) = &e.errcode {
        s.push_str(&format!(" {c}"));
    }
    if !e.message.is_empty() {
        s.push_str(&format!(" ({})", e.message));
    }
    s
}

/// The failed or undelivered requests during a step.
pub(super) fn window_errors(obs: &Observed, s: &StepRecord) -> Vec<u64> {
    obs.trace
        .iter()
        .filter(|e| e.seq > s.trace_from && e.seq <= s.trace_to)
        .filter(|e| e.status.is_none_or(|st| st >= 400) || !e.delivered())
        .map(|e| e.seq)
        .collect()
}

/// A label, or `none`.
pub(super) fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "none".to_owned())
}

#[cfg(test)]
pub(super) mod fixtures {
    //! Trace entries for the families' tests.
    use crate::trace::{AccessState, Delivery, IssuedLabels, RefreshState, TokenView, TraceEntry};
    use std::borrow::Cow;

    pub fn entry(seq: u64, endpoint: &'static str, at: &str, status: u16) -> TraceEntry {
        let mut e = TraceEntry::new(endpoint, "GET", "");
        e.seq = seq;
        e.t_ms = seq as i64 * 10;
        e.real_ms = seq as i64 * 10;
        e.status = Some(status);
        e.access_token = TokenView {
            label: at.to_owned(),
            state: AccessState::Valid,
        };
        e.user_id = Some("@alice:localhost".into());
        e.device_id = Some("DEV".into());
        e.delivery = Delivery::Sent;
        e.duration_ms = Some(1);
        e.done_seq = Some(seq);
        e
    }

    pub fn refresh(seq: u64, presented: &str, issued: Option<(&str, &str)>) -> TraceEntry {
        let mut e = entry(seq, "refresh", "at#?", if issued.is_some() { 200 } else { 401 });
        e.access_token.state = AccessState::Missing;
        e.refresh_token = Some(TokenView {
            label: presented.to_owned(),
            state: RefreshState::Current,
        });
        e.issued = issued.map(|(a, r)| {
            Box::new(IssuedLabels {
                access_token: Some(a.into()),
                refresh_token: Some(r.into()),
                expires_in_ms: Some(1000),
                expires_at_ms: Some(seq as i64 * 10 + 1000),
            })
        });
        e
    }

    pub fn login(seq: u64) -> TraceEntry {
        let mut e = entry(seq, "login", "at#?", 200);
        e.method = Cow::Borrowed("POST");
        e.issued = Some(Box::new(IssuedLabels {
            access_token: Some("at#1".into()),
            refresh_token: Some("rt#1".into()),
            expires_in_ms: Some(1000),
            expires_at_ms: Some(1000 + seq as i64 * 10),
        }));
        e.flags.insert("refresh_token".into(), serde_json::json!(true));
        e
    }
}
