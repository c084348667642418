//! The matrix-rust-sdk side: one `matrix_sdk::Client` per session, built with automatic token
//! refresh and a bounded `RequestConfig`, and the protocol's methods as calls of its public API.
//!
//! Session changes reach the harness from the SDK itself: `session_changed` from the save-session
//! callback (which the SDK calls after every refresh, before the waiting requests are retried) and
//! after the driver's own login / register / restore; `logged_out` from
//! `SessionChange::UnknownToken` on `Client::subscribe_to_session_changes()`.
//!
//! The driver is the application, and does what Element X does with the SDK: once the SDK signals
//! `UnknownToken` (or `logout()` succeeded) it stops using that `Client` (the SDK itself keeps its
//! tokens and would send them again; tearing down is left to the application). Later calls answer
//! `logged_out` / `soft_logged_out` without a request and `session` reports no tokens, until a new
//! login, register, restore or resume. matrix-js-sdk's driver does the same, so the two columns of
//! the results table measure the same thing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::authentication::oauth::registration::{
    ApplicationType, ClientMetadata, Localized, OAuthGrantType,
};
use matrix_sdk::authentication::oauth::{ClientId, OAuthSession, UserSession};
use matrix_sdk::config::{RequestConfig, SyncSettings, SyncToken};
use matrix_sdk::reqwest;
use matrix_sdk::ruma::api::client::account::register;
use matrix_sdk::ruma::api::client::message::send_message_event;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId, TransactionId, UserId};
use matrix_sdk::utils::UrlOrQuery;
use matrix_sdk::{AuthSession, Client, RoomState, SessionChange, SessionMeta, SessionTokens};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use url::Url;

use rotary_protocol::{Output, ParallelOp};
use crate::errors::{self, Failure, Kind};
use crate::persist::{Persisted, Store};

/// Time limit of one HTTP request (a `/sync` gets its long-poll timeout on top, as the SDK does).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per request, first one included (`RequestConfig::retry_limit`): the SDK's HTTP layer
/// retries 5xx, 429 and network failures up to this count, `/refresh` included.
pub const RETRY_LIMIT: usize = 3;
/// Longest pause between two attempts (`RequestConfig::max_retry_time`); the SDK starts at 500 ms
/// and doubles. A 429's `retry_after_ms` overrides it (the SDK's rule).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// The redirect URI registered for the headless OAuth 2.0 login (read, never followed).
const OAUTH_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// The `RequestConfig` given to the client builder.
pub fn request_config() -> RequestConfig {
    RequestConfig::new()
        .timeout(REQUEST_TIMEOUT)
        .retry_limit(RETRY_LIMIT)
        .max_retry_time(MAX_RETRY_DELAY)
}

/// One operation `parallel` can start.
#[derive(Clone, Debug)]
pub enum Op {
    Whoami,
    Sync {
        timeout: Duration,
        since: Option<String>,
    },
    Send {
        room_id: String,
        body: String,
    },
}

/// The SDK client of the current session, and what it needs to report to the harness.
pub struct Sdk {
    homeserver: String,
    store: Option<Store>,
    out: Output,
    client: Option<Client>,
    listener: Option<JoinHandle<()>>,
    changes: Option<Arc<Mutex<broadcast::Receiver<SessionChange>>>>,
    ended: Arc<Mutex<Option<Ended>>>,
}

/// Why the application stopped using the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The SDK signalled `SessionChange::UnknownToken { soft_logout }`.
    Signalled {
        /// The signal's flag.
        soft_logout: bool,
    },
    /// The application called `logout()` and it succeeded.
    LoggedOut,
}

impl Ended {
    /// The call error for a call made after the session ended.
    fn failure(self) -> Failure {
        match self {
            Ended::Signalled { soft_logout } => Failure::new(
                if soft_logout {
                    Kind::SoftLoggedOut
                } else {
                    Kind::LoggedOut
                },
                format!(
                    "no session: the SDK signalled SessionChange::UnknownToken {{ soft_logout: {soft_logout} }} \
                     and the application stopped using the client"
                ),
            ),
            Ended::LoggedOut => Failure::new(Kind::LoggedOut, "no session: the application logged out"),
        }
    }
}

/// Records that the session ended; a hard end also forgets the persisted session, as an
/// application that logs the user out does.
fn end_session(ended: &Mutex<Option<Ended>>, store: Option<&Store>, why: Ended) {
    match ended.lock() {
        Ok(mut e) => *e = Some(why),
        Err(_) => warn!("the session-end flag is poisoned"),
    }
    if why != (Ended::Signalled { soft_logout: true })
        && let Some(store) = store
        && let Err(e) = store.delete()
    {
        warn!(error = %format!("{e:#}"), "cannot remove the persisted session");
    }
}

/// Reports every session change the SDK broadcast and that was not reported yet.
fn drain_changes(
    changes: &Mutex<broadcast::Receiver<SessionChange>>,
    out: &Output,
    ended: &Mutex<Option<Ended>>,
    store: Option<&Store>,
) {
    let Ok(mut rx) = changes.lock() else {
        warn!("the session-change receiver is poisoned");
        return;
    };
    loop {
        match rx.try_recv() {
            Ok(SessionChange::UnknownToken(data)) => {
                info!(soft_logout = data.soft_logout, "SessionChange::UnknownToken");
                out.notify("logged_out", json!({"soft_logout": data.soft_logout}));
                let why = Ended::Signalled {
                    soft_logout: data.soft_logout,
                };
                end_session(ended, store, why);
            }
            Ok(SessionChange::TokensRefreshed) => debug!("SessionChange::TokensRefreshed"),
            Err(broadcast::error::TryRecvError::Lagged(n)) => warn!(n, "missed session changes"),
            Err(_) => return,
        }
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
    }
}

/// The session the client holds now, in the persisted shape.
fn persisted_of(client: &Client) -> Option<Persisted> {
    match client.session()? {
        AuthSession::Matrix(s) => Some(Persisted {
            auth: "legacy".into(),
            user_id: s.meta.user_id.to_string(),
            device_id: s.meta.device_id.to_string(),
            access_token: s.tokens.access_token,
            refresh_token: s.tokens.refresh_token,
            client_id: None,
        }),
        AuthSession::OAuth(s) => Some(Persisted {
            auth: "oauth".into(),
            user_id: s.user.meta.user_id.to_string(),
            device_id: s.user.meta.device_id.to_string(),
            access_token: s.user.tokens.access_token,
            refresh_token: s.user.tokens.refresh_token,
            client_id: Some(s.client_id.as_str().to_owned()),
        }),
        _ => None,
    }
}

/// Persists the client's session (if there is a state dir) and tells the harness.
fn adopt(client: &Client, store: Option<&Store>, out: &Output) {
    let Some(session) = persisted_of(client) else {
        warn!("the SDK reports no session to persist");
        return;
    };
    if let Some(store) = store
        && let Err(e) = store.save(&session)
    {
        warn!(error = %format!("{e:#}"), "cannot persist the session");
    }
    out.notify(
        "session_changed",
        json!({"access_token": session.access_token, "refresh_token": session.refresh_token}),
    );
}

/// Builds the SDK's session object for `restore` / `resume`.
fn auth_session(p: &Persisted) -> Result<AuthSession, Failure> {
    let user_id = OwnedUserId::try_from(p.user_id.as_str())
        .map_err(|e| Failure::new(Kind::Other, format!("bad user_id {:?}: {e}", p.user_id)))?;
    let meta = SessionMeta {
        user_id,
        device_id: OwnedDeviceId::from(p.device_id.as_str()),
    };
    let tokens = SessionTokens {
        access_token: p.access_token.clone(),
        refresh_token: p.refresh_token.clone(),
    };
    match p.auth.as_str() {
        "legacy" => Ok(AuthSession::Matrix(MatrixSession { meta, tokens })),
        "oauth" => {
            let client_id = p
                .client_id
                .clone()
                .ok_or_else(|| Failure::new(Kind::Other, "an OAuth session needs a client_id"))?;
            Ok(AuthSession::OAuth(Box::new(OAuthSession {
                client_id: ClientId::new(client_id),
                user: UserSession { meta, tokens },
            })))
        }
        other => Err(Failure::new(
            Kind::Unsupported,
            format!("unknown session kind {other:?}"),
        )),
    }
}

/// Drains what the SDK broadcast since `rx` was made: `Some(soft_logout)` of the last
/// `SessionChange::UnknownToken`, if any.
fn logout_signalled(rx: &mut broadcast::Receiver<SessionChange>) -> Option<bool> {
    let mut last = None;
    loop {
        match rx.try_recv() {
            Ok(SessionChange::UnknownToken(data)) => last = Some(data.soft_logout),
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return last,
        }
    }
}

impl Sdk {
    /// A driver-side SDK wrapper for `homeserver`, persisting to `state_dir` if given.
    pub fn new(homeserver: String, state_dir: Option<std::path::PathBuf>, out: Output) -> Sdk {
        Sdk {
            homeserver,
            store: state_dir.as_deref().map(Store::new),
            out,
            client: None,
            listener: None,
            changes: None,
            ended: Arc::new(Mutex::new(None)),
        }
    }

    /// A new client for a new session (the SDK allows one session per client), replacing any
    /// previous one.
    async fn fresh_client(&mut self) -> Result<Client, Failure> {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        self.client = None;
        // A new session: the application uses the new client (a fresh flag, so that a ticker of
        // the old client that is still draining cannot end the new session).
        self.ended = Arc::new(Mutex::new(None));
        let client = Client::builder()
            .homeserver_url(&self.homeserver)
            .request_config(request_config())
            .handle_refresh_tokens()
            .build()
            .await
            .map_err(|e| Failure::new(Kind::Other, format!("cannot build the SDK client: {e}")))?;

        let (store, out) = (self.store.clone(), self.out.clone());
        client
            .set_session_callbacks(
                Box::new(|c: Client| {
                    c.session_tokens()
                        .ok_or_else(|| "the client holds no session".into())
                }),
                Box::new(move |c: Client| {
                    info!("save-session callback: the SDK adopted refreshed tokens");
                    adopt(&c, store.as_ref(), &out);
                    Ok(())
                }),
            )
            .map_err(|e| errors::from_sdk(&e))?;

        // One receiver of the SDK's session changes, drained (without blocking) by a ticker every
        // 10 ms and, via `flush_session_changes`, before each response is written, so that a
        // `logged_out` caused by a call is reported before the call's answer.
        let changes = Arc::new(Mutex::new(client.subscribe_to_session_changes()));
        let (ticker_changes, out) = (changes.clone(), self.out.clone());
        let (ended, store) = (self.ended.clone(), self.store.clone());
        self.listener = Some(tokio::spawn(async move {
            loop {
                drain_changes(&ticker_changes, &out, &ended, store.as_ref());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        self.changes = Some(changes);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Reports the session changes broadcast so far (call before answering a call).
    pub fn flush_session_changes(&self) {
        if let Some(changes) = &self.changes {
            drain_changes(changes, &self.out, &self.ended, self.store.as_ref());
        }
    }

    /// Why the session ended, if it did.
    fn ended(&self) -> Option<Ended> {
        self.ended.lock().ok().and_then(|e| *e)
    }

    /// The current client, or an error if no session was started or it ended.
    pub fn client(&self) -> Result<Client, Failure> {
        if let Some(why) = self.ended() {
            return Err(why.failure());
        }
        self.client.clone().ok_or_else(|| {
            Failure::new(
                Kind::Other,
                "no session: log in, register, restore or resume first",
            )
        })
    }

    fn adopt(&self, client: &Client) {
        adopt(client, self.store.as_ref(), &self.out);
    }

    /// `login` with a password (legacy API).
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
        refresh_token: bool,
        device_id: Option<&str>,
    ) -> Result<(String, String), Failure> {
        let client = self.fresh_client().await?;
        let auth = client.matrix_auth();
        let mut builder = auth.login_username(user, password);
        if refresh_token {
            builder = builder.request_refresh_token();
        }
        if let Some(device_id) = device_id {
            builder = builder.device_id(device_id);
        }
        let response = builder.send().await.map_err(|e| errors::from_sdk(&e))?;
        self.adopt(&client);
        Ok((response.user_id.to_string(), response.device_id.to_string()))
    }

    /// `login` with the OAuth 2.0 authorization-code flow, headless: the SDK registers the client
    /// and builds the authorization URL; we GET it without following the redirect and hand the
    /// redirect URI (with the code) back to the SDK, which exchanges it (PKCE) and asks whoami.
    pub async fn login_oauth(
        &mut self,
        user: &str,
        device_id: Option<&str>,
    ) -> Result<(String, String), Failure> {
        let client = self.fresh_client().await?;
        let other = |what: &str, e: &dyn std::fmt::Display| Failure::new(Kind::Other, format!("{what}: {e}"));
        let redirect = Url::parse(OAUTH_REDIRECT_URI).map_err(|e| other("redirect URI", &e))?;
        let client_uri = Url::parse("https://rotary.invalid/matrix-rust-sdk-driver")
            .map_err(|e| other("client URI", &e))?;
        let metadata = ClientMetadata::new(
            ApplicationType::Native,
            vec![OAuthGrantType::AuthorizationCode {
                redirect_uris: vec![redirect.clone()],
            }],
            Localized::new(client_uri, []),
        );
        let metadata = Raw::new(&metadata).map_err(|e| other("client metadata", &e))?;
        let oauth = client.oauth();
        let mut builder = oauth.login(
            redirect,
            device_id.map(OwnedDeviceId::from),
            Some(metadata.into()),
            None,
        );
        builder = match <&UserId>::try_from(user) {
            Ok(user_id) => builder.user_id_hint(user_id),
            Err(_) => builder.login_hint(user.to_owned()),
        };
        let data = builder.build().await.map_err(|e| errors::from_oauth(&e))?;
        // The user agent's part: the mock server approves at once and redirects with the code.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| other("HTTP client", &e))?;
        let response = http
            .get(data.url.clone())
            .send()
            .await
            .map_err(|e| Failure::new(Kind::Network, format!("authorization endpoint: {e}")))?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Failure {
                kind: Kind::Http,
                status: Some(status),
                errcode: None,
                message: "the authorization endpoint did not redirect".into(),
                pairs_with_logout: false,
            })?;
        let location = data
            .url
            .join(&location)
            .map_err(|e| other("redirect location", &e))?;
        oauth
            .finish_login(UrlOrQuery::Url(location))
            .await
            .map_err(|e| errors::from_sdk(&e))?;
        self.adopt(&client);
        let meta = client
            .session_meta()
            .ok_or_else(|| Failure::new(Kind::Other, "the SDK holds no session after finish_login"))?;
        Ok((meta.user_id.to_string(), meta.device_id.to_string()))
    }

    /// `register` (legacy API), answering the user-interactive auth with `m.login.dummy`.
    pub async fn register(
        &mut self,
        user: &str,
        password: &str,
        refresh_token: bool,
    ) -> Result<(String, String), Failure> {
        let client = self.fresh_client().await?;
        let mut request = register::v3::Request::new();
        request.username = Some(user.to_owned());
        request.password = Some(password.to_owned());
        request.refresh_token = refresh_token;
        let response = match client.matrix_auth().register(request.clone()).await {
            Ok(r) => r,
            Err(e) => {
                let Some(info) = e.as_uiaa_response() else {
                    return Err(errors::from_sdk(&e));
                };
                let mut dummy = uiaa::Dummy::new();
                dummy.session = info.session.clone();
                request.auth = Some(uiaa::AuthData::Dummy(dummy));
                client
                    .matrix_auth()
                    .register(request)
                    .await
                    .map_err(|e| errors::from_sdk(&e))?
            }
        };
        let device_id = response.device_id.map(|d| d.to_string()).unwrap_or_default();
        if client.session().is_some() {
            self.adopt(&client);
        }
        Ok((response.user_id.to_string(), device_id))
    }

    /// `restore`: hands a session to a new client (`Client::restore_session`).
    pub async fn restore(&mut self, session: &Persisted) -> Result<(), Failure> {
        let auth = auth_session(session)?;
        let client = self.fresh_client().await?;
        client
            .restore_session(auth)
            .await
            .map_err(|e| errors::from_sdk(&e))?;
        self.adopt(&client);
        Ok(())
    }

    /// `resume`: restores the session persisted in the state dir by an earlier process.
    pub async fn resume(&mut self) -> Result<(), Failure> {
        let store = self
            .store
            .clone()
            .ok_or_else(|| Failure::new(Kind::Other, "no state dir to resume from"))?;
        let saved = store
            .load()
            .map_err(|e| Failure::new(Kind::Other, format!("{e:#}")))?
            .ok_or_else(|| Failure::new(Kind::Other, "no session persisted in the state dir"))?;
        let auth = auth_session(&saved)?;
        let client = self.fresh_client().await?;
        client
            .restore_session(auth)
            .await
            .map_err(|e| errors::from_sdk(&e))?;
        info!(user_id = %saved.user_id, "resumed the persisted session");
        Ok(())
    }

    /// The tokens the application's client holds now (none once the session ended).
    pub fn tokens(&self) -> (Option<String>, Option<String>) {
        if self.ended().is_some() {
            return (None, None);
        }
        match self.client.as_ref().and_then(Client::session_tokens) {
            Some(t) => (Some(t.access_token), t.refresh_token),
            None => (None, None),
        }
    }

    /// `logout` (`Client::logout`: `/logout`, or token revocation for OAuth). On success the
    /// application stops using the client and removes the persisted session.
    pub async fn logout(&self) -> Result<(), Failure> {
        let client = self.client()?;
        let mut rx = client.subscribe_to_session_changes();
        match client.logout().await {
            Ok(()) => {
                end_session(&self.ended, self.store.as_ref(), Ended::LoggedOut);
                Ok(())
            }
            Err(e) => Err(errors::from_sdk(&e).with_logout_signal(logout_signalled(&mut rx))),
        }
    }
}

impl From<ParallelOp> for Op {
    fn from(op: ParallelOp) -> Op {
        match op {
            ParallelOp::Whoami => Op::Whoami,
            ParallelOp::Sync { timeout_ms, since } => Op::Sync {
                timeout: Duration::from_millis(timeout_ms),
                since,
            },
            ParallelOp::Send { room_id, body } => Op::Send { room_id, body },
        }
    }
}

impl Op {
    /// Runs the operation on `client`; a failure is sorted, logout signal included.
    pub async fn run(&self, client: &Client) -> Result<serde_json::Value, Failure> {
        let mut rx = client.subscribe_to_session_changes();
        let result = self.run_inner(client).await;
        result.map_err(|f| f.with_logout_signal(logout_signalled(&mut rx)))
    }

    async fn run_inner(&self, client: &Client) -> Result<serde_json::Value, Failure> {
        match self {
            Op::Whoami => {
                let r = client.whoami().await.map_err(|e| errors::from_http(&e))?;
                Ok(json!({"user_id": r.user_id.to_string()}))
            }
            Op::Sync { timeout, since } => {
                let token = match since {
                    Some(s) => SyncToken::Specific(s.clone()),
                    None => SyncToken::NoToken,
                };
                let settings = SyncSettings::new().timeout(*timeout).token(token);
                let r = client
                    .sync_once(settings)
                    .await
                    .map_err(|e| errors::from_sdk(&e))?;
                Ok(json!({"next_batch": r.next_batch}))
            }
            Op::Send { room_id, body } => {
                let room_id = OwnedRoomId::try_from(room_id.as_str())
                    .map_err(|e| Failure::new(Kind::Other, format!("bad room id {room_id:?}: {e}")))?;
                let content = RoomMessageEventContent::text_plain(body);
                // `Room::send` needs the room in the client's store (a sync puts it there). For a
                // room the store does not know yet, send the same request `Room::send` would send
                // (without E2EE it is exactly `PUT /rooms/{id}/send/m.room.message/{txnId}` with
                // a fresh `TransactionId`) through `Client::send`, the same refresh-handling path.
                match client.get_room(&room_id) {
                    Some(room) if room.state() == RoomState::Joined => {
                        let r = room.send(content).await.map_err(|e| errors::from_sdk(&e))?;
                        Ok(json!({"event_id": r.response.event_id.to_string()}))
                    }
                    _ => {
                        let request =
                            send_message_event::v3::Request::new(room_id, TransactionId::new(), &content)
                                .map_err(|e| {
                                    Failure::new(Kind::Other, format!("serializing the message: {e}"))
                                })?;
                        let r = client.send(request).await.map_err(|e| errors::from_http(&e))?;
                        Ok(json!({"event_id": r.event_id.to_string()}))
                    }
                }
            }
        }
    }
}
