//! `rotary proxy`: a reverse proxy in front of a real homeserver that forwards every request,
//! learns the token graph from traffic, injects the catalogue's faults and judges the clients live
//! with the same invariants `rotary run` reports.
//!
//! The front door is [`Proxy::builder`]: give it the upstream, start it, point clients at
//! [`RunningProxy::url`], and read the verdict from [`RunningProxy::finish`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rotary_rollout::proxy::Proxy;
//! use rotary_server::{FaultAction, FaultRule};
//!
//! let proxy = Proxy::builder("http://127.0.0.1:8008")?
//!     .fault(FaultRule::on("refresh", FaultAction::CommitThenDrop).nth(1))
//!     .start()
//!     .await?;
//! println!("point the client at {}", proxy.url());
//! // … the client runs …
//! let report = proxy.finish().await;
//! assert!(report.must_violations() == 0, "{:#?}", report.violations);
//! # Ok(()) }
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`graph`] | the token graph: labels and observed states per session |
//! | [`learn`] | what the proxy reads from the bodies it buffers |
//! | [`discovery`] | well-known and OAuth metadata rewriting; the origins it may forward to |
//! | [`upstream`] | the upstream URL, the pooled client (rustls), header hygiene |
//! | [`metrics`] | counters, histograms, Prometheus text |
//! | `direct` | requests a tool sends to the upstream itself ([`RunningProxy::call_upstream`]) |
//! | [`report`] | the report directory (JSON, HTML, the streamed trace) |
//! | `handler`, `listener`, `control`, `watcher` | one request, the accept loop (TLS), the control API, the live judge's task |

mod control;
mod direct;
pub mod discovery;
pub mod graph;
mod handler;
pub mod learn;
mod listener;
pub mod metrics;
pub mod report;
pub mod upstream;
mod watcher;

pub use direct::{DirectAnswer, DirectError};
pub use report::ProxyReport;
pub use watcher::ViolationLog;

use graph::{GraphLimits, SessionSummary, TokenGraph};
use metrics::{Metrics, Totals};
use rotary_judge::live::WatchConfig;
use rotary_server::control::ControlAccess;
use rotary_server::fault::{FaultError, FaultRule, FaultSet};
use rotary_server::trace::{SpillConfig, Trace, TraceConfig, TraceError};
use rotary_server::{ServerConfig, endpoint_names};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use upstream::{Origin, UpstreamClient, UpstreamError};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A bad `--upstream`.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A bad fault rule.
    #[error("--fault: {0}")]
    Fault(#[from] FaultError),
    /// The listening address could not be bound.
    #[error("--listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key could not be read or used.
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(String),
    /// The trace spill could not be set up.
    #[error("--report: {0}")]
    Trace(#[from] TraceError),
    /// The TLS client could not be built.
    #[error("the upstream client could not be built: {0}")]
    Client(std::io::Error),
}

/// How the proxy runs. Built with [`Proxy::builder`].
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The homeserver to forward to.
    pub upstream: Origin,
    /// Where to listen (default `127.0.0.1:8009`; port 0 picks one).
    pub listen: SocketAddr,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    /// TLS on the listening side: PEM certificate chain and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Who may use the control API.
    pub control: ControlAccess,
    /// The base URL clients reach the proxy at, for discovery answers (default: from each
    /// request's `Host` header).
    pub public_url: Option<String>,
    /// Largest request body forwarded (default 50 MiB, Synapse's `max_upload_size`).
    pub max_body_bytes: usize,
    /// How long the upstream may take to send its response head (default 5 min: long-polls).
    pub upstream_timeout: Duration,
    /// How the live watch judges.
    pub watch: WatchConfig,
    /// Trace entries kept in memory (default 10,000).
    pub trace_window: usize,
    /// Where to stream the trace (NDJSON, rotated), if anywhere.
    pub trace_spill: Option<SpillConfig>,
    /// Violations kept in memory with their windows (default 1,000; all are counted).
    pub max_violations: usize,
    /// Token graph bounds.
    pub graph: GraphLimits,
}

/// The proxy: see [`Proxy::builder`].
#[derive(Debug)]
pub struct Proxy;

/// Builds a [`ProxyConfig`] and starts the proxy.
#[derive(Clone, Debug)]
pub struct ProxyBuilder {
    config: ProxyConfig,
}

impl Proxy {
    /// A builder for a proxy in front of `upstream` (`https://matrix.example.org`).
    ///
    /// ```
    /// let b = rotary_rollout::proxy::Proxy::builder("http://127.0.0.1:8008").unwrap();
    /// assert_eq!(b.config().listen.to_string(), "127.0.0.1:8009");
    /// assert!(rotary_rollout::proxy::Proxy::builder("matrix.example.org").is_err());
    /// ```
    pub fn builder(upstream: &str) -> Result<ProxyBuilder, ProxyError> {
        Ok(ProxyBuilder {
            config: ProxyConfig {
                upstream: Origin::parse(upstream)?,
                listen: SocketAddr::from(([127, 0, 0, 1], 8009)),
                faults: Vec::new(),
                tls: None,
                control: ControlAccess::LoopbackOnly,
                public_url: None,
                max_body_bytes: 50 << 20,
                upstream_timeout: Duration::from_secs(300),
                watch: WatchConfig::default(),
                trace_window: 10_000,
                trace_spill: None,
                max_violations: 1_000,
                graph: GraphLimits::default(),
            },
        })
    }
}

impl ProxyBuilder {
    /// The configuration so far.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Where to listen.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Adds a fault rule.
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.config.faults.push(rule);
        self
    }

    /// TLS on the listening side.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.config.tls = Some((cert.into(), key.into()));
        self
    }

    /// Who may use the control API.
    pub fn control_access(mut self, access: ControlAccess) -> Self {
        self.config.control = access;
        self
    }

    /// The base URL clients reach the proxy at.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.config.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The live watch's configuration.
    pub fn watch(mut self, cfg: WatchConfig) -> Self {
        self.config.watch = cfg;
        self
    }

    /// Streams the trace to NDJSON files.
    pub fn trace_spill(mut self, spill: SpillConfig) -> Self {
        self.config.trace_spill = Some(spill);
        self
    }

    /// Changes any other setting.
    pub fn configure(mut self, f: impl FnOnce(&mut ProxyConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Binds and starts serving.
    pub async fn start(self) -> Result<RunningProxy, ProxyError> {
        let cfg = self.config;
        let known = endpoint_names();
        let mut faults = FaultSet::default();
        for rule in &cfg.faults {
            rule.validate(&known)?;
            faults.add(rule.clone());
        }
        let tls = match &cfg.tls {
            Some((cert, key)) => Some(listener::acceptor(cert, key).map_err(ProxyError::Tls)?),
            None => None,
        };
        let mut trace_cfg = TraceConfig::default().window(cfg.trace_window);
        if let Some(spill) = &cfg.trace_spill {
            trace_cfg = trace_cfg.spill(spill.clone());
        }
        let trace = Trace::new(trace_cfg)?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let client = upstream::client(Duration::from_secs(10)).map_err(ProxyError::Client)?;
        // Classify every endpoint the spec names, whatever the upstream serves.
        let classify_cfg = ServerConfig {
            oauth: true,
            serve_v1_refresh: true,
            serve_unstable_refresh: true,
            ..ServerConfig::default()
        };
        let shared = Arc::new(Shared {
            origins: discovery::Origins::new(cfg.upstream.clone()),
            classify_cfg,
            client,
            graph: Mutex::new(TokenGraph::new(cfg.graph)),
            faults: Mutex::new(faults),
            violations: Mutex::new(ViolationLog::new(cfg.max_violations)),
            metrics: Metrics::default(),
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            tls: tls.is_some(),
            addr,
            finished: AtomicU64::new(0),
            judged: AtomicU64::new(0),
            trace,
            cfg,
        });
        let watcher = tokio::spawn(watcher::run(shared.clone(), shared.trace.subscribe()));
        let accept = tokio::spawn(listener::accept_loop(shared.clone(), listener, tls));
        Ok(RunningProxy {
            shared,
            accept,
            watcher,
        })
    }
}

/// State shared by every connection.
pub(crate) struct Shared {
    cfg: ProxyConfig,
    origins: discovery::Origins,
    classify_cfg: ServerConfig,
    client: UpstreamClient,
    graph: Mutex<TokenGraph>,
    faults: Mutex<FaultSet>,
    trace: Trace,
    violations: Mutex<ViolationLog>,
    metrics: Metrics,
    started: Instant,
    shutdown: CancellationToken,
    tls: bool,
    addr: SocketAddr,
    /// Trace entries completed, and how many of them the watch has judged.
    finished: AtomicU64,
    judged: AtomicU64,
}

impl Shared {
    fn lock_graph(&self) -> MutexGuard<'_, TokenGraph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_faults(&self) -> MutexGuard<'_, FaultSet> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes a trace entry (and counts it for [`RunningProxy::settle`]).
    fn finish(&self, ticket: rotary_server::trace::Ticket, done: rotary_server::trace::Completion) {
        self.trace.finish(ticket, done);
        self.finished.fetch_add(1, Ordering::Release);
    }

    fn lock_violations(&self) -> MutexGuard<'_, ViolationLog> {
        self.violations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running proxy. Dropping it stops it; [`finish`](Self::finish) stops it and returns the
/// report.
#[derive(Debug)]
pub struct RunningProxy {
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.cfg.upstream)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningProxy {
    /// The proxy's base URL (`http://127.0.0.1:PORT`, `https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.shared.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The upstream.
    pub fn upstream(&self) -> &Origin {
        &self.shared.cfg.upstream
    }

    /// Counters now.
    pub fn totals(&self) -> Totals {
        self.shared.metrics.totals()
    }

    /// The Prometheus text of `/_rotary/metrics`.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// Violations found so far (the kept ones, oldest first).
    pub fn violations(&self) -> Vec<rotary_judge::live::Violation> {
        self.shared.lock_violations().kept().to_vec()
    }

    /// Sessions as observed.
    pub fn sessions(&self) -> Vec<SessionSummary> {
        self.shared.lock_graph().sessions()
    }

    /// The trace entries still in memory.
    pub fn trace(&self) -> Vec<rotary_judge::TraceEntry> {
        self.shared.trace.snapshot(0)
    }

    /// Adds a fault rule while running; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> Result<u64, FaultError> {
        rule.validate(&endpoint_names())?;
        Ok(self.shared.lock_faults().add(rule))
    }

    /// Removes a fault rule; whether it existed.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.lock_faults().remove(id)
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.lock_faults().clear();
    }

    /// A live feed of every trace entry completed from now on (what `rotary soak --upstream`
    /// judges).
    pub fn subscribe_trace(&self) -> rotary_server::TraceSubscription {
        self.shared.trace.subscribe()
    }

    /// Waits until the live judge has seen every request completed so far (bounded: 5 s).
    pub async fn settle(&self) {
        for _ in 0..500 {
            if self.shared.judged.load(Ordering::Acquire) >= self.shared.finished.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting, lets the judge catch up, and returns the report.
    pub async fn finish(self) -> ProxyReport {
        self.settle().await;
        self.shared.shutdown.cancel();
        self.accept.abort();
        self.shared.trace.flush();
        let report = report::build(&self.shared);
        self.watcher.abort();
        report
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.accept.abort();
        self.watcher.abort();
    }
}
