//! The reference driver's OAuth 2.0 sessions (Matrix v1.15) against the mock server's `mas` profile:
//! discovery, the token endpoint, the headless authorization-code login, revocation, and the OAuth
//! bug switches.

mod common;

use anyhow::Context;
use common::{Harness, both, of, opts, presented_rt};
use rotary_reference::{Bug, DriverOptions};
use rotary_server::{FaultRule, MockHomeserver, OAuthIssued, Profile, TraceEntry};
use serde_json::{Value, json};
use std::time::Duration;

async fn oauth_server() -> anyhow::Result<MockHomeserver> {
    Ok(MockHomeserver::builder()
        .profile(Profile::Mas)
        .refreshable_access_token_lifetime(Duration::from_secs(300))
        .start()
        .await?)
}

fn flag(e: &TraceEntry, name: &str) -> Value {
    e.flags.get(name).cloned().unwrap_or(Value::Null)
}

/// Mints an OAuth session on the server and restores it in the driver.
async fn restore(h: &mut Harness, server: &MockHomeserver) -> anyhow::Result<OAuthIssued> {
    let minted = server.mint_oauth_session("alice")?;
    let session = json!({
        "auth": "oauth",
        "user_id": minted.issued.user_id,
        "device_id": minted.issued.device_id,
        "access_token": minted.issued.access_token,
        "refresh_token": minted.issued.refresh_token,
        "expires_in_ms": 300_000,
        "client_id": minted.client_id,
        "issuer": server.issuer(),
    });
    h.ok("restore", json!({ "session": session })).await?;
    Ok(minted)
}

/// A `mas` server, a driver with `bug` (if any) started against it, and an OAuth session
/// minted by the server and handed over with `restore`.
async fn restored(bug: Option<Bug>) -> anyhow::Result<(MockHomeserver, Harness, OAuthIssued)> {
    restored_with(bug, &[]).await
}

/// [`restored`], with fault rules (TOML inline tables) added to the server before the driver
/// starts.
async fn restored_with(
    bug: Option<Bug>,
    faults: &[&str],
) -> anyhow::Result<(MockHomeserver, Harness, OAuthIssued)> {
    let server = oauth_server().await?;
    for f in faults {
        server.add_fault(FaultRule::from_toml(f)?)?;
    }
    let mut h = Harness::start(opts(bug), &server.url(), None);
    h.initialize().await?;
    let minted = restore(&mut h, &server).await?;
    Ok((server, h, minted))
}

fn logouts(notes: &[Value]) -> Vec<Value> {
    notes
        .iter()
        .filter(|n| n["method"] == "logged_out")
        .map(|n| n["params"].clone())
        .collect()
}

#[tokio::test]
async fn an_expired_oauth_session_refreshes_once_at_the_token_endpoint() -> anyhow::Result<()> {
    let server = oauth_server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let minted = restore(&mut h, &server).await?;
    assert_eq!(of(&server, "auth_metadata").len(), 1, "discovered at restore");
    server.expire_session("alice", &minted.issued.device_id)?;

    let r = h.ok("whoami", json!({})).await?;
    assert_eq!(r, json!({"user_id": "@alice:localhost"}));
    let tokens = of(&server, "oauth_token");
    assert_eq!(tokens.len(), 1, "{:#?}", server.trace());
    assert_eq!(flag(&tokens[0], "grant_type"), json!("refresh_token"));
    assert_eq!(flag(&tokens[0], "client_id"), json!(minted.client_id));
    assert_eq!(tokens[0].status, Some(200));
    assert_eq!(presented_rt(&tokens[0]), minted.issued.refresh_label);
    assert_eq!(of(&server, "refresh").len(), 0);
    assert_eq!(of(&server, "auth_metadata").len(), 1, "the endpoints are kept");

    let changed = h.notified("session_changed");
    assert_eq!(changed.len(), 2);
    assert_eq!(h.ok("session", json!({})).await?, changed[1]);
    assert_ne!(changed[0]["refresh_token"], changed[1]["refresh_token"]);
    assert!(h.notified("logged_out").is_empty());
    h.shutdown().await?;
    Ok(())
}

/// `expires_in` is in seconds: a 60 s token is not refreshed again on the next requests (it
/// would be if it were read as 60 ms), and a restored 0 ms one is refreshed first.
#[tokio::test]
async fn expires_in_is_read_as_seconds() -> anyhow::Result<()> {
    let server = MockHomeserver::builder()
        .profile(Profile::Mas)
        .refreshable_access_token_lifetime(Duration::from_secs(60))
        .start()
        .await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let minted = server.mint_oauth_session("alice")?;
    let session = json!({
        "auth": "oauth", "user_id": minted.issued.user_id, "device_id": minted.issued.device_id,
        "access_token": minted.issued.access_token, "refresh_token": minted.issued.refresh_token,
        "expires_in_ms": 0, "client_id": minted.client_id,
    });
    h.ok("restore", json!({ "session": session })).await?;
    for _ in 0..3 {
        h.ok("whoami", json!({})).await?;
    }
    assert_eq!(of(&server, "oauth_token").len(), 1, "{:#?}", server.trace());
    assert_eq!(
        of(&server, "whoami")
            .iter()
            .filter(|e| e.status == Some(200))
            .count(),
        3
    );
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_401_storm_makes_one_token_request() -> anyhow::Result<()> {
    let server = oauth_server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let minted = restore(&mut h, &server).await?;
    server.expire_session("alice", &minted.issued.device_id)?;
    let r = h
        .ok("parallel", json!({"count": 5, "op": "whoami", "params": {}}))
        .await?;
    for outcome in r["results"].as_array().context("results")? {
        assert_eq!(outcome["ok"], true, "{r}");
    }
    assert_eq!(of(&server, "oauth_token").len(), 1, "{:#?}", server.trace());
    let whoamis = of(&server, "whoami");
    assert_eq!(whoamis.iter().filter(|e| e.status == Some(200)).count(), 5);
    assert_eq!(h.notified("session_changed").len(), 2);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn invalid_grant_logs_out_and_no_request_follows() -> anyhow::Result<()> {
    let server = oauth_server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let minted = restore(&mut h, &server).await?;
    server.revoke_session("alice", &minted.issued.device_id)?;
    let e = h.error("whoami", json!({})).await?;
    assert_eq!(e["data"]["kind"], "logged_out", "{e}");
    let tokens = of(&server, "oauth_token");
    assert_eq!(tokens.len(), 1, "a refusal is not retried: {:#?}", server.trace());
    assert_eq!(tokens[0].status, Some(400));
    assert_eq!(h.notified("logged_out"), vec![json!({"soft_logout": false})]);
    assert_eq!(
        h.ok("session", json!({})).await?,
        json!({"access_token": null, "refresh_token": null})
    );
    let before = server.trace().len();
    let e = h.error("whoami", json!({})).await?;
    assert_eq!(e["data"]["kind"], "logged_out");
    let e = h.error("logout", json!({})).await?;
    assert_eq!(e["data"]["kind"], "logged_out");
    assert_eq!(
        server.trace().len(),
        before,
        "a logged-out client makes no requests"
    );
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn transient_token_endpoint_failures_retry_the_same_refresh_token() -> anyhow::Result<()> {
    let server = oauth_server().await?;
    server.add_fault(FaultRule::from_toml(
        "endpoint = \"oauth_token\", nth = 1, action = { kind = \"html\", status = 503 }",
    )?)?;
    server.add_fault(FaultRule::from_toml(
        "endpoint = \"oauth_token\", nth = 2, action = { kind = \"error\", status = 429, retry_after_ms = 300 }",
    )?)?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let minted = restore(&mut h, &server).await?;
    server.expire_session("alice", &minted.issued.device_id)?;
    h.ok("whoami", json!({})).await?;
    let tokens = of(&server, "oauth_token");
    let statuses: Vec<_> = tokens.iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![Some(503), Some(429), Some(200)]);
    let presented: Vec<_> = tokens.iter().map(presented_rt).collect();
    assert!(
        presented.iter().all(|p| *p == minted.issued.refresh_label),
        "{presented:?}"
    );
    assert!(
        tokens[2].real_ms - tokens[1].real_ms >= 300,
        "Retry-After honoured"
    );
    assert!(h.notified("logged_out").is_empty());
    h.shutdown().await?;
    Ok(())
}

/// Discovery fails when the session is restored: the session is kept, and the first refresh
/// discovers again.
#[tokio::test]
async fn a_failed_discovery_is_retried_at_the_first_refresh() -> anyhow::Result<()> {
    let server = oauth_server().await?;
    server.add_fault(FaultRule::from_toml(
        "endpoint = \"auth_metadata\", nth = 1, action = { kind = \"error\", status = 500 }",
    )?)?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let minted = restore(&mut h, &server).await?;
    assert_eq!(h.notified("session_changed").len(), 1);
    server.expire_session("alice", &minted.issued.device_id)?;
    h.ok("whoami", json!({})).await?;
    let statuses: Vec<_> = of(&server, "auth_metadata").iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(200)]);
    assert_eq!(of(&server, "oauth_token").len(), 1);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn login_refresh_resume_and_logout() -> anyhow::Result<()> {
    let server = oauth_server().await?;
    let dir = tempfile::tempdir()?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), Some(dir.path()));
    h.initialize().await?;
    let r = h
        .ok(
            "login",
            json!({"user": "@alice:localhost", "password": "unused", "refresh_token": true, "auth": "oauth"}),
        )
        .await?;
    assert_eq!(r["user_id"], "@alice:localhost", "{r}");
    let device = r["device_id"].as_str().context("device_id")?.to_owned();
    assert_eq!(of(&server, "oauth_registration").len(), 1);
    let authorize = of(&server, "oauth_authorize");
    assert_eq!(authorize.len(), 1);
    assert_eq!(authorize[0].status, Some(302));
    assert_eq!(flag(&authorize[0], "login_hint"), json!("mxid:@alice:localhost"));
    let tokens = of(&server, "oauth_token");
    assert_eq!(flag(&tokens[0], "grant_type"), json!("authorization_code"));
    let client_id = flag(&tokens[0], "client_id");
    assert_eq!(
        of(&server, "whoami").len(),
        0,
        "the user id is known from the hint"
    );
    assert_eq!(h.notified("session_changed").len(), 1);
    assert_eq!(server.sessions(Some("alice")).len(), 1);
    assert_eq!(server.sessions(Some("alice"))[0].device_id, device);
    h.ok("whoami", json!({})).await?;

    // Expire, refresh, and find the rotated tokens in the state dir.
    server.expire_session("alice", &device)?;
    h.ok("whoami", json!({})).await?;
    let held = h.ok("session", json!({})).await?;
    h.shutdown().await?;
    let saved: Value = serde_json::from_slice(&std::fs::read(dir.path().join("session.json"))?)?;
    assert_eq!(saved["refresh_token"], held["refresh_token"]);
    assert_eq!(saved["oauth"]["client_id"], client_id);
    let metadata_fetches = of(&server, "auth_metadata").len();

    // A new process resumes it, refreshes with the same client, without discovering again.
    let mut h = Harness::start(DriverOptions::default(), &server.url(), Some(dir.path()));
    h.initialize().await?;
    h.ok("resume", json!({})).await?;
    server.expire_session("alice", &device)?;
    h.ok("whoami", json!({})).await?;
    let tokens = of(&server, "oauth_token");
    assert_eq!(tokens.len(), 3, "{tokens:#?}");
    assert_eq!(flag(&tokens[2], "grant_type"), json!("refresh_token"));
    assert_eq!(flag(&tokens[2], "client_id"), client_id);
    assert_eq!(tokens[2].status, Some(200));
    assert_eq!(of(&server, "auth_metadata").len(), metadata_fetches);

    // Logout revokes the refresh token, which ends the session on the server.
    let held = h.ok("session", json!({})).await?;
    assert!(held["refresh_token"].is_string());
    h.ok("logout", json!({})).await?;
    let revokes = of(&server, "oauth_revoke");
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0].status, Some(200));
    assert_eq!(flag(&revokes[0], "token_type_hint"), json!("refresh_token"));
    assert_eq!(flag(&revokes[0], "client_id"), client_id);
    assert!(h.notified("logged_out").is_empty());
    assert_eq!(
        h.ok("session", json!({})).await?,
        json!({"access_token": null, "refresh_token": null})
    );
    assert!(!dir.path().join("session.json").exists());
    assert!(server.sessions(Some("alice")).is_empty(), "the device is gone");
    h.shutdown().await?;
    Ok(())
}

/// A bare localpart: the hint carries it as it is, and the user id comes from whoami. A
/// chosen device id goes into the scope.
#[tokio::test]
async fn login_with_a_localpart_and_a_device_id() -> anyhow::Result<()> {
    let server = oauth_server().await?;
    server.add_user("bob", "builder")?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let r = h
        .ok(
            "login",
            json!({"user": "bob", "password": "builder", "refresh_token": true, "auth": "oauth", "device_id": "PHONE"}),
        )
        .await?;
    assert_eq!(r, json!({"user_id": "@bob:localhost", "device_id": "PHONE"}));
    let authorize = of(&server, "oauth_authorize");
    assert_eq!(flag(&authorize[0], "login_hint"), json!("bob"));
    assert_eq!(of(&server, "whoami").len(), 1);
    let sessions = server.sessions(Some("bob"));
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].device_id, "PHONE");
    let held = h.ok("session", json!({})).await?;
    assert!(held["refresh_token"].is_string());
    // An OAuth login that the server refuses: no client registration (OAuth off).
    let plain = common::server().await?;
    let mut h2 = Harness::start(DriverOptions::default(), &plain.url(), None);
    h2.initialize().await?;
    let e = h2
        .error(
            "login",
            json!({"user": "alice", "password": "x", "refresh_token": true, "auth": "oauth"}),
        )
        .await?;
    assert_eq!(e["data"]["kind"], "http", "{e}");
    assert_eq!(e["data"]["status"], 404);
    h2.shutdown().await?;
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn oauth_4xx_not_logout() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::Oauth4xxNotLogout, |bug| async move {
        let server = oauth_server().await?;
        let options = DriverOptions {
            max_refresh_attempts: 2,
            ..opts(bug)
        };
        let mut h = Harness::start(options, &server.url(), None);
        h.initialize().await?;
        let minted = restore(&mut h, &server).await?;
        server.revoke_session("alice", &minted.issued.device_id)?;
        let e = h.error("whoami", json!({})).await?;
        let held = h.ok("session", json!({})).await?;
        let notes = h.shutdown().await?;
        Ok((
            e["data"]["kind"].clone(),
            logouts(&notes).len(),
            held["refresh_token"].is_string(),
            of(&server, "oauth_token").len(),
        ))
    })
    .await?;
    assert_eq!(ok, (json!("logged_out"), 1, false, 1));
    assert_eq!(bad, (json!("http"), 0, true, 2));
    Ok(())
}

#[tokio::test]
async fn oauth_matrix_error_logout() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::OauthMatrixErrorLogout, |bug| async move {
        let (server, mut h, minted) = restored_with(
            bug,
            &[
                "endpoint = \"oauth_token\", nth = 1, action = { kind = \"error\", status = 429, retry_after_ms = 200 }",
            ],
        )
        .await?;
        server.expire_session("alice", &minted.issued.device_id)?;
        let r = h.call("whoami", json!({})).await?;
        let notes = h.shutdown().await?;
        Ok((
            r.get("result").is_some(),
            logouts(&notes),
            of(&server, "oauth_token").len(),
        ))
    })
    .await?;
    assert_eq!(ok, (true, vec![], 2));
    assert_eq!(bad, (false, vec![json!({"soft_logout": false})], 1));
    Ok(())
}

/// `trust-local-expiry` on an OAuth session: restored, refreshed once (now the client knows a
/// 300 s expiry from the grant), then revoked early: the buggy client makes no second grant and
/// logs out hard (the mas profile's 401 has soft_logout: false).
#[tokio::test]
async fn trust_local_expiry_applies_to_oauth() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::TrustLocalExpiry, |bug| async move {
        let (server, mut h, minted) = restored(bug).await?;
        server.expire_session("alice", &minted.issued.device_id)?;
        h.ok("whoami", json!({})).await?;
        server.expire_session("alice", &minted.issued.device_id)?;
        let r = h.call("whoami", json!({})).await?;
        let notes = h.shutdown().await?;
        Ok((
            r.get("result").is_some(),
            logouts(&notes),
            of(&server, "oauth_token").len(),
        ))
    })
    .await?;
    assert_eq!(ok, (true, vec![], 2));
    assert_eq!(bad, (false, vec![json!({"soft_logout": false})], 1));
    Ok(())
}

/// The legacy switches that matter most reach OAuth sessions too.
#[tokio::test]
async fn refresh_per_401_and_stale_refresh_token_apply_to_oauth() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::RefreshPer401, |bug| async move {
        let (server, mut h, minted) = restored(bug).await?;
        server.expire_session("alice", &minted.issued.device_id)?;
        h.call("parallel", json!({"count": 4, "op": "whoami", "params": {}}))
            .await?;
        h.shutdown().await?;
        Ok(of(&server, "oauth_token").len())
    })
    .await?;
    assert_eq!(ok, 1);
    assert!(bad > 1, "{bad}");

    let (ok, bad) = both(Bug::StaleRefreshToken, |bug| async move {
        let (server, mut h, minted) = restored(bug).await?;
        for _ in 0..2 {
            server.expire_session("alice", &minted.issued.device_id)?;
            let _ = h.call("whoami", json!({})).await?;
        }
        h.shutdown().await?;
        Ok(of(&server, "oauth_token")
            .iter()
            .map(presented_rt)
            .collect::<Vec<_>>())
    })
    .await?;
    assert_ne!(ok[0], ok[1]);
    assert_eq!(bad[0], bad[1]);
    Ok(())
}

/// `retry-next-request` on an OAuth session: a 503 from the token endpoint fails the buggy
/// client's request (not a logout); the next request makes the grant again with the same
/// refresh token. The correct client retries within the request.
#[tokio::test]
async fn retry_next_request_applies_to_oauth() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::RetryNextRequest, |bug| async move {
        let (server, mut h, minted) = restored_with(
            bug,
            &["endpoint = \"oauth_token\", nth = 1, action = { kind = \"error\", status = 503 }"],
        )
        .await?;
        server.expire_session("alice", &minted.issued.device_id)?;
        let first = h.call("whoami", json!({})).await?;
        let grants_after_first = of(&server, "oauth_token").len();
        h.ok("whoami", json!({})).await?;
        let notes = h.shutdown().await?;
        let grants = of(&server, "oauth_token");
        let presented: Vec<_> = grants.iter().map(presented_rt).collect();
        Ok((
            first["error"]["data"]["kind"].clone(),
            grants_after_first,
            logouts(&notes),
            grants.iter().map(|e| e.status).collect::<Vec<_>>(),
            presented.iter().all(|p| *p == minted.issued.refresh_label),
        ))
    })
    .await?;
    let statuses = vec![Some(503), Some(200)];
    assert_eq!(ok, (Value::Null, 2, vec![], statuses.clone(), true));
    assert_eq!(bad, (json!("http"), 1, vec![], statuses, true));
    Ok(())
}
