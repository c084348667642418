//! The token state machine: users, devices, access and refresh tokens, rotation and reuse rules.
//!
//! It knows nothing of HTTP: callers pass the knobs ([`ServerConfig`](crate::config::ServerConfig)) and the time (`now_ms`) and
//! get typed outcomes back. Tokens are kept forever as tombstones once gone, so that a trace can
//! still say what a presented token was (`consumed`, `revoked`, …).
//!
//! Sessions come in two kinds: legacy ones (`/login`, `/register`, minted) whose refresh tokens
//! follow `reuse_policy` and `revoke_old_access_token`, and OAuth 2.0 ones (bound to a client id and
//! a scope) whose refresh tokens follow the `oauth_*` knobs. Each refresh endpoint accepts only
//! its own kind of refresh token; access tokens of both kinds authenticate alike.
//!
//! Files, one concept each: `error` (refusals), `issued` (what it hands out), `users`, `devices`,
//! `session` (login and token creation), `access` (access tokens), `refresh` (rotation rules and
//! the legacy exchange), `oauth` (OAuth 2.0 sessions).

mod access;
mod devices;
mod error;
mod issued;
mod oauth;
mod refresh;
mod session;
mod users;

pub use error::{AccessError, LoginError, RefreshError, RegisterError};
pub use issued::{Authed, DeviceInfo, Issued, IssuedShared, OAuthGrant, Owner};
pub use rotary_judge::label::{access_label, refresh_label};
pub use rotary_judge::trace::{AccessState, RefreshState, TokenView};
pub use users::validate_localpart;

use std::sync::Arc;
use std::time::Duration;

/// The store's maps hash with foldhash, seeded per map: tokens are CSPRNG strings, so a keyed
/// fast hash is enough against collision floods, and SipHash cost a visible share of `/refresh`.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A label (`at#12`) written without the formatting machinery: one allocation, no `fmt` calls,
/// the same text as [`access_label`] and [`refresh_label`].
fn fast_label(prefix: &str, index: u32) -> String {
    let mut n = u64::from(index) + 1;
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(prefix.len() + digits.len() - at);
    out.push_str(prefix);
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
    out
}

fn at_label(index: u32) -> String {
    fast_label("at#", index)
}

fn rt_label(index: u32) -> String {
    fast_label("rt#", index)
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

fn min_opt(a: Option<i64>, cap: Option<i64>) -> Option<i64> {
    match (a, cap) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, _) => a,
    }
}

impl TokenStore {
    /// An empty store for users `@…:server_name`.
    pub fn new(server_name: &str) -> Self {
        Self {
            server_name: server_name.to_owned(),
            users: Vec::new(),
            users_by_id: HashMap::default(),
            devices: Vec::new(),
            devices_by_key: HashMap::default(),
            access: Vec::new(),
            access_by_token: HashMap::default(),
            refresh: Vec::new(),
            refresh_by_token: HashMap::default(),
        }
    }

    /// The server name users belong to.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }
}

#[cfg(test)]
mod tests;
