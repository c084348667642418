//! The reference client: a small Matrix client that handles access-token refresh correctly.
//!
//! How it stays correct, in one place (each point names the bug switch that breaks it):
//!
//! - **One refresh at a time** (`refresh-per-401`). A refresh runs under `refresh_gate`, an async
//!   mutex. Every authenticated request passes through the gate before it reads the access token, so
//!   requests issued during a refresh wait for it and then use the new token
//!   (`old-token-after-refresh`). Each refresh run bumps `refresh_epoch` and leaves its outcome in
//!   `last_refresh`. A request that needs a refresh notes the epoch; if a run ended while it waited
//!   for the gate, it takes that run's outcome (success or failure) instead of refreshing again.
//! - **A 401 is retried** (`no-retry`) with the new token, after a refresh or — if another request
//!   already replaced the token this one used (`generation` moved on) — without one. At most
//!   [`MAX_REFRESH_ROUNDS`] refresh-and-retry rounds per request (`retry-forever`). The server's 401
//!   is authoritative: the client's own idea of the expiry is only a hint (clock skew, early
//!   revocation, a restarted server with a shorter lifetime), so a 401 is refreshed however much
//!   time the client thinks is left (`trust-local-expiry`).
//! - **Preemptive refresh** (`no-preempt`) when less than the margin is left, the margin being capped
//!   at half the token's lifetime (`preempt-storm`, `missing-expiry-is-zero`).
//! - **Rotated tokens are persisted before they are used** (`no-persist`), and the refresh token is
//!   kept when a refresh response carries none (`drop-refresh-token`); a refresh always presents the
//!   current refresh token (`stale-refresh-token`).
//! - **Only a definite "no" ends the session** (`logout-on-transient`, `swallow-refresh-failure`):
//!   transient failures are retried with backoff (`ignore-retry-after`) and the same refresh token,
//!   within the request that needed the refresh, so that it still succeeds (`retry-next-request`);
//!   a Matrix 4xx logs out, softly when the server says so (`ignore-soft-logout`), and a logged-out
//!   client makes no more requests (`keep-tokens-after-logout`). Without a refresh token a 401 ends
//!   the session at once (`refresh-without-token`).
//! - **Sends are idempotent**: a send retried after a network error reuses its transaction id
//!   (`new-txn-on-retry`). Logins ask for a refresh token when told to (`no-refresh-request`).
//!
//! OAuth 2.0 sessions (Matrix v1.15) follow the same rules; only one refresh attempt differs — a
//! form `POST` to the discovered token endpoint instead of `/refresh` — and how its answer is read:
//! any 4xx but 429 is a hard logout (`oauth-4xx-not-logout`), whatever its body
//! (`oauth-matrix-error-logout`). See `oauth.rs`.
//!
//! This file holds the client's state and its public calls; `request.rs` the path of one
//! authenticated request (preemptive refresh, the 401 decision, retries) and `single_flight.rs`
//! the refresh itself (one at a time, shared by every waiter, adopted and persisted).

use rand::RngExt;
use reqwest::{Method, Url};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

mod request;
mod single_flight;

use crate::api::{self, Body, Call, Reply};
use crate::bugs::{Bug, Bugs};
use crate::error::ClientError;
use crate::oauth::{self, Endpoints, OAuthSession};
use crate::persist::{PersistedOAuth, PersistedSession, SessionStore};
use crate::refresh::{self, RefreshOutcome, RefreshedTokens};
use crate::session::{Expiry, SessionData};
use crate::sync::SyncBatch;

/// Default preemptive-refresh margin.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);
/// Default time limit of one `/refresh` request.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time limit of any other request (a sync adds its long-poll timeout).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of `/refresh` attempts before a transient failure is given up.
pub const DEFAULT_MAX_REFRESH_ATTEMPTS: u32 = 4;
/// Refresh-and-retry rounds one request may go through after 401s.
pub const MAX_REFRESH_ROUNDS: u32 = 2;
/// Retries of a request whose token was replaced by someone else while it was out.
const MAX_STALE_RETRIES: u32 = 4;
/// Extra attempts of a send after a network error.
const SEND_NETWORK_RETRIES: u32 = 2;
/// With the `trust-local-expiry` bug, a 401 on a refreshed token with at least this much left on the
/// client's clock is taken as a logout (matrix-js-sdk's `REFRESH_ON_ERROR_IF_TOKEN_EXPIRES_WITHIN_MS`).
const TRUSTED_EXPIRY_LEFT: Duration = Duration::from_secs(60);

/// How a [`Client`] is set up.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The homeserver's base URL, e.g. `http://127.0.0.1:8008`.
    pub homeserver_url: String,
    /// Where to persist the session; `None` = keep it in memory only.
    pub state_dir: Option<PathBuf>,
    /// Refresh when less than this is left of the access token's lifetime (capped at half of it).
    pub margin: Duration,
    /// Time limit of one `/refresh` request.
    pub refresh_timeout: Duration,
    /// Time limit of other requests; a sync adds its `timeout_ms`.
    pub request_timeout: Duration,
    /// `/refresh` attempts before a transient failure is given up.
    pub max_refresh_attempts: u32,
    /// Active bug switches.
    pub bugs: Bugs,
    /// The HTTP client (and so the connection pool) to send requests with; `None` builds one per
    /// [`Client`]. See [`ClientConfig::http_client`].
    pub http_client: Option<reqwest::Client>,
}

impl ClientConfig {
    /// The defaults for a homeserver, with no state dir and no bug.
    pub fn new(homeserver_url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            homeserver_url: homeserver_url.into(),
            state_dir: None,
            margin: DEFAULT_MARGIN,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_refresh_attempts: DEFAULT_MAX_REFRESH_ATTEMPTS,
            bugs: Bugs::NONE,
            http_client: None,
        }
    }

    /// Sends every request through `http` instead of a client of its own, so that many
    /// [`Client`]s (the sessions of a load test, the accounts of an app) share one connection
    /// pool. Redirects follow `http`'s policy; the OAuth authorization request, whose redirect is
    /// read rather than followed, still uses a client of its own.
    ///
    /// ```
    /// use rotary_reference::ClientConfig;
    /// let pool = reqwest::Client::new();
    /// let a = ClientConfig::new("http://127.0.0.1:8008").http_client(pool.clone());
    /// let b = ClientConfig::new("http://127.0.0.1:8008").http_client(pool);
    /// assert!(a.http_client.is_some() && b.http_client.is_some());
    /// ```
    pub fn http_client(mut self, http: reqwest::Client) -> ClientConfig {
        self.http_client = Some(http);
        self
    }
}

/// Something the application should know about, reported as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// New tokens were adopted (and persisted, if the client persists).
    SessionChanged {
        /// The access token now held.
        access_token: Option<String>,
        /// The refresh token now held.
        refresh_token: Option<String>,
    },
    /// The client decided the session is over.
    LoggedOut {
        /// The device may log in again and keep its data.
        soft_logout: bool,
    },
    /// Something worth a line in the report.
    Log(String),
}

/// Receives [`ClientEvent`]s. Called synchronously, sometimes with the client's state locked: it
/// must return quickly and must not call back into the client.
pub type EventSink = Arc<dyn Fn(ClientEvent) + Send + Sync>;

/// Who logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginInfo {
    /// The full user id.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
}

/// The tokens the client holds now (`None` when it holds none, e.g. after a logout).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// The access token.
    pub access_token: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
}

/// The session as the client holds it.
#[derive(Clone, Debug)]
struct Held {
    user_id: String,
    device_id: String,
    access_token: Option<String>,
    refresh_token: Option<String>,
    /// The refresh token the session started with (only the `stale-refresh-token` bug reads it).
    first_refresh_token: Option<String>,
    expiry: Option<Expiry>,
    /// Whether `expiry` was learnt from a refresh response (only the `trust-local-expiry` bug reads
    /// it: matrix-js-sdk learns an expiry from its own refreshes only).
    expiry_from_refresh: bool,
    /// `Some(soft)` once a logout happened.
    logged_out: Option<bool>,
    /// `Some` for an OAuth 2.0 session, `None` for a legacy one.
    oauth: Option<OAuthSession>,
}

impl Held {
    fn new(data: SessionData, expiry: Option<Expiry>, oauth: Option<OAuthSession>) -> Held {
        Held {
            user_id: data.user_id,
            device_id: data.device_id,
            access_token: Some(data.access_token),
            first_refresh_token: data.refresh_token.clone(),
            refresh_token: data.refresh_token,
            expiry,
            expiry_from_refresh: false,
            logged_out: None,
            oauth,
        }
    }

    fn tokens(&self) -> Tokens {
        Tokens {
            access_token: self.access_token.clone(),
            refresh_token: self.refresh_token.clone(),
        }
    }

    fn persisted(&self) -> Option<PersistedSession> {
        let (expires_at_unix_ms, lifetime_ms) = PersistedSession::expiry_to_wall(self.expiry);
        Some(PersistedSession {
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            access_token: self.access_token.clone()?,
            refresh_token: self.refresh_token.clone(),
            expires_at_unix_ms,
            lifetime_ms,
            oauth: self.oauth.as_ref().map(|o| PersistedOAuth {
                client_id: o.client_id.clone(),
                issuer: o.issuer.clone(),
                token_endpoint: o.endpoints.as_ref().map(|e| e.token.to_string()),
                revocation_endpoint: o
                    .endpoints
                    .as_ref()
                    .and_then(|e| e.revocation.as_ref())
                    .map(Url::to_string),
            }),
        })
    }
}

/// The OAuth side of a persisted session, back in memory (unparsable endpoints are discovered anew).
fn oauth_from_persisted(saved: PersistedOAuth) -> OAuthSession {
    let parse = |s: Option<String>| s.and_then(|s| Url::parse(&s).ok());
    let revocation = parse(saved.revocation_endpoint);
    OAuthSession {
        client_id: saved.client_id,
        issuer: saved.issuer,
        endpoints: parse(saved.token_endpoint).map(|token| Endpoints { token, revocation }),
    }
}

#[derive(Debug)]
struct State {
    session: Option<Held>,
    /// Bumped whenever the access token changes: tells a request whether its token is still current.
    generation: u64,
    /// Bumped when a shared refresh run ends; its outcome is `last_refresh`.
    refresh_epoch: u64,
    last_refresh: Result<(), ClientError>,
}

/// What a request read before it was sent.
#[derive(Clone, Debug)]
struct Captured {
    access_token: String,
    refresh_token: Option<String>,
    expiry: Option<Expiry>,
    expiry_from_refresh: bool,
    generation: u64,
    epoch: u64,
}

/// Whether a refresh call ran the refresh or took the outcome of one that ran meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefreshRun {
    Performed,
    Joined,
}

/// What to do after a 401 `M_UNKNOWN_TOKEN`.
enum After401 {
    /// The token was replaced meanwhile: send again with the current one.
    RetryCurrent,
    /// Refresh, then send again; the refresh epoch at the time of the 401.
    Refresh { epoch: u64 },
    /// No refresh token, but the `refresh-without-token` bug calls `/refresh` anyway.
    RefreshWithEmptyToken,
    /// The session is over (or was already).
    Over(ClientError),
}

/// Why an authenticated request failed: a network failure of the request itself (which a send may
/// retry) or anything else.
#[derive(Debug)]
enum CallFailure {
    Transport(ClientError),
    Failed(ClientError),
}

impl From<CallFailure> for ClientError {
    fn from(f: CallFailure) -> ClientError {
        match f {
            CallFailure::Transport(e) | CallFailure::Failed(e) => e,
        }
    }
}

/// A refresh-aware Matrix client. Cheap to share behind an `Arc`; every method takes `&self` and
/// may run concurrently with the others.
pub struct Client {
    http: reqwest::Client,
    /// For the OAuth authorization request, whose redirect is read, not followed.
    no_redirect_http: reqwest::Client,
    base: Url,
    config: ClientConfig,
    store: Option<SessionStore>,
    events: EventSink,
    state: Mutex<State>,
    /// Held for the whole of a refresh run (see the module docs).
    refresh_gate: tokio::sync::Mutex<()>,
    txn_prefix: String,
    txn_counter: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("bugs", &self.config.bugs.names())
            .finish_non_exhaustive()
    }
}

fn no_session() -> ClientError {
    ClientError::Other("no session: log in, register, restore or resume first".into())
}

fn string_field(body: &Value, name: &str) -> Result<String, ClientError> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Other(format!("the response has no string `{name}`")))
}

/// Reads a login or registration response.
fn parse_login(reply: Reply) -> Result<SessionData, ClientError> {
    let body = reply.into_success_body()?;
    Ok(SessionData {
        user_id: string_field(&body, "user_id")?,
        device_id: string_field(&body, "device_id")?,
        access_token: string_field(&body, "access_token")?,
        refresh_token: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(str::to_owned),
        expires_in: refresh::expires_in(&body),
    })
}

impl Client {
    /// A client for `config.homeserver_url`; `events` receives [`ClientEvent`]s.
    pub fn new(config: ClientConfig, events: EventSink) -> Result<Client, ClientError> {
        let base = Url::parse(&config.homeserver_url).map_err(|e| {
            ClientError::Other(format!("bad homeserver URL {:?}: {e}", config.homeserver_url))
        })?;
        let build = |redirect: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(concat!("rotary-reference/", env!("CARGO_PKG_VERSION")))
                .redirect(redirect)
                .build()
                .map_err(|e| ClientError::Other(format!("cannot build the HTTP client: {e}")))
        };
        let http = match &config.http_client {
            Some(shared) => shared.clone(),
            None => build(reqwest::redirect::Policy::default())?,
        };
        let no_redirect_http = build(reqwest::redirect::Policy::none())?;
        // Transaction ids must stay unique across driver restarts: a random prefix per process.
        let txn_prefix = format!("rr{:016x}", rand::rng().random::<u64>());
        Ok(Client {
            http,
            no_redirect_http,
            base,
            store: config.state_dir.clone().map(SessionStore::new),
            config,
            events,
            state: Mutex::new(State {
                session: None,
                generation: 0,
                refresh_epoch: 0,
                last_refresh: Ok(()),
            }),
            refresh_gate: tokio::sync::Mutex::new(()),
            txn_prefix,
            txn_counter: AtomicU64::new(0),
        })
    }

    /// The active bug switches.
    pub fn bugs(&self) -> Bugs {
        self.config.bugs
    }

    /// The tokens held now.
    pub fn tokens(&self) -> Tokens {
        self.state()
            .session
            .as_ref()
            .map(Held::tokens)
            .unwrap_or_default()
    }

    /// The user and device of the session, if there is one.
    pub fn who(&self) -> Option<LoginInfo> {
        self.state().session.as_ref().map(|h| LoginInfo {
            user_id: h.user_id.clone(),
            device_id: h.device_id.clone(),
        })
    }

    // ----- starting a session -------------------------------------------------------------------

    /// Logs in with a password (`m.login.password`), asking for a refresh token if `refresh_token`.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        refresh_token: bool,
        device_id: Option<&str>,
    ) -> Result<LoginInfo, ClientError> {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "refresh_token": refresh_token && !self.bug(Bug::NoRefreshRequest),
        });
        if let Some(device_id) = device_id {
            body["device_id"] = json!(device_id);
        }
        let call = self.call(
            Method::POST,
            &["v3", "login"],
            Some(body),
            self.config.request_timeout,
        )?;
        let reply = api::execute(&self.http, &call, None).await?;
        let received = Instant::now();
        if !reply.is_success() {
            return Err(reply.to_error());
        }
        let data = parse_login(reply)?;
        info!(user_id = %data.user_id, device_id = %data.device_id, refresh = data.refresh_token.is_some(), "logged in");
        Ok(self.start_session(data, received, true, None))
    }

    /// Logs in through OAuth 2.0 (Matrix v1.15): discovers the server's auth metadata, registers
    /// this client (RFC 7591), runs the authorization code grant with PKCE (S256) for `user` on a
    /// new device (`device_id`, or a generated one), and adopts the tokens. Headless: the server is
    /// expected to approve at once and redirect with the code; no password is needed.
    pub async fn login_oauth(&self, user: &str, device_id: Option<&str>) -> Result<LoginInfo, ClientError> {
        let timeout = self.config.request_timeout;
        let metadata = oauth::discover(&self.http, &self.base, timeout).await?;
        if !metadata.code_challenge_methods_supported.is_empty()
            && !metadata
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            return Err(ClientError::Unsupported(
                "the server does not support PKCE with S256".into(),
            ));
        }
        let registration = metadata.registration_endpoint.clone().ok_or_else(|| {
            ClientError::Unsupported("the server has no OAuth client registration endpoint".into())
        })?;
        let client_id = oauth::register_client(&self.http, &registration, timeout).await?;
        let device_id = device_id.map_or_else(oauth::new_device_id, str::to_owned);
        let known_user_id = oauth::full_user_id(user).map(str::to_owned);
        let request =
            oauth::authorization_request(&metadata, &client_id, &device_id, Some(&oauth::login_hint(user)));
        debug!(%client_id, %device_id, "authorization request");
        let location = oauth::authorize(&self.no_redirect_http, &request.url, timeout).await?;
        let code = oauth::code_from_redirect(&location, &request.state)?;
        let form = oauth::code_form(&code, &client_id, &request.verifier);
        let reply = oauth::post_form(&self.http, &metadata.token_endpoint, form, timeout).await?;
        let received = Instant::now();
        let tokens = oauth::login_tokens(reply)?;
        let user_id = match known_user_id {
            Some(user_id) => user_id,
            // Only a localpart was given: ask the server who the token belongs to.
            None => self.whoami_with(&tokens.access_token).await?,
        };
        let data = SessionData {
            user_id,
            device_id,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            expires_in: tokens.expires_in,
        };
        info!(user_id = %data.user_id, device_id = %data.device_id, %client_id, refresh = data.refresh_token.is_some(), "logged in through OAuth");
        let session = OAuthSession {
            client_id,
            issuer: Some(metadata.issuer.clone()),
            endpoints: Some(metadata.endpoints()),
        };
        Ok(self.start_session(data, received, true, Some(session)))
    }

    /// `GET /account/whoami` with a token that is not (yet) the session's.
    async fn whoami_with(&self, access_token: &str) -> Result<String, ClientError> {
        let call = self.call(
            Method::GET,
            &["v3", "account", "whoami"],
            None,
            self.config.request_timeout,
        )?;
        let reply = api::execute(&self.http, &call, Some(access_token)).await?;
        if !reply.is_success() {
            return Err(reply.to_error());
        }
        string_field(&reply.into_success_body()?, "user_id")
    }

    /// Registers a user with `m.login.dummy` auth, asking for a refresh token if `refresh_token`.
    pub async fn register(
        &self,
        user: &str,
        password: &str,
        refresh_token: bool,
    ) -> Result<LoginInfo, ClientError> {
        let mut body = json!({
            "username": user,
            "password": password,
            "refresh_token": refresh_token && !self.bug(Bug::NoRefreshRequest),
            "auth": {"type": "m.login.dummy"},
        });
        let call = self.call(
            Method::POST,
            &["v3", "register"],
            Some(body.clone()),
            self.config.request_timeout,
        )?;
        let mut reply = api::execute(&self.http, &call, None).await?;
        // A server may insist on a user-interactive-auth session first: complete the dummy stage in it.
        if reply.status == 401 && reply.body.as_ref().is_some_and(|b| b.get("flows").is_some()) {
            let session = reply.str_field("session").map(str::to_owned);
            body["auth"] = json!({"type": "m.login.dummy", "session": session});
            let call = Call {
                body: Some(Body::Json(body)),
                ..call
            };
            reply = api::execute(&self.http, &call, None).await?;
        }
        let received = Instant::now();
        if !reply.is_success() {
            return Err(reply.to_error());
        }
        let data = parse_login(reply)?;
        info!(user_id = %data.user_id, device_id = %data.device_id, "registered");
        Ok(self.start_session(data, received, true, None))
    }

    /// Takes over a session the application already has; `expires_in` counts from now.
    pub fn restore(&self, data: SessionData) {
        info!(user_id = %data.user_id, device_id = %data.device_id, "restoring a session");
        self.start_session(data, Instant::now(), true, None);
    }

    /// Takes over an OAuth 2.0 session the application already has, issued to `client_id` (by
    /// `issuer`, if known); `expires_in` counts from now. The server's endpoints are discovered at
    /// once; if that fails the session is kept all the same, and discovery is tried again when the
    /// first refresh needs it.
    pub async fn restore_oauth(&self, data: SessionData, client_id: String, issuer: Option<String>) {
        info!(user_id = %data.user_id, device_id = %data.device_id, %client_id, "restoring an OAuth session");
        let session = OAuthSession {
            client_id,
            issuer,
            endpoints: None,
        };
        self.start_session(data, Instant::now(), true, Some(session.clone()));
        if let Err(e) = self.oauth_endpoints(&session).await {
            warn!(error = %e, "cannot discover the OAuth endpoints now; trying again at the first refresh");
            self.emit(ClientEvent::Log(format!(
                "OAuth discovery failed ({e}); the session is kept, the first refresh discovers again"
            )));
        }
    }

    /// Loads the session an earlier process persisted in the state dir.
    pub fn resume(&self) -> Result<LoginInfo, ClientError> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| ClientError::Other("no state dir to resume a session from".into()))?;
        let saved = store
            .load()
            .map_err(|e| ClientError::Other(e.to_string()))?
            .ok_or_else(|| {
                ClientError::Other(format!("no session persisted in {}", store.path().display()))
            })?;
        let expiry = saved.expiry();
        let held = Held::new(
            SessionData {
                user_id: saved.user_id,
                device_id: saved.device_id,
                access_token: saved.access_token,
                refresh_token: saved.refresh_token,
                expires_in: None,
            },
            expiry,
            saved.oauth.map(oauth_from_persisted),
        );
        info!(user_id = %held.user_id, device_id = %held.device_id, "resumed the persisted session");
        Ok(self.adopt_session(held, false))
    }

    fn start_session(
        &self,
        data: SessionData,
        received: Instant,
        persist: bool,
        oauth: Option<OAuthSession>,
    ) -> LoginInfo {
        let expiry = Expiry::on_receipt(received, data.expires_in, self.bug(Bug::MissingExpiryIsZero));
        self.adopt_session(Held::new(data, expiry, oauth), persist)
    }

    /// Persists (if asked) and then adopts a whole new session.
    fn adopt_session(&self, held: Held, persist: bool) -> LoginInfo {
        if persist {
            self.persist(&held);
        }
        let info = LoginInfo {
            user_id: held.user_id.clone(),
            device_id: held.device_id.clone(),
        };
        let mut st = self.state();
        let tokens = held.tokens();
        st.session = Some(held);
        st.generation += 1;
        self.emit(ClientEvent::SessionChanged {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        });
        info
    }

    // ----- requests -----------------------------------------------------------------------------

    /// `GET /account/whoami`: the user id.
    pub async fn whoami(&self) -> Result<String, ClientError> {
        let call = self.call(
            Method::GET,
            &["v3", "account", "whoami"],
            None,
            self.config.request_timeout,
        )?;
        let body = self.authed(&call, true).await?;
        string_field(&body, "user_id")
    }

    /// `GET /sync`, long-polling up to `timeout`: the `next_batch` token.
    pub async fn sync(&self, timeout: Duration, since: Option<&str>) -> Result<String, ClientError> {
        let body = self.sync_body(timeout, since).await?;
        string_field(&body, "next_batch")
    }

    /// `GET /sync`, long-polling up to `timeout`, with what it brought: the `next_batch` token and,
    /// per joined room, the timeline events (sender, type, `body` of messages, and the
    /// transaction id the server echoes to the device that sent them). Refreshes exactly as
    /// [`Client::sync`] does.
    ///
    /// ```no_run
    /// # async fn demo(client: &rotary_reference::Client) -> Result<(), rotary_reference::ClientError> {
    /// use std::time::Duration;
    /// let first = client.sync_events(Duration::ZERO, None).await?;
    /// let next = client.sync_events(Duration::from_secs(30), Some(&first.next_batch)).await?;
    /// for room in &next.rooms {
    ///     for event in &room.events {
    ///         println!("{} {}: {:?}", room.room_id, event.sender, event.body);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn sync_events(
        &self,
        timeout: Duration,
        since: Option<&str>,
    ) -> Result<SyncBatch, ClientError> {
        let body = self.sync_body(timeout, since).await?;
        SyncBatch::from_body(&body)
    }

    /// The body of one `GET /sync`.
    async fn sync_body(&self, timeout: Duration, since: Option<&str>) -> Result<Value, ClientError> {
        let mut call = self.call(
            Method::GET,
            &["v3", "sync"],
            None,
            self.config.request_timeout + timeout,
        )?;
        {
            let mut query = call.url.query_pairs_mut();
            query.append_pair("timeout", &timeout.as_millis().to_string());
            if let Some(since) = since {
                query.append_pair("since", since);
            }
        }
        Ok(self.authed(&call, true).await?)
    }

    /// `POST /createRoom`: a private room with only this user in it, named `name` if given; the
    /// room id.
    pub async fn create_room(&self, name: Option<&str>) -> Result<String, ClientError> {
        let mut body = json!({"preset": "private_chat"});
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        let call = self.call(
            Method::POST,
            &["v3", "createRoom"],
            Some(body),
            self.config.request_timeout,
        )?;
        let body = self.authed(&call, true).await?;
        string_field(&body, "room_id")
    }

    /// Sends an `m.text` message: the event id. A send that fails on the network is retried with the
    /// same transaction id, so the server can tell it is the same message.
    pub async fn send_text(&self, room_id: &str, text: &str) -> Result<String, ClientError> {
        let content = json!({"msgtype": "m.text", "body": text});
        let mut txn_id = self.next_txn_id();
        let mut failures = 0;
        loop {
            let path = ["v3", "rooms", room_id, "send", "m.room.message", txn_id.as_str()];
            let call = self.call(
                Method::PUT,
                &path,
                Some(content.clone()),
                self.config.request_timeout,
            )?;
            match self.authed(&call, true).await {
                Ok(body) => return string_field(&body, "event_id"),
                Err(CallFailure::Transport(e)) if failures < SEND_NETWORK_RETRIES => {
                    failures += 1;
                    warn!(%txn_id, error = %e, "send failed on the network; retrying");
                    if self.bug(Bug::NewTxnOnRetry) {
                        txn_id = self.next_txn_id();
                    }
                    tokio::time::sleep(refresh::retry_delay(failures, None, false)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `POST /logout`, or for an OAuth session the revocation of its refresh token (RFC 7009).
    /// Afterwards the client holds no tokens and the persisted session is gone. The application
    /// asked for it, so no [`ClientEvent::LoggedOut`] is reported.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let oauth = self.state().session.as_ref().and_then(|h| h.oauth.clone());
        if let Some(session) = oauth {
            self.revoke(&session).await?;
        } else {
            let call = self.call(
                Method::POST,
                &["v3", "logout"],
                Some(json!({})),
                self.config.request_timeout,
            )?;
            // No preemptive refresh: there is no point in refreshing a token only to log it out.
            self.authed(&call, false).await?;
        }
        {
            let mut st = self.state();
            if let Some(held) = st.session.as_mut() {
                held.logged_out = Some(false);
                if !self.bug(Bug::KeepTokensAfterLogout) {
                    held.access_token = None;
                    held.refresh_token = None;
                    held.first_refresh_token = None;
                    held.expiry = None;
                }
            }
        }
        self.delete_persisted();
        info!("logged out");
        Ok(())
    }

    /// Ends an OAuth session on the server (RFC 7009): revokes the refresh token — which ends the
    /// whole grant — or, without one, the access token. Waits for a refresh in flight first, so that
    /// the token revoked is the current one.
    async fn revoke(&self, session: &OAuthSession) -> Result<(), ClientError> {
        let _gate = self.refresh_gate.lock().await;
        let cap = self.capture()?;
        let (token, hint) = match cap.refresh_token {
            Some(refresh_token) => (refresh_token, "refresh_token"),
            None => (cap.access_token, "access_token"),
        };
        let endpoints = self.oauth_endpoints(session).await?;
        let Some(url) = endpoints.revocation else {
            warn!("the server has no revocation endpoint; forgetting the tokens only");
            self.emit(ClientEvent::Log(
                "logout: the server has no OAuth revocation endpoint; tokens only forgotten".into(),
            ));
            return Ok(());
        };
        let form = oauth::revocation_form(&token, hint, &session.client_id);
        debug!(hint, "POST revocation_endpoint");
        let reply = oauth::post_form(&self.http, &url, form, self.config.request_timeout).await?;
        if !reply.is_success() {
            return Err(oauth::oauth_error(&reply));
        }
        Ok(())
    }

    // ----- helpers ------------------------------------------------------------------------------

    fn bug(&self, bug: Bug) -> bool {
        self.config.bugs.has(bug)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated (every update is a few assignments).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: ClientEvent) {
        (self.events)(event);
    }

    fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Call, ClientError> {
        Ok(Call {
            method,
            url: api::client_url(&self.base, segments)?,
            body: body.map(Body::Json),
            timeout,
        })
    }

    fn next_txn_id(&self) -> String {
        let n = self.txn_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.txn_prefix)
    }

    fn persist(&self, held: &Held) {
        let (Some(store), Some(saved)) = (&self.store, held.persisted()) else {
            return;
        };
        if let Err(e) = store.save(&saved) {
            warn!(error = %e, "cannot persist the session");
            self.emit(ClientEvent::Log(format!("cannot persist the session: {e}")));
        }
    }

    fn delete_persisted(&self) {
        if let Some(store) = &self.store
            && let Err(e) = store.delete()
        {
            warn!(error = %e, "cannot delete the persisted session");
        }
    }
}
