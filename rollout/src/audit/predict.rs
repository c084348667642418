//! The predictions: the same probe against an embedded mock (the `server` crate on a loopback
//! port, its clock advanced instead of waited) per profile, so that each prediction is what the
//! mock really does rather than a hand-written table.

use super::clock::Waiter;
use super::devices::Devices;
use super::error::AuditError;
use super::http::Http;
use super::observation::{Behaviour, Observations};
use super::probe::{Credentials, ProbeOptions, Progress, parse_lifetime, probe};
use rotary_server::{MockHomeserver, Profile, ServerConfig};
use std::sync::Arc;

/// The profiles the audit predicts, in the order ties are broken.
pub const PROFILES: [Profile; 5] = Profile::ALL;

/// A profile's config with the lifetime the server announced (so that the same expiry probes run
/// or are skipped).
pub fn mock_config(profile: Profile, observed: &Observations) -> ServerConfig {
    let mut cfg = ServerConfig::for_profile(profile);
    if cfg.refresh_enabled()
        && let Some(l) = parse_lifetime(observed.get(Behaviour::LoginExpiresIn))
    {
        cfg.refreshable_access_token_lifetime = Some(l);
    }
    cfg
}

/// Runs the probe against an embedded mock with `cfg`, the way it ran against the server
/// (`login` as the mock's alice, or `register`).
pub async fn observe(cfg: &ServerConfig, opts: &ProbeOptions) -> Result<Observations, AuditError> {
    let server = MockHomeserver::builder()
        .config(cfg.clone())
        .trace_window(1_000)
        .start()
        .await
        .map_err(|e| AuditError::Mock(e.to_string()))?;
    let server = Arc::new(server);
    let http = Http::new(&server.url(), Waiter::Mock(Arc::clone(&server)))?;
    let credentials = match opts.credentials {
        Credentials::Login { .. } => Credentials::Login {
            user: "alice".to_owned(),
            password: "wonderland".to_owned(),
        },
        Credentials::Register => Credentials::Register,
    };
    let mock_opts = ProbeOptions {
        credentials,
        max_wait: opts.max_wait,
    };
    let devices = Devices::default();
    let progress = Progress::default();
    let result = probe(&http, &devices, &progress, &mock_opts).await;
    drop(http);
    if let Ok(s) = Arc::try_unwrap(server) {
        s.shutdown();
    }
    result
}

/// Every profile's prediction for what the server did.
pub async fn predict(
    observed: &Observations,
    opts: &ProbeOptions,
) -> Result<Vec<(Profile, Observations)>, AuditError> {
    let runs = PROFILES.map(|p| {
        let cfg = mock_config(p, observed);
        async move { observe(&cfg, opts).await.map(|o| (p, o)) }
    });
    futures_util::future::join_all(runs).await.into_iter().collect()
}
