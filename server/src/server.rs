//! `MockHomeserver`: builder, the accept loop (hyper under axum, with fault-aware sockets), and the
//! in-process API that tests and the harness use.

use crate::config::{Profile, ReusePolicy, ServerConfig};
use crate::conn::{ConnHandle, FaultIo};
use crate::control::{self, ControlAccess};
use crate::core::{Core, Initial, MintRequest, OAuthIssued, OAuthMintRequest, OpError};
use crate::fault::{FaultRule, FaultStatus};
use crate::oauth::{ClientMetadata, RegisteredClient};
use crate::store::{DeviceInfo, Issued};
use crate::trace::SpillConfig;
use crate::trace::{Trace, TraceConfig, TraceEntry, TraceError, TracePage, TraceStats, TraceSubscription};
use axum::Router;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config, a user or a fault rule is invalid.
    #[error(transparent)]
    Setup(#[from] OpError),
    /// The trace's spill could not be set up.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// Configures a [`MockHomeserver`]. Start from a profile; every knob can then be set alone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use rotary_server::{MockHomeserver, Profile, FaultRule, FaultAction};
/// use std::time::Duration;
///
/// let server = MockHomeserver::builder()
///     .profile(Profile::Synapse)
///     .refreshable_access_token_lifetime(Duration::from_secs(60))
///     .fault(FaultRule::on("refresh", FaultAction::CommitThenDrop).nth(1))
///     .start()
///     .await
///     .unwrap();
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// let session = server.mint_session("alice").unwrap();
/// assert!(session.refresh_token.is_some());
/// server.advance_clock(Duration::from_secs(61));
/// assert!(server.trace().is_empty());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MockHomeserverBuilder {
    config: ServerConfig,
    users: Vec<(String, String)>,
    faults: Vec<FaultRule>,
    bind: SocketAddr,
    control: ControlAccess,
    trace: TraceConfig,
}

impl Default for MockHomeserverBuilder {
    fn default() -> Self {
        Self {
            config: ServerConfig::default(),
            users: vec![("alice".to_owned(), "wonderland".to_owned())],
            faults: Vec::new(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            control: ControlAccess::LoopbackOnly,
            trace: TraceConfig::default(),
        }
    }
}

impl MockHomeserverBuilder {
    /// Resets every knob to this profile's values (the server name is kept).
    pub fn profile(mut self, profile: Profile) -> Self {
        let name = std::mem::take(&mut self.config.server_name);
        self.config = ServerConfig {
            server_name: name,
            ..ServerConfig::for_profile(profile)
        };
        self
    }

    /// Replaces the whole config.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes knobs with a closure.
    pub fn configure(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Lifetime of refreshable access tokens; `None` turns refresh off.
    pub fn refreshable_access_token_lifetime(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.config.refreshable_access_token_lifetime = d.into();
        self
    }

    /// Lifetime of refresh tokens.
    pub fn refresh_token_lifetime(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.config.refresh_token_lifetime = d.into();
        self
    }

    /// Lifetime of access tokens issued without a refresh token.
    pub fn nonrefreshable_access_token_lifetime(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.config.nonrefreshable_access_token_lifetime = d.into();
        self
    }

    /// Cap on the whole session.
    pub fn session_lifetime(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.config.session_lifetime = d.into();
        self
    }

    /// Whether `/refresh` issues a new refresh token.
    pub fn rotate_refresh_tokens(mut self, on: bool) -> Self {
        self.config.rotate_refresh_tokens = on;
        self
    }

    /// What a reused refresh token gets.
    pub fn reuse_policy(mut self, policy: ReusePolicy) -> Self {
        self.config.reuse_policy = policy;
        self
    }

    /// Serves the OAuth 2.0 API (`auth_metadata`, `/oauth2/*`) or not; the `mas` and `oauth-spec`
    /// profiles turn it on, the others off.
    pub fn oauth(mut self, on: bool) -> Self {
        self.config.oauth = on;
        self
    }

    /// Adds a user (besides the default `alice` / `wonderland`).
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.users.push((user.to_owned(), password.to_owned()));
        self
    }

    /// Starts without the default user `alice`.
    pub fn no_default_user(mut self) -> Self {
        self.users.retain(|(u, _)| u != "alice");
        self
    }

    /// Adds a fault rule that is active from the start (and again after a reset).
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// The address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Who may use the control API.
    pub fn control_access(mut self, access: ControlAccess) -> Self {
        self.control = access;
        self
    }

    /// How many trace entries to keep in memory (default
    /// [`DEFAULT_WINDOW`](crate::trace::DEFAULT_WINDOW), 100,000: about 50 MiB when full). Older
    /// entries leave memory; [`MockHomeserver::trace_evicted`] counts them and a spill keeps them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = rotary_server::MockHomeserver::builder().trace_window(1_000).start().await.unwrap();
    /// assert_eq!(server.trace_evicted(), 0);
    /// # }
    /// ```
    pub fn trace_window(mut self, entries: usize) -> Self {
        self.trace.window = entries;
        self
    }

    /// Writes every completed trace entry to NDJSON files in `dir` (`trace-000001.ndjson`, …),
    /// starting a new file when one would pass `max_file_bytes`. Nothing is deleted. See
    /// [`trace::SpillConfig`](crate::trace::SpillConfig).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let dir = std::env::temp_dir().join(format!("rotary-doc-spill-{}", std::process::id()));
    /// let server = rotary_server::MockHomeserver::builder()
    ///     .trace_spill(&dir, 64 << 20)
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// server.trace_flush();
    /// assert_eq!(server.trace_stats().spilled, 0);
    /// # drop(server); let _ = std::fs::remove_dir_all(&dir);
    /// # }
    /// ```
    pub fn trace_spill(mut self, dir: impl Into<std::path::PathBuf>, max_file_bytes: u64) -> Self {
        self.trace.spill = Some(SpillConfig::new(dir, max_file_bytes));
        self
    }

    /// Replaces the whole trace configuration (window, spill, subscriber capacity).
    pub fn trace_config(mut self, config: TraceConfig) -> Self {
        self.trace = config;
        self
    }

    /// The knobs the server would start with.
    pub fn start_config(&self) -> ServerConfig {
        self.config.clone()
    }

    /// Binds and starts serving in the background.
    pub async fn start(self) -> Result<MockHomeserver, StartError> {
        let trace = Trace::new(self.trace)?;
        let core = Core::new(
            Initial {
                config: self.config,
                users: self.users,
                faults: self.faults,
            },
            trace,
        )?;
        let listener = TcpListener::bind(self.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: self.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.bind,
            source,
        })?;
        let _ = core.base_url.set(format!("http://{addr}"));
        let control = control_app(core.clone(), self.control);
        tokio::spawn(accept_loop(listener, control, core.clone()));
        tracing::debug!(%addr, "mock homeserver listening");
        Ok(MockHomeserver { core, addr })
    }
}

/// How long a connection may go without a request in progress before it is closed: headers
/// must arrive within this after the previous response (or the accept), as hyper's
/// `header_read_timeout` would have it, but watched by one timer per connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The router of every path that starts with `/_rotary`: the control API nested there, and the
/// client API for what the nest does not match (`/_rotary/`, `/_rotaryx`), exactly as one router
/// for everything would decide.
fn control_app(core: Arc<Core>, control: ControlAccess) -> Router {
    let client_core = core.clone();
    Router::new()
        .nest("/_rotary", control::router(core, control))
        .fallback(move |req: axum::extract::Request| crate::api::serve(client_core.clone(), req))
}

/// Whether a path may belong to the control API; every other path can only reach the client API
/// (the router's fallback), so it is served directly.
fn is_control_path(path: &str) -> bool {
    path.starts_with("/_rotary")
}

async fn accept_loop(listener: TcpListener, control: Router, core: Arc<Core>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = core.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handle = Arc::new(ConnHandle::new(peer));
        let io = TokioIo::new(FaultIo::new(stream, handle.clone()));
        let control = control.clone();
        let client_core = core.clone();
        let shutdown = core.shutdown.clone();
        let conn_handle = handle.clone();
        // The handle is reachable from the connection's task (`conn::current`), not put into
        // every request's extensions: that would allocate a map per request.
        tokio::spawn(crate::conn::scope(handle, async move {
            let requests = conn_handle.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let busy = requests.request();
                let control = control.clone();
                let core = client_core.clone();
                async move {
                    // The client API is served directly (no router, no boxed body); only the
                    // control API goes through axum's router.
                    let resp = if is_control_path(req.uri().path()) {
                        control.oneshot(req.map(axum::body::Body::new)).await
                    } else {
                        Ok(crate::api::serve(core, req).await)
                    };
                    drop(busy);
                    resp
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::trace!(error = %e, "connection ended");
                    }
                }
                // A client that never finishes its headers is dropped after 30 s (slowloris).
                _ = crate::conn::idle_watchdog(&conn_handle, HEADER_READ_TIMEOUT) => {
                    tracing::trace!("connection closed: no request within the header timeout");
                }
                _ = shutdown.cancelled() => {}
            }
        }));
    }
}

/// A running mock homeserver. It stops when dropped.
#[derive(Debug)]
pub struct MockHomeserver {
    core: Arc<Core>,
    addr: SocketAddr,
}

impl Drop for MockHomeserver {
    fn drop(&mut self) {
        self.core.shutdown.cancel();
    }
}

impl MockHomeserver {
    /// A builder with the `synapse` profile and the user `alice` / `wonderland`.
    pub fn builder() -> MockHomeserverBuilder {
        MockHomeserverBuilder::default()
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order — as far as the trace window reaches: check
    /// [`trace_evicted`](Self::trace_evicted) before judging it complete.
    pub fn trace(&self) -> Vec<TraceEntry> {
        self.core.trace.snapshot(0)
    }

    /// Requests after `seq` (those still in memory).
    pub fn trace_after(&self, seq: u64) -> Vec<TraceEntry> {
        self.core.trace.snapshot(seq)
    }

    /// At most `limit` entries after `seq`, shared rather than copied, with where the trace
    /// stands (what `GET /_rotary/trace?after=&limit=` serves).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = rotary_server::MockHomeserver::builder().start().await.unwrap();
    /// let page = server.trace_page(0, 100);
    /// assert!(page.entries.is_empty() && !page.more && page.missed == 0);
    /// # }
    /// ```
    pub fn trace_page(&self, after: u64, limit: usize) -> TracePage {
        self.core.trace.page(after, limit)
    }

    /// How many entries have left the trace window since the start (or the last reset): 0
    /// means [`trace`](Self::trace) holds every request.
    pub fn trace_evicted(&self) -> u64 {
        self.core.trace.evicted()
    }

    /// The trace's counters: window, evictions, spill and subscribers.
    pub fn trace_stats(&self) -> TraceStats {
        self.core.trace.stats()
    }

    /// A live feed of every trace entry completed from now on, in completion order.
    pub fn subscribe_trace(&self) -> TraceSubscription {
        self.core.trace.subscribe()
    }

    /// Blocks until the trace's spill (if any) has written every entry completed so far.
    pub fn trace_flush(&self) {
        self.core.trace.flush();
    }

    /// Moves the server clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.core.advance_clock(by);
    }

    /// The server clock, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.core.clock.now_ms()
    }

    /// The trace's time now (ms since the trace began, as entries' `t_ms`).
    pub fn trace_now_ms(&self) -> i64 {
        self.core.trace_time()
    }

    /// A server-clock instant (ms since the epoch) in trace time.
    pub fn to_trace_time(&self, epoch_ms: i64) -> i64 {
        self.core.to_trace_time(epoch_ms)
    }

    /// Creates a user; returns the full user id.
    pub fn add_user(&self, user: &str, password: &str) -> Result<String, OpError> {
        self.core.add_user(user, password)
    }

    /// Mints a refreshable session for an existing user, as a login would.
    pub fn mint_session(&self, user: &str) -> Result<Issued, OpError> {
        self.core.mint_session(&MintRequest::for_user(user))
    }

    /// Mints a session with full control over device and refresh.
    pub fn mint_session_with(&self, req: &MintRequest) -> Result<Issued, OpError> {
        self.core.mint_session(req)
    }

    /// The OAuth 2.0 issuer: `http://127.0.0.1:<port>/`, as `auth_metadata` reports it to a
    /// client that uses [`url`](Self::url).
    pub fn issuer(&self) -> String {
        format!("{}/", self.url())
    }

    /// Registers a public OAuth client (grants `authorization_code` and `refresh_token`,
    /// `application_type` `native`) with these redirect URIs, as dynamic client registration
    /// would. Returns its client id. Fails when the `oauth` knob is off or a URI is refused.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use rotary_server::{MockHomeserver, OAuthMintRequest, Profile};
    /// let server = MockHomeserver::builder().profile(Profile::Mas).start().await.unwrap();
    /// let client_id = server.register_oauth_client(&["http://127.0.0.1/callback"]).unwrap();
    /// let req = OAuthMintRequest { client_id: Some(client_id.clone()), ..OAuthMintRequest::for_user("alice") };
    /// let session = server.mint_oauth_session_with(&req).unwrap();
    /// assert_eq!(session.client_id, client_id);
    /// assert!(session.issued.refresh_token.unwrap().starts_with("mar_"));
    /// # }
    /// ```
    pub fn register_oauth_client(&self, redirect_uris: &[&str]) -> Result<String, OpError> {
        Ok(self
            .core
            .register_oauth_client(&ClientMetadata::public_client(redirect_uris))?
            .client_id)
    }

    /// Registers an OAuth client with full control over its metadata (RFC 7591 rules).
    pub fn register_oauth_client_with(&self, metadata: &ClientMetadata) -> Result<RegisteredClient, OpError> {
        self.core.register_oauth_client(metadata)
    }

    /// Every registered OAuth client.
    pub fn oauth_clients(&self) -> Vec<RegisteredClient> {
        self.core.oauth_clients()
    }

    /// Mints an OAuth 2.0 session for an existing user with a newly registered client and a new
    /// device, as a browser login plus a code exchange would. Fails when the `oauth` knob is off.
    pub fn mint_oauth_session(&self, user: &str) -> Result<OAuthIssued, OpError> {
        self.core.mint_oauth_session(&OAuthMintRequest::for_user(user))
    }

    /// Mints an OAuth 2.0 session with a chosen client and/or device.
    pub fn mint_oauth_session_with(&self, req: &OAuthMintRequest) -> Result<OAuthIssued, OpError> {
        self.core.mint_oauth_session(req)
    }

    /// Expires every access token of a session now. Returns their labels.
    pub fn expire_session(&self, user: &str, device_id: &str) -> Result<Vec<String>, OpError> {
        self.core.expire_session(user, device_id)
    }

    /// Deletes a session (device) and its tokens.
    pub fn revoke_session(&self, user: &str, device_id: &str) -> Result<(), OpError> {
        self.core.revoke_session(user, device_id)
    }

    /// Refreshes a session's newest refresh token as another process of the same device would
    /// (legacy or OAuth, by the session's kind, skipping the client check); with `use_new`, the
    /// new access token is used once too.
    pub fn rotate_out_of_band(&self, user: &str, device_id: &str, use_new: bool) -> Result<Issued, OpError> {
        self.core.rotate_out_of_band(user, device_id, use_new)
    }

    /// Sessions (devices) with their live token labels.
    pub fn sessions(&self, user: Option<&str>) -> Vec<DeviceInfo> {
        self.core.sessions(user)
    }

    /// Creates a room joined by `user`. Returns its id.
    pub fn create_room(&self, user: &str, name: Option<&str>) -> Result<String, OpError> {
        self.core.create_room(user, name)
    }

    /// How many events of `event_type` a room holds (to check exactly-once delivery).
    pub fn count_events(&self, room_id: &str, event_type: &str) -> usize {
        crate::core::lock(&self.core.rooms)
            .events_of_type(room_id, event_type)
            .len()
    }

    /// The ids of the events of `event_type` a room holds, in order.
    pub fn event_ids(&self, room_id: &str, event_type: &str) -> Vec<String> {
        crate::core::lock(&self.core.rooms)
            .events_of_type(room_id, event_type)
            .into_iter()
            .map(|e| e.event_id.clone())
            .collect()
    }

    /// How many requests the trace has recorded: the newest `seq`, evicted entries included
    /// (cheap: no copy).
    pub fn trace_len(&self) -> u64 {
        self.core.trace.len() as u64
    }

    /// A function that reads the trace length from any thread, for as long as it lives (it
    /// keeps the server's state, not the server, alive).
    pub fn trace_len_reader(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let core = Arc::clone(&self.core);
        move || core.trace.len() as u64
    }

    /// Adds a fault rule; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> Result<u64, OpError> {
        self.core.add_fault(rule)
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.core.clear_faults();
    }

    /// The fault rules with their counters.
    pub fn faults(&self) -> Vec<FaultStatus> {
        self.core.faults()
    }

    /// The current knobs.
    pub fn config(&self) -> ServerConfig {
        (*self.core.config()).clone()
    }

    /// Replaces the knobs.
    pub fn set_config(&self, cfg: ServerConfig) -> Result<(), OpError> {
        self.core.set_config(cfg)
    }

    /// The label (`at#3`) of a token the server issued.
    pub fn label_of(&self, token: &str) -> Option<String> {
        self.core.label_of(token)
    }

    /// How many access and refresh tokens are still stored (as Synapse's tables would count).
    pub fn live_token_counts(&self) -> (usize, usize) {
        crate::core::lock(&self.core.store).live_token_counts()
    }

    /// Back to the state the server started in.
    pub fn reset(&self) -> Result<(), OpError> {
        self.core.reset()
    }

    /// Stops serving (dropping does the same).
    pub fn shutdown(self) {
        drop(self);
    }
}
