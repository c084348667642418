//! How the reference driver refreshes legacy sessions against the mock homeserver: one refresh for a
//! 401 storm, transient failures retried with the same token, refusals and a missing refresh token
//! as (soft) logouts.

mod common;

use anyhow::Context;
use common::{Harness, count, expired_without_refresh_token, server, with_bug};
use rotary_reference::{Bug, DriverOptions};
use rotary_server::FaultRule;
use serde_json::json;

#[tokio::test]
async fn a_401_storm_makes_one_refresh() -> anyhow::Result<()> {
    let server = server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let device = h.login().await?;
    assert_eq!(h.notified("session_changed").len(), 1);
    server.expire_session("alice", &device)?;

    let r = h
        .ok("parallel", json!({"count": 5, "op": "whoami", "params": {}}))
        .await?;
    let results = r["results"].as_array().context("results")?;
    assert_eq!(results.len(), 5);
    for outcome in results {
        assert_eq!(
            outcome,
            &json!({"ok": true, "result": {"user_id": "@alice:localhost"}})
        );
    }
    assert_eq!(count(&server, "refresh"), 1, "{:#?}", server.trace());
    // Every retried request used the refreshed token.
    let whoamis: Vec<_> = server
        .trace()
        .into_iter()
        .filter(|e| e.endpoint == "whoami")
        .collect();
    assert_eq!(whoamis.iter().filter(|e| e.status == Some(200)).count(), 5);
    assert_eq!(whoamis.iter().filter(|e| e.status == Some(401)).count(), 5);

    let changed = h.notified("session_changed");
    assert_eq!(changed.len(), 2);
    let session = h.ok("session", json!({})).await?;
    assert_eq!(session, changed[1]);
    assert_ne!(changed[0]["refresh_token"], changed[1]["refresh_token"]);
    assert!(h.notified("logged_out").is_empty());
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn refresh_per_401_refreshes_more_than_once() -> anyhow::Result<()> {
    let server = server().await?;
    let mut h = Harness::start(with_bug(Bug::RefreshPer401), &server.url(), None);
    h.initialize().await?;
    let device = h.login().await?;
    server.expire_session("alice", &device)?;
    h.ok("parallel", json!({"count": 5, "op": "whoami", "params": {}}))
        .await?;
    assert!(count(&server, "refresh") > 1, "{:#?}", server.trace());
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_transient_refresh_failure_is_retried_with_the_same_token() -> anyhow::Result<()> {
    let server = server().await?;
    server.add_fault(FaultRule::from_toml(
        "endpoint = \"refresh\", nth = 1, action = { kind = \"error\", status = 500 }",
    )?)?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let device = h.login().await?;
    server.expire_session("alice", &device)?;
    let r = h.ok("whoami", json!({})).await?;
    assert_eq!(r, json!({"user_id": "@alice:localhost"}));
    let refreshes: Vec<_> = server
        .trace()
        .into_iter()
        .filter(|e| e.endpoint == "refresh")
        .collect();
    assert_eq!(refreshes.len(), 2);
    assert_eq!(refreshes[0].status, Some(500));
    assert_eq!(refreshes[1].status, Some(200));
    let presented: Vec<_> = refreshes
        .iter()
        .map(|e| e.refresh_token.as_ref().map(|t| t.label.clone()))
        .collect();
    assert_eq!(
        presented[0], presented[1],
        "the retry must present the same refresh token"
    );
    assert!(h.notified("logged_out").is_empty());
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn transient_failures_exhausted_keep_the_session() -> anyhow::Result<()> {
    let server = server().await?;
    server.add_fault(FaultRule::from_toml(
        "endpoint = \"refresh\", first = 2, action = { kind = \"error\", status = 503 }",
    )?)?;
    let opts = DriverOptions {
        max_refresh_attempts: 2,
        ..DriverOptions::default()
    };
    let mut h = Harness::start(opts, &server.url(), None);
    h.initialize().await?;
    let device = h.login().await?;
    server.expire_session("alice", &device)?;
    let e = h.error("whoami", json!({})).await?;
    assert_eq!(e["code"], -32000);
    assert_eq!(e["data"]["kind"], "http");
    assert_eq!(e["data"]["status"], 503);
    assert_eq!(count(&server, "refresh"), 2);
    assert!(h.notified("logged_out").is_empty());
    // The tokens were kept: the next call refreshes and succeeds.
    h.ok("whoami", json!({})).await?;
    assert_eq!(count(&server, "refresh"), 3);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_refused_refresh_logs_out_and_no_request_follows() -> anyhow::Result<()> {
    let server = server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let device = h.login().await?;
    server.revoke_session("alice", &device)?;
    let e = h.error("whoami", json!({})).await?;
    assert_eq!(e["data"]["kind"], "logged_out", "{e}");
    assert_eq!(h.notified("logged_out"), vec![json!({"soft_logout": false})]);
    assert_eq!(
        h.ok("session", json!({})).await?,
        json!({"access_token": null, "refresh_token": null})
    );
    let before = server.trace().len();
    let e = h.error("whoami", json!({})).await?;
    assert_eq!(e["data"]["kind"], "logged_out");
    assert_eq!(
        server.trace().len(),
        before,
        "a logged-out client must not make requests"
    );
    assert_eq!(h.notified("logged_out").len(), 1);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn without_a_refresh_token_a_401_is_a_soft_logout() -> anyhow::Result<()> {
    let (server, mut h) = expired_without_refresh_token(DriverOptions::default()).await?;
    let e = h.error("whoami", json!({})).await?;
    assert_eq!(e["data"]["kind"], "soft_logged_out", "{e}");
    assert_eq!(h.notified("logged_out"), vec![json!({"soft_logout": true})]);
    assert_eq!(count(&server, "refresh"), 0);
    h.shutdown().await?;
    Ok(())
}
