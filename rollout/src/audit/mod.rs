//! `rotary audit`: a fixed probe of how a deployed homeserver really refreshes, the same probe
//! against an embedded mock per profile for the predictions, the match (or the closest profile
//! and a knob search that reproduces the server), a table, JSON and a server config.
//!
//! | module | what it holds |
//! |---|---|
//! | [`probe`] | the probe's steps (docs/audit.md lists them) |
//! | [`http`] | the HTTP client, token labels, the exchange log, 429 `retry_after_ms` |
//! | [`devices`] | the devices the audit created, logged out at the end whatever happens |
//! | [`observation`] | the behaviours, their values and the spec's verdicts |
//! | [`predict`] | the probe against an embedded mock per profile |
//! | [`search`] | the greedy knob search |
//! | [`report`] | table, JSON and the config TOML |
//! | [`clock`] | real waits or the mock's clock |
//! | [`error`] | why an audit could not run |
//!
//! ```no_run
//! # async fn f() -> Result<(), rotary_rollout::audit::AuditError> {
//! use rotary_rollout::audit::{AuditOptions, Credentials, run_audit};
//! let opts = AuditOptions::new("https://staging.example.org", Credentials::Register);
//! let report = run_audit(&opts, std::future::pending()).await?;
//! print!("{}", report.table());
//! # Ok(()) }
//! ```

pub mod clock;
pub mod devices;
pub mod error;
pub mod http;
pub mod observation;
pub mod predict;
pub mod probe;
pub mod report;
pub mod search;

pub use error::AuditError;
pub use observation::{Behaviour, Observations};
pub use probe::{Credentials, ProbeOptions};
pub use report::{AuditReport, Matched};

use clock::Waiter;
use devices::Devices;
use http::Http;
use probe::{Progress, probe};
use std::future::Future;
use std::time::{Duration, Instant};

/// The default `--max-wait`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(120);

/// What to audit.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The homeserver's base URL.
    pub homeserver: String,
    /// Credentials and the longest expiry wait.
    pub probe: ProbeOptions,
}

impl AuditOptions {
    /// Options with the default `--max-wait`.
    pub fn new(homeserver: impl Into<String>, credentials: Credentials) -> AuditOptions {
        AuditOptions {
            homeserver: homeserver.into(),
            probe: ProbeOptions {
                credentials,
                max_wait: DEFAULT_MAX_WAIT,
            },
        }
    }
}

/// Runs the audit; `cancel` (e.g. Ctrl-C) stops the probe early. Every device the audit created
/// is logged out before this returns, whatever happened.
pub async fn run_audit(
    opts: &AuditOptions,
    cancel: impl Future<Output = ()>,
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    let http = Http::new(&opts.homeserver, Waiter::Real)?;
    let devices = Devices::default();
    let progress = Progress::default();
    let result = tokio::select! {
        r = probe(&http, &devices, &progress, &opts.probe) => r,
        () = cancel => Err(AuditError::Interrupted { step: progress.step() }),
    };
    let left = devices
        .log_out_all(&http, progress.refresh_path().as_deref())
        .await;
    if !left.is_empty() {
        tracing::warn!(devices = ?left, "devices left logged in");
    }
    let observed = result?;
    let duration = started.elapsed();
    tracing::info!(
        requests = http.requests(),
        ms = duration.as_millis() as u64,
        "probe done"
    );

    let predictions = predict::predict(&observed, &opts.probe).await?;
    let scored: Vec<_> = predictions
        .iter()
        .map(|(p, o)| (*p, observed.differences(o)))
        .collect();
    let (closest, differences) = scored
        .iter()
        .min_by_key(|(_, d)| d.len())
        .cloned()
        .ok_or_else(|| AuditError::Mock("no profile to predict".to_owned()))?;
    let prediction = predictions
        .iter()
        .find(|(p, _)| *p == closest)
        .map(|(_, o)| o.clone())
        .unwrap_or_default();
    let reproduction = search::search(
        &observed,
        closest,
        predict::mock_config(closest, &observed),
        &prediction,
        &opts.probe,
    )
    .await?;
    let matched = if differences.is_empty() {
        Matched::Profile(closest)
    } else {
        Matched::Closest {
            profile: closest,
            differences,
        }
    };
    Ok(AuditReport {
        homeserver: http.url().to_owned(),
        mode: match opts.probe.credentials {
            Credentials::Login { .. } => "login",
            Credentials::Register => "register",
        },
        max_wait: opts.probe.max_wait,
        requests: http.requests(),
        duration,
        observed,
        predictions,
        matched,
        reproduction,
        devices_created: devices.created(),
        devices_left: left,
        exchanges: http.exchanges(),
    })
}
