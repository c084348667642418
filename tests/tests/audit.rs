//! `rotary audit` against the in-process mock: every profile is named; a knob changed alone is
//! named exactly (and the written config reproduces it); bad inputs are one-line errors naming
//! the step with no device left behind; 429 `retry_after_ms` is honoured; Ctrl-C still logs out;
//! the JSON report (tokens as labels) is pinned by a snapshot.

use futures_util::StreamExt;
use rotary_rollout::audit::{AuditError, AuditOptions, AuditReport, Behaviour, Credentials, run_audit};
use rotary_server::{FaultRule, MockHomeserver, Profile, ServerConfig};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// 3 s: long enough that a loaded machine does not push a token near its expiry mid-probe.
const LIFETIME: Duration = Duration::from_secs(3);

async fn mock(cfg: ServerConfig, faults: &[&str]) -> MockHomeserver {
    let mut b = MockHomeserver::builder().config(cfg);
    for f in faults {
        b = b.fault(FaultRule::from_toml(f).expect("fault rule"));
    }
    b.start().await.expect("mock starts")
}

fn profile_config(p: Profile) -> ServerConfig {
    let mut cfg = ServerConfig::for_profile(p);
    if cfg.refresh_enabled() {
        cfg.refreshable_access_token_lifetime = Some(LIFETIME);
    }
    cfg
}

async fn audit(server: &MockHomeserver, credentials: Credentials) -> Result<AuditReport, AuditError> {
    run_audit(
        &AuditOptions::new(server.url(), credentials),
        std::future::pending(),
    )
    .await
}

fn alice() -> Credentials {
    Credentials::Login {
        user: "alice".to_owned(),
        password: "wonderland".to_owned(),
    }
}

/// No device the audit created is still logged in.
fn assert_no_device_left(server: &MockHomeserver) {
    let live: Vec<_> = server
        .sessions(None)
        .into_iter()
        .filter(|d| !d.live_access_tokens.is_empty() || !d.live_refresh_tokens.is_empty())
        .collect();
    assert!(live.is_empty(), "devices left behind: {live:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_is_named() {
    let runs = Profile::ALL.map(|p| async move {
        let server = mock(profile_config(p), &[]).await;
        let started = Instant::now();
        let report = audit(&server, Credentials::Register)
            .await
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(report.profile(), Some(p), "{p}:\n{}", report.table());
        assert!(
            report.table().contains(&format!("matches profile {p}")),
            "{}",
            report.table()
        );
        assert!(
            report.reproduction.knobs.is_empty(),
            "{p}: {:?}",
            report.reproduction.knobs
        );
        assert_no_device_left(&server);
        assert!(
            report.devices_created <= 2,
            "{p}: {} devices",
            report.devices_created
        );
        assert!(report.devices_left.is_empty());
        // The written config, read back, is the profile with the observed lifetime.
        let cfg = ServerConfig::from_toml(&report.profile_toml()).expect("the written config loads");
        assert_eq!(cfg, report.reproduction.config, "{p}");
        eprintln!("{p}: {} requests in {:?}", report.requests, started.elapsed());
        (p, report.requests)
    });
    for (p, requests) in futures_util::future::join_all(runs).await {
        assert!((8..=40).contains(&requests), "{p}: {requests} requests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_mode_skips_logout_all_and_names_the_profile() {
    let server = mock(profile_config(Profile::Synapse), &[]).await;
    let report = audit(&server, alice()).await.expect("audit");
    assert_eq!(report.profile(), Some(Profile::Synapse), "{}", report.table());
    assert!(
        report
            .observed
            .get(Behaviour::LogoutAllRefresh)
            .starts_with("skipped")
    );
    assert!(!report.exchanges.iter().any(|e| e.path.ends_with("/logout/all")));
    assert_eq!(report.devices_created, 1);
    assert_no_device_left(&server);
}

/// Knobs the probe can tell apart, each changed alone from the synapse profile.
const KNOBS: &[(&str, &str)] = &[
    ("reuse_policy", r#""grace-then-unknown""#),
    ("reuse_policy", r#""single-use""#),
    ("rotate_refresh_tokens", "false"),
    ("revoke_old_access_token", "true"),
    ("keep_used_access_token_of_dropped_generation", "false"),
    ("expired_token_soft_logout", "false"),
    ("refresh_failure_soft_logout", "true"),
    ("serve_v1_refresh", "true"),
    ("serve_unstable_refresh", "true"),
    ("dialect", r#""mas""#),
    ("oauth", "true"),
    ("send_expires_in_ms", "false"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knob_changed_alone_is_named_exactly() {
    let runs = futures_util::stream::iter(KNOBS.iter().map(|&(knob, value)| async move {
        let v: Value = serde_json::from_str(value).expect("value");
        let cfg = profile_config(Profile::Synapse)
            .patched(&json!({ knob: v.clone() }))
            .expect("knob");
        let server = mock(cfg.clone(), &[]).await;
        let report = audit(&server, Credentials::Register)
            .await
            .unwrap_or_else(|e| panic!("{knob}: {e}"));
        let table = report.table();
        let json = report.to_json();
        assert_eq!(json["profile"], Value::Null, "{knob} = {value}:\n{table}");
        assert_eq!(json["closest_profile"], "synapse", "{knob} = {value}:\n{table}");
        assert!(!json["differences"].as_array().expect("differences").is_empty());
        let r = &report.reproduction;
        assert_eq!(r.knobs.len(), 1, "{knob} = {value}: found {:?}\n{table}", r.knobs);
        assert_eq!(
            r.knobs.get(knob),
            Some(&v),
            "{knob} = {value}: found {:?}\n{table}",
            r.knobs
        );
        assert!(r.remaining.is_empty(), "{knob}: {:?}", r.remaining);
        assert!(table.contains(&format!("{knob} = {v}")), "{table}");
        // The written config reproduces the server: it loads, and names the knob.
        let written = report.profile_toml();
        let back = ServerConfig::from_toml(&written).expect("the written config loads");
        assert_eq!(back, r.config, "{written}");
        assert_no_device_left(&server);
    }))
    .buffer_unordered(3)
    .collect::<Vec<()>>();
    tokio::time::timeout(Duration::from_secs(240), runs)
        .await
        .expect("the knob audits finish in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_tls_errors_name_the_step() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let opts = AuditOptions::new(format!("http://127.0.0.1:{port}"), Credentials::Register);
    let err = run_audit(&opts, std::future::pending())
        .await
        .expect_err("closed port");
    assert!(matches!(err, AuditError::Unreachable { .. }), "{err}");
    let line = err.to_string();
    assert!(line.starts_with("step versions: cannot reach"), "{line}");
    assert!(!line.contains('\n'), "{line}");

    let server = mock(profile_config(Profile::Synapse), &[]).await;
    let https = server.url().replace("http://", "https://");
    let err = run_audit(
        &AuditOptions::new(https, Credentials::Register),
        std::future::pending(),
    )
    .await
    .expect_err("TLS to a plain port");
    assert!(matches!(err, AuditError::Tls { .. }), "{err}");
    assert!(err.to_string().starts_with("step versions: TLS error"), "{err}");

    let err = run_audit(
        &AuditOptions::new("ftp://example.org", Credentials::Register),
        std::future::pending(),
    )
    .await
    .expect_err("bad URL");
    assert!(matches!(err, AuditError::BadUrl { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_is_not_matrix() {
    let server = mock(
        profile_config(Profile::Synapse),
        &[r#"endpoint = "versions", action = { kind = "html", status = 200 }"#],
    )
    .await;
    let err = audit(&server, Credentials::Register).await.expect_err("HTML");
    assert!(matches!(err, AuditError::NotMatrix { .. }), "{err}");
    let line = err.to_string();
    assert!(
        line.starts_with("step versions:") && line.contains("not a Matrix homeserver"),
        "{line}"
    );
    assert!(line.contains("text/html"), "{line}");
    assert!(server.sessions(None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_closed_registration() {
    let server = mock(profile_config(Profile::Synapse), &[]).await;
    let err = audit(
        &server,
        Credentials::Login {
            user: "alice".to_owned(),
            password: "looking-glass".to_owned(),
        },
    )
    .await
    .expect_err("wrong password");
    assert!(matches!(err, AuditError::WrongPassword { .. }), "{err}");
    assert!(
        err.to_string().starts_with("step login: wrong user or password"),
        "{err}"
    );
    assert!(server.sessions(None).is_empty());

    let closed = mock(
        profile_config(Profile::Synapse),
        &[r#"endpoint = "register", action = { kind = "error", status = 403, errcode = "M_FORBIDDEN", error = "Registration has been disabled" }"#],
    )
    .await;
    let err = audit(&closed, Credentials::Register).await.expect_err("closed");
    assert!(matches!(err, AuditError::RegistrationClosed { .. }), "{err}");
    let line = err.to_string();
    assert!(
        line.starts_with("step register: registration is closed"),
        "{line}"
    );
    assert!(closed.sessions(None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_honoured_then_reported() {
    // Two 429s with a short retry_after_ms: waited out, and the audit still names the profile.
    let server = mock(
        profile_config(Profile::Synapse),
        &[r#"endpoint = "refresh", first = 2, action = { kind = "error", status = 429, retry_after_ms = 300 }"#],
    )
    .await;
    let started = Instant::now();
    let report = audit(&server, Credentials::Register).await.expect("audit");
    assert_eq!(report.profile(), Some(Profile::Synapse), "{}", report.table());
    assert_eq!(report.exchanges.iter().filter(|e| e.status == 429).count(), 2);
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_no_device_left(&server);

    // Always 429: a one-line error naming the step, and the device is logged out anyway.
    let limited = mock(
        profile_config(Profile::Synapse),
        &[r#"endpoint = "refresh", action = { kind = "error", status = 429, retry_after_ms = 100 }"#],
    )
    .await;
    let err = audit(&limited, Credentials::Register)
        .await
        .expect_err("rate limited");
    assert!(matches!(err, AuditError::RateLimited { .. }), "{err}");
    let line = err.to_string();
    assert!(line.starts_with("step refresh paths: rate limited"), "{line}");
    assert_no_device_left(&limited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_audit_logs_its_devices_out() {
    let server = mock(profile_config(Profile::Synapse), &[]).await;
    // Interrupted during the expiry wait (the 3 s lifetime).
    let cancel = tokio::time::sleep(Duration::from_millis(800));
    let err = run_audit(&AuditOptions::new(server.url(), Credentials::Register), cancel)
        .await
        .expect_err("interrupted");
    assert!(matches!(err, AuditError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("logged out"), "{err}");
    assert_no_device_left(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lifetimes_are_skipped_and_say_so() {
    let mut cfg = profile_config(Profile::Synapse);
    cfg.refreshable_access_token_lifetime = Some(Duration::from_secs(300));
    let server = mock(cfg, &[]).await;
    let started = Instant::now();
    let report = audit(&server, Credentials::Register).await.expect("audit");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(report.profile(), Some(Profile::Synapse), "{}", report.table());
    assert_eq!(
        report.observed.get(Behaviour::ExpiredAccess),
        "skipped: lifetime 5m > --max-wait 2m"
    );
    assert!(report.table().contains("skipped: lifetime 5m > --max-wait 2m"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_snapshot() {
    let server = mock(profile_config(Profile::Synapse), &[]).await;
    let report = audit(&server, Credentials::Register).await.expect("audit");
    let json = report.to_json();
    let text = json.to_string();
    // Tokens appear as labels only.
    for prefix in ["syt_", "syr_"] {
        for (i, _) in text.match_indices(prefix) {
            let next = text[i + prefix.len()..].chars().next();
            assert!(
                matches!(next, Some(' ' | '"')),
                "a raw token in the JSON: {}",
                &text[i..]
            );
        }
    }
    assert_eq!(json["profile"], "synapse");
    insta::assert_json_snapshot!("audit_synapse", json, {
        ".homeserver" => "[url]",
        ".duration_ms" => "[ms]",
        ".exchanges[].t_ms" => "[t]",
    });
}
