//! The token state machine: users, devices, access and refresh tokens, rotation and reuse rules.
//!
//! It knows nothing of HTTP: callers pass the knobs ([`ServerConfig`]) and the time (`now_ms`) and
//! get typed outcomes back. Tokens are kept forever as tombstones once gone, so that a trace can
//! still say what a presented token was (`consumed`, `revoked`, …).
//!
//! Sessions come in two kinds: legacy ones (`/login`, `/register`, minted) whose refresh tokens
//! follow `reuse_policy` and `revoke_old_access_token`, and OAuth 2.0 ones (bound to a client id and
//! a scope) whose refresh tokens follow the `oauth_*` knobs. Each refresh endpoint accepts only
//! its own kind of refresh token; access tokens of both kinds authenticate alike.

use crate::config::{OAuthReusePolicy, ReusePolicy, ServerConfig};
use crate::token::{
    TokenKind, check_oauth_token_shape, check_token_shape, generate_oauth_token, generate_token,
};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why an access token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The server never issued it.
    #[error("unknown access token")]
    Unknown,
    /// It was revoked (logout, device deleted, a refresh that revokes the old token, or its
    /// generation dropped).
    #[error("revoked access token")]
    Revoked,
    /// Its lifetime is over.
    #[error("expired access token")]
    Expired,
}

/// Why a refresh was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The string does not have the shape or checksum of a refresh token.
    #[error("malformed refresh token")]
    Malformed,
    /// Never issued, or deleted (logout, device deletion, dropped generation).
    #[error("unknown refresh token")]
    Unknown,
    /// Already exchanged and its successor was used (or, single-use, exchanged at all).
    #[error("refresh token already used")]
    Consumed,
    /// The refresh token's own lifetime is over.
    #[error("refresh token expired")]
    Expired,
    /// The session lifetime is over.
    #[error("session expired")]
    SessionExpired,
    /// An OAuth refresh token presented by a client other than the one it was issued to.
    #[error("refresh token was issued to another client")]
    WrongClient,
    /// An invalidated OAuth refresh token was presented again and, as the spec recommends
    /// (`oauth_replay_revokes_session`), the whole session was revoked.
    #[error("refresh token already used; the session was revoked")]
    ReplayRevokedSession,
}

/// Why a password login was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (the server does not say which).
    #[error("invalid username or password")]
    InvalidCredentials,
}

/// Why a user could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The user id is taken.
    #[error("user id already taken")]
    UserInUse,
    /// The localpart has characters Matrix forbids.
    #[error("invalid username: {0}")]
    InvalidUsername(String),
}

/// State of an access token at one instant, as the trace shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessState {
    /// It authenticates.
    Valid,
    /// Its lifetime is over.
    Expired,
    /// Revoked or deleted.
    Revoked,
    /// Never issued.
    Unknown,
    /// The request carried none.
    Missing,
}

/// State of a refresh token at one instant, as the trace shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshState {
    /// The newest refresh token of its session.
    Current,
    /// Exchanged, but its successor is unused, so it may be exchanged again.
    PreviousUnused,
    /// Exchanged and no longer accepted.
    Consumed,
    /// Its lifetime (or the session's) is over.
    Expired,
    /// Deleted by logout, device deletion or revocation.
    Revoked,
    /// Never issued.
    Unknown,
}

/// A token as the trace names it: a label and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView<S> {
    /// `at#3`, `rt#2`, or `at#?`/`rt#?` for a token the server never issued.
    pub label: String,
    /// The state at that moment.
    pub state: S,
}

/// The OAuth 2.0 grant an OAuth session was created by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthGrant {
    /// The client the session belongs to.
    pub client_id: String,
    /// The granted scope, space-separated (it names the device).
    pub scope: String,
}

/// Tokens handed out by a login, registration, refresh or mint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The full user id.
    pub user_id: String,
    /// The device the tokens belong to.
    pub device_id: String,
    /// The new access token (a secret: never put it in a trace).
    pub access_token: String,
    /// Its label, e.g. `at#4`.
    pub access_label: String,
    /// The new refresh token, if one was issued.
    pub refresh_token: Option<String>,
    /// Its label.
    pub refresh_label: Option<String>,
    /// Expiry of the access token, ms since the epoch; `None` = never.
    pub valid_until_ms: Option<i64>,
}

impl Issued {
    /// `expires_in_ms` as Synapse computes it: the expiry minus the time of the response.
    pub fn expires_in_ms(&self, now_ms: i64) -> Option<i64> {
        self.valid_until_ms.map(|v| v - now_ms)
    }
}

/// Who a valid access token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authed {
    /// The full user id.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The token's label.
    pub label: String,
}

/// A device of a user, as `GET /devices` and the control API list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// The device id.
    pub device_id: String,
    /// The owner.
    pub user_id: String,
    /// The display name given at login.
    pub display_name: Option<String>,
    /// Labels of the access tokens that still work.
    pub live_access_tokens: Vec<String>,
    /// Labels of the refresh tokens not yet deleted.
    pub live_refresh_tokens: Vec<String>,
    /// Label of the newest refresh token.
    pub current_refresh_token: Option<String>,
    /// The OAuth client of an OAuth 2.0 session (absent for legacy sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_client_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AccessGone {
    Revoked,
    /// Deleted with its refresh-token generation.
    Dropped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefreshGone {
    Revoked,
    /// Its generation was deleted after its successor was refreshed.
    Superseded,
}

#[derive(Debug)]
struct AccessToken {
    token: Arc<str>,
    device: u32,
    valid_until_ms: Option<i64>,
    used: bool,
    gone: Option<AccessGone>,
    oauth: bool,
}

#[derive(Debug)]
struct RefreshToken {
    token: Arc<str>,
    device: u32,
    oauth: bool,
    expiry_ms: Option<i64>,
    session_expiry_ms: Option<i64>,
    next: Option<u32>,
    prev: Option<u32>,
    access: Vec<u32>,
    gone: Option<RefreshGone>,
}

#[derive(Debug)]
struct Device {
    user: u32,
    device_id: Arc<str>,
    display_name: Option<String>,
    access: Vec<u32>,
    refresh: Vec<u32>,
    deleted: bool,
    oauth: Option<OAuthGrant>,
}

#[derive(Debug)]
struct User {
    user_id: Arc<str>,
    localpart: String,
    password: String,
    devices: Vec<u32>,
}

/// The in-memory token state machine. Not thread-safe on its own: the server keeps it behind a
/// mutex and never holds that across an await.
///
/// ```
/// use rotary_server::{ServerConfig, TokenStore};
/// let cfg = ServerConfig::default();
/// let mut store = TokenStore::new("localhost");
/// store.add_user("alice", "wonderland").unwrap();
/// let user = store.check_password("alice", "wonderland").unwrap();
/// let login = store.login(&cfg, 0, &user, None, None, true).unwrap();
/// let refreshed = store.refresh(&cfg, 1_000, login.refresh_token.as_deref().unwrap()).unwrap();
/// assert_ne!(refreshed.access_token, login.access_token);
/// ```
#[derive(Debug)]
pub struct TokenStore {
    server_name: String,
    users: Vec<User>,
    users_by_id: HashMap<Arc<str>, u32>,
    devices: Vec<Device>,
    devices_by_key: HashMap<(u32, Arc<str>), u32>,
    access: Vec<AccessToken>,
    access_by_token: HashMap<Arc<str>, u32>,
    refresh: Vec<RefreshToken>,
    refresh_by_token: HashMap<Arc<str>, u32>,
}

fn idx(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn add_ms(now_ms: i64, d: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
}

/// The refresh rules one refresh token follows, from the knobs of its kind of session.
#[derive(Clone, Copy, Debug)]
struct Rules {
    /// An exchanged token is accepted again while its successor pair is unused.
    grace: bool,
    /// A refresh revokes the access tokens of the refresh token it consumed.
    revoke_old_access: bool,
    /// Deleting the generation before the consumed token also deletes its access tokens
    /// (Synapse keeps two generations).
    drop_old_generation_access: bool,
    /// A token of a deleted generation counts as consumed (OAuth) rather than unknown (Synapse).
    superseded_is_consumed: bool,
    /// Presenting an invalidated token revokes the session.
    replay_revokes_session: bool,
}

impl Rules {
    fn legacy(cfg: &ServerConfig) -> Self {
        Rules {
            grace: cfg.reuse_policy != ReusePolicy::SingleUse,
            revoke_old_access: cfg.revoke_old_access_token,
            drop_old_generation_access: true,
            superseded_is_consumed: false,
            replay_revokes_session: false,
        }
    }

    fn oauth(cfg: &ServerConfig) -> Self {
        Rules {
            grace: cfg.oauth_reuse_policy == OAuthReusePolicy::Grace,
            revoke_old_access: cfg.oauth_revoke_old_access_token,
            drop_old_generation_access: false,
            superseded_is_consumed: true,
            replay_revokes_session: cfg.oauth_replay_revokes_session,
        }
    }

    fn for_token(cfg: &ServerConfig, oauth: bool) -> Self {
        if oauth {
            Rules::oauth(cfg)
        } else {
            Rules::legacy(cfg)
        }
    }
}

fn min_opt(a: Option<i64>, cap: Option<i64>) -> Option<i64> {
    match (a, cap) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, _) => a,
    }
}

/// Checks a localpart the way Synapse does (`a-z`, `0-9`, `=_-./+`).
pub fn validate_localpart(localpart: &str) -> Result<(), RegisterError> {
    if localpart.is_empty() {
        return Err(RegisterError::InvalidUsername(
            "User ID cannot be empty".to_owned(),
        ));
    }
    if localpart.starts_with('_') {
        return Err(RegisterError::InvalidUsername(
            "User ID may not begin with _".to_owned(),
        ));
    }
    let ok = localpart
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"=_-./+".contains(&b));
    if !ok || localpart.len() > 200 {
        return Err(RegisterError::InvalidUsername(
            "User ID can only contain characters a-z, 0-9, or '=_-./+'".to_owned(),
        ));
    }
    Ok(())
}

impl TokenStore {
    /// An empty store for users `@…:server_name`.
    pub fn new(server_name: &str) -> Self {
        Self {
            server_name: server_name.to_owned(),
            users: Vec::new(),
            users_by_id: HashMap::new(),
            devices: Vec::new(),
            devices_by_key: HashMap::new(),
            access: Vec::new(),
            access_by_token: HashMap::new(),
            refresh: Vec::new(),
            refresh_by_token: HashMap::new(),
        }
    }

    /// The server name users belong to.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Turns `alice`, `@alice:localhost` or `Alice` into the full user id.
    pub fn user_id_for(&self, user: &str) -> String {
        if user.starts_with('@') {
            user.to_owned()
        } else {
            format!("@{}:{}", user.to_lowercase(), self.server_name)
        }
    }

    fn user_index(&self, user: &str) -> Option<u32> {
        let id = self.user_id_for(user);
        self.users_by_id
            .get(id.as_str())
            .or_else(|| self.users_by_id.get(id.to_lowercase().as_str()))
            .copied()
    }

    /// Whether the user exists.
    pub fn has_user(&self, user: &str) -> bool {
        self.user_index(user).is_some()
    }

    /// Creates a user. Returns the full user id.
    pub fn add_user(&mut self, localpart: &str, password: &str) -> Result<String, RegisterError> {
        validate_localpart(localpart)?;
        let user_id: Arc<str> = Arc::from(format!("@{localpart}:{}", self.server_name));
        if self.users_by_id.contains_key(&user_id) {
            return Err(RegisterError::UserInUse);
        }
        let i = idx(self.users.len());
        self.users.push(User {
            user_id: user_id.clone(),
            localpart: localpart.to_owned(),
            password: password.to_owned(),
            devices: Vec::new(),
        });
        self.users_by_id.insert(user_id.clone(), i);
        Ok(user_id.to_string())
    }

    /// Every user id.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.iter().map(|u| u.user_id.to_string()).collect()
    }

    /// Checks a password; returns the full user id.
    pub fn check_password(&self, user: &str, password: &str) -> Result<String, LoginError> {
        let i = self.user_index(user).ok_or(LoginError::InvalidCredentials)?;
        let u = &self.users[i as usize];
        if u.password == password {
            Ok(u.user_id.to_string())
        } else {
            Err(LoginError::InvalidCredentials)
        }
    }

    fn device_for(
        &mut self,
        user: u32,
        device_id: Option<&str>,
        display_name: Option<&str>,
        oauth: Option<&OAuthGrant>,
    ) -> u32 {
        if let Some(id) = device_id
            && let Some(&d) = self.devices_by_key.get(&(user, Arc::from(id)))
            && !self.devices[d as usize].deleted
        {
            if display_name.is_some() {
                self.devices[d as usize].display_name = display_name.map(str::to_owned);
            }
            if let Some(grant) = oauth {
                self.devices[d as usize].oauth = Some(grant.clone());
            }
            return d;
        }
        let device_id: Arc<str> = match device_id {
            Some(id) => Arc::from(id),
            None => {
                let mut rng = rand::rng();
                let id: String = (0..10)
                    .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
                    .collect();
                Arc::from(id)
            }
        };
        let d = idx(self.devices.len());
        self.devices.push(Device {
            user,
            device_id: device_id.clone(),
            display_name: display_name.map(str::to_owned),
            access: Vec::new(),
            refresh: Vec::new(),
            deleted: false,
            oauth: oauth.cloned(),
        });
        self.devices_by_key.insert((user, device_id), d);
        self.users[user as usize].devices.push(d);
        d
    }

    fn new_access(
        &mut self,
        cfg: &ServerConfig,
        device: u32,
        valid_until_ms: Option<i64>,
        refresh: Option<u32>,
        oauth: bool,
    ) -> u32 {
        let user = self.devices[device as usize].user as usize;
        let token: Arc<str> = Arc::from(if oauth {
            generate_oauth_token(TokenKind::Access)
        } else {
            generate_token(cfg.dialect, TokenKind::Access, &self.users[user].localpart)
        });
        let a = idx(self.access.len());
        self.access.push(AccessToken {
            token: token.clone(),
            device,
            valid_until_ms,
            used: false,
            gone: None,
            oauth,
        });
        self.access_by_token.insert(token, a);
        self.devices[device as usize].access.push(a);
        if let Some(r) = refresh {
            self.refresh[r as usize].access.push(a);
        }
        a
    }

    fn new_refresh(
        &mut self,
        cfg: &ServerConfig,
        device: u32,
        expiry_ms: Option<i64>,
        session_expiry_ms: Option<i64>,
        oauth: bool,
    ) -> u32 {
        let user = self.devices[device as usize].user as usize;
        let token: Arc<str> = Arc::from(if oauth {
            generate_oauth_token(TokenKind::Refresh)
        } else {
            generate_token(cfg.dialect, TokenKind::Refresh, &self.users[user].localpart)
        });
        let r = idx(self.refresh.len());
        self.refresh.push(RefreshToken {
            token: token.clone(),
            device,
            oauth,
            expiry_ms,
            session_expiry_ms,
            next: None,
            prev: None,
            access: Vec::new(),
            gone: None,
        });
        self.refresh_by_token.insert(token, r);
        self.devices[device as usize].refresh.push(r);
        r
    }

    fn issued(&self, a: u32, r: Option<u32>) -> Issued {
        let at = &self.access[a as usize];
        let dev = &self.devices[at.device as usize];
        Issued {
            user_id: self.users[dev.user as usize].user_id.to_string(),
            device_id: dev.device_id.to_string(),
            access_token: at.token.to_string(),
            access_label: access_label(a),
            refresh_token: r.map(|r| self.refresh[r as usize].token.to_string()),
            refresh_label: r.map(refresh_label),
            valid_until_ms: at.valid_until_ms,
        }
    }

    /// Logs `user_id` in on a new (or the named) device, as Synapse's `register_device` does.
    /// A refresh token is issued only when asked for and refresh is enabled. Fails only for a user
    /// that does not exist.
    pub fn login(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        user_id: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
        want_refresh: bool,
    ) -> Result<Issued, LoginError> {
        self.start_session(cfg, now_ms, user_id, device_id, display_name, want_refresh, None)
    }

    /// Starts an OAuth 2.0 session for `user_id` on the named (or a new) device, bound to the
    /// grant's client and scope, as a successful authorization-code exchange does: `mat_`/`mar_`
    /// tokens, a refresh token whenever refresh is enabled. Fails only for a user that does not
    /// exist.
    ///
    /// ```
    /// use rotary_server::{OAuthGrant, Profile, ServerConfig, TokenStore};
    /// let cfg = ServerConfig::for_profile(Profile::Mas);
    /// let mut store = TokenStore::new("localhost");
    /// store.add_user("alice", "wonderland").unwrap();
    /// let grant = OAuthGrant { client_id: "C1".into(), scope: "urn:matrix:client:api:*".into() };
    /// let s = store.login_oauth(&cfg, 0, "alice", Some("DEV"), &grant).unwrap();
    /// assert!(s.access_token.starts_with("mat_"));
    /// let next = store.refresh_oauth(&cfg, 1, s.refresh_token.as_deref().unwrap(), Some("C1")).unwrap();
    /// assert!(next.refresh_token.unwrap().starts_with("mar_"));
    /// ```
    pub fn login_oauth(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        user_id: &str,
        device_id: Option<&str>,
        grant: &OAuthGrant,
    ) -> Result<Issued, LoginError> {
        self.start_session(cfg, now_ms, user_id, device_id, None, true, Some(grant))
    }

    #[allow(clippy::too_many_arguments)]
    fn start_session(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        user_id: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
        want_refresh: bool,
        oauth: Option<&OAuthGrant>,
    ) -> Result<Issued, LoginError> {
        let user = self.user_index(user_id).ok_or(LoginError::InvalidCredentials)?;
        let device = self.device_for(user, device_id, display_name, oauth);
        let is_oauth = oauth.is_some();
        let session_expiry = cfg.session_lifetime.map(|d| add_ms(now_ms, d));
        match cfg.refreshable_access_token_lifetime {
            Some(lifetime) if want_refresh => {
                let at_exp = min_opt(Some(add_ms(now_ms, lifetime)), session_expiry);
                let rt_exp = min_opt(
                    cfg.refresh_token_lifetime.map(|d| add_ms(now_ms, d)),
                    session_expiry,
                );
                let r = self.new_refresh(cfg, device, rt_exp, session_expiry, is_oauth);
                let a = self.new_access(cfg, device, at_exp, Some(r), is_oauth);
                Ok(self.issued(a, Some(r)))
            }
            _ => {
                let at_exp = min_opt(
                    cfg.nonrefreshable_access_token_lifetime
                        .map(|d| add_ms(now_ms, d)),
                    session_expiry,
                )
                .or(session_expiry);
                let a = self.new_access(cfg, device, at_exp, None, is_oauth);
                Ok(self.issued(a, None))
            }
        }
    }

    fn access_live(&self, cfg: &ServerConfig, at: &AccessToken) -> bool {
        match at.gone {
            None => true,
            Some(AccessGone::Dropped) => at.used && cfg.keep_used_access_token_of_dropped_generation,
            Some(AccessGone::Revoked) => false,
        }
    }

    /// The label and state of an access token, without changing anything.
    pub fn inspect_access(
        &self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: Option<&str>,
    ) -> TokenView<AccessState> {
        let Some(token) = token else {
            return TokenView {
                label: "-".to_owned(),
                state: AccessState::Missing,
            };
        };
        let Some(&a) = self.access_by_token.get(token) else {
            return TokenView {
                label: "at#?".to_owned(),
                state: AccessState::Unknown,
            };
        };
        let at = &self.access[a as usize];
        let state = if !self.access_live(cfg, at) {
            AccessState::Revoked
        } else if at.valid_until_ms.is_some_and(|v| v < now_ms) {
            AccessState::Expired
        } else {
            AccessState::Valid
        };
        TokenView {
            label: access_label(a),
            state,
        }
    }

    /// Authenticates a request. Marks the token as used (which, under the grace policies,
    /// invalidates the refresh token it was exchanged for). `allow_expired` is what `/logout` uses.
    pub fn authenticate(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
        allow_expired: bool,
    ) -> Result<Authed, AccessError> {
        let a = *self.access_by_token.get(token).ok_or(AccessError::Unknown)?;
        let at = &self.access[a as usize];
        if !self.access_live(cfg, at) {
            return Err(AccessError::Revoked);
        }
        if !allow_expired && at.valid_until_ms.is_some_and(|v| v < now_ms) {
            return Err(AccessError::Expired);
        }
        let device = at.device as usize;
        self.access[a as usize].used = true;
        let dev = &self.devices[device];
        Ok(Authed {
            user_id: self.users[dev.user as usize].user_id.to_string(),
            device_id: dev.device_id.to_string(),
            label: access_label(a),
        })
    }

    fn successor_used(&self, next: u32) -> bool {
        let n = &self.refresh[next as usize];
        n.next.is_some() || n.access.iter().any(|&a| self.access[a as usize].used)
    }

    /// The label and state of a refresh token, without changing anything.
    pub fn inspect_refresh(&self, cfg: &ServerConfig, now_ms: i64, token: &str) -> TokenView<RefreshState> {
        let Some(&r) = self.refresh_by_token.get(token) else {
            return TokenView {
                label: "rt#?".to_owned(),
                state: RefreshState::Unknown,
            };
        };
        let rt = &self.refresh[r as usize];
        let state = match rt.gone {
            Some(RefreshGone::Revoked) => RefreshState::Revoked,
            Some(RefreshGone::Superseded) => RefreshState::Consumed,
            None if rt.expiry_ms.is_some_and(|e| e < now_ms)
                || rt.session_expiry_ms.is_some_and(|e| e < now_ms) =>
            {
                RefreshState::Expired
            }
            None => match rt.next {
                None => RefreshState::Current,
                Some(n) if Rules::for_token(cfg, rt.oauth).grace && !self.successor_used(n) => {
                    RefreshState::PreviousUnused
                }
                Some(_) => RefreshState::Consumed,
            },
        };
        TokenView {
            label: refresh_label(r),
            state,
        }
    }

    /// The device an access or refresh token was issued to, whatever its state.
    fn device_of_token(&self, token: &str) -> Option<u32> {
        self.access_by_token
            .get(token)
            .map(|&a| self.access[a as usize].device)
            .or_else(|| {
                self.refresh_by_token
                    .get(token)
                    .map(|&r| self.refresh[r as usize].device)
            })
    }

    /// The user and device an access or refresh token was issued to, whatever its state.
    pub fn owner_of(&self, token: &str) -> Option<(String, String)> {
        let device = self.device_of_token(token)?;
        let dev = &self.devices[device as usize];
        Some((
            self.users[dev.user as usize].user_id.to_string(),
            dev.device_id.to_string(),
        ))
    }

    /// The label of any token this store issued.
    pub fn label_of(&self, token: &str) -> Option<String> {
        self.access_by_token
            .get(token)
            .map(|&a| access_label(a))
            .or_else(|| self.refresh_by_token.get(token).map(|&r| refresh_label(r)))
    }

    fn revoke_access(&mut self, a: u32, why: AccessGone) {
        let at = &mut self.access[a as usize];
        if at.gone.is_none() {
            at.gone = Some(why);
            let device = at.device as usize;
            self.devices[device].access.retain(|&x| x != a);
        }
    }

    /// Deletes a refresh token, and its access tokens unless `access_why` is `None`.
    fn delete_refresh(&mut self, r: u32, why: RefreshGone, access_why: Option<AccessGone>) {
        if self.refresh[r as usize].gone.is_some() {
            return;
        }
        self.refresh[r as usize].gone = Some(why);
        let device = self.refresh[r as usize].device as usize;
        self.devices[device].refresh.retain(|&x| x != r);
        if let Some(access_why) = access_why {
            let access = self.refresh[r as usize].access.clone();
            for a in access {
                self.revoke_access(a, access_why);
            }
        }
    }

    /// Exchanges a legacy refresh token (`/refresh`), following the configured rotation and reuse
    /// rules exactly as Synapse's `AuthHandler.refresh_token` and `replace_refresh_token` do.
    /// OAuth refresh tokens are not accepted here.
    pub fn refresh(&mut self, cfg: &ServerConfig, now_ms: i64, token: &str) -> Result<Issued, RefreshError> {
        let known = self
            .refresh_by_token
            .get(token)
            .copied()
            .filter(|&r| !self.refresh[r as usize].oauth);
        if !check_token_shape(cfg.dialect, TokenKind::Refresh, token) && known.is_none() {
            return Err(RefreshError::Malformed);
        }
        let r = known.ok_or(RefreshError::Unknown)?;
        self.exchange(cfg, now_ms, r, Rules::legacy(cfg))
    }

    /// Exchanges an OAuth 2.0 refresh token (the token endpoint's `refresh_token` grant) as MAS
    /// does: the client must be the session's (`None` skips that check, for out-of-band
    /// rotation); an exchanged token is accepted again only while its successor pair is unused
    /// (`oauth_reuse_policy = "grace"`), which revokes that pair; a refresh revokes the old access
    /// token (`oauth_revoke_old_access_token`); with `oauth_replay_revokes_session`, presenting an
    /// invalidated token revokes the whole session. Legacy refresh tokens are not accepted here.
    pub fn refresh_oauth(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
        client_id: Option<&str>,
    ) -> Result<Issued, RefreshError> {
        let known = self
            .refresh_by_token
            .get(token)
            .copied()
            .filter(|&r| self.refresh[r as usize].oauth);
        if !check_oauth_token_shape(TokenKind::Refresh, token) && known.is_none() {
            return Err(RefreshError::Malformed);
        }
        let r = known.ok_or(RefreshError::Unknown)?;
        // MAS's order: a finished session first, then the client, whatever the token's state.
        let dev = &self.devices[self.refresh[r as usize].device as usize];
        if dev.deleted {
            return Err(RefreshError::Unknown);
        }
        if let Some(client) = client_id
            && dev.oauth.as_ref().is_some_and(|g| g.client_id != client)
        {
            return Err(RefreshError::WrongClient);
        }
        self.exchange(cfg, now_ms, r, Rules::oauth(cfg))
    }

    /// The refusal of an invalidated token; under `replay_revokes_session` the session goes too.
    fn replayed(&mut self, r: u32, rules: Rules) -> RefreshError {
        if rules.replay_revokes_session {
            let device = self.refresh[r as usize].device;
            self.delete_device_at(device);
            RefreshError::ReplayRevokedSession
        } else {
            RefreshError::Consumed
        }
    }

    fn exchange(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        r: u32,
        rules: Rules,
    ) -> Result<Issued, RefreshError> {
        let rt = &self.refresh[r as usize];
        if self.devices[rt.device as usize].deleted {
            return Err(RefreshError::Unknown);
        }
        match rt.gone {
            Some(RefreshGone::Superseded) if rules.superseded_is_consumed => {
                return Err(self.replayed(r, rules));
            }
            Some(_) => return Err(RefreshError::Unknown),
            None => {}
        }
        if let Some(next) = rt.next
            && (!rules.grace || self.successor_used(next))
        {
            return Err(self.replayed(r, rules));
        }
        let rt = &self.refresh[r as usize];
        if rt.expiry_ms.is_some_and(|e| e < now_ms) {
            return Err(RefreshError::Expired);
        }
        if rt.session_expiry_ms.is_some_and(|e| e < now_ms) {
            return Err(RefreshError::SessionExpired);
        }
        let session_expiry = rt.session_expiry_ms;
        let device = rt.device;
        let oauth = rt.oauth;
        let at_exp = min_opt(
            cfg.refreshable_access_token_lifetime.map(|d| add_ms(now_ms, d)),
            session_expiry,
        );
        let rt_exp = min_opt(
            cfg.refresh_token_lifetime.map(|d| add_ms(now_ms, d)),
            session_expiry,
        )
        .or(session_expiry);
        if rules.revoke_old_access {
            for a in self.refresh[r as usize].access.clone() {
                self.revoke_access(a, AccessGone::Revoked);
            }
        }
        if !cfg.rotate_refresh_tokens {
            let a = self.new_access(cfg, device, at_exp, Some(r), oauth);
            return Ok(self.issued(a, None));
        }
        let new_r = self.new_refresh(cfg, device, rt_exp, session_expiry, oauth);
        let a = self.new_access(cfg, device, at_exp, Some(new_r), oauth);
        // replace_refresh_token: point at the successor, delete an earlier unused successor (and
        // its access token), and delete the generation before this one.
        let old_next = self.refresh[r as usize].next.replace(new_r);
        self.refresh[new_r as usize].prev = Some(r);
        if let Some(old) = old_next {
            self.delete_refresh(old, RefreshGone::Revoked, Some(AccessGone::Revoked));
        }
        if let Some(prev) = self.refresh[r as usize].prev.take() {
            let access_why = rules.drop_old_generation_access.then_some(AccessGone::Dropped);
            self.delete_refresh(prev, RefreshGone::Superseded, access_why);
        }
        Ok(self.issued(a, Some(new_r)))
    }

    /// Whether `token` is a refresh token of an OAuth 2.0 session.
    pub fn is_oauth_refresh_token(&self, token: &str) -> bool {
        self.refresh_by_token
            .get(token)
            .is_some_and(|&r| self.refresh[r as usize].oauth)
    }

    /// The OAuth grant of the session a token (access or refresh, any state) belongs to.
    pub fn oauth_grant_of(&self, token: &str) -> Option<&OAuthGrant> {
        let device = self.device_of_token(token)?;
        self.devices[device as usize].oauth.as_ref()
    }

    /// Revokes an OAuth 2.0 token as MAS's revocation endpoint does (RFC 7009): a valid OAuth
    /// access token (live and unexpired) or a valid OAuth refresh token (live, not yet exchanged)
    /// ends its whole session (the device and all its tokens). Anything else — unknown, already
    /// revoked, expired, exchanged, or a legacy token — changes nothing. Returns the user and
    /// device whose session ended.
    pub fn revoke_oauth_token(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
    ) -> Option<(String, String)> {
        let device = if let Some(&a) = self.access_by_token.get(token) {
            let at = &self.access[a as usize];
            let valid =
                at.oauth && self.access_live(cfg, at) && at.valid_until_ms.is_none_or(|v| v >= now_ms);
            valid.then_some(at.device)?
        } else {
            let &r = self.refresh_by_token.get(token)?;
            let rt = &self.refresh[r as usize];
            let valid = rt.oauth && rt.gone.is_none() && rt.next.is_none();
            valid.then_some(rt.device)?
        };
        let dev = &self.devices[device as usize];
        let owner = (
            self.users[dev.user as usize].user_id.to_string(),
            dev.device_id.to_string(),
        );
        self.delete_device_at(device);
        Some(owner)
    }

    fn device_index(&self, user_id: &str, device_id: &str) -> Option<u32> {
        let u = self.user_index(user_id)?;
        self.devices_by_key
            .get(&(u, Arc::from(device_id)))
            .copied()
            .filter(|&d| !self.devices[d as usize].deleted)
    }

    /// Whether the user has this (undeleted) device.
    pub fn has_device(&self, user_id: &str, device_id: &str) -> bool {
        self.device_index(user_id, device_id).is_some()
    }

    /// Deletes a device and every token it holds. Returns whether it existed.
    pub fn delete_device(&mut self, user_id: &str, device_id: &str) -> bool {
        let Some(d) = self.device_index(user_id, device_id) else {
            return false;
        };
        self.delete_device_at(d);
        true
    }

    fn delete_device_at(&mut self, d: u32) {
        if self.devices[d as usize].deleted {
            return;
        }
        for r in self.devices[d as usize].refresh.clone() {
            self.delete_refresh(r, RefreshGone::Revoked, Some(AccessGone::Revoked));
        }
        for a in self.devices[d as usize].access.clone() {
            self.revoke_access(a, AccessGone::Revoked);
        }
        let dev = &mut self.devices[d as usize];
        dev.deleted = true;
        let user = dev.user as usize;
        self.users[user].devices.retain(|&x| x != d);
    }

    /// Sets a device's display name. Returns whether the device exists.
    pub fn set_device_display_name(&mut self, user_id: &str, device_id: &str, name: Option<String>) -> bool {
        match self.device_index(user_id, device_id) {
            Some(d) => {
                self.devices[d as usize].display_name = name;
                true
            }
            None => false,
        }
    }

    /// Deletes every device of a user. Returns how many there were.
    pub fn delete_all_devices(&mut self, user_id: &str) -> usize {
        let Some(u) = self.user_index(user_id) else {
            return 0;
        };
        let devices: Vec<String> = self.users[u as usize]
            .devices
            .iter()
            .map(|&d| self.devices[d as usize].device_id.to_string())
            .collect();
        for d in &devices {
            self.delete_device(user_id, d);
        }
        devices.len()
    }

    /// Makes every live access token of a device expired as of now. Returns their labels.
    pub fn expire_access_tokens(&mut self, user_id: &str, device_id: &str, now_ms: i64) -> Vec<String> {
        let Some(d) = self.device_index(user_id, device_id) else {
            return Vec::new();
        };
        let mut labels = Vec::new();
        for a in self.devices[d as usize].access.clone() {
            let at = &mut self.access[a as usize];
            if at.valid_until_ms.is_none_or(|v| v >= now_ms) {
                at.valid_until_ms = Some(now_ms - 1);
                labels.push(access_label(a));
            }
        }
        labels
    }

    /// The newest refresh token of a device, if it has one.
    pub fn current_refresh_token(&self, user_id: &str, device_id: &str) -> Option<String> {
        let d = self.device_index(user_id, device_id)?;
        self.devices[d as usize]
            .refresh
            .iter()
            .map(|&r| &self.refresh[r as usize])
            .find(|rt| rt.next.is_none())
            .map(|rt| rt.token.to_string())
    }

    /// The devices of one user, or of every user when `user_id` is `None`.
    pub fn devices(&self, user_id: Option<&str>) -> Vec<DeviceInfo> {
        let users: Vec<u32> = match user_id {
            Some(u) => self.user_index(u).into_iter().collect(),
            None => (0..idx(self.users.len())).collect(),
        };
        let mut out = Vec::new();
        for u in users {
            for &d in &self.users[u as usize].devices {
                let dev = &self.devices[d as usize];
                out.push(DeviceInfo {
                    device_id: dev.device_id.to_string(),
                    user_id: self.users[u as usize].user_id.to_string(),
                    display_name: dev.display_name.clone(),
                    live_access_tokens: dev.access.iter().map(|&a| access_label(a)).collect(),
                    live_refresh_tokens: dev.refresh.iter().map(|&r| refresh_label(r)).collect(),
                    current_refresh_token: dev
                        .refresh
                        .iter()
                        .find(|&&r| self.refresh[r as usize].next.is_none())
                        .map(|&r| refresh_label(r)),
                    oauth_client_id: dev.oauth.as_ref().map(|g| g.client_id.clone()),
                });
            }
        }
        out
    }

    /// How many access and refresh tokens are still stored (not deleted), as Synapse's tables
    /// would count rows.
    pub fn live_token_counts(&self) -> (usize, usize) {
        (
            self.access.iter().filter(|a| a.gone.is_none()).count(),
            self.refresh.iter().filter(|r| r.gone.is_none()).count(),
        )
    }
}

/// The trace label of the n-th access token (`at#1` is the first).
pub fn access_label(index: u32) -> String {
    format!("at#{}", u64::from(index) + 1)
}

/// The trace label of the n-th refresh token (`rt#1` is the first).
pub fn refresh_label(index: u32) -> String {
    format!("rt#{}", u64::from(index) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    fn setup(profile: Profile) -> (ServerConfig, TokenStore, Issued) {
        let cfg = ServerConfig::for_profile(profile);
        let mut s = TokenStore::new("localhost");
        s.add_user("alice", "wonderland").unwrap();
        let login = s.login(&cfg, 0, "@alice:localhost", None, None, true).unwrap();
        (cfg, s, login)
    }

    fn rt(i: &Issued) -> &str {
        i.refresh_token.as_deref().unwrap()
    }

    #[test]
    fn synapse_invalidation_chain() {
        let (cfg, mut s, login) = setup(Profile::Synapse);
        let first = s.refresh(&cfg, 1, rt(&login)).unwrap();
        // Reuse before the successor was used: accepted, the first successor is discarded.
        let second = s.refresh(&cfg, 2, rt(&login)).unwrap();
        assert_eq!(s.refresh(&cfg, 3, rt(&first)), Err(RefreshError::Unknown));
        assert_eq!(
            s.authenticate(&cfg, 3, &first.access_token, false),
            Err(AccessError::Revoked)
        );
        assert!(s.authenticate(&cfg, 3, &login.access_token, false).is_ok());
        assert!(s.authenticate(&cfg, 3, &second.access_token, false).is_ok());
        assert_eq!(s.refresh(&cfg, 4, rt(&login)), Err(RefreshError::Consumed));
        assert!(s.refresh(&cfg, 5, rt(&second)).is_ok());
    }

    #[test]
    fn only_two_generations_are_kept() {
        let (cfg, mut s, login) = setup(Profile::Synapse);
        assert_eq!(s.live_token_counts(), (1, 1));
        let mut cur = login;
        for t in 1..=5 {
            cur = s.refresh(&cfg, t, rt(&cur)).unwrap();
        }
        assert_eq!(s.live_token_counts(), (2, 2));
        s.delete_device(&cur.user_id, &cur.device_id);
        assert_eq!(s.live_token_counts(), (0, 0));
        assert_eq!(s.refresh(&cfg, 9, rt(&cur)), Err(RefreshError::Unknown));
    }

    #[test]
    fn mas_tokens_are_single_use_and_old_access_dies() {
        let (cfg, mut s, login) = setup(Profile::Mas);
        let next = s.refresh(&cfg, 1, rt(&login)).unwrap();
        assert_eq!(s.refresh(&cfg, 2, rt(&login)), Err(RefreshError::Consumed));
        assert_eq!(
            s.authenticate(&cfg, 2, &login.access_token, false),
            Err(AccessError::Revoked)
        );
        assert!(s.authenticate(&cfg, 2, &next.access_token, false).is_ok());
    }

    #[test]
    fn expiry_is_inclusive_of_the_last_millisecond() {
        let (cfg, mut s, login) = setup(Profile::Synapse);
        let until = login.valid_until_ms.unwrap();
        assert!(s.authenticate(&cfg, until, &login.access_token, false).is_ok());
        assert_eq!(
            s.authenticate(&cfg, until + 1, &login.access_token, false),
            Err(AccessError::Expired)
        );
        assert!(s.authenticate(&cfg, until + 1, &login.access_token, true).is_ok());
    }

    #[test]
    fn refresh_states_follow_the_chain() {
        let (cfg, mut s, login) = setup(Profile::Synapse);
        assert_eq!(
            s.inspect_refresh(&cfg, 0, rt(&login)).state,
            RefreshState::Current
        );
        let next = s.refresh(&cfg, 1, rt(&login)).unwrap();
        assert_eq!(
            s.inspect_refresh(&cfg, 1, rt(&login)).state,
            RefreshState::PreviousUnused
        );
        s.authenticate(&cfg, 2, &next.access_token, false).unwrap();
        assert_eq!(
            s.inspect_refresh(&cfg, 2, rt(&login)).state,
            RefreshState::Consumed
        );
        assert_eq!(
            s.inspect_refresh(&cfg, 2, "syr_nope").state,
            RefreshState::Unknown
        );
        assert_eq!(s.inspect_access(&cfg, 2, None).state, AccessState::Missing);
    }

    fn oauth_setup(profile: Profile) -> (ServerConfig, TokenStore, Issued) {
        let cfg = ServerConfig::for_profile(profile);
        let mut s = TokenStore::new("localhost");
        s.add_user("alice", "wonderland").unwrap();
        let grant = OAuthGrant {
            client_id: "CLIENT".into(),
            scope: "urn:matrix:client:api:* urn:matrix:client:device:DEV".into(),
        };
        let login = s
            .login_oauth(&cfg, 0, "@alice:localhost", Some("DEV"), &grant)
            .unwrap();
        (cfg, s, login)
    }

    #[test]
    fn oauth_replay_is_accepted_while_the_successor_is_unused() {
        let (cfg, mut s, login) = oauth_setup(Profile::Mas);
        let first = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
        // MAS revokes the old access token at once.
        assert_eq!(
            s.authenticate(&cfg, 1, &login.access_token, false),
            Err(AccessError::Revoked)
        );
        assert_eq!(
            s.inspect_refresh(&cfg, 1, rt(&login)).state,
            RefreshState::PreviousUnused
        );
        // The response was lost: the replay revokes the unused pair and issues a new one.
        let second = s.refresh_oauth(&cfg, 2, rt(&login), Some("CLIENT")).unwrap();
        assert_eq!(
            s.authenticate(&cfg, 2, &first.access_token, false),
            Err(AccessError::Revoked)
        );
        assert_eq!(
            s.refresh_oauth(&cfg, 2, rt(&first), Some("CLIENT")),
            Err(RefreshError::Unknown)
        );
        s.authenticate(&cfg, 3, &second.access_token, false).unwrap();
        assert_eq!(
            s.refresh_oauth(&cfg, 3, rt(&login), Some("CLIENT")),
            Err(RefreshError::Consumed)
        );
        // Two generations on, the first token is still "consumed", not unknown.
        let third = s.refresh_oauth(&cfg, 4, rt(&second), Some("CLIENT")).unwrap();
        s.refresh_oauth(&cfg, 5, rt(&third), Some("CLIENT")).unwrap();
        assert_eq!(
            s.refresh_oauth(&cfg, 6, rt(&login), Some("CLIENT")),
            Err(RefreshError::Consumed)
        );
        assert_eq!(
            s.inspect_refresh(&cfg, 6, rt(&login)).state,
            RefreshState::Consumed
        );
        assert!(s.has_device("@alice:localhost", "DEV"));
    }

    #[test]
    fn oauth_spec_replay_revokes_the_session() {
        let (cfg, mut s, login) = oauth_setup(Profile::OAuthSpec);
        let next = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
        s.authenticate(&cfg, 2, &next.access_token, false).unwrap();
        assert_eq!(
            s.refresh_oauth(&cfg, 3, rt(&login), Some("CLIENT")),
            Err(RefreshError::ReplayRevokedSession)
        );
        assert_eq!(
            s.authenticate(&cfg, 3, &next.access_token, false),
            Err(AccessError::Revoked)
        );
        assert!(!s.has_device("@alice:localhost", "DEV"));
        assert_eq!(
            s.refresh_oauth(&cfg, 4, rt(&login), Some("CLIENT")),
            Err(RefreshError::Unknown)
        );
    }

    #[test]
    fn oauth_and_legacy_tokens_stay_apart() {
        let (cfg, mut s, login) = oauth_setup(Profile::Mas);
        assert!(login.access_token.starts_with("mat_"));
        assert_eq!(s.refresh(&cfg, 1, rt(&login)), Err(RefreshError::Malformed));
        assert_eq!(
            s.refresh_oauth(&cfg, 1, rt(&login), Some("OTHER")),
            Err(RefreshError::WrongClient)
        );
        let legacy = s.login(&cfg, 0, "@alice:localhost", None, None, true).unwrap();
        assert_eq!(
            s.refresh_oauth(&cfg, 1, rt(&legacy), Some("CLIENT")),
            Err(RefreshError::Malformed)
        );
        assert!(s.authenticate(&cfg, 1, &login.access_token, false).is_ok());
        assert_eq!(s.revoke_oauth_token(&cfg, 1, &legacy.access_token), None);
        assert_eq!(
            s.oauth_grant_of(&login.access_token)
                .map(|g| g.client_id.as_str()),
            Some("CLIENT")
        );
        assert_eq!(
            s.devices(None)
                .iter()
                .filter(|d| d.oauth_client_id.is_some())
                .count(),
            1
        );
    }

    #[test]
    fn oauth_revocation_ends_the_session_only_for_valid_tokens() {
        let (cfg, mut s, login) = oauth_setup(Profile::Mas);
        let next = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
        // The exchanged refresh token and the revoked access token are no longer valid.
        assert_eq!(s.revoke_oauth_token(&cfg, 2, rt(&login)), None);
        assert_eq!(s.revoke_oauth_token(&cfg, 2, &login.access_token), None);
        let until = next.valid_until_ms.unwrap();
        assert_eq!(s.revoke_oauth_token(&cfg, until + 1, &next.access_token), None);
        assert_eq!(
            s.revoke_oauth_token(&cfg, 2, &next.access_token),
            Some(("@alice:localhost".into(), "DEV".into()))
        );
        assert_eq!(
            s.refresh_oauth(&cfg, 3, rt(&next), Some("CLIENT")),
            Err(RefreshError::Unknown)
        );
    }

    #[test]
    fn oauth_knobs_single_use_no_rotation_and_old_access_kept() {
        let (mut cfg, mut s, login) = oauth_setup(Profile::Mas);
        cfg.oauth_reuse_policy = OAuthReusePolicy::SingleUse;
        cfg.oauth_revoke_old_access_token = false;
        s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
        assert!(s.authenticate(&cfg, 1, &login.access_token, false).is_ok());
        assert_eq!(
            s.refresh_oauth(&cfg, 2, rt(&login), Some("CLIENT")),
            Err(RefreshError::Consumed)
        );
        let (mut cfg, mut s, login) = oauth_setup(Profile::Mas);
        cfg.rotate_refresh_tokens = false;
        let a = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
        assert!(a.refresh_token.is_none());
        assert!(a.access_token.starts_with("mat_"));
        s.refresh_oauth(&cfg, 2, rt(&login), Some("CLIENT")).unwrap();
        assert_eq!(
            s.authenticate(&cfg, 2, &a.access_token, false),
            Err(AccessError::Revoked)
        );
    }

    #[test]
    fn malformed_and_non_rotating() {
        let (mut cfg, mut s, login) = setup(Profile::Synapse);
        assert_eq!(s.refresh(&cfg, 1, "garbage"), Err(RefreshError::Malformed));
        cfg.rotate_refresh_tokens = false;
        let a = s.refresh(&cfg, 1, rt(&login)).unwrap();
        assert!(a.refresh_token.is_none());
        let b = s.refresh(&cfg, 2, rt(&login)).unwrap();
        assert_ne!(a.access_token, b.access_token);
    }
}
