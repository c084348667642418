//! The shared state of one running homeserver and the operations the client API, the control API
//! and the in-process Rust API all use.

use crate::clock::Clock;
use crate::config::{RateLimit, ServerConfig};
use crate::endpoint::endpoint_names;
use crate::fault::{FaultError, FaultRule, FaultSet, FaultStatus};
use crate::oauth::{
    API_SCOPE, ClientMetadata, DEVICE_PREFIX, OAuthError, OAuthRegistry, RegisteredClient,
    is_valid_device_id, new_device_id,
};
use crate::rooms::Rooms;
use crate::store::{DeviceInfo, Issued, LoginError, OAuthGrant, RegisterError, TokenStore};
use crate::trace::Trace;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why an operation on the server failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    /// No such user.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// No such session (device) for that user.
    #[error("user {user:?} has no session {device_id:?}")]
    UnknownSession {
        /// The user.
        user: String,
        /// The device.
        device_id: String,
    },
    /// The session has no refresh token to rotate.
    #[error("session {0:?} has no refresh token (was it minted without one, or is refresh off?)")]
    NoRefreshToken(String),
    /// The refresh that an operation performed was refused.
    #[error("refresh refused: {0}")]
    Refresh(#[from] crate::store::RefreshError),
    /// A user could not be created.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// A bad fault rule.
    #[error(transparent)]
    Fault(#[from] FaultError),
    /// A bad config.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A room operation failed.
    #[error("room: {0}")]
    Room(#[from] crate::rooms::RoomError),
    /// An OAuth operation on a server whose OAuth 2.0 API is off.
    #[error("the OAuth 2.0 API is off: use the `mas` or `oauth-spec` profile, or set the `oauth` knob")]
    OAuthOff,
    /// No OAuth client with this id.
    #[error("unknown OAuth client {0:?}")]
    UnknownOAuthClient(String),
    /// OAuth client metadata or a device id was refused.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

/// A request to mint a session without a login request (the harness's way in).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// `alice` or `@alice:localhost`; must exist.
    pub user: String,
    /// Device id to use (a new random one when absent).
    #[serde(default)]
    pub device_id: Option<String>,
    /// Issue a refresh token too (default true; ignored when refresh is off).
    #[serde(default = "yes")]
    pub refresh_token: bool,
}

fn yes() -> bool {
    true
}

impl MintRequest {
    /// Mint a refreshable session for `user`.
    pub fn for_user(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            device_id: None,
            refresh_token: true,
        }
    }
}

/// A request to mint an OAuth 2.0 session without a browser (the harness's way in): as if `user`
/// had approved an authorization request of the client and the code had been exchanged.
///
/// ```
/// use rotary_server::OAuthMintRequest;
/// let req: OAuthMintRequest = serde_json::from_str(r#"{"user": "alice", "device_id": "PHONE"}"#).unwrap();
/// assert_eq!(req.client_id, None); // a new client is registered
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OAuthMintRequest {
    /// `alice` or `@alice:localhost`; must exist.
    pub user: String,
    /// Device id (the scope's `urn:matrix:client:device:<id>`); a new random one when absent.
    #[serde(default)]
    pub device_id: Option<String>,
    /// A registered client; when absent, a new public client is registered for the session
    /// (redirect URI `http://127.0.0.1/callback`, grants `authorization_code` and `refresh_token`).
    #[serde(default)]
    pub client_id: Option<String>,
}

impl OAuthMintRequest {
    /// Mint an OAuth session for `user` with a new client and device.
    pub fn for_user(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            device_id: None,
            client_id: None,
        }
    }
}

/// A minted OAuth 2.0 session: the tokens, and what the client must know to refresh them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OAuthIssued {
    /// The client id to send with `grant_type=refresh_token`.
    pub client_id: String,
    /// The granted scope (`urn:matrix:client:api:* urn:matrix:client:device:<id>`).
    pub scope: String,
    /// The tokens (`mat_…`, `mar_…`), labels and expiry.
    pub issued: Issued,
}

/// The redirect URI of clients the harness registers.
pub const HARNESS_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// A simple token bucket on the server clock.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    tokens: f64,
    last_ms: Option<i64>,
}

impl Bucket {
    /// Takes one token, or says how many ms until one is available.
    pub(crate) fn take(&mut self, limit: RateLimit, now_ms: i64) -> Result<(), u64> {
        let burst = f64::from(limit.burst);
        let elapsed = self
            .last_ms
            .map_or(f64::INFINITY, |l| (now_ms - l).max(0) as f64 / 1000.0);
        self.tokens = (self.tokens + elapsed * limit.per_second).min(burst);
        self.last_ms = Some(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) / limit.per_second * 1000.0).ceil();
            Err(wait.max(1.0) as u64)
        }
    }
}

/// What a server starts with, so that `reset` can go back to it.
#[derive(Clone, Debug)]
pub(crate) struct Initial {
    pub config: ServerConfig,
    pub users: Vec<(String, String)>,
    pub faults: Vec<FaultRule>,
}

/// The state of one homeserver.
#[derive(Debug)]
pub(crate) struct Core {
    config: RwLock<Arc<ServerConfig>>,
    pub initial: Initial,
    pub clock: Clock,
    trace_epoch_ms: std::sync::atomic::AtomicI64,
    pub store: Mutex<TokenStore>,
    pub rooms: Mutex<Rooms>,
    pub events: watch::Sender<u64>,
    pub faults: Mutex<FaultSet>,
    /// Whether any fault rule exists (lets the request path skip the fault lock).
    has_faults: AtomicBool,
    pub trace: Trace,
    pub refresh_bucket: Mutex<Bucket>,
    pub filters: Mutex<HashMap<String, serde_json::Value>>,
    /// OAuth clients and authorization codes. Locked before `store` when both are needed.
    pub oauth: Mutex<OAuthRegistry>,
    /// `http://<bound address>`, set once the listener is bound.
    pub base_url: OnceLock<String>,
    pub displaynames: Mutex<HashMap<String, String>>,
    pub shutdown: CancellationToken,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    pub fn new(initial: Initial, trace: Trace) -> Result<Arc<Self>, OpError> {
        initial.config.validate()?;
        let core = Arc::new(Core {
            config: RwLock::new(Arc::new(initial.config.clone())),
            clock: Clock::new(),
            trace_epoch_ms: std::sync::atomic::AtomicI64::new(0),
            store: Mutex::new(TokenStore::new(&initial.config.server_name)),
            rooms: Mutex::new(Rooms::new()),
            events: watch::channel(0).0,
            faults: Mutex::new(FaultSet::default()),
            has_faults: AtomicBool::new(false),
            trace,
            refresh_bucket: Mutex::new(Bucket::default()),
            filters: Mutex::new(HashMap::new()),
            oauth: Mutex::new(OAuthRegistry::default()),
            base_url: OnceLock::new(),
            displaynames: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            initial,
        });
        core.load_initial()?;
        Ok(core)
    }

    fn load_initial(&self) -> Result<(), OpError> {
        for (user, password) in &self.initial.users {
            self.add_user(user, password)?;
        }
        for rule in &self.initial.faults {
            self.add_fault(rule.clone())?;
        }
        Ok(())
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_config(&self, cfg: ServerConfig) -> Result<(), OpError> {
        cfg.validate()?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
        Ok(())
    }

    pub fn patch_config(&self, patch: &serde_json::Value) -> Result<Arc<ServerConfig>, OpError> {
        let mut guard = self.config.write().unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(guard.patched(patch)?);
        *guard = next.clone();
        Ok(next)
    }

    /// ms on the trace's time axis (server clock since start or the last reset).
    pub fn trace_time(&self) -> i64 {
        self.trace_time_at(std::time::Instant::now())
    }

    /// [`trace_time`](Self::trace_time) at an instant already read.
    pub fn trace_time_at(&self, t: std::time::Instant) -> i64 {
        self.clock.since_start_ms_at(t) - self.trace_epoch_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Converts an absolute expiry (ms since epoch) to the trace's time axis.
    pub fn to_trace_time(&self, epoch_ms: i64) -> i64 {
        self.trace_time() + (epoch_ms - self.clock.now_ms())
    }

    pub fn add_user(&self, user: &str, password: &str) -> Result<String, OpError> {
        let local = user.trim_start_matches('@').split(':').next().unwrap_or(user);
        Ok(lock(&self.store).add_user(local, password)?)
    }

    pub fn mint_session(&self, req: &MintRequest) -> Result<Issued, OpError> {
        let cfg = self.config();
        let now = self.clock.now_ms();
        let mut store = lock(&self.store);
        let user_id = store.user_id_for(&req.user);
        store
            .login(
                &cfg,
                now,
                &user_id,
                req.device_id.as_deref(),
                None,
                req.refresh_token,
            )
            .map_err(|LoginError::InvalidCredentials| OpError::UnknownUser(req.user.clone()))
    }

    /// Registers an OAuth client as the registration endpoint would.
    pub fn register_oauth_client(&self, metadata: &ClientMetadata) -> Result<RegisteredClient, OpError> {
        if !self.config().oauth {
            return Err(OpError::OAuthOff);
        }
        let now = self.clock.now_ms();
        Ok(lock(&self.oauth).register(metadata, now)?)
    }

    /// Every registered OAuth client.
    pub fn oauth_clients(&self) -> Vec<RegisteredClient> {
        lock(&self.oauth).clients()
    }

    /// Mints an OAuth session as an approved authorization plus a code exchange would.
    pub fn mint_oauth_session(&self, req: &OAuthMintRequest) -> Result<OAuthIssued, OpError> {
        let cfg = self.config();
        if !cfg.oauth {
            return Err(OpError::OAuthOff);
        }
        let now = self.clock.now_ms();
        let mut registry = lock(&self.oauth);
        let client_id = match &req.client_id {
            Some(id) if registry.client(id).is_some() => id.clone(),
            Some(id) => return Err(OpError::UnknownOAuthClient(id.clone())),
            None => {
                registry
                    .register(&ClientMetadata::public_client(&[HARNESS_REDIRECT_URI]), now)?
                    .client_id
            }
        };
        let device_id = match &req.device_id {
            Some(d) if is_valid_device_id(d) => d.clone(),
            Some(d) => {
                return Err(OpError::OAuth(OAuthError::new(
                    crate::oauth::OAuthErrorCode::InvalidScope,
                    format!("device id {d:?} must be 1 to 255 of A-Z a-z 0-9 - . _ ~"),
                )));
            }
            None => new_device_id(),
        };
        let grant = OAuthGrant {
            client_id: client_id.clone(),
            scope: format!("{API_SCOPE} {DEVICE_PREFIX}{device_id}"),
        };
        let mut store = lock(&self.store);
        let user_id = store.user_id_for(&req.user);
        let issued = store
            .login_oauth(&cfg, now, &user_id, Some(&device_id), &grant)
            .map_err(|LoginError::InvalidCredentials| OpError::UnknownUser(req.user.clone()))?;
        Ok(OAuthIssued {
            client_id,
            scope: grant.scope,
            issued,
        })
    }

    fn session_key(&self, user: &str, device_id: &str) -> Result<String, OpError> {
        let store = lock(&self.store);
        let user_id = store.user_id_for(user);
        if !store.has_user(&user_id) {
            return Err(OpError::UnknownUser(user.to_owned()));
        }
        if !store.has_device(&user_id, device_id) {
            return Err(OpError::UnknownSession {
                user: user.to_owned(),
                device_id: device_id.to_owned(),
            });
        }
        Ok(user_id)
    }

    pub fn expire_session(&self, user: &str, device_id: &str) -> Result<Vec<String>, OpError> {
        let user_id = self.session_key(user, device_id)?;
        let now = self.clock.now_ms();
        Ok(lock(&self.store).expire_access_tokens(&user_id, device_id, now))
    }

    pub fn revoke_session(&self, user: &str, device_id: &str) -> Result<(), OpError> {
        let user_id = self.session_key(user, device_id)?;
        lock(&self.store).delete_device(&user_id, device_id);
        Ok(())
    }

    /// Refreshes a session's newest refresh token as another process of the same device would,
    /// and (when `use_new`) uses the new access token once, which invalidates the old refresh
    /// token under the grace policies.
    pub fn rotate_out_of_band(&self, user: &str, device_id: &str, use_new: bool) -> Result<Issued, OpError> {
        let user_id = self.session_key(user, device_id)?;
        let cfg = self.config();
        let now = self.clock.now_ms();
        let mut store = lock(&self.store);
        let token = store
            .current_refresh_token(&user_id, device_id)
            .ok_or_else(|| OpError::NoRefreshToken(device_id.to_owned()))?;
        let issued = if store.is_oauth_refresh_token(&token) {
            store.refresh_oauth(&cfg, now, &token, None)?
        } else {
            store.refresh(&cfg, now, &token)?
        };
        if use_new {
            let _ = store.authenticate(&cfg, now, &issued.access_token, true);
        }
        Ok(issued)
    }

    pub fn sessions(&self, user: Option<&str>) -> Vec<DeviceInfo> {
        let store = lock(&self.store);
        let user_id = user.map(|u| store.user_id_for(u));
        store.devices(user_id.as_deref())
    }

    pub fn users(&self) -> Vec<String> {
        lock(&self.store).user_ids()
    }

    pub fn label_of(&self, token: &str) -> Option<String> {
        lock(&self.store).label_of(token)
    }

    pub fn create_room(&self, user: &str, name: Option<&str>) -> Result<String, OpError> {
        let user_id = {
            let store = lock(&self.store);
            let id = store.user_id_for(user);
            if !store.has_user(&id) {
                return Err(OpError::UnknownUser(user.to_owned()));
            }
            id
        };
        let now = self.clock.now_ms();
        let room = lock(&self.rooms).create_room(&user_id, name, now);
        self.notify_events();
        Ok(room)
    }

    pub fn join_room(&self, room_id: &str, user: &str) -> Result<(), OpError> {
        let user_id = lock(&self.store).user_id_for(user);
        let now = self.clock.now_ms();
        lock(&self.rooms).join(room_id, &user_id, now)?;
        self.notify_events();
        Ok(())
    }

    pub fn notify_events(&self) {
        let pos = lock(&self.rooms).position();
        self.events.send_replace(pos);
    }

    pub fn add_fault(&self, rule: FaultRule) -> Result<u64, OpError> {
        rule.validate(&endpoint_names())?;
        let mut faults = lock(&self.faults);
        let id = faults.add(rule);
        self.has_faults.store(true, Ordering::Release);
        Ok(id)
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        let mut faults = lock(&self.faults);
        let removed = faults.remove(id);
        self.has_faults.store(!faults.is_empty(), Ordering::Release);
        removed
    }

    pub fn clear_faults(&self) {
        let mut faults = lock(&self.faults);
        faults.clear();
        self.has_faults.store(false, Ordering::Release);
    }

    pub fn has_faults(&self) -> bool {
        self.has_faults.load(Ordering::Acquire)
    }

    pub fn faults(&self) -> Vec<FaultStatus> {
        lock(&self.faults).list()
    }

    pub fn advance_clock(&self, by: Duration) -> i64 {
        self.clock.advance(by)
    }

    /// Back to how the server started: config, users, faults; no sessions, rooms or trace; the
    /// clock offset back to zero.
    pub fn reset(&self) -> Result<(), OpError> {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(self.initial.config.clone());
        *lock(&self.store) = TokenStore::new(&self.initial.config.server_name);
        *lock(&self.rooms) = Rooms::new();
        self.clear_faults();
        lock(&self.filters).clear();
        *lock(&self.oauth) = OAuthRegistry::default();
        lock(&self.displaynames).clear();
        *lock(&self.refresh_bucket) = Bucket::default();
        self.trace.clear();
        self.clock.reset();
        self.trace_epoch_ms
            .store(self.clock.since_start_ms(), std::sync::atomic::Ordering::Relaxed);
        self.events.send_replace(0);
        self.load_initial()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let mut b = Bucket::default();
        let rl = RateLimit {
            per_second: 2.0,
            burst: 2,
        };
        assert!(b.take(rl, 0).is_ok());
        assert!(b.take(rl, 0).is_ok());
        assert_eq!(b.take(rl, 0), Err(500));
        assert!(b.take(rl, 500).is_ok());
    }
}
