//! The rules: each looks at one completed entry against its session's state and says whether an
//! invariant was broken, in words. They only read and update state; the watch turns findings into
//! violations.

use super::WatchConfig;
use super::catalogue::{
    EXPIRED_TOKEN_USED, Invariant, LOGOUT_AFTER_TRANSIENT, REFRESH_LOOP, SINGLE_FLIGHT, STALE_ACCESS_TOKEN,
    STALE_REFRESH_TOKEN, TXN_ID_REUSED,
};
use super::state::{LostSend, RefreshRec, Session};
use crate::label::label_number;
use crate::trace::{Delivery, TraceEntry};

/// An invariant broken by an entry, in words.
pub(super) struct Finding {
    pub invariant: &'static Invariant,
    pub message: String,
}

fn finding(invariant: &'static Invariant, message: String) -> Finding {
    Finding { invariant, message }
}

/// How a refresh ended, as far as the client's duty goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RefreshEnd {
    /// 2xx and delivered.
    Renewed,
    /// The server said no, in its own words (4xx other than 408/429 with a Matrix or OAuth error
    /// code): the client may end the session.
    Refused,
    /// 5xx, 408, 429, no status, or the response never reached the client: retry later.
    Transient,
    /// A 4xx without an error code (e.g. a proxy's HTML page): the spec does not say.
    Unclear,
}

pub(super) fn refresh_end(e: &TraceEntry) -> RefreshEnd {
    if !e.delivered() {
        return RefreshEnd::Transient;
    }
    match e.status {
        Some(200..=299) => RefreshEnd::Renewed,
        None | Some(408) | Some(429) | Some(500..) => RefreshEnd::Transient,
        Some(400..=499) if e.errcode.is_some() => RefreshEnd::Refused,
        _ => RefreshEnd::Unclear,
    }
}

/// `at_ms` of the response of `e` (arrival plus handling).
pub(super) fn done_ms(e: &TraceEntry) -> i64 {
    e.real_ms + e.duration_ms.unwrap_or(0)
}

/// Refreshes: single flight, the newest refresh token, the loop; and the transient window.
pub(super) fn refresh(s: &mut Session, e: &TraceEntry, cfg: &WatchConfig, out: &mut Vec<Finding>) {
    let presented = e.refresh_token.as_ref().map(|t| t.label.clone());
    let (arrived, done) = (e.real_ms, done_ms(e));
    // Single flight: another refresh with the same token whose time on the server overlaps. A
    // refresh the client abandoned (it closed the connection) is over for the client when it
    // closed: a retry right after it is not a second flight, even if the server notices the close
    // a moment after the retry arrived.
    let abandoned = e.delivery == Delivery::Abandoned;
    if let Some(p) = presented.as_deref().filter(|p| label_number(p).is_some())
        && !abandoned
        && let Some(other) = s.refreshes.iter().find(|r| {
            !r.abandoned && r.presented.as_deref() == Some(p) && r.arrived_ms < done && arrived < r.done_ms
        })
    {
        out.push(finding(
            &SINGLE_FLIGHT,
            format!(
                "#{} presented {p} while #{} with the same refresh token was still in flight",
                e.seq, other.seq
            ),
        ));
    }
    // The newest refresh token: none older than one already delivered.
    if let (Some(p), Some(newest)) = (presented.as_deref(), s.refresh.as_ref())
        && let Some(n) = label_number(p)
        && n < newest.number
        && newest.done_seq < e.seq
        && newest.at_ms + cfg.grace_ms <= arrived
    {
        out.push(finding(
            &STALE_REFRESH_TOKEN,
            format!(
                "#{} presented {p} {} ms after {} had been delivered to the client",
                e.seq,
                arrived - newest.at_ms,
                newest.label
            ),
        ));
    }
    let end = refresh_end(e);
    let explained = s.unauthorized_since_refresh && !s.refused;
    s.push_refresh(RefreshRec {
        seq: e.seq,
        presented,
        arrived_ms: arrived,
        done_ms: done,
        answered: matches!(end, RefreshEnd::Renewed | RefreshEnd::Refused),
        explained,
        abandoned,
    });
    s.unauthorized_since_refresh = false;
    match end {
        RefreshEnd::Renewed => {
            s.transient = None;
            s.refused = false;
        }
        RefreshEnd::Refused => {
            s.transient = None;
            s.refused = true;
        }
        RefreshEnd::Transient => s.transient = Some((done, e.seq)),
        RefreshEnd::Unclear => {}
    }
    refresh_loop(s, e, cfg, out);
}

/// More refreshes in one announced lifetime than it explains.
fn refresh_loop(s: &mut Session, e: &TraceEntry, cfg: &WatchConfig, out: &mut Vec<Finding>) {
    let lifetime = s.lifetime_ms.unwrap_or(cfg.default_lifetime_ms).max(1);
    let from = e.real_ms - lifetime;
    if e.real_ms < s.loop_reported_until {
        return;
    }
    let in_window: Vec<&RefreshRec> = s.refreshes.iter().filter(|r| r.arrived_ms > from).collect();
    let unexplained = in_window.iter().filter(|r| r.answered && !r.explained).count();
    let attempts = in_window.len();
    let (limit_answered, limit_attempts) = (cfg.loop_answered_per_lifetime, cfg.loop_attempts_per_lifetime);
    let what = if unexplained > limit_answered {
        Some(format!(
            "{unexplained} answered refreshes not prompted by a 401 within one announced lifetime ({lifetime} ms); at most {limit_answered} are explained"
        ))
    } else if attempts > limit_attempts {
        Some(format!(
            "{attempts} refresh attempts within one announced lifetime ({lifetime} ms); at most {limit_attempts}"
        ))
    } else {
        None
    };
    if let Some(what) = what {
        s.loop_reported_until = e.real_ms + lifetime;
        out.push(finding(&REFRESH_LOOP, format!("#{}: {what}", e.seq)));
    }
}

/// Requests with an access token: the newest one, and not past its announced expiry.
pub(super) fn access(s: &mut Session, e: &TraceEntry, cfg: &WatchConfig, out: &mut Vec<Finding>) {
    let label = e.access_token.label.as_str();
    let Some(n) = label_number(label) else {
        return;
    };
    if e.status == Some(401) {
        s.unauthorized_since_refresh = true;
    }
    if let Some(newest) = s.newest_access_before(e, cfg.grace_ms)
        && n < newest.number
    {
        out.push(finding(
            &STALE_ACCESS_TOKEN,
            format!(
                "#{} {} carried {label} {} ms after {} had been delivered to the client",
                e.seq,
                e.endpoint,
                e.real_ms - newest.at_ms,
                newest.label
            ),
        ));
    }
    if matches!(e.endpoint.as_ref(), "logout" | "logout_all") {
        return;
    }
    let expired = s
        .access
        .iter()
        .find(|d| d.label == label)
        .and_then(|d| d.expires_in_ms.map(|x| (d.at_ms + x, d)))
        .filter(|(expiry, _)| expiry + cfg.grace_ms < e.real_ms)
        .map(|(expiry, d)| (e.real_ms - expiry, d.expires_in_ms.unwrap_or(0)));
    if let Some((late, lifetime)) = expired
        && s.note_expired(label)
    {
        out.push(finding(
            &EXPIRED_TOKEN_USED,
            format!(
                "#{} {} used {label} {late} ms after it expired by the client's own clock (announced lifetime {lifetime} ms)",
                e.seq, e.endpoint
            ),
        ));
    }
}

/// A logout of this session while a transient refresh failure is open.
pub(super) fn logout(s: &Session, e: &TraceEntry, cfg: &WatchConfig, out: &mut Vec<Finding>) {
    if let Some((at, seq)) = s.transient
        && e.real_ms - at <= cfg.transient_window_ms
    {
        out.push(finding(
            &LOGOUT_AFTER_TRANSIENT,
            format!(
                "#{} {} {} ms after refresh #{seq} failed transiently, with no definitive refusal in between",
                e.seq,
                e.endpoint,
                e.real_ms - at
            ),
        ));
    }
}

/// A fresh login or registration of a user one of whose sessions has an open transient failure.
pub(super) fn fresh_login(
    open: Option<(i64, u64, &str)>,
    e: &TraceEntry,
    cfg: &WatchConfig,
    out: &mut Vec<Finding>,
) {
    if let Some((at, seq, device)) = open
        && e.real_ms - at <= cfg.transient_window_ms
    {
        out.push(finding(
            &LOGOUT_AFTER_TRANSIENT,
            format!(
                "#{} a fresh {} {} ms after refresh #{seq} of device {device} failed transiently, with no definitive refusal in between",
                e.seq,
                e.endpoint,
                e.real_ms - at
            ),
        ));
    }
}

/// Sends: one resent after a lost response keeps its transaction id.
pub(super) fn send(s: &mut Session, e: &TraceEntry, cfg: &WatchConfig, out: &mut Vec<Finding>) {
    let text = |k: &str| {
        e.flags
            .get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let (Some(txn_id), Some(body_hash)) = (text("txn_id"), text("body_hash")) else {
        return;
    };
    let room = e
        .path
        .rsplit_once('/')
        .map_or(e.path.as_str(), |(room, _)| room)
        .to_owned();
    let window = cfg.transient_window_ms;
    s.lost_sends.retain(|l| e.real_ms - l.at_ms <= window);
    // An id seen before is the retry of some message; a body several ids carried (the same text
    // sent as different messages) cannot tell a resend from a new message.
    let reused = s.seen_txn(&room, &txn_id) || s.ids_for_body(&room, &body_hash) > 1;
    if let Some(i) = s
        .lost_sends
        .iter()
        .position(|l| l.room == room && l.txn_id == txn_id)
    {
        // The lost message itself, resent as it should be.
        s.lost_sends.remove(i);
    } else if !reused
        && let Some(i) = s
            .lost_sends
            .iter()
            .position(|l| l.room == room && l.body_hash == body_hash)
        && let Some(lost) = s.lost_sends.remove(i)
    {
        // The same message under a brand-new transaction id.
        out.push(finding(
            &TXN_ID_REUSED,
            format!(
                "#{} resent the message of #{} with the new transaction id {txn_id:?} instead of {:?}",
                e.seq, lost.seq, lost.txn_id
            ),
        ));
    }
    s.note_txn(&room, &txn_id, &body_hash);
    // A 401 or 429 was refused before anything was stored: a new id then duplicates nothing.
    let lost = !e.delivered() || e.status.is_none_or(|st| st >= 500);
    if lost {
        s.push_lost_send(LostSend {
            room,
            body_hash,
            txn_id,
            at_ms: done_ms(e),
            seq: e.seq,
        });
    }
}
