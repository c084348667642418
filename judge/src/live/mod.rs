//! Live invariants over a stream of trace entries: what a correct client never does, judged per
//! session as requests complete, on traffic nobody scripted.
//!
//! The front door is [`Watch`]: feed it every completed [`TraceEntry`] in completion order
//! ([`Watch::observe`]) and it returns the [`Violation`]s that entry revealed, each naming the
//! [`Invariant`] (stable id, level, requirement), the session, the time and the trace window around
//! it. It judges only what the client could know — a token counts as received once its response
//! was produced before the request arrived (`done_seq`) *and* a grace period has passed — and a
//! refresh loop against the lifetime the server announced, never a fixed rate. Its memory is
//! bounded: a few tokens and entries per session, sessions dropped on logout or when idle, and a
//! cap on their number. `rotary run` (every scenario's trace), `rotary proxy` (live traffic) and
//! `rotary soak` share it.
//!
//! ```
//! use rotary_judge::live::{Watch, WatchConfig};
//! use rotary_judge::{Delivery, IssuedLabels, TokenView, RefreshState, TraceEntry};
//!
//! let mut login = TraceEntry::new("login", "POST", "/_matrix/client/v3/login");
//! login.seq = 1;
//! login.status = Some(200);
//! login.delivery = Delivery::Sent;
//! login.done_seq = Some(1);
//! login.device_id = Some("PHONE".into());
//! login.issued = Some(Box::new(IssuedLabels {
//!     access_token: Some("at#1".into()),
//!     refresh_token: Some("rt#1".into()),
//!     expires_in_ms: Some(300_000),
//!     expires_at_ms: None,
//! }));
//! let refresh = |seq: u64, at_ms: i64, rt: &str| {
//!     let mut e = TraceEntry::new("refresh", "POST", "/_matrix/client/v3/refresh");
//!     (e.seq, e.real_ms, e.status, e.delivery) = (seq, at_ms, Some(200), Delivery::Sent);
//!     (e.duration_ms, e.done_seq, e.device_id) = (Some(5), Some(seq), Some("PHONE".into()));
//!     e.refresh_token = Some(TokenView { label: rt.into(), state: RefreshState::Current });
//!     e.issued = Some(Box::new(IssuedLabels {
//!         access_token: Some(format!("at#{seq}")),
//!         refresh_token: Some(format!("rt#{seq}")),
//!         expires_in_ms: Some(300_000),
//!         expires_at_ms: None,
//!     }));
//!     e
//! };
//! let mut watch = Watch::new(WatchConfig::default());
//! assert!(watch.observe(&login).is_empty());
//! assert!(watch.observe(&refresh(2, 1_000, "rt#1")).is_empty());
//! // rt#1 again, long after rt#2 was delivered: a stale refresh token.
//! let v = watch.observe(&refresh(3, 9_000, "rt#1"));
//! assert_eq!(v[0].invariant, "live.stale-refresh-token");
//! assert_eq!(v[0].session, "PHONE");
//! ```

mod catalogue;
mod rules;
mod state;

pub use catalogue::{
    EXPIRED_TOKEN_USED, INVARIANTS, Invariant, LOGOUT_AFTER_TRANSIENT, REFRESH_LOOP, SINGLE_FLIGHT,
    STALE_ACCESS_TOKEN, STALE_REFRESH_TOKEN, TXN_ID_REUSED, invariant,
};

use crate::level::Level;
use crate::trace::{Delivery, TraceEntry};
use rules::Finding;
use serde::{Deserialize, Serialize};
use state::Session;
use std::collections::{BTreeMap, HashMap};

/// How the watch judges. The defaults suit production lifetimes and the tests' 3 s ones alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// After a response is produced, how long until a request that ignores it counts (a request
    /// composed just before can arrive just after), ms.
    pub grace_ms: i64,
    /// How long after a transient refresh failure a logout or fresh login is blamed on it, ms.
    pub transient_window_ms: i64,
    /// Answered refreshes not prompted by a 401 allowed per announced lifetime.
    pub loop_answered_per_lifetime: usize,
    /// Refresh attempts of any outcome allowed per announced lifetime.
    pub loop_attempts_per_lifetime: usize,
    /// The lifetime assumed when the server announced none, ms.
    pub default_lifetime_ms: i64,
    /// Entries of a session kept for violation windows.
    pub window_entries: usize,
    /// Sessions kept at most; the longest idle are dropped beyond it.
    pub max_sessions: usize,
    /// A session idle this long is forgotten, ms.
    pub idle_ms: i64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            grace_ms: 250,
            transient_window_ms: 120_000,
            loop_answered_per_lifetime: 3,
            loop_attempts_per_lifetime: 10,
            default_lifetime_ms: 60_000,
            window_entries: 12,
            max_sessions: 100_000,
            idle_ms: 6 * 3_600_000,
        }
    }
}

/// One broken invariant, with the evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// The invariant's id (`live.single-flight`).
    pub invariant: String,
    /// Its level.
    pub level: Level,
    /// The session: the device id.
    pub session: String,
    /// The user, when known.
    pub user: Option<String>,
    /// When the offending request arrived, real ms on the trace's scale.
    pub t_ms: i64,
    /// The offending request.
    pub seq: u64,
    /// What happened, in words.
    pub message: String,
    /// The session's last entries up to the offending one (tokens as labels).
    pub window: Vec<TraceEntry>,
}

/// The live judge: session state, and counts of what it saw.
#[derive(Debug, Default)]
pub struct Watch {
    cfg: WatchConfig,
    sessions: HashMap<String, Session>,
    /// Per user: the device with an open transient refresh failure, and when it failed.
    transient_by_user: HashMap<String, (i64, u64, String)>,
    counts: BTreeMap<&'static str, u64>,
    observed: u64,
}

impl Watch {
    /// A watch with this configuration.
    pub fn new(cfg: WatchConfig) -> Watch {
        Watch {
            cfg,
            ..Watch::default()
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &WatchConfig {
        &self.cfg
    }

    /// Judges one completed entry (pending ones are ignored: feed an entry when it completes).
    pub fn observe(&mut self, e: &TraceEntry) -> Vec<Violation> {
        if e.delivery == Delivery::Pending {
            return Vec::new();
        }
        self.observed += 1;
        let Some(device) = e.device_id.clone() else {
            return Vec::new();
        };
        if !self.sessions.contains_key(&device) {
            self.make_room(e.real_ms);
        }
        let cfg = &self.cfg;
        let fresh_login = matches!(e.endpoint.as_ref(), "login" | "register" | "oauth_token")
            && e.issued.is_some()
            && !e.is_refresh()
            && !self.sessions.contains_key(&device);
        let open = e
            .user_id
            .as_ref()
            .and_then(|u| self.transient_by_user.get(u))
            .filter(|(_, _, d)| *d != device)
            .map(|(at, seq, d)| (*at, *seq, d.clone()));
        let s = self.sessions.entry(device.clone()).or_default();
        if s.user.is_none() {
            s.user = e.user_id.clone();
        }
        s.last_seen_ms = e.real_ms;
        s.remember(e, cfg.window_entries);
        let mut found: Vec<Finding> = Vec::new();
        if fresh_login && e.delivered() && e.status.is_some_and(|st| (200..300).contains(&st)) {
            rules::fresh_login(
                open.as_ref().map(|(a, q, d)| (*a, *q, d.as_str())),
                e,
                cfg,
                &mut found,
            );
        }
        if e.is_refresh() {
            rules::refresh(s, e, cfg, &mut found);
        } else {
            rules::access(s, e, cfg, &mut found);
        }
        // A device deletion is `DELETE …/devices/{id}` (endpoint `device`).
        if matches!(e.endpoint.as_ref(), "logout" | "logout_all" | "oauth_revoke")
            || (e.endpoint == "device" && e.method == "DELETE")
        {
            rules::logout(s, e, cfg, &mut found);
        }
        if e.endpoint == "send" {
            rules::send(s, e, cfg, &mut found);
        }
        s.delivered(e);
        let transient = s.transient;
        let user = s.user.clone();
        let window: Vec<TraceEntry> = if found.is_empty() {
            Vec::new()
        } else {
            s.recent.iter().cloned().collect()
        };
        // The user's open transient failure follows this session's.
        if let Some(u) = &user {
            match transient {
                Some((at, seq)) => {
                    self.transient_by_user
                        .insert(u.clone(), (at, seq, device.clone()));
                }
                None => {
                    if self
                        .transient_by_user
                        .get(u)
                        .is_some_and(|(_, _, d)| *d == device)
                    {
                        self.transient_by_user.remove(u);
                    }
                }
            }
        }
        // A session that logged out is over.
        if matches!(e.endpoint.as_ref(), "logout" | "logout_all") && e.status == Some(200) {
            self.sessions.remove(&device);
        }
        found
            .into_iter()
            .map(|f| {
                *self.counts.entry(f.invariant.id).or_default() += 1;
                Violation {
                    invariant: f.invariant.id.to_owned(),
                    level: f.invariant.level,
                    session: device.clone(),
                    user: user.clone(),
                    t_ms: e.real_ms,
                    seq: e.seq,
                    message: f.message,
                    window: window.clone(),
                }
            })
            .collect()
    }

    /// Judges a whole finished trace (entries in `seq` order): every violation, in completion order.
    pub fn judge_trace(cfg: WatchConfig, trace: &[TraceEntry]) -> Vec<Violation> {
        let mut order: Vec<&TraceEntry> = trace.iter().collect();
        order.sort_by_key(|e| {
            (
                e.done_seq.unwrap_or(u64::MAX),
                e.real_ms + e.duration_ms.unwrap_or(0),
                e.seq,
            )
        });
        let mut watch = Watch::new(cfg);
        order.into_iter().flat_map(|e| watch.observe(e)).collect()
    }

    /// Violations so far, by invariant id.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }

    /// Entries judged so far.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// Sessions it holds state for.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Forgets idle sessions, and the longest idle beyond the cap.
    fn make_room(&mut self, now_ms: i64) {
        let idle = self.cfg.idle_ms;
        if self.sessions.len() < self.cfg.max_sessions {
            return;
        }
        self.sessions.retain(|_, s| now_ms - s.last_seen_ms < idle);
        if self.sessions.len() >= self.cfg.max_sessions {
            let mut by_age: Vec<(i64, String)> = self
                .sessions
                .iter()
                .map(|(k, s)| (s.last_seen_ms, k.clone()))
                .collect();
            by_age.sort_unstable();
            let drop = (self.sessions.len() / 10).max(1);
            for (_, k) in by_age.into_iter().take(drop) {
                self.sessions.remove(&k);
            }
        }
        let sessions = &self.sessions;
        self.transient_by_user
            .retain(|_, (_, _, d)| sessions.contains_key(d));
    }
}

#[cfg(test)]
mod tests;
