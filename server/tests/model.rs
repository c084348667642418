//! Model-based property test of the token state machine ([`TokenStore`]): random sequences of
//! logins, refreshes (with the current token and with stale, unknown and malformed ones), uses of
//! access tokens, clock advances, logouts, logouts of all devices and forced expiries, for every
//! profile, checked step by step against a small model written from `fidelity/SYNAPSE_FACTS.md`
//! (legacy sessions: Synapse's tables) and docs/server.md, "Profiles and knobs" (OAuth 2.0 sessions:
//! MAS's token endpoint).
//!
//! After every operation the model predicts the outcome (ok, or which error) and, for every token
//! ever issued, the state the store reports for it. `PROPTEST_CASES` sets the number of cases
//! (1,000 when unset); failing inputs are not persisted: proptest prints the shrunk operation list
//! and the test prints what each step resolved to.

use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::TestCaseError;
use rotary_server::{
    AccessError, AccessState, Issued, OAuthGrant, OAuthReusePolicy, Profile, RefreshError, RefreshState,
    ReusePolicy, ServerConfig, TokenKind, TokenStore, access_label, generate_oauth_token, generate_token,
    refresh_label,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

const USERS: [&str; 2] = ["alice", "bob"];
const CLIENTS: [&str; 2] = ["CLIENT-A", "CLIENT-B"];
const START_MS: i64 = 1_700_000_000_000;
const MINUTE: Duration = Duration::from_secs(60);
/// Operations after the first login (10,000 cases: about 25-35 s in a debug build on 2 cores).
const MAX_OPS: usize = 40;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Which refresh token an operation presents.
#[derive(Clone, Debug)]
enum RtPick {
    /// Among the devices holding refresh tokens of the endpoint's kind (the live ones if any;
    /// device % their number), the `back`-th newest such token: 0 = the newest (what a
    /// well-behaved client holds), 1 = the previous one, 2+ = older ones.
    Newest { device: usize, back: usize },
    /// Any refresh token ever issued, of either kind (index % their number).
    Issued(usize),
    /// A well-formed refresh token the server never issued.
    Unknown,
    /// A string that is not a refresh token at all.
    Garbage,
}

/// Which access token an operation presents.
#[derive(Clone, Debug)]
enum AtPick {
    /// Among the devices holding access tokens (the live ones if any), the `back`-th newest
    /// token of one.
    Newest { device: usize, back: usize },
    /// Any access token ever issued (index % their number).
    Issued(usize),
    /// A well-formed access token the server never issued.
    Unknown,
}

/// Which client an OAuth refresh claims to be.
#[derive(Clone, Copy, Debug)]
enum ClientPick {
    /// The client the session belongs to.
    Own,
    /// The other client.
    Other,
    /// No client check (the out-of-band rotation the harness does).
    Unchecked,
}

#[derive(Clone, Debug)]
enum Op {
    /// Password login on a new device, asking for a refresh token or not.
    Login { user: usize, refresh: bool },
    /// Login naming an existing device id (device % devices ever created, live or deleted).
    LoginOnDevice { device: usize, refresh: bool },
    /// An OAuth 2.0 session on a new device. Run on every profile: the store does not look at
    /// `oauth` (only the HTTP layer does), so on `synapse`, `spec` and `no-refresh` this is what
    /// `--set oauth=true` serves: those profiles' `oauth_*` knobs beside their legacy API.
    OAuthLogin { user: usize, client: usize },
    /// `/refresh`.
    Refresh(RtPick),
    /// The OAuth token endpoint's `refresh_token` grant.
    OAuthRefresh { token: RtPick, client: ClientPick },
    /// Any authenticated request; `allow_expired` is what `/logout` does.
    Auth { token: AtPick, allow_expired: bool },
    /// Advance the clock.
    Advance { ms: i64 },
    /// Move the clock to an access token's expiry instant (or the millisecond after), if ahead.
    ToExpiryOf { token: usize, plus_one: bool },
    /// Delete a device (`/logout`, `DELETE /devices/{id}`), by device % devices ever created.
    Logout { device: usize },
    /// `/logout/all`.
    LogoutAll { user: usize },
    /// The control API's "expire access tokens" for a device.
    Expire { device: usize },
}

/// Knobs changed on top of the profile (each independently; most cases change none).
#[derive(Clone, Copy, Debug)]
struct Knobs {
    /// `refresh_token_lifetime = "8m"`.
    refresh_token_lifetime: bool,
    /// `nonrefreshable_access_token_lifetime = "6m"`.
    nonrefreshable_lifetime: bool,
    /// `session_lifetime = "12m"`.
    session_lifetime: bool,
    /// `revoke_old_access_token` flipped.
    flip_revoke_old: bool,
    /// `oauth_revoke_old_access_token` flipped.
    flip_oauth_revoke_old: bool,
}

#[derive(Clone, Debug)]
struct Case {
    profile: Profile,
    knobs: Knobs,
    ops: Vec<Op>,
}

fn rt_pick() -> impl Strategy<Value = RtPick> {
    prop_oneof![
        6 => (0..4usize).prop_map(|device| RtPick::Newest { device, back: 0 }),
        3 => (0..4usize).prop_map(|device| RtPick::Newest { device, back: 1 }),
        2 => (0..4usize, 2..4usize).prop_map(|(device, back)| RtPick::Newest { device, back }),
        2 => (0..64usize).prop_map(RtPick::Issued),
        1 => Just(RtPick::Unknown),
        1 => Just(RtPick::Garbage),
    ]
}

fn at_pick() -> impl Strategy<Value = AtPick> {
    prop_oneof![
        5 => (0..4usize).prop_map(|device| AtPick::Newest { device, back: 0 }),
        2 => (0..4usize).prop_map(|device| AtPick::Newest { device, back: 1 }),
        2 => (0..4usize, 2..4usize).prop_map(|(device, back)| AtPick::Newest { device, back }),
        2 => (0..64usize).prop_map(AtPick::Issued),
        1 => Just(AtPick::Unknown),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let client = prop_oneof![
        8 => Just(ClientPick::Own),
        1 => Just(ClientPick::Other),
        1 => Just(ClientPick::Unchecked),
    ];
    let arms: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (
            3,
            (0..2usize, prop::bool::weighted(0.8))
                .prop_map(|(user, refresh)| Op::Login { user, refresh })
                .boxed(),
        ),
        (
            1,
            (0..8usize, any::<bool>())
                .prop_map(|(device, refresh)| Op::LoginOnDevice { device, refresh })
                .boxed(),
        ),
        (8, rt_pick().prop_map(Op::Refresh).boxed()),
        (
            8,
            (at_pick(), prop::bool::weighted(0.1))
                .prop_map(|(token, allow_expired)| Op::Auth { token, allow_expired })
                .boxed(),
        ),
        (4, (1..10_000i64).prop_map(|ms| Op::Advance { ms }).boxed()),
        (1, (290_000..900_000i64).prop_map(|ms| Op::Advance { ms }).boxed()),
        (
            1,
            (0..64usize, any::<bool>())
                .prop_map(|(token, plus_one)| Op::ToExpiryOf { token, plus_one })
                .boxed(),
        ),
        (1, (0..8usize).prop_map(|device| Op::Logout { device }).boxed()),
        (1, (0..2usize).prop_map(|user| Op::LogoutAll { user }).boxed()),
        (1, (0..8usize).prop_map(|device| Op::Expire { device }).boxed()),
        (
            3,
            (0..2usize, 0..2usize)
                .prop_map(|(user, client)| Op::OAuthLogin { user, client })
                .boxed(),
        ),
        (
            6,
            (rt_pick(), client)
                .prop_map(|(token, client)| Op::OAuthRefresh { token, client })
                .boxed(),
        ),
    ];
    Union::new_weighted(arms)
}

fn knobs() -> impl Strategy<Value = Knobs> {
    let flip = || prop::bool::weighted(0.2);
    (flip(), flip(), flip(), flip(), flip()).prop_map(|(rt, nonrefreshable, session, old, oauth_old)| Knobs {
        refresh_token_lifetime: rt,
        nonrefreshable_lifetime: nonrefreshable,
        session_lifetime: session,
        flip_revoke_old: old,
        flip_oauth_revoke_old: oauth_old,
    })
}

/// Every profile; `synapse`, whose quirks are the subtle part, three times as often as each other.
fn profile() -> impl Strategy<Value = Profile> {
    let arms: Vec<(u32, Just<Profile>)> = Profile::ALL
        .into_iter()
        .map(|p| (if p == Profile::Synapse { 3 } else { 1 }, Just(p)))
        .collect();
    Union::new_weighted(arms)
}

fn case() -> impl Strategy<Value = Case> {
    // Every sequence starts with a login, so that the ops after it have tokens to work on.
    let first = prop_oneof![
        3 => (0..2usize, prop::bool::weighted(0.8)).prop_map(|(user, refresh)| Op::Login { user, refresh }),
        1 => (0..2usize, 0..2usize).prop_map(|(user, client)| Op::OAuthLogin { user, client }),
    ];
    (profile(), knobs(), first, prop::collection::vec(op(), 0..MAX_OPS)).prop_map(
        |(profile, knobs, first, rest)| Case {
            profile,
            knobs,
            ops: std::iter::once(first).chain(rest).collect(),
        },
    )
}

fn config_for(case: &Case) -> ServerConfig {
    let mut cfg = ServerConfig::for_profile(case.profile);
    let k = case.knobs;
    if k.refresh_token_lifetime {
        cfg.refresh_token_lifetime = Some(8 * MINUTE);
    }
    if k.nonrefreshable_lifetime {
        cfg.nonrefreshable_access_token_lifetime = Some(6 * MINUTE);
    }
    if k.session_lifetime {
        // Synapse wants it the longest lifetime (config/registration.py:186-238).
        cfg.session_lifetime = Some(12 * MINUTE);
    }
    cfg.revoke_old_access_token ^= k.flip_revoke_old;
    cfg.oauth_revoke_old_access_token ^= k.flip_oauth_revoke_old;
    cfg
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------
//
// Legacy sessions are modelled as Synapse stores them (SYNAPSE_FACTS §7, §9, §0.10, §0.11): an
// `access_tokens` table and a `refresh_tokens` table (row id -> next_token_id), rows deleted by
// logout, by `replace_refresh_token` and by cascade, plus Synapse's token cache, which keeps a
// *used* access token answering after its row was deleted by the cascade (the "ghosts").
// OAuth 2.0 sessions use the same two tables but MAS's rules (docs/server.md "Profiles and knobs",
// `oauth_reuse_policy`): nothing is cascaded, the client must match, a replay may revoke the
// session. Every token ever issued keeps its index; the store labels them `at#i+1` / `rt#i+1`.

/// A token as presented to the model.
#[derive(Clone, Copy, Debug)]
enum Presented {
    /// The i-th token of the kind asked for.
    Issued(usize),
    /// Well-formed, never issued.
    Never,
    /// Not a token of any shape.
    Garbage,
}

#[derive(Clone, Debug)]
struct MDevice {
    user: usize,
    id: String,
    live: bool,
    client: Option<usize>,
}

#[derive(Clone, Debug)]
struct MAccess {
    device: usize,
    refresh: Option<usize>,
    valid_until: Option<i64>,
    used: bool,
}

#[derive(Clone, Debug)]
struct MRefresh {
    device: usize,
    oauth: bool,
    expiry: Option<i64>,
    session_expiry: Option<i64>,
}

/// What a successful login or refresh should hand out.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expect {
    device: usize,
    access: usize,
    refresh: Option<usize>,
    valid_until: Option<i64>,
}

struct Model {
    cfg: ServerConfig,
    now: i64,
    devices: Vec<MDevice>,
    access: Vec<MAccess>,
    refresh: Vec<MRefresh>,
    /// Rows of `access_tokens`.
    access_rows: BTreeSet<usize>,
    /// Rows of `refresh_tokens`: id -> `next_token_id`.
    refresh_rows: BTreeMap<usize, Option<usize>>,
    /// Refresh tokens deleted as the generation before a refreshed token (replace_refresh_token
    /// step 4); every other deleted refresh token was revoked (logout, a discarded unused pair).
    superseded: BTreeSet<usize>,
    /// Access tokens whose row is gone but which Synapse's cache still accepts (§0.10).
    ghosts: BTreeSet<usize>,
}

fn after(now: i64, d: Option<Duration>) -> Option<i64> {
    d.map(|d| now + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
}

/// The earliest of the expiries that are set.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Expiry is strict: a token is still valid at its exact expiry instant (§3, §7.7).
fn is_past(expiry: Option<i64>, now: i64) -> bool {
    expiry.is_some_and(|e| e < now)
}

impl Model {
    fn new(cfg: ServerConfig) -> Self {
        Model {
            cfg,
            now: START_MS,
            devices: Vec::new(),
            access: Vec::new(),
            refresh: Vec::new(),
            access_rows: BTreeSet::new(),
            refresh_rows: BTreeMap::new(),
            superseded: BTreeSet::new(),
            ghosts: BTreeSet::new(),
        }
    }

    fn live_device(&self, user: usize, id: &str) -> Option<usize> {
        self.devices
            .iter()
            .position(|d| d.live && d.user == user && d.id == id)
    }

    /// Whether an exchanged token may be exchanged again while its successor is unused.
    fn grace(&self, oauth: bool) -> bool {
        if oauth {
            self.cfg.oauth_reuse_policy == OAuthReusePolicy::Grace
        } else {
            // grace-then-forbidden and grace-then-unknown differ only in the HTTP answer.
            self.cfg.reuse_policy != ReusePolicy::SingleUse
        }
    }

    fn access_of(&self, refresh: usize) -> Vec<usize> {
        (0..self.access.len())
            .filter(|&a| self.access[a].refresh == Some(refresh))
            .collect()
    }

    /// Synapse's `has_next_access_token_been_used OR has_next_refresh_token_been_refreshed`
    /// (§7 `lookup_refresh_token`); MAS: the next refresh token consumed or its access token used.
    fn successor_used(&self, next: usize) -> bool {
        let refreshed = self.refresh_rows.get(&next).is_some_and(Option::is_some);
        refreshed || self.access_of(next).iter().any(|&a| self.access[a].used)
    }

    fn new_refresh(
        &mut self,
        device: usize,
        oauth: bool,
        expiry: Option<i64>,
        session: Option<i64>,
    ) -> usize {
        self.refresh.push(MRefresh {
            device,
            oauth,
            expiry,
            session_expiry: session,
        });
        let r = self.refresh.len() - 1;
        self.refresh_rows.insert(r, None);
        r
    }

    fn new_access(&mut self, device: usize, refresh: Option<usize>, valid_until: Option<i64>) -> usize {
        self.access.push(MAccess {
            device,
            refresh,
            valid_until,
            used: false,
        });
        let a = self.access.len() - 1;
        self.access_rows.insert(a);
        a
    }

    /// `/login` (§5, §8) or an OAuth session start. A named live device is reused and keeps its
    /// tokens (§0.5); a deleted or new id gets a new device.
    fn login(
        &mut self,
        user: usize,
        device_id: Option<&str>,
        want_refresh: bool,
        client: Option<usize>,
    ) -> Expect {
        let device = match device_id.and_then(|id| self.live_device(user, id)) {
            Some(d) => d,
            None => {
                self.devices.push(MDevice {
                    user,
                    id: device_id.unwrap_or_default().to_owned(),
                    live: true,
                    client,
                });
                self.devices.len() - 1
            }
        };
        let now = self.now;
        let oauth = client.is_some();
        let session = after(now, self.cfg.session_lifetime);
        // §5.2: a refresh token only when asked for and refresh is enabled.
        match after(now, self.cfg.refreshable_access_token_lifetime) {
            Some(refreshable) if want_refresh => {
                // §8: both expiries capped by the session; the refresh token's expiry is set only
                // when refresh_token_lifetime is.
                let at_until = earliest(Some(refreshable), session);
                let rt_expiry =
                    after(now, self.cfg.refresh_token_lifetime).and_then(|e| earliest(Some(e), session));
                let r = self.new_refresh(device, oauth, rt_expiry, session);
                let a = self.new_access(device, Some(r), at_until);
                Expect {
                    device,
                    access: a,
                    refresh: Some(r),
                    valid_until: at_until,
                }
            }
            _ => {
                // §0.7: session_lifetime and nonrefreshable_access_token_lifetime both cap.
                let at_until = earliest(session, after(now, self.cfg.nonrefreshable_access_token_lifetime));
                let a = self.new_access(device, None, at_until);
                Expect {
                    device,
                    access: a,
                    refresh: None,
                    valid_until: at_until,
                }
            }
        }
    }

    /// `/refresh` (§7), for every reuse policy.
    fn refresh_legacy(&mut self, token: Presented) -> Result<Expect, RefreshError> {
        let r = match token {
            // §7.4: shape/CRC checked first. An OAuth `mar_` token has the wrong shape (docs/server.md:
            // "an OAuth one [is refused] at /refresh").
            Presented::Garbage => return Err(RefreshError::Malformed),
            Presented::Issued(r) if self.refresh[r].oauth => return Err(RefreshError::Malformed),
            // §7.5: "refresh token does not exist".
            Presented::Never => return Err(RefreshError::Unknown),
            Presented::Issued(r) => r,
        };
        // §7.5 and §0.1: a deleted row (logout, discarded pair, or the generation before a
        // refreshed token) no longer exists.
        let Some(&next) = self.refresh_rows.get(&r) else {
            return Err(RefreshError::Unknown);
        };
        if let Some(next) = next {
            // single-use: exchanged once, never again. Grace: accepted again until the successor
            // pair is used — its access token used while unexpired (§0.2) or it was refreshed
            // (§7.6; unreachable in practice, §0.1).
            if !self.grace(false) || self.successor_used(next) {
                return Err(RefreshError::Consumed);
            }
        }
        self.check_refresh_expiry(r)?;
        Ok(self.exchange(r))
    }

    /// The OAuth token endpoint's refresh grant, in MAS's order (crates/handlers/src/oauth2/
    /// token.rs `refresh_token_grant`): unknown token; session finished; client mismatch; then the
    /// token's own state.
    fn refresh_oauth(&mut self, token: Presented, client: Option<usize>) -> Result<Expect, RefreshError> {
        let r = match token {
            // docs/server.md: a legacy refresh token is refused at the token endpoint (wrong shape).
            Presented::Garbage => return Err(RefreshError::Malformed),
            Presented::Issued(r) if !self.refresh[r].oauth => return Err(RefreshError::Malformed),
            Presented::Never => return Err(RefreshError::Unknown),
            Presented::Issued(r) => r,
        };
        let device = self.refresh[r].device;
        if !self.devices[device].live {
            return Err(RefreshError::Unknown);
        }
        if let Some(client) = client
            && self.devices[device].client != Some(client)
        {
            return Err(RefreshError::WrongClient);
        }
        match self.refresh_rows.get(&r) {
            // Two or more generations old: its successor was exchanged, so it is a replay.
            None if self.superseded.contains(&r) => return Err(self.oauth_replay(device)),
            // Revoked with its unused pair when its predecessor was exchanged again (docs/server.md:
            // "the unused pair is then revoked"), or with the session: gone, as a deleted token
            // is (`RefreshError::Unknown`). MAS answers `invalid_grant` either way.
            None => return Err(RefreshError::Unknown),
            // docs/server.md `oauth_reuse_policy`: "grace" accepts it again only while the successor pair
            // is unused; "single-use" never.
            Some(Some(next)) if !self.grace(true) || self.successor_used(*next) => {
                return Err(self.oauth_replay(device));
            }
            Some(_) => {}
        }
        self.check_refresh_expiry(r)?;
        Ok(self.exchange(r))
    }

    /// An invalidated OAuth refresh token presented again: `invalid_grant`, and with
    /// `oauth_replay_revokes_session` (the spec's SHOULD) the whole session goes.
    fn oauth_replay(&mut self, device: usize) -> RefreshError {
        if self.cfg.oauth_replay_revokes_session {
            self.delete_device(device);
            RefreshError::ReplayRevokedSession
        } else {
            RefreshError::Consumed
        }
    }

    /// §7.7 then §7.8: the token's own expiry, then the session's.
    fn check_refresh_expiry(&self, r: usize) -> Result<(), RefreshError> {
        let rt = &self.refresh[r];
        if is_past(rt.expiry, self.now) {
            return Err(RefreshError::Expired);
        }
        if is_past(rt.session_expiry, self.now) {
            return Err(RefreshError::SessionExpired);
        }
        Ok(())
    }

    /// A successful exchange of refresh token `r`: a new pair, then `replace_refresh_token`.
    fn exchange(&mut self, r: usize) -> Expect {
        let MRefresh {
            device,
            oauth,
            session_expiry,
            ..
        } = self.refresh[r].clone();
        let now = self.now;
        // §7 "Success": new expiries capped by the session; a refresh token without its own
        // lifetime now expires with the session, so once the session is over a later generation
        // answers Expired (§7.7) where the login's token answers SessionExpired (§7.8).
        let at_until = earliest(
            after(now, self.cfg.refreshable_access_token_lifetime),
            session_expiry,
        );
        let rt_expiry = earliest(after(now, self.cfg.refresh_token_lifetime), session_expiry);
        let revoke_old = if oauth {
            self.cfg.oauth_revoke_old_access_token
        } else {
            self.cfg.revoke_old_access_token
        };
        if revoke_old {
            // An explicit deletion: the cache is invalidated too, so no ghost.
            for a in self.access_of(r) {
                self.access_rows.remove(&a);
            }
        }
        let new_r = self.new_refresh(device, oauth, rt_expiry, session_expiry);
        let new_a = self.new_access(device, Some(new_r), at_until);
        // replace_refresh_token (§7): 1-2. point r at the new token.
        let old_next = self.refresh_rows.insert(r, Some(new_r)).flatten();
        // 3. The earlier successor (the grace window let r be exchanged again) is deleted with its
        // access token: "the unused pair is discarded". It is unused by construction, so Synapse's
        // cache holds nothing for it.
        if let Some(old) = old_next {
            self.refresh_rows.remove(&old);
            for a in self.access_of(old) {
                self.access_rows.remove(&a);
            }
        }
        // 4. The generation before r (the row whose next is r) is deleted: two generations kept.
        let before: Vec<usize> = self
            .refresh_rows
            .iter()
            .filter(|&(_, next)| *next == Some(r))
            .map(|(&p, _)| p)
            .collect();
        for p in before {
            self.refresh_rows.remove(&p);
            self.superseded.insert(p);
            if !oauth {
                // The delete cascades to its access tokens (§0.11) *without* invalidating the
                // token cache (§0.10): with keep_used_access_token_of_dropped_generation, an access
                // token that was used (so is cached) keeps answering until its own expiry.
                for a in self.access_of(p) {
                    if self.access_rows.remove(&a)
                        && self.access[a].used
                        && self.cfg.keep_used_access_token_of_dropped_generation
                    {
                        self.ghosts.insert(a);
                    }
                }
            }
            // OAuth (MAS) deletes no access token here: the older ones ended when their refresh
            // token was exchanged (oauth_revoke_old_access_token) or end at their expiry.
        }
        Expect {
            device,
            access: new_a,
            refresh: Some(new_r),
            valid_until: at_until,
        }
    }

    /// Device deletion (§9): the device's access-token rows and all its refresh-token rows. The
    /// cache is invalidated for exactly the rows deleted (`DELETE … RETURNING token`,
    /// registration.py:2486-2544; §0.10's "logout does invalidate the cache" is about those): a
    /// ghost has no row left, so it outlives the logout until its own expiry.
    fn delete_device(&mut self, device: usize) {
        let rows: Vec<usize> = self
            .refresh_rows
            .keys()
            .copied()
            .filter(|&r| self.refresh[r].device == device)
            .collect();
        for r in rows {
            self.refresh_rows.remove(&r);
        }
        let rows: Vec<usize> = self
            .access_rows
            .iter()
            .copied()
            .filter(|&a| self.access[a].device == device)
            .collect();
        for a in rows {
            self.access_rows.remove(&a);
        }
        self.devices[device].live = false;
    }

    /// §3: a token authenticates if its row exists (or the cache still holds it) and it has not
    /// expired (unless `allow_expired`, as `/logout`); only then is it marked used (§0.2).
    fn authenticate(&mut self, token: Presented, allow_expired: bool) -> Result<usize, AccessError> {
        let a = match token {
            Presented::Issued(a) => a,
            Presented::Never | Presented::Garbage => return Err(AccessError::Unknown),
        };
        if !self.access_rows.contains(&a) && !self.ghosts.contains(&a) {
            return Err(AccessError::Revoked);
        }
        if !allow_expired && is_past(self.access[a].valid_until, self.now) {
            return Err(AccessError::Expired);
        }
        self.access[a].used = true;
        Ok(self.access[a].device)
    }

    /// The control API's expiry: every stored, unexpired access token of the device expires now.
    /// Ghosts have no row and are untouched.
    fn expire(&mut self, device: usize) -> Vec<usize> {
        let now = self.now;
        let mut expired = Vec::new();
        for &a in &self.access_rows {
            let at = &mut self.access[a];
            if at.device == device && !is_past(at.valid_until, now) {
                at.valid_until = Some(now - 1);
                expired.push(a);
            }
        }
        expired
    }

    fn access_state(&self, a: usize) -> AccessState {
        if !self.access_rows.contains(&a) && !self.ghosts.contains(&a) {
            AccessState::Revoked
        } else if is_past(self.access[a].valid_until, self.now) {
            AccessState::Expired
        } else {
            AccessState::Valid
        }
    }

    fn refresh_state(&self, r: usize) -> RefreshState {
        let rt = &self.refresh[r];
        match self.refresh_rows.get(&r) {
            None if self.superseded.contains(&r) => RefreshState::Consumed,
            None => RefreshState::Revoked,
            Some(_) if is_past(rt.expiry, self.now) || is_past(rt.session_expiry, self.now) => {
                RefreshState::Expired
            }
            Some(None) => RefreshState::Current,
            Some(Some(next)) if self.grace(rt.oauth) && !self.successor_used(*next) => {
                RefreshState::PreviousUnused
            }
            Some(Some(_)) => RefreshState::Consumed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case against the store and the model
// ---------------------------------------------------------------------------------------------

struct Run {
    cfg: ServerConfig,
    store: TokenStore,
    model: Model,
    /// Token strings, by model index.
    access_tokens: Vec<String>,
    refresh_tokens: Vec<String>,
    log: String,
}

fn user_id(user: usize) -> String {
    format!("@{}:localhost", USERS[user])
}

fn grant(client: usize) -> OAuthGrant {
    OAuthGrant {
        client_id: CLIENTS[client].to_owned(),
        scope: "urn:matrix:client:api:*".to_owned(),
    }
}

/// Assertion messages: `left` is what the store did, `right` what the model predicts.
fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl Run {
    fn new(cfg: ServerConfig) -> Result<Self, TestCaseError> {
        let mut store = TokenStore::new("localhost");
        for user in USERS {
            store
                .add_user(user, "pw")
                .map_err(|e| fail(format!("add_user: {e}")))?;
        }
        prop_assert!(cfg.rotate_refresh_tokens, "every profile rotates refresh tokens");
        Ok(Run {
            model: Model::new(cfg.clone()),
            cfg,
            store,
            access_tokens: Vec::new(),
            refresh_tokens: Vec::new(),
            log: String::new(),
        })
    }

    fn now(&self) -> i64 {
        self.model.now
    }

    fn context(&self) -> String {
        format!("\nsteps so far (clock relative to the start):\n{}", self.log)
    }

    fn device_ids(&self, device: usize) -> (String, String) {
        let d = &self.model.devices[device];
        (user_id(d.user), d.id.clone())
    }

    /// Devices holding tokens (the live ones if any), in creation order.
    fn holders(&self, devices: impl Iterator<Item = usize>) -> Vec<usize> {
        let all: BTreeSet<usize> = devices.collect();
        let live: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&d| self.model.devices[d].live)
            .collect();
        if live.is_empty() {
            all.into_iter().collect()
        } else {
            live
        }
    }

    fn pick_refresh(&self, pick: &RtPick, oauth: bool) -> (Presented, String) {
        let never = || {
            let token = if oauth {
                generate_oauth_token(TokenKind::Refresh)
            } else {
                generate_token(self.cfg.dialect, TokenKind::Refresh, "alice")
            };
            (Presented::Never, token)
        };
        let issued = |r: usize| (Presented::Issued(r), self.refresh_tokens[r].clone());
        match pick {
            RtPick::Garbage => (Presented::Garbage, "garbage".to_owned()),
            RtPick::Unknown => never(),
            RtPick::Issued(_) if self.refresh_tokens.is_empty() => never(),
            RtPick::Issued(i) => issued(i % self.refresh_tokens.len()),
            RtPick::Newest { device, back } => {
                let holders = self.holders(
                    self.model
                        .refresh
                        .iter()
                        .filter(|rt| rt.oauth == oauth)
                        .map(|rt| rt.device),
                );
                if holders.is_empty() {
                    return never();
                }
                let d = holders[device % holders.len()];
                let mine: Vec<usize> = (0..self.model.refresh.len())
                    .filter(|&r| self.model.refresh[r].device == d && self.model.refresh[r].oauth == oauth)
                    .collect();
                issued(mine[mine.len() - 1 - (*back).min(mine.len() - 1)])
            }
        }
    }

    fn pick_access(&self, pick: &AtPick) -> (Presented, String) {
        let never = || {
            (
                Presented::Never,
                generate_token(self.cfg.dialect, TokenKind::Access, "alice"),
            )
        };
        match pick {
            AtPick::Unknown => never(),
            AtPick::Issued(_) if self.access_tokens.is_empty() => never(),
            AtPick::Issued(i) => {
                let a = i % self.access_tokens.len();
                (Presented::Issued(a), self.access_tokens[a].clone())
            }
            AtPick::Newest { device, back } => {
                let holders = self.holders(self.model.access.iter().map(|at| at.device));
                if holders.is_empty() {
                    return never();
                }
                let d = holders[device % holders.len()];
                let mine: Vec<usize> = (0..self.model.access.len())
                    .filter(|&a| self.model.access[a].device == d)
                    .collect();
                let a = mine[mine.len() - 1 - (*back).min(mine.len() - 1)];
                (Presented::Issued(a), self.access_tokens[a].clone())
            }
        }
    }

    /// Checks what the store issued against the model's expectation and records the tokens.
    fn check_issued(&mut self, got: &Issued, want: &Expect) -> Result<(), TestCaseError> {
        let ctx = || self.context();
        let device = &self.model.devices[want.device];
        prop_assert_eq!(
            &got.user_id,
            &user_id(device.user),
            "store (left) vs model (right): user id{}",
            ctx()
        );
        if device.id.is_empty() {
            // A new device: Synapse's device ids are 10 upper-case letters (§4).
            prop_assert!(
                got.device_id.len() == 10 && got.device_id.bytes().all(|b| b.is_ascii_uppercase()),
                "device id {:?}{}",
                got.device_id,
                ctx()
            );
        } else {
            prop_assert_eq!(
                &got.device_id,
                &device.id,
                "store (left) vs model (right): device id{}",
                ctx()
            );
        }
        prop_assert_eq!(
            &got.access_label,
            &access_label(u32::try_from(want.access).unwrap_or(u32::MAX)),
            "store (left) vs model (right): access label{}",
            ctx()
        );
        prop_assert_eq!(
            &got.refresh_label,
            &want
                .refresh
                .map(|r| refresh_label(u32::try_from(r).unwrap_or(u32::MAX))),
            "store (left) vs model (right): refresh label{}",
            ctx()
        );
        prop_assert_eq!(
            got.refresh_token.is_some(),
            want.refresh.is_some(),
            "store (left) vs model (right): refresh token{}",
            ctx()
        );
        prop_assert_eq!(
            got.valid_until_ms,
            want.valid_until,
            "store (left) vs model (right): access token expiry{}",
            ctx()
        );
        if self.model.devices[want.device].id.is_empty() {
            self.model.devices[want.device].id = got.device_id.clone();
        }
        prop_assert_eq!(self.access_tokens.len(), want.access, "token bookkeeping");
        self.access_tokens.push(got.access_token.clone());
        if let (Some(r), Some(token)) = (want.refresh, &got.refresh_token) {
            prop_assert_eq!(self.refresh_tokens.len(), r, "token bookkeeping");
            self.refresh_tokens.push(token.clone());
        }
        Ok(())
    }

    fn check_refresh(
        &mut self,
        got: Result<Issued, RefreshError>,
        want: Result<Expect, RefreshError>,
    ) -> Result<String, TestCaseError> {
        match (&got, &want) {
            (Ok(got), Ok(want)) => {
                self.check_issued(got, want)?;
                Ok(format!("ok {} {:?}", got.access_label, got.refresh_label))
            }
            (Err(g), Err(w)) if g == w => Ok(format!("{g:?}")),
            _ => Err(fail(format!(
                "refresh: store gave {:?}, model expects {:?}{}",
                got.as_ref().map(|i| (&i.access_label, &i.refresh_label)),
                want,
                self.context()
            ))),
        }
    }

    fn label_of_presented(p: Presented, refresh: bool) -> String {
        match (p, refresh) {
            (Presented::Issued(i), true) => refresh_label(u32::try_from(i).unwrap_or(u32::MAX)),
            (Presented::Issued(i), false) => access_label(u32::try_from(i).unwrap_or(u32::MAX)),
            (Presented::Never, _) => "never-issued".to_owned(),
            (Presented::Garbage, _) => "garbage".to_owned(),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now();
        let _ = write!(self.log, "  t+{:>7}ms {:?}", now - START_MS, op);
        let outcome = match op {
            Op::Login { user, refresh } => {
                let got = self
                    .store
                    .login(&self.cfg, now, &user_id(*user), None, None, *refresh)
                    .map_err(|e| fail(format!("login failed: {e}{}", self.context())))?;
                let want = self.model.login(*user, None, *refresh, None);
                self.check_issued(&got, &want)?;
                format!(
                    "ok {} {:?} on {}",
                    got.access_label, got.refresh_label, got.device_id
                )
            }
            Op::LoginOnDevice { device, refresh } => {
                if self.model.devices.is_empty() {
                    "no device yet".to_owned()
                } else {
                    let d = device % self.model.devices.len();
                    let user = self.model.devices[d].user;
                    let id = self.model.devices[d].id.clone();
                    let got = self
                        .store
                        .login(&self.cfg, now, &user_id(user), Some(&id), None, *refresh)
                        .map_err(|e| fail(format!("login failed: {e}{}", self.context())))?;
                    let want = self.model.login(user, Some(&id), *refresh, None);
                    self.check_issued(&got, &want)?;
                    format!("ok {} {:?} on {}", got.access_label, got.refresh_label, id)
                }
            }
            Op::OAuthLogin { user, client } => {
                let got = self
                    .store
                    .login_oauth(&self.cfg, now, &user_id(*user), None, &grant(*client))
                    .map_err(|e| fail(format!("OAuth login failed: {e}{}", self.context())))?;
                let want = self.model.login(*user, None, true, Some(*client));
                self.check_issued(&got, &want)?;
                format!(
                    "ok {} {:?} on {}",
                    got.access_label, got.refresh_label, got.device_id
                )
            }
            Op::Refresh(pick) => {
                let (presented, token) = self.pick_refresh(pick, false);
                let _ = write!(self.log, " [{}]", Self::label_of_presented(presented, true));
                let got = self.store.refresh(&self.cfg, now, &token);
                let want = self.model.refresh_legacy(presented);
                self.check_refresh(got, want)?
            }
            Op::OAuthRefresh { token: pick, client } => {
                let (presented, token) = self.pick_refresh(pick, true);
                let own = match presented {
                    Presented::Issued(r) => {
                        let device = self.model.refresh[r].device;
                        self.model.devices[device].client.unwrap_or(0)
                    }
                    Presented::Never | Presented::Garbage => 0,
                };
                let client = match client {
                    ClientPick::Own => Some(own),
                    ClientPick::Other => Some(1 - own),
                    ClientPick::Unchecked => None,
                };
                let _ = write!(
                    self.log,
                    " [{} as {:?}]",
                    Self::label_of_presented(presented, true),
                    client.map(|c| CLIENTS[c])
                );
                let got = self
                    .store
                    .refresh_oauth(&self.cfg, now, &token, client.map(|c| CLIENTS[c]));
                let want = self.model.refresh_oauth(presented, client);
                self.check_refresh(got, want)?
            }
            Op::Auth {
                token: pick,
                allow_expired,
            } => {
                let (presented, token) = self.pick_access(pick);
                let _ = write!(self.log, " [{}]", Self::label_of_presented(presented, false));
                let got = self.store.authenticate(&self.cfg, now, &token, *allow_expired);
                let want = self.model.authenticate(presented, *allow_expired);
                match (&got, &want) {
                    (Ok(authed), Ok(device)) => {
                        let (user, id) = self.device_ids(*device);
                        let label = Self::label_of_presented(presented, false);
                        prop_assert_eq!(
                            (&authed.user_id, &authed.device_id, &authed.label),
                            (&user, &id, &label),
                            "store (left) vs model (right): authenticated as{}",
                            self.context()
                        );
                        "ok".to_owned()
                    }
                    (Err(g), Err(w)) if g == w => format!("{g:?}"),
                    _ => {
                        return Err(fail(format!(
                            "authenticate: store gave {:?}, model expects {:?}{}",
                            got.map(|a| a.label),
                            want,
                            self.context()
                        )));
                    }
                }
            }
            Op::Advance { ms } => {
                self.model.now += ms;
                String::new()
            }
            Op::ToExpiryOf { token, plus_one } => {
                let target = if self.model.access.is_empty() {
                    None
                } else {
                    self.model.access[token % self.model.access.len()].valid_until
                };
                match target.map(|t| t + i64::from(*plus_one)) {
                    Some(t) if t > now => {
                        self.model.now = t;
                        format!("clock now t+{}ms", t - START_MS)
                    }
                    _ => "no later expiry: clock unchanged".to_owned(),
                }
            }
            Op::Logout { device } => {
                let (user_id, id, user) = if self.model.devices.is_empty() {
                    (user_id(0), "NOSUCHDEVICE".to_owned(), 0)
                } else {
                    let d = device % self.model.devices.len();
                    let (u, id) = self.device_ids(d);
                    (u, id, self.model.devices[d].user)
                };
                let got = self.store.delete_device(&user_id, &id);
                let live = self.model.live_device(user, &id);
                if let Some(d) = live {
                    self.model.delete_device(d);
                }
                prop_assert_eq!(
                    got,
                    live.is_some(),
                    "store (left) vs model (right): delete_device {}{}",
                    id,
                    self.context()
                );
                format!("{id}: {got}")
            }
            Op::LogoutAll { user } => {
                let got = self.store.delete_all_devices(&user_id(*user));
                let live: Vec<usize> = (0..self.model.devices.len())
                    .filter(|&d| self.model.devices[d].live && self.model.devices[d].user == *user)
                    .collect();
                for &d in &live {
                    self.model.delete_device(d);
                }
                prop_assert_eq!(
                    got,
                    live.len(),
                    "store (left) vs model (right): delete_all_devices{}",
                    self.context()
                );
                format!("{got} devices")
            }
            Op::Expire { device } => {
                if self.model.devices.is_empty() {
                    "no device yet".to_owned()
                } else {
                    let d = device % self.model.devices.len();
                    let (user_id, id) = self.device_ids(d);
                    let got = self.store.expire_access_tokens(&user_id, &id, now);
                    let want: Vec<String> = match self.model.live_device(self.model.devices[d].user, &id) {
                        Some(live) => self
                            .model
                            .expire(live)
                            .into_iter()
                            .map(|a| access_label(u32::try_from(a).unwrap_or(u32::MAX)))
                            .collect(),
                        None => Vec::new(),
                    };
                    prop_assert_eq!(
                        &got,
                        &want,
                        "store (left) vs model (right): expire_access_tokens {}{}",
                        id,
                        self.context()
                    );
                    format!("{id}: {got:?}")
                }
            }
        };
        let _ = writeln!(self.log, " -> {outcome}");
        self.check_all_tokens()
    }

    /// Every token ever issued is in the state the model predicts; the stored rows and the device
    /// list match.
    fn check_all_tokens(&self) -> Result<(), TestCaseError> {
        let now = self.now();
        for (a, token) in self.access_tokens.iter().enumerate() {
            let view = self.store.inspect_access(&self.cfg, now, Some(token));
            let want = self.model.access_state(a);
            prop_assert_eq!(
                view.state,
                want,
                "store (left) vs model (right): state of {} after the last step{}",
                view.label,
                self.context()
            );
        }
        for (r, token) in self.refresh_tokens.iter().enumerate() {
            let view = self.store.inspect_refresh(&self.cfg, now, token);
            let want = self.model.refresh_state(r);
            prop_assert_eq!(
                view.state,
                want,
                "store (left) vs model (right): state of {} after the last step{}",
                view.label,
                self.context()
            );
        }
        prop_assert_eq!(
            self.store.live_token_counts(),
            (self.model.access_rows.len(), self.model.refresh_rows.len()),
            "store (left) vs model (right): stored (access, refresh) rows{}",
            self.context()
        );
        let got: Vec<(String, String, Vec<String>, Vec<String>)> = self
            .store
            .devices(None)
            .into_iter()
            .map(|d| {
                (
                    d.user_id,
                    d.device_id,
                    d.live_access_tokens,
                    d.live_refresh_tokens,
                )
            })
            .collect();
        let mut want = Vec::new();
        for user in 0..USERS.len() {
            for (d, dev) in self.model.devices.iter().enumerate() {
                if dev.live && dev.user == user {
                    let access = self
                        .model
                        .access_rows
                        .iter()
                        .filter(|&&a| self.model.access[a].device == d)
                        .map(|&a| access_label(u32::try_from(a).unwrap_or(u32::MAX)))
                        .collect();
                    let refresh = self
                        .model
                        .refresh_rows
                        .keys()
                        .filter(|&&r| self.model.refresh[r].device == d)
                        .map(|&r| refresh_label(u32::try_from(r).unwrap_or(u32::MAX)))
                        .collect();
                    want.push((user_id(user), dev.id.clone(), access, refresh));
                }
            }
        }
        prop_assert_eq!(
            got,
            want,
            "store (left) vs model (right): devices and their stored tokens{}",
            self.context()
        );
        Ok(())
    }
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut run = Run::new(config_for(case))?;
    for op in &case.ops {
        run.step(op)?;
    }
    Ok(())
}

/// `PROPTEST_CASES` when set (CI sets 10,000), else 1,000. Failures are not persisted: the
/// shrunk case is printed instead.
fn config() -> ProptestConfig {
    let from_env = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        from_env.cases
    } else {
        1_000
    };
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..from_env
    }
}

proptest! {
    #![proptest_config(config())]

    /// The store agrees with the model on every step of every sequence, for every profile.
    #[test]
    fn token_store_matches_the_model(case in case()) {
        run(&case)?;
    }
}
