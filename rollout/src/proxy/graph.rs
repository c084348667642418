//! The token graph learned from traffic: which session each token belongs to, its label (`at#N`,
//! `rt#N`) and its *observed* state, from the login, register, refresh and OAuth token answers the
//! proxy forwards. Raw tokens are never kept: each is known by a keyed hash.
//!
//! The proxy cannot ask the homeserver what a token's state is, so the states say what the traffic
//! showed:
//!
//! | token | state | meaning |
//! |---|---|---|
//! | access | `valid` | the newest access token of its session, not past its announced expiry |
//! | access | `superseded` | a newer access token of the same session was issued |
//! | access | `expired` | its `expires_in_ms` has passed (proxy clock) |
//! | access | `revoked` | its session was logged out (logout, logout/all, device deletion, revocation) |
//! | access | `unknown` | never seen issued (the proxy started after its login, or it is forged) |
//! | refresh | `current` | the newest refresh token of its session |
//! | refresh | `previous-unused` | exchanged, but its successor's access token was not used yet |
//! | refresh | `consumed` | exchanged, and its successor was used (a rotating server refuses it now) |
//! | refresh | `revoked` / `unknown` | as for access tokens |
//!
//! Memory is bounded: each session keeps its newest [`GENERATIONS`] token generations (older
//! tokens are forgotten and then show as `unknown`), a logged-out session is dropped once its
//! tokens are forgotten, and at most [`GraphLimits::max_sessions`] sessions are kept (the least
//! recently seen go first).
//!
//! ```
//! use rotary_rollout::proxy::graph::{Issue, TokenGraph};
//! use rotary_judge::{AccessState, RefreshState};
//!
//! let mut g = TokenGraph::default();
//! let login = g.issue(Issue::login("@alice:hs", "PHONE", "secret-at-1", Some("secret-rt-1"), Some(300_000)), 0);
//! assert_eq!(login.access_token.as_deref(), Some("at#1"));
//! let seen = g.access("secret-at-1", 10);
//! assert_eq!((seen.view.label.as_str(), seen.view.state), ("at#1", AccessState::Valid));
//! let rt = g.refresh("secret-rt-1", 20);
//! assert_eq!(rt.view.state, RefreshState::Current);
//! g.issue(Issue::refreshed(&rt, "secret-at-2", Some("secret-rt-2"), Some(300_000)), 30);
//! assert_eq!(g.access("secret-at-1", 40).view.state, AccessState::Superseded);
//! assert_eq!(g.refresh("secret-rt-1", 50).view.state, RefreshState::PreviousUnused);
//! g.access("secret-at-2", 60);
//! assert_eq!(g.refresh("secret-rt-1", 70).view.state, RefreshState::Consumed);
//! ```

use rotary_judge::{AccessState, IssuedLabels, RefreshState, TokenView};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// Token generations each session keeps (the newest one and the ones before it).
pub const GENERATIONS: usize = 8;

/// How much the graph may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphLimits {
    /// Sessions kept; beyond this the least recently seen one is forgotten.
    pub max_sessions: usize,
}

impl Default for GraphLimits {
    fn default() -> Self {
        GraphLimits {
            max_sessions: 100_000,
        }
    }
}

/// A session as the proxy knows it: who, which device, and how far its tokens went.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionSummary {
    /// The user (`None` while unknown, e.g. an OAuth session before its first `whoami`).
    pub user_id: Option<String>,
    /// The device; `?s3` when the proxy first met the session at a refresh and has not learnt it.
    pub device_id: String,
    /// Label of its newest access token.
    pub access_token: String,
    /// Label of its newest refresh token, if it has one.
    pub refresh_token: Option<String>,
    /// Token generations issued (1 for the login).
    pub generations: u64,
    /// Whether it was logged out.
    pub ended: bool,
    /// When the proxy last saw it, ms since the proxy started.
    pub last_seen_ms: i64,
}

/// What a response issued, to be learnt.
#[derive(Clone, Debug)]
pub struct Issue<'a> {
    session: IssueSession<'a>,
    access_token: &'a str,
    refresh_token: Option<&'a str>,
    expires_in_ms: Option<i64>,
}

#[derive(Clone, Debug)]
enum IssueSession<'a> {
    /// A login or register (or an OAuth code exchange): a new session, or a new generation of the
    /// device's session when the device logs in again.
    Login {
        user_id: Option<&'a str>,
        device_id: Option<&'a str>,
    },
    /// A refresh of the session that owns the presented refresh token.
    Refresh {
        session: Option<u64>,
        presented: Option<u64>,
    },
}

impl<'a> Issue<'a> {
    /// A login or register answer (`user_id`, `device_id`, tokens and expiry from its body).
    pub fn login(
        user_id: &'a str,
        device_id: &'a str,
        access_token: &'a str,
        refresh_token: Option<&'a str>,
        expires_in_ms: Option<i64>,
    ) -> Self {
        Issue {
            session: IssueSession::Login {
                user_id: Some(user_id),
                device_id: Some(device_id),
            },
            access_token,
            refresh_token,
            expires_in_ms,
        }
    }

    /// A new session whose user or device the answer does not name (an OAuth code exchange).
    pub fn new_session(
        user_id: Option<&'a str>,
        device_id: Option<&'a str>,
        access_token: &'a str,
        refresh_token: Option<&'a str>,
        expires_in_ms: Option<i64>,
    ) -> Self {
        Issue {
            session: IssueSession::Login { user_id, device_id },
            access_token,
            refresh_token,
            expires_in_ms,
        }
    }

    /// A refresh answer, for the refresh token looked up as `presented`.
    pub fn refreshed(
        presented: &RefreshSeen,
        access_token: &'a str,
        refresh_token: Option<&'a str>,
        expires_in_ms: Option<i64>,
    ) -> Self {
        Issue {
            session: IssueSession::Refresh {
                session: presented.session,
                presented: presented.key,
            },
            access_token,
            refresh_token,
            expires_in_ms,
        }
    }
}

/// An access token as a request presented it.
#[derive(Clone, Debug)]
pub struct AccessSeen {
    /// Label and observed state.
    pub view: TokenView<AccessState>,
    /// The session's user, if known.
    pub user_id: Option<String>,
    /// The session's device (or its `?sN` stand-in).
    pub device_id: Option<String>,
    /// The session, for [`TokenGraph::end_session`] and friends.
    pub session: Option<u64>,
}

/// A refresh token as a request presented it.
#[derive(Clone, Debug)]
pub struct RefreshSeen {
    /// Label and observed state.
    pub view: TokenView<RefreshState>,
    /// The session's user, if known.
    pub user_id: Option<String>,
    /// The session's device (or its `?sN` stand-in).
    pub device_id: Option<String>,
    /// The session.
    pub session: Option<u64>,
    key: Option<u64>,
}

#[derive(Clone, Debug)]
struct AccessInfo {
    label: u64,
    session: u64,
    expires_at_ms: Option<i64>,
    used: bool,
}

#[derive(Clone, Debug)]
struct RefreshInfo {
    label: u64,
    session: u64,
    /// The access token issued with the successor, once this one was exchanged.
    successor_access: Option<u64>,
}

#[derive(Clone, Debug)]
struct Session {
    user_id: Option<String>,
    device_id: String,
    /// Token keys, oldest first: (access, refresh) per generation.
    generations: VecDeque<(u64, Option<u64>)>,
    issued: u64,
    ended: bool,
    last_seen_ms: i64,
}

/// The proxy's knowledge of every session's tokens. See the [module docs](self).
#[derive(Debug)]
pub struct TokenGraph {
    keys: RandomState,
    limits: GraphLimits,
    next_access: u64,
    next_refresh: u64,
    next_session: u64,
    access: HashMap<u64, AccessInfo>,
    refresh: HashMap<u64, RefreshInfo>,
    sessions: HashMap<u64, Session>,
}

impl Default for TokenGraph {
    fn default() -> Self {
        TokenGraph::new(GraphLimits::default())
    }
}

const UNKNOWN_ACCESS: &str = "at#?";
const UNKNOWN_REFRESH: &str = "rt#?";

impl TokenGraph {
    /// An empty graph.
    pub fn new(limits: GraphLimits) -> Self {
        TokenGraph {
            keys: RandomState::new(),
            limits,
            next_access: 0,
            next_refresh: 0,
            next_session: 0,
            access: HashMap::new(),
            refresh: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    fn key(&self, token: &str) -> u64 {
        self.keys.hash_one(token)
    }

    /// Sessions known (live and ended ones not yet forgotten).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is known.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Forgets everything (labels start again at 1).
    pub fn clear(&mut self) {
        *self = TokenGraph::new(self.limits);
    }

    /// Looks up a presented access token and marks it used.
    pub fn access(&mut self, token: &str, now_ms: i64) -> AccessSeen {
        let key = self.key(token);
        let Some(info) = self.access.get_mut(&key) else {
            return AccessSeen {
                view: TokenView {
                    label: UNKNOWN_ACCESS.to_owned(),
                    state: AccessState::Unknown,
                },
                user_id: None,
                device_id: None,
                session: None,
            };
        };
        info.used = true;
        let info = info.clone();
        let Some(s) = self.sessions.get_mut(&info.session) else {
            return AccessSeen {
                view: TokenView {
                    label: format!("at#{}", info.label),
                    state: AccessState::Unknown,
                },
                user_id: None,
                device_id: None,
                session: None,
            };
        };
        s.last_seen_ms = now_ms;
        let newest = s.generations.back().map(|g| g.0);
        let state = if s.ended {
            AccessState::Revoked
        } else if newest != Some(key) {
            AccessState::Superseded
        } else if info.expires_at_ms.is_some_and(|at| now_ms >= at) {
            AccessState::Expired
        } else {
            AccessState::Valid
        };
        AccessSeen {
            view: TokenView {
                label: format!("at#{}", info.label),
                state,
            },
            user_id: s.user_id.clone(),
            device_id: Some(s.device_id.clone()),
            session: Some(info.session),
        }
    }

    /// The device (or stand-in) of the session an access token belongs to, without counting a use.
    pub fn device_of(&self, token: &str) -> Option<String> {
        let info = self.access.get(&self.key(token))?;
        self.sessions.get(&info.session).map(|s| s.device_id.clone())
    }

    /// Looks up a presented refresh token.
    pub fn refresh(&mut self, token: &str, now_ms: i64) -> RefreshSeen {
        let key = self.key(token);
        let unknown = |label: String| RefreshSeen {
            view: TokenView {
                label,
                state: RefreshState::Unknown,
            },
            user_id: None,
            device_id: None,
            session: None,
            key: Some(key),
        };
        let Some(info) = self.refresh.get(&key).cloned() else {
            return unknown(UNKNOWN_REFRESH.to_owned());
        };
        let successor_used = info
            .successor_access
            .and_then(|a| self.access.get(&a))
            .is_some_and(|a| a.used);
        let Some(s) = self.sessions.get_mut(&info.session) else {
            return unknown(format!("rt#{}", info.label));
        };
        s.last_seen_ms = now_ms;
        let state = if s.ended {
            RefreshState::Revoked
        } else if info.successor_access.is_none() {
            RefreshState::Current
        } else if successor_used {
            RefreshState::Consumed
        } else {
            RefreshState::PreviousUnused
        };
        RefreshSeen {
            view: TokenView {
                label: format!("rt#{}", info.label),
                state,
            },
            user_id: s.user_id.clone(),
            device_id: Some(s.device_id.clone()),
            session: Some(info.session),
            key: Some(key),
        }
    }

    /// Learns the tokens an answer issued; returns their labels as the trace shows them.
    pub fn issue(&mut self, issue: Issue<'_>, now_ms: i64) -> IssuedLabels {
        let session = match issue.session {
            IssueSession::Login { user_id, device_id } => {
                let existing = device_id.and_then(|d| {
                    self.sessions
                        .iter()
                        .find(|(_, s)| s.device_id == d && s.user_id.as_deref() == user_id && !s.ended)
                        .map(|(id, _)| *id)
                });
                match existing {
                    Some(id) => id,
                    None => {
                        self.new_session(user_id.map(str::to_owned), device_id.map(str::to_owned), now_ms)
                    }
                }
            }
            IssueSession::Refresh { session, presented } => {
                let id = match session.filter(|id| self.sessions.contains_key(id)) {
                    Some(id) => id,
                    // First met at a refresh (the proxy started after the login): a session
                    // whose user and device are not known yet.
                    None => self.new_session(None, None, now_ms),
                };
                let successor = self.key(issue.access_token);
                if let Some(rt) = presented.and_then(|k| self.refresh.get_mut(&k)) {
                    rt.successor_access = Some(successor);
                }
                id
            }
        };
        self.next_access += 1;
        let at_label = self.next_access;
        let at_key = self.key(issue.access_token);
        let expires_at_ms = issue.expires_in_ms.map(|ms| now_ms.saturating_add(ms));
        self.access.insert(
            at_key,
            AccessInfo {
                label: at_label,
                session,
                expires_at_ms,
                used: false,
            },
        );
        let mut rt_label = None;
        let mut rt_key = None;
        if let Some(rt) = issue.refresh_token {
            let key = self.key(rt);
            // A server that does not rotate answers the same refresh token again: same label.
            if let Some(known) = self.refresh.get_mut(&key) {
                // It stays the session's current refresh token.
                known.successor_access = None;
                rt_label = Some(known.label);
            } else {
                self.next_refresh += 1;
                rt_label = Some(self.next_refresh);
                self.refresh.insert(
                    key,
                    RefreshInfo {
                        label: self.next_refresh,
                        session,
                        successor_access: None,
                    },
                );
            }
            rt_key = Some(key);
        } else if let Some(s) = self.sessions.get(&session) {
            // No new refresh token: the session keeps the one it had (servers that do not rotate).
            rt_key = s.generations.back().and_then(|g| g.1);
            if let Some(k) = rt_key
                && let Some(info) = self.refresh.get_mut(&k)
            {
                info.successor_access = None;
                rt_label = Some(info.label);
            }
        }
        let mut forgotten = Vec::new();
        if let Some(s) = self.sessions.get_mut(&session) {
            s.generations.push_back((at_key, rt_key));
            s.issued += 1;
            s.last_seen_ms = now_ms;
            while s.generations.len() > GENERATIONS {
                if let Some(old) = s.generations.pop_front() {
                    forgotten.push(old);
                }
            }
        }
        let live: Vec<(u64, Option<u64>)> = self
            .sessions
            .get(&session)
            .map(|s| s.generations.iter().copied().collect())
            .unwrap_or_default();
        for (a, r) in forgotten {
            self.access.remove(&a);
            // A refresh token carried over into a kept generation stays.
            if let Some(r) = r
                && !live.iter().any(|g| g.1 == Some(r))
            {
                self.refresh.remove(&r);
            }
        }
        IssuedLabels {
            access_token: Some(format!("at#{at_label}")),
            refresh_token: rt_label.map(|l| format!("rt#{l}")),
            expires_in_ms: issue.expires_in_ms,
            expires_at_ms,
        }
    }

    fn new_session(&mut self, user_id: Option<String>, device_id: Option<String>, now_ms: i64) -> u64 {
        self.next_session += 1;
        let id = self.next_session;
        self.make_room();
        self.sessions.insert(
            id,
            Session {
                user_id,
                device_id: device_id.unwrap_or_else(|| format!("?s{id}")),
                generations: VecDeque::new(),
                issued: 0,
                ended: false,
                last_seen_ms: now_ms,
            },
        );
        id
    }

    fn make_room(&mut self) {
        while self.sessions.len() >= self.limits.max_sessions.max(1) {
            // Ended sessions go first, then the least recently seen.
            let victim = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| (!s.ended, s.last_seen_ms))
                .map(|(id, _)| *id);
            match victim {
                Some(id) => self.forget(id),
                None => return,
            }
        }
    }

    fn forget(&mut self, id: u64) {
        if let Some(s) = self.sessions.remove(&id) {
            for (a, r) in s.generations {
                self.access.remove(&a);
                if let Some(r) = r {
                    self.refresh.remove(&r);
                }
            }
        }
    }

    /// Learns the user and device of a session from a `whoami` answer, where they were unknown.
    pub fn learn_identity(&mut self, session: u64, user_id: &str, device_id: Option<&str>) {
        if let Some(s) = self.sessions.get_mut(&session) {
            if s.user_id.is_none() {
                s.user_id = Some(user_id.to_owned());
            }
            if let Some(d) = device_id
                && s.device_id.starts_with("?s")
            {
                d.clone_into(&mut s.device_id);
            }
        }
    }

    /// A logout of one session: its tokens are revoked from now on.
    pub fn end_session(&mut self, session: u64) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.ended = true;
        }
    }

    /// A `logout/all`: every session of the user ends.
    pub fn end_user(&mut self, user_id: &str) {
        for s in self.sessions.values_mut() {
            if s.user_id.as_deref() == Some(user_id) {
                s.ended = true;
            }
        }
    }

    /// A device deletion: the user's session on that device ends.
    pub fn end_device(&mut self, user_id: &str, device_id: &str) {
        for s in self.sessions.values_mut() {
            if s.user_id.as_deref() == Some(user_id) && s.device_id == device_id {
                s.ended = true;
            }
        }
    }

    /// An OAuth revocation of this token (access or refresh): its session ends.
    pub fn revoke_token(&mut self, token: &str) {
        let key = self.key(token);
        let session = self
            .access
            .get(&key)
            .map(|a| a.session)
            .or_else(|| self.refresh.get(&key).map(|r| r.session));
        if let Some(id) = session {
            self.end_session(id);
        }
    }

    /// Every known session, most recently seen first.
    pub fn sessions(&self) -> Vec<SessionSummary> {
        let mut out: Vec<SessionSummary> = self
            .sessions
            .values()
            .map(|s| {
                let newest = s.generations.back();
                SessionSummary {
                    user_id: s.user_id.clone(),
                    device_id: s.device_id.clone(),
                    access_token: newest
                        .and_then(|g| self.access.get(&g.0))
                        .map_or_else(|| UNKNOWN_ACCESS.to_owned(), |a| format!("at#{}", a.label)),
                    refresh_token: newest
                        .and_then(|g| g.1)
                        .and_then(|r| self.refresh.get(&r))
                        .map(|r| format!("rt#{}", r.label)),
                    generations: s.issued,
                    ended: s.ended,
                    last_seen_ms: s.last_seen_ms,
                }
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.last_seen_ms));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_rotating_server_keeps_the_refresh_token_label() {
        let mut g = TokenGraph::default();
        g.issue(Issue::login("@a:hs", "D", "at1", Some("rt1"), Some(1000)), 0);
        let rt = g.refresh("rt1", 10);
        let issued = g.issue(Issue::refreshed(&rt, "at2", Some("rt1"), Some(1000)), 20);
        assert_eq!(issued.refresh_token.as_deref(), Some("rt#1"));
        assert_eq!(g.refresh("rt1", 30).view.state, RefreshState::Current);
        let issued = g.issue(Issue::refreshed(&rt, "at3", None, None), 40);
        assert_eq!(issued.refresh_token.as_deref(), Some("rt#1"));
        assert_eq!(issued.expires_at_ms, None);
    }

    #[test]
    fn expiry_logout_and_unknown_tokens() {
        let mut g = TokenGraph::default();
        g.issue(Issue::login("@a:hs", "D", "at1", Some("rt1"), Some(1000)), 0);
        assert_eq!(g.access("at1", 999).view.state, AccessState::Valid);
        assert_eq!(g.access("at1", 1000).view.state, AccessState::Expired);
        assert_eq!(g.access("nope", 0).view.label, "at#?");
        assert_eq!(g.refresh("nope", 0).view.state, RefreshState::Unknown);
        let seen = g.access("at1", 1);
        g.end_session(seen.session.unwrap_or_default());
        assert_eq!(g.access("at1", 2).view.state, AccessState::Revoked);
        assert_eq!(g.refresh("rt1", 2).view.state, RefreshState::Revoked);
    }

    #[test]
    fn a_session_first_met_at_a_refresh_gets_a_stand_in_device_then_learns_it() {
        let mut g = TokenGraph::default();
        let rt = g.refresh("old-rt", 0);
        assert_eq!(rt.view.label, "rt#?");
        g.issue(Issue::refreshed(&rt, "at1", Some("rt1"), None), 1);
        let seen = g.access("at1", 2);
        assert_eq!(seen.device_id.as_deref(), Some("?s1"));
        g.learn_identity(seen.session.unwrap_or_default(), "@a:hs", Some("PHONE"));
        let seen = g.access("at1", 3);
        assert_eq!(
            (seen.user_id.as_deref(), seen.device_id.as_deref()),
            (Some("@a:hs"), Some("PHONE"))
        );
    }

    #[test]
    fn memory_is_bounded_by_generations_and_sessions() {
        let mut g = TokenGraph::new(GraphLimits { max_sessions: 10 });
        for s in 0..50 {
            let (at, rt) = (format!("at-{s}-0"), format!("rt-{s}-0"));
            g.issue(Issue::login("@a:hs", &format!("D{s}"), &at, Some(&rt), None), s);
            let mut prev = rt;
            for n in 1..30 {
                let seen = g.refresh(&prev, s);
                let (at, rt) = (format!("at-{s}-{n}"), format!("rt-{s}-{n}"));
                g.issue(Issue::refreshed(&seen, &at, Some(&rt), None), s);
                prev = rt;
            }
        }
        assert_eq!(g.len(), 10);
        assert!(g.access.len() <= 10 * GENERATIONS, "{}", g.access.len());
        assert!(g.refresh.len() <= 10 * GENERATIONS, "{}", g.refresh.len());
        // The newest sessions are the ones kept.
        assert_eq!(g.access("at-49-29", 100).view.state, AccessState::Valid);
        assert_eq!(g.access("at-0-29", 100).view.state, AccessState::Unknown);
    }

    #[test]
    fn a_device_that_logs_in_again_continues_its_session() {
        let mut g = TokenGraph::default();
        g.issue(Issue::login("@a:hs", "D", "at1", Some("rt1"), None), 0);
        g.issue(Issue::login("@a:hs", "D", "at2", Some("rt2"), None), 1);
        assert_eq!(g.len(), 1);
        assert_eq!(g.access("at1", 2).view.state, AccessState::Superseded);
        g.end_user("@a:hs");
        g.issue(Issue::login("@a:hs", "D", "at3", Some("rt3"), None), 3);
        assert_eq!(g.len(), 2, "a logged-out device starts a new session");
    }
}
