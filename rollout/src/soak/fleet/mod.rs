//! A workload of simulated app sessions against any homeserver base URL: each session is the
//! reference client ([`rotary_reference::Client`]) doing what a Matrix app does — log in with a
//! refresh token, keep a sync loop of long polls, send messages and ask `whoami` at a rate, now and
//! then in a burst of concurrent requests — and checking that every message it sends comes back
//! through sync exactly once.
//!
//! The sessions share one connection pool ([`ClientConfig::http_client`]), start evenly over a
//! ramp-up, log in again (as a new device) after a logout, and can be suspended (an app sent to
//! the background: no request at all, the long poll dropped) for a while. What they did adds up
//! in [`WorkloadStats`]; a [`SessionObserver`] sees every event as it happens. `rotary soak` runs
//! its fleet of simulated sessions on it; it works as well against a real homeserver or a proxy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rotary_rollout::soak::fleet::WorkloadError> {
//! use rotary_rollout::soak::fleet::{Account, Workload};
//! use std::time::Duration;
//!
//! let accounts = vec![Account::new("alice", "wonderland"), Account::new("bob", "builder")];
//! let stats = Workload::builder()
//!     .base_url("http://127.0.0.1:8008")
//!     .accounts(accounts)
//!     .seed(7)
//!     .run_for(Duration::from_secs(60))
//!     .await?;
//! assert_eq!(stats.messages_lost, 0);
//! println!("{} actions, {} logouts", stats.actions, stats.logouts);
//! # Ok(()) }
//! ```
//!
//! Every loop is bounded in time by the workload's stop, and every request by the client's
//! timeouts; retries back off. Nothing is kept per request: a session remembers its messages
//! until sync shows them (at most [`MAX_PENDING_MESSAGES`]), and the counters are atomics.

mod events;
mod messages;
mod profile;
mod session;
mod stats;

pub use events::{ActionKind, MessageFate, NoObserver, Outcome, SessionEvent, SessionObserver};
pub use messages::MAX_PENDING_MESSAGES;
pub use profile::{Account, AppProfile, DEFAULT_MESSAGE_DEADLINE};
pub use stats::WorkloadStats;

use crate::soak::rng::SeededRng;
use rotary_reference::{Bugs, ClientConfig, LoginInfo};
use session::Session;
use stats::{Counters, bump};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long [`RunningWorkload::stop`] waits for the sessions in all.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A workload that could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// No base URL was given.
    #[error("the workload needs a base URL")]
    NoBaseUrl,
    /// The app profile is not usable.
    #[error("bad app profile: {0}")]
    Profile(String),
    /// The shared HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// The front door: [`Workload::builder`].
#[derive(Debug)]
pub struct Workload;

impl Workload {
    /// A builder: base URL, accounts (one session each), client configuration, app profile, seed.
    pub fn builder() -> WorkloadBuilder {
        WorkloadBuilder::default()
    }
}

/// Sets up a workload; [`start`](WorkloadBuilder::start) runs it in the background.
#[derive(Default)]
pub struct WorkloadBuilder {
    base_url: Option<String>,
    accounts: Vec<Account>,
    client: Option<ClientConfig>,
    profile: AppProfile,
    seed: u64,
    ramp_up: Duration,
    tag: Option<String>,
    bugs: Option<(Bugs, f64)>,
    observer: Option<Arc<dyn SessionObserver>>,
}

impl std::fmt::Debug for WorkloadBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadBuilder")
            .field("base_url", &self.base_url)
            .field("sessions", &self.accounts.len())
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl WorkloadBuilder {
    /// The homeserver (or proxy) the sessions talk to.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The accounts: one session each, in this order (their index is the session's).
    pub fn accounts(mut self, accounts: Vec<Account>) -> Self {
        self.accounts = accounts;
        self
    }

    /// The client configuration every session starts from (margin, timeouts, bugs, a shared HTTP
    /// client); its homeserver URL is replaced by the base URL. Default: `ClientConfig::new`, with
    /// one HTTP client built for all the sessions.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.client = Some(config);
        self
    }

    /// What the app does.
    pub fn profile(mut self, profile: AppProfile) -> Self {
        self.profile = profile;
        self
    }

    /// The seed of every random choice (waits, actions, which sessions get the bugs).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sessions start evenly over this time (default: all at once).
    pub fn ramp_up(mut self, ramp_up: Duration) -> Self {
        self.ramp_up = ramp_up;
        self
    }

    /// A prefix for the sessions' messages, unique per workload sharing a server (default `w`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Switches these reference bugs on for a share of the sessions (chosen with the seed; at
    /// least one when the share is above 0).
    pub fn bugs(mut self, bugs: Bugs, share: f64) -> Self {
        self.bugs = Some((bugs, share));
        self
    }

    /// Receives every session event.
    pub fn observer(mut self, observer: Arc<dyn SessionObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Starts every session (on the current tokio runtime).
    pub fn start(self) -> Result<RunningWorkload, WorkloadError> {
        let base_url = self.base_url.ok_or(WorkloadError::NoBaseUrl)?;
        self.profile.validate().map_err(WorkloadError::Profile)?;
        let mut config = match self.client {
            Some(c) => c,
            None => ClientConfig::new(base_url.clone()),
        };
        config.homeserver_url = base_url;
        if config.http_client.is_none() {
            let http = reqwest::Client::builder()
                .user_agent(concat!("rotary-workload/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| WorkloadError::Http(e.to_string()))?;
            config.http_client = Some(http);
        }
        let n = self.accounts.len();
        let buggy = match self.bugs {
            Some((bugs, share)) if !bugs.is_empty() && share > 0.0 => {
                let k = ((n as f64 * share).round() as usize).clamp(1, n.max(1));
                SeededRng::derive(self.seed, 0xB065).pick(n, k)
            }
            _ => Vec::new(),
        };
        let mut background_rng = SeededRng::derive(self.seed, 0xBAC6);
        let background = background_rng.pick(n, (n as f64 * self.profile.background_share).round() as usize);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            profile: self.profile,
            tag: self.tag.unwrap_or_else(|| "w".to_owned()),
            counters: Counters::default(),
            observer: self.observer.unwrap_or_else(|| Arc::new(NoObserver)),
        });
        let origin = Instant::now();
        let mut slots = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for (index, account) in self.accounts.into_iter().enumerate() {
            let bugs = if buggy.binary_search(&index).is_ok() {
                self.bugs.map(|(b, _)| b).unwrap_or_default()
            } else {
                Bugs::NONE
            };
            let (suspend_tx, _) = watch::channel(None);
            let slot = Arc::new(Slot {
                index,
                bugs,
                background: background.binary_search(&index).is_ok(),
                suspend: suspend_tx,
                current: Mutex::new(None),
            });
            let start_at = origin + self.ramp_up.mul_f64(index as f64 / n.max(1) as f64);
            let mut client_config = config.clone();
            client_config.bugs = bugs;
            let session = Session::new(
                Arc::clone(&slot),
                Arc::clone(&shared),
                account,
                client_config,
                SeededRng::derive(self.seed, index as u64 + 1),
            );
            tasks.push(tokio::spawn(session.run(start_at, stop_rx.clone())));
            slots.push(slot);
        }
        Ok(RunningWorkload {
            slots,
            tasks,
            stop: stop_tx,
            shared,
        })
    }

    /// Starts, runs for `duration`, stops (with the final sync) and answers the counts.
    pub async fn run_for(self, duration: Duration) -> Result<WorkloadStats, WorkloadError> {
        let running = self.start()?;
        tokio::time::sleep(duration).await;
        Ok(running.stop().await)
    }
}

/// One session's handle, shared with its task.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) index: usize,
    pub(crate) bugs: Bugs,
    pub(crate) background: bool,
    /// Until when the session is suspended, if it is.
    pub(crate) suspend: watch::Sender<Option<Instant>>,
    /// Who it is logged in as now.
    pub(crate) current: Mutex<Option<LoginInfo>>,
}

/// What one session looks like from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its index.
    pub index: usize,
    /// The bugs switched on for it.
    pub bugs: Bugs,
    /// Whether it syncs in the background (no long polls).
    pub background: bool,
    /// Who it is logged in as now (`None` before its login and after a logout).
    pub login: Option<LoginInfo>,
}

/// What every session shares.
pub(crate) struct Shared {
    pub(crate) profile: AppProfile,
    pub(crate) tag: String,
    pub(crate) counters: Counters,
    pub(crate) observer: Arc<dyn SessionObserver>,
}

/// A running workload.
pub struct RunningWorkload {
    slots: Vec<Arc<Slot>>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RunningWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorkload")
            .field("sessions", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl RunningWorkload {
    /// How many sessions it runs.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it runs no session at all.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The counts so far.
    pub fn stats(&self) -> WorkloadStats {
        self.shared.counters.snapshot()
    }

    /// One session as it is now.
    pub fn session(&self, index: usize) -> Option<SessionInfo> {
        let slot = self.slots.get(index)?;
        Some(SessionInfo {
            index,
            bugs: slot.bugs,
            background: slot.background,
            login: lock(&slot.current).clone(),
        })
    }

    /// Suspends a session for `duration`: no request until then, and its long poll is dropped.
    /// `false` if there is no such session or it is not logged in.
    pub fn suspend(&self, index: usize, duration: Duration) -> bool {
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        if lock(&slot.current).is_none() {
            return false;
        }
        let until = Instant::now() + duration;
        slot.suspend.send_replace(Some(until));
        bump(&self.shared.counters.suspensions);
        self.shared
            .observer
            .on_event(index, &SessionEvent::Suspended { duration });
        true
    }

    /// Stops every session: the loops end, each logged-in session makes a last sync to see its
    /// last messages, and the counts are final. Waits for every session, at most
    /// [`STOP_TIMEOUT`] in all; a session still running then is aborted.
    pub async fn stop(self) -> WorkloadStats {
        self.stop.send_replace(true);
        for slot in &self.slots {
            slot.suspend.send_replace(None);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for mut task in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "a workload session ended abnormally"),
                Err(_) => {
                    tracing::warn!("a workload session did not stop in time; aborted");
                    task.abort();
                }
            }
        }
        self.shared.counters.snapshot()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
