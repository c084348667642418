//! The checks: pure functions from what a scenario observed (trace, steps, notifications, server
//! state) to a [`CheckResult`] with expected, actual and the trace lines that prove it.

use crate::record::{CheckResult, NotificationRecord, StepOutcome, StepRecord};
use crate::scenario::{Bounds, Check, StepRange};
use rotary_server::{Delivery, TraceEntry};
use std::collections::BTreeMap;

/// The endpoints whose calls can be refresh calls: legacy `/refresh`, and the OAuth token endpoint
/// when its `grant_type` is `refresh_token`.
pub const REFRESH_ENDPOINTS: &[&str] = &["refresh", "oauth_token"];

/// A `session` step's result and the server's view at that moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionView {
    /// The access token the client said it holds (label, or `at#?` for an unknown one).
    pub access_token: Option<String>,
    /// The refresh token it said it holds.
    pub refresh_token: Option<String>,
    /// The newest live access token of the client's device(s) on the server.
    pub server_access_token: Option<String>,
    /// The current refresh token of the device on the server.
    pub server_refresh_token: Option<String>,
}

/// Everything the checks look at.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The trace.
    pub trace: Vec<TraceEntry>,
    /// The steps as they ran.
    pub steps: Vec<StepRecord>,
    /// Notifications, tokens as labels.
    pub notifications: Vec<NotificationRecord>,
    /// `session` steps' views, by step index.
    pub sessions: BTreeMap<usize, SessionView>,
    /// Per room handle: the event ids of its `m.room.message` events at the end.
    pub room_events: BTreeMap<String, Vec<String>>,
    /// Per room handle: the send operations aimed at it (step, outcome of each operation).
    pub room_sends: BTreeMap<String, Vec<StepOutcome>>,
    /// Devices per user at the end.
    pub devices: BTreeMap<String, usize>,
}

/// The number in a label (`at#12` → 12); unknown labels have none.
pub fn label_number(label: &str) -> Option<u64> {
    label.split_once('#').and_then(|(_, n)| n.parse().ok())
}

fn in_window(obs: &Observed, range: Option<StepRange>, e: &TraceEntry) -> bool {
    match range {
        None => true,
        Some(r) => {
            let from = obs.steps.get(r.from - 1).map_or(0, |s| s.trace_from);
            let to = obs.steps.get(r.to - 1).map_or(u64::MAX, |s| s.trace_to);
            e.seq > from && e.seq <= to
        }
    }
}

fn window_text(range: Option<StepRange>) -> String {
    range.map_or_else(String::new, |r| format!(" in {r}"))
}

fn delivered(e: &TraceEntry) -> bool {
    e.delivery == Delivery::Sent
}

/// Whether a trace entry is a refresh call (legacy, or the OAuth refresh grant).
pub fn is_refresh(e: &TraceEntry) -> bool {
    match e.endpoint.as_ref() {
        "refresh" => true,
        "oauth_token" => {
            e.flags.get("grant_type").and_then(serde_json::Value::as_str) == Some("refresh_token")
        }
        _ => false,
    }
}

/// Issuances delivered to a device strictly before `e` arrived: (access number, refresh number, entry).
fn delivered_before<'a>(trace: &'a [TraceEntry], e: &TraceEntry) -> impl Iterator<Item = &'a TraceEntry> {
    let device = e.device_id.clone();
    trace.iter().filter(move |i| {
        i.seq < e.seq
            && delivered(i)
            && i.done_seq.is_some_and(|d| d < e.seq)
            && i.issued.is_some()
            && (device.is_none() || i.device_id == device)
    })
}

fn result(check: &Check, description: String, passed: bool, expected: String, actual: String) -> CheckResult {
    CheckResult {
        check: check.name().to_owned(),
        description,
        passed,
        expected,
        actual,
        evidence: Vec::new(),
    }
}

fn with_evidence(mut r: CheckResult, evidence: impl IntoIterator<Item = u64>) -> CheckResult {
    r.evidence = evidence.into_iter().collect();
    r
}

fn count_check(
    obs: &Observed,
    check: &Check,
    what: &str,
    bounds: Bounds,
    matching: Vec<&TraceEntry>,
) -> CheckResult {
    let n = matching.len() as u64;
    let passed = bounds.holds(n);
    let r = result(
        check,
        format!("{bounds} {what}"),
        passed,
        format!("{bounds}"),
        format!("{n}"),
    );
    let _ = obs;
    with_evidence(r, matching.iter().map(|e| e.seq))
}

/// Every logout signal: (when, as a trace length; soft?; where from).
fn logout_signals(obs: &Observed) -> Vec<(u64, bool, String)> {
    let mut out = Vec::new();
    for n in &obs.notifications {
        if n.method == "logged_out" {
            let soft = n
                .params
                .get("soft_logout")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            out.push((
                n.trace_len,
                soft,
                format!(
                    "`logged_out` notification (soft_logout: {soft}) during step {}",
                    n.step
                ),
            ));
        }
    }
    for s in &obs.steps {
        for e in s.outcome.errors() {
            let soft = match e.kind.as_str() {
                "logged_out" => false,
                "soft_logged_out" => true,
                _ => continue,
            };
            out.push((
                s.trace_to,
                soft,
                format!("step {} ({}) failed with kind {}", s.index, s.action, e.kind),
            ));
        }
    }
    out.sort_by_key(|(t, _, _)| *t);
    out
}

/// The logout signals in words, `; `-separated.
fn describe_signals(signals: &[(u64, bool, String)]) -> String {
    signals
        .iter()
        .map(|(_, _, w)| w.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Evaluates one check.
pub fn evaluate(check: &Check, obs: &Observed) -> CheckResult {
    match check {
        Check::RefreshCount { bounds, steps } => {
            let m: Vec<&TraceEntry> = obs
                .trace
                .iter()
                .filter(|e| is_refresh(e) && in_window(obs, *steps, e))
                .collect();
            count_check(
                obs,
                check,
                &format!("refresh call(s){}", window_text(*steps)),
                *bounds,
                m,
            )
        }
        Check::RequestCount {
            endpoint,
            status,
            bounds,
            steps,
        } => {
            let m: Vec<&TraceEntry> = obs
                .trace
                .iter()
                .filter(|e| e.endpoint == endpoint.as_str() && in_window(obs, *steps, e))
                .filter(|e| status.is_none_or(|s| e.status == Some(s)))
                .collect();
            let what = match status {
                Some(s) => format!("`{endpoint}` request(s) answered {s}{}", window_text(*steps)),
                None => format!("`{endpoint}` request(s){}", window_text(*steps)),
            };
            count_check(obs, check, &what, *bounds, m)
        }
        Check::NewestRefreshToken => {
            let mut bad = Vec::new();
            let mut notes = Vec::new();
            let mut checked = 0;
            for e in obs.trace.iter().filter(|e| is_refresh(e)) {
                let Some(presented) = &e.refresh_token else {
                    continue;
                };
                checked += 1;
                let newest = delivered_before(&obs.trace, e)
                    .filter_map(|i| i.issued.as_ref().and_then(|x| x.refresh_token.clone()))
                    .filter_map(|l| label_number(&l).map(|n| (n, l)))
                    .max();
                if let Some((n, label)) = newest {
                    let stale = label_number(&presented.label).is_none_or(|p| p < n);
                    if stale {
                        bad.push(e.seq);
                        notes.push(format!(
                            "#{} presented {} although {} had been delivered",
                            e.seq, presented.label, label
                        ));
                    }
                }
            }
            let r = result(
                check,
                "every refresh presented the newest refresh token the client had received".to_owned(),
                bad.is_empty(),
                "no refresh with an older refresh token".to_owned(),
                if bad.is_empty() {
                    format!("{checked} refresh call(s), all with the newest token")
                } else {
                    notes.join("; ")
                },
            );
            with_evidence(r, bad)
        }
        Check::NoStaleAccessToken { steps } => {
            let mut bad = Vec::new();
            let mut notes = Vec::new();
            for e in obs.trace.iter().filter(|e| in_window(obs, *steps, e)) {
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
            let r = result(
                check,
                format!(
                    "no request carried an access token older than the newest one received{}",
                    window_text(*steps)
                ),
                bad.is_empty(),
                "every request with the newest access token".to_owned(),
                if bad.is_empty() {
                    "none stale".to_owned()
                } else {
                    notes.join("; ")
                },
            );
            with_evidence(r, bad)
        }
        Check::StepOk { step } => {
            let picked: Vec<&StepRecord> = obs
                .steps
                .iter()
                .filter(|s| match step {
                    Some(i) => s.index == *i,
                    None => is_driver_step(s),
                })
                .collect();
            let failed: Vec<String> = picked
                .iter()
                .filter(|s| !s.outcome.is_ok())
                .map(|s| describe_failure(s))
                .collect();
            let what = match step {
                Some(i) => format!("step {i} succeeded"),
                None => "every driver step succeeded".to_owned(),
            };
            let evidence: Vec<u64> = picked
                .iter()
                .filter(|s| !s.outcome.is_ok())
                .flat_map(|s| window_errors(obs, s))
                .collect();
            let ran = step.is_none() || !picked.is_empty();
            let r = result(
                check,
                what,
                failed.is_empty() && ran,
                "success".to_owned(),
                if !ran {
                    "the step did not run".to_owned()
                } else if failed.is_empty() {
                    "success".to_owned()
                } else {
                    failed.join("; ")
                },
            );
            with_evidence(r, evidence)
        }
        Check::StepError { step, kind } => {
            let s = obs.steps.iter().find(|s| s.index == *step);
            let expected = if kind.is_empty() {
                "an error".to_owned()
            } else {
                format!("an error of kind {}", kind.join(" or "))
            };
            let (passed, actual) = match s {
                None => (false, "the step did not run".to_owned()),
                Some(s) => {
                    let errors = s.outcome.errors();
                    let ok = !errors.is_empty()
                        && errors.iter().all(|e| kind.is_empty() || kind.contains(&e.kind));
                    let actual = if errors.is_empty() {
                        match &s.outcome {
                            StepOutcome::Aborted { reason } => format!("aborted: {reason}"),
                            _ => "success".to_owned(),
                        }
                    } else {
                        describe_failure(s)
                    };
                    (ok, actual)
                }
            };
            result(check, format!("step {step} failed"), passed, expected, actual)
        }
        Check::NoLogout => {
            let signals = logout_signals(obs);
            let r = result(
                check,
                "the client did not signal a logout".to_owned(),
                signals.is_empty(),
                "no logout".to_owned(),
                if signals.is_empty() {
                    "no logout".to_owned()
                } else {
                    describe_signals(&signals)
                },
            );
            let around: Vec<u64> = signals
                .first()
                .map(|(t, _, _)| {
                    obs.trace
                        .iter()
                        .filter(|e| e.seq <= *t)
                        .rev()
                        .take(3)
                        .map(|e| e.seq)
                        .collect()
                })
                .unwrap_or_default();
            with_evidence(r, around.into_iter().rev())
        }
        Check::Logout { soft_logout } => {
            let signals = logout_signals(obs);
            let matching = signals
                .iter()
                .filter(|(_, soft, _)| soft_logout.is_none_or(|want| *soft == want))
                .count();
            let expected = match soft_logout {
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
                .filter(|e| is_refresh(e) || e.status == Some(401))
                .map(|e| e.seq)
                .collect();
            with_evidence(
                result(
                    check,
                    format!("the client signalled {expected}"),
                    matching > 0,
                    expected,
                    actual,
                ),
                evidence,
            )
        }
        Check::QuietAfterLogout { at_most, endpoint } => {
            let signals = logout_signals(obs);
            let what = endpoint
                .as_ref()
                .map_or_else(|| "request(s)".to_owned(), |e| format!("`{e}` request(s)"));
            let Some((t, _, w)) = signals.first() else {
                return result(
                    check,
                    format!("at most {at_most} {what} after the logout"),
                    false,
                    "a logout, then quiet".to_owned(),
                    "no logout was signalled".to_owned(),
                );
            };
            let after: Vec<&TraceEntry> = obs
                .trace
                .iter()
                .filter(|e| e.seq > *t)
                .filter(|e| endpoint.as_ref().is_none_or(|x| e.endpoint == x.as_str()))
                .collect();
            let n = after.len() as u64;
            let r = result(
                check,
                format!("at most {at_most} {what} after the first logout signal"),
                n <= *at_most,
                format!("at most {at_most}"),
                format!("{n} after {w}"),
            );
            with_evidence(r, after.iter().map(|e| e.seq))
        }
        Check::PreemptiveRefresh { margin_ms } => {
            let mut best: Option<(i64, u64)> = None;
            for e in obs
                .trace
                .iter()
                .filter(|e| is_refresh(e) && e.status == Some(200))
            {
                let held = delivered_before(&obs.trace, e)
                    .filter(|i| i.issued.as_ref().is_some_and(|x| x.access_token.is_some()))
                    .max_by_key(|i| {
                        i.issued
                            .as_ref()
                            .and_then(|x| x.access_token.as_deref().and_then(label_number))
                    });
                let Some(expiry) = held.and_then(|i| i.issued.as_ref().and_then(|x| x.expires_at_ms)) else {
                    continue;
                };
                let margin = expiry - e.t_ms;
                if best.is_none_or(|(m, _)| margin > m) {
                    best = Some((margin, e.seq));
                }
            }
            let margin = i64::try_from(*margin_ms).unwrap_or(i64::MAX);
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
                result(
                    check,
                    format!("a refresh at least {margin_ms} ms before the access token expired"),
                    passed,
                    format!("≥ {margin_ms} ms before expiry"),
                    actual,
                ),
                evidence,
            )
        }
        Check::No401 { steps } => {
            let hits: Vec<u64> = obs
                .trace
                .iter()
                .filter(|e| e.status == Some(401) && in_window(obs, *steps, e))
                .map(|e| e.seq)
                .collect();
            let r = result(
                check,
                format!("no request was answered 401{}", window_text(*steps)),
                hits.is_empty(),
                "no 401".to_owned(),
                format!("{} answered 401", hits.len()),
            );
            with_evidence(r, hits)
        }
        Check::RefreshRate { at_most, per_ms } => {
            let refreshes: Vec<&TraceEntry> = obs.trace.iter().filter(|e| is_refresh(e)).collect();
            let per = i64::try_from(*per_ms).unwrap_or(i64::MAX);
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
            let r = result(
                check,
                format!("at most {at_most} refresh call(s) in any {per_ms} ms"),
                n <= *at_most,
                format!("at most {at_most} per {per_ms} ms"),
                format!("{n} in the busiest {per_ms} ms"),
            );
            with_evidence(r, refreshes[worst.0..worst.1].iter().map(|e| e.seq))
        }
        Check::RefreshBackoff { min_ms } => {
            let refreshes: Vec<&TraceEntry> = obs.trace.iter().filter(|e| is_refresh(e)).collect();
            let mut bad = Vec::new();
            let mut notes = Vec::new();
            let min = i64::try_from(*min_ms).unwrap_or(i64::MAX);
            for pair in refreshes.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let failed = a.status != Some(200) || !delivered(a);
                if !failed {
                    continue;
                }
                let ended = a.real_ms + a.duration_ms.unwrap_or(0);
                let gap = b.real_ms - ended;
                if gap < min {
                    bad.extend([a.seq, b.seq]);
                    notes.push(format!("#{} came {gap} ms after #{} failed", b.seq, a.seq));
                }
            }
            let r = result(
                check,
                format!("after a failed refresh, the next one waited at least {min_ms} ms"),
                bad.is_empty(),
                format!("gaps ≥ {min_ms} ms"),
                if bad.is_empty() {
                    "every retry waited".to_owned()
                } else {
                    notes.join("; ")
                },
            );
            with_evidence(r, bad)
        }
        Check::MessagesOnce { room } => {
            let events = obs.room_events.get(room).cloned().unwrap_or_default();
            let sends = obs.room_sends.get(room).cloned().unwrap_or_default();
            let ok_ids: Vec<String> = sends
                .iter()
                .filter_map(|o| match o {
                    StepOutcome::Ok { result } => {
                        result.get("event_id").and_then(|v| v.as_str()).map(str::to_owned)
                    }
                    _ => None,
                })
                .collect();
            let mut problems = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for id in &ok_ids {
                if !seen.insert(id) {
                    problems.push(format!("the driver returned {id} twice"));
                }
                if !events.contains(id) {
                    problems.push(format!("{id} returned by the driver is not in the room"));
                }
            }
            if events.len() > sends.len() {
                problems.push(format!(
                    "{} messages stored for {} send(s): duplicates",
                    events.len(),
                    sends.len()
                ));
            }
            let send_seqs: Vec<u64> = obs
                .trace
                .iter()
                .filter(|e| e.endpoint == "send")
                .map(|e| e.seq)
                .collect();
            let r = result(
                check,
                format!("every message sent to room {room:?} is stored exactly once"),
                problems.is_empty(),
                format!(
                    "{} send(s) → at most {} stored, each returned id stored once",
                    sends.len(),
                    sends.len()
                ),
                if problems.is_empty() {
                    format!("{} stored, {} confirmed", events.len(), ok_ids.len())
                } else {
                    problems.join("; ")
                },
            );
            with_evidence(r, send_seqs)
        }
        Check::SessionLatest { step } => {
            let v = obs.sessions.get(step).cloned().unwrap_or_default();
            let passed = v.access_token.is_some()
                && v.access_token == v.server_access_token
                && v.refresh_token == v.server_refresh_token;
            result(
                check,
                format!("the tokens the client holds at step {step} are the newest the server issued"),
                passed,
                format!(
                    "{} / {}",
                    show(&v.server_access_token),
                    show(&v.server_refresh_token)
                ),
                format!("{} / {}", show(&v.access_token), show(&v.refresh_token)),
            )
        }
        Check::SessionHasRefreshToken { step } => {
            let v = obs.sessions.get(step).cloned().unwrap_or_default();
            result(
                check,
                format!("the client still holds a refresh token at step {step}"),
                v.refresh_token.is_some(),
                "a refresh token".to_owned(),
                show(&v.refresh_token),
            )
        }
        Check::SessionEmpty { step } => {
            let v = obs.sessions.get(step).cloned().unwrap_or_default();
            result(
                check,
                format!("the client holds no tokens at step {step}"),
                v.access_token.is_none() && v.refresh_token.is_none(),
                "none / none".to_owned(),
                format!("{} / {}", show(&v.access_token), show(&v.refresh_token)),
            )
        }
        Check::DeviceCount { user, exactly } => {
            let n = obs.devices.get(user).copied().unwrap_or(0);
            result(
                check,
                format!("{user} has {exactly} device(s) on the server at the end"),
                n == *exactly,
                format!("{exactly}"),
                format!("{n}"),
            )
        }
        Check::LoginRequestedRefresh => {
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
            let r = result(
                check,
                "every login and registration asked for a refresh token".to_owned(),
                passed,
                "refresh_token: true on each".to_owned(),
                if logins.is_empty() {
                    "no login or registration request".to_owned()
                } else {
                    format!("{} of {} without it", bad.len(), logins.len())
                },
            );
            with_evidence(
                r,
                if bad.is_empty() {
                    logins.iter().map(|e| e.seq).collect()
                } else {
                    bad
                },
            )
        }
    }
}

fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "none".to_owned())
}

fn is_driver_step(s: &StepRecord) -> bool {
    matches!(
        s.action.as_str(),
        "login"
            | "register"
            | "restore"
            | "resume"
            | "whoami"
            | "sync"
            | "send"
            | "parallel"
            | "session"
            | "logout"
            | "kill_driver"
    )
}

fn describe_failure(s: &StepRecord) -> String {
    match &s.outcome {
        StepOutcome::Ok { .. } => format!("step {} ({}) succeeded", s.index, s.action),
        StepOutcome::Aborted { reason } => format!("step {} ({}) aborted: {reason}", s.index, s.action),
        StepOutcome::Failed { error } => format!(
            "step {} ({}) failed: {}",
            s.index,
            s.action,
            describe_error(error)
        ),
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

fn describe_error(e: &crate::record::CallError) -> String {
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

fn window_errors(obs: &Observed, s: &StepRecord) -> Vec<u64> {
    obs.trace
        .iter()
        .filter(|e| e.seq > s.trace_from && e.seq <= s.trace_to)
        .filter(|e| e.status.is_none_or(|st| st >= 400) || !delivered(e))
        .map(|e| e.seq)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotary_server::{AccessState, IssuedLabels, RefreshState, TokenView};
    use std::borrow::Cow;

    fn entry(seq: u64, endpoint: &'static str, at: &str, status: u16) -> TraceEntry {
        TraceEntry {
            seq,
            t_ms: seq as i64 * 10,
            real_ms: seq as i64 * 10,
            endpoint: Cow::Borrowed(endpoint),
            method: Cow::Borrowed("GET"),
            path: String::new(),
            status: Some(status),
            errcode: None,
            soft_logout: None,
            access_token: TokenView {
                label: at.to_owned(),
                state: AccessState::Valid,
            },
            refresh_token: None,
            user_id: Some("@alice:localhost".into()),
            device_id: Some("DEV".into()),
            issued: None,
            fault: None,
            delivery: Delivery::Sent,
            flags: BTreeMap::new(),
            duration_ms: Some(1),
            done_seq: Some(seq),
        }
    }

    fn refresh(seq: u64, presented: &str, issued: Option<(&str, &str)>) -> TraceEntry {
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

    fn login(seq: u64) -> TraceEntry {
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
        let r = evaluate(&Check::NewestRefreshToken, &obs);
        assert!(!r.passed);
        assert_eq!(r.evidence, vec![3]);
        // The same token presented while the first refresh's response was still in flight is fine.
        let mut racing = obs.clone();
        racing.trace[1].done_seq = Some(3);
        assert!(evaluate(&Check::NewestRefreshToken, &racing).passed);
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
        assert!(evaluate(&Check::NewestRefreshToken, &obs).passed);
        assert!(evaluate(&Check::NoStaleAccessToken { steps: None }, &obs).passed);
        let mut stale = obs.clone();
        stale.trace.push(entry(5, "whoami", "at#1", 401));
        let r = evaluate(&Check::NoStaleAccessToken { steps: None }, &stale);
        assert!(!r.passed);
        assert_eq!(r.evidence, vec![5]);
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
        let count = |b: Bounds| {
            evaluate(
                &Check::RefreshCount {
                    bounds: b,
                    steps: None,
                },
                &obs,
            )
            .passed
        };
        assert!(count(Bounds {
            exactly: Some(3),
            ..Bounds::default()
        }));
        assert!(!count(Bounds {
            at_most: Some(2),
            ..Bounds::default()
        }));
        let rate = evaluate(
            &Check::RefreshRate {
                at_most: 1,
                per_ms: 100,
            },
            &obs,
        );
        assert!(!rate.passed);
        assert_eq!(rate.evidence, vec![2, 3]);
        let backoff = evaluate(&Check::RefreshBackoff { min_ms: 50 }, &obs);
        assert!(!backoff.passed);
        assert_eq!(backoff.evidence, vec![2, 3]);
    }

    #[test]
    fn preemptive_margin_uses_the_held_tokens_expiry() {
        // Login at t=10 expires at t=1010; refresh at t=500 is 510 ms early.
        let obs = Observed {
            trace: vec![login(1), refresh(50, "rt#1", Some(("at#2", "rt#2")))],
            ..Observed::default()
        };
        assert!(evaluate(&Check::PreemptiveRefresh { margin_ms: 500 }, &obs).passed);
        assert!(!evaluate(&Check::PreemptiveRefresh { margin_ms: 600 }, &obs).passed);
    }

    #[test]
    fn logout_signals_come_from_notifications_and_errors() {
        let mut obs = Observed {
            trace: vec![login(1), entry(2, "whoami", "at#1", 401)],
            ..Observed::default()
        };
        assert!(evaluate(&Check::NoLogout, &obs).passed);
        obs.notifications.push(NotificationRecord {
            at_ms: 30,
            step: 2,
            trace_len: 2,
            method: "logged_out".into(),
            params: serde_json::json!({"soft_logout": true}),
        });
        assert!(!evaluate(&Check::NoLogout, &obs).passed);
        assert!(
            evaluate(
                &Check::Logout {
                    soft_logout: Some(true)
                },
                &obs
            )
            .passed
        );
        assert!(
            !evaluate(
                &Check::Logout {
                    soft_logout: Some(false)
                },
                &obs
            )
            .passed
        );
        obs.trace.push(refresh(3, "rt#1", None));
        let q = evaluate(
            &Check::QuietAfterLogout {
                at_most: 0,
                endpoint: None,
            },
            &obs,
        );
        assert!(!q.passed);
        assert_eq!(q.evidence, vec![3]);
    }

    #[test]
    fn login_must_ask_for_refresh() {
        let mut obs = Observed {
            trace: vec![login(1)],
            ..Observed::default()
        };
        assert!(evaluate(&Check::LoginRequestedRefresh, &obs).passed);
        obs.trace[0]
            .flags
            .insert("refresh_token".into(), serde_json::json!(false));
        assert!(!evaluate(&Check::LoginRequestedRefresh, &obs).passed);
    }
}
