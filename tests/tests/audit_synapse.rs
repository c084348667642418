//! `rotary audit` against a real Synapse from PyPI (skipped, with a message, where it cannot be
//! installed; CI installs it): refresh on with a 3 s lifetime is `synapse`, refresh off is
//! `no-refresh`, and the config the audit writes, served by the mock, answers the fidelity
//! exchange (fidelity/compare.py) as Synapse does.

#[path = "common/proxy.rs"]
mod proxy_common;

use proxy_common::Synapse;
use rotary_rollout::audit::{AuditOptions, AuditReport, Credentials, run_audit};
use rotary_server::{MockHomeserver, Profile, ServerConfig};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_480)
}

async fn audit(url: &str) -> AuditReport {
    let started = Instant::now();
    let report = run_audit(
        &AuditOptions::new(url, Credentials::Register),
        std::future::pending(),
    )
    .await
    .unwrap_or_else(|e| panic!("audit of {url}: {e}"));
    eprintln!(
        "{}audit: {} requests, probe {:?}, whole audit {:?}",
        report.table(),
        report.requests,
        report.duration,
        started.elapsed()
    );
    assert!(report.devices_left.is_empty(), "{:?}", report.devices_left);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_with_refresh_is_synapse_and_its_config_passes_the_fidelity_exchange() {
    let Some(hs) = Synapse::start_with("audit", free_port(), "3s") else {
        return;
    };
    let report = audit(&hs.url).await;
    assert_eq!(report.profile(), Some(Profile::Synapse), "{}", report.table());
    assert!(report.must_broken().is_empty(), "{}", report.table());
    assert!(report.requests <= 30, "{} requests", report.requests);
    assert!(report.duration < Duration::from_secs(30), "{:?}", report.duration);

    // The written config, served by the mock, against Synapse on the whole fidelity exchange.
    let written = report.profile_toml();
    let cfg = ServerConfig::from_toml(&written).expect("the written config loads");
    assert_eq!(
        cfg.refreshable_access_token_lifetime,
        Some(Duration::from_secs(3)),
        "{written}"
    );
    let mock = MockHomeserver::builder()
        .config(cfg)
        .start()
        .await
        .expect("mock starts");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (a, b) = (hs.url.clone(), mock.url());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .current_dir(&root)
            .args(["fidelity/compare.py", "--a", &a, "--a-name", "synapse", "--b", &b])
            .args(["--b-name", "audited-mock", "--lifetime-ms", "3000"])
            .args(["--known", "fidelity/known-differences.toml"])
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().rev().find(|l| l.contains(" ok, ")).unwrap_or("");
    eprintln!("fidelity: {summary}");
    assert!(
        out.status.success(),
        "the audited config differs from Synapse on the fidelity exchange:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains(" 0 diff"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_without_refresh_is_no_refresh() {
    let Some(hs) = Synapse::start_with("audit-off", free_port(), "null") else {
        return;
    };
    let report = audit(&hs.url).await;
    assert_eq!(report.profile(), Some(Profile::NoRefresh), "{}", report.table());
    let cfg = ServerConfig::from_toml(&report.profile_toml()).expect("the written config loads");
    assert!(!cfg.refresh_enabled());
    assert!(report.requests <= 16, "{} requests", report.requests);
}
