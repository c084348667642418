//! Each bug switch of the reference driver changes what the server sees (or what the harness is told)
//! in a small case where the correct client does the right thing. This is the crate's own check that
//! every switch is wired; the scenario catalogue's kill matrix is the real one.

mod common;

use common::{Harness, both, count, expired_without_refresh_token, of, opts, presented_rt, server};
use rotary_reference::{Bug, DriverOptions};
use rotary_server::{FaultRule, MockHomeserver};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn stale_refresh_token() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::StaleRefreshToken, |bug| async move {
        let server = server().await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        for _ in 0..2 {
            server.expire_session("alice", &device)?;
            let _ = h.call("whoami", json!({})).await?;
        }
        h.shutdown().await?;
        Ok(of(&server, "refresh")
            .iter()
            .map(presented_rt)
            .collect::<Vec<_>>())
    })
    .await?;
    assert_ne!(ok[0], ok[1]);
    assert_eq!(bad[0], bad[1]);
    Ok(())
}

#[tokio::test]
async fn drop_refresh_token() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::DropRefreshToken, |bug| async move {
        let server = MockHomeserver::builder()
            .refreshable_access_token_lifetime(Duration::from_secs(300))
            .rotate_refresh_tokens(false)
            .start()
            .await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        h.ok("whoami", json!({})).await?;
        let held = h.ok("session", json!({})).await?;
        h.shutdown().await?;
        Ok(held["refresh_token"].is_string())
    })
    .await?;
    assert!(ok && !bad);
    Ok(())
}

#[tokio::test]
async fn logout_on_transient() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::LogoutOnTransient, |bug| async move {
        let server = server().await?;
        server.add_fault(FaultRule::from_toml(
            "endpoint = \"refresh\", nth = 1, action = { kind = \"error\", status = 502 }",
        )?)?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        let _ = h.call("whoami", json!({})).await?;
        Ok(h.shutdown()
            .await?
            .iter()
            .filter(|n| n["method"] == "logged_out")
            .count())
    })
    .await?;
    assert_eq!((ok, bad), (0, 1));
    Ok(())
}

#[tokio::test]
async fn no_retry() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::NoRetry, |bug| async move {
        let server = server().await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        let r = h.call("whoami", json!({})).await?;
        h.shutdown().await?;
        Ok(r)
    })
    .await?;
    assert!(ok.get("result").is_some(), "{ok}");
    assert_eq!(
        bad["error"]["data"],
        json!({"kind": "http", "status": 401, "errcode": "M_UNKNOWN_TOKEN"})
    );
    Ok(())
}

#[tokio::test]
async fn retry_forever() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::RetryForever, |bug| async move {
        let server = server().await?;
        server.add_fault(FaultRule::from_toml(
            "endpoint = \"refresh\", first = 3, action = { kind = \"error\", status = 500 }",
        )?)?;
        let options = DriverOptions {
            max_refresh_attempts: 2,
            ..opts(bug)
        };
        let mut h = Harness::start(options, &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        let r = h.call("whoami", json!({})).await?;
        h.shutdown().await?;
        Ok((r.get("result").is_some(), of(&server, "refresh").len()))
    })
    .await?;
    assert_eq!(ok, (false, 2));
    assert_eq!(bad, (true, 4));
    Ok(())
}

#[tokio::test]
async fn ignore_soft_logout() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::IgnoreSoftLogout, |bug| async move {
        let (_server, mut h) = expired_without_refresh_token(opts(bug)).await?;
        let e = h.error("whoami", json!({})).await?;
        h.shutdown().await?;
        Ok(e["data"]["kind"].clone())
    })
    .await?;
    assert_eq!((ok, bad), (json!("soft_logged_out"), json!("logged_out")));
    Ok(())
}

#[tokio::test]
async fn no_persist() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::NoPersist, |bug| async move {
        let server = server().await?;
        let dir = tempfile::tempdir()?;
        let mut h = Harness::start(opts(bug), &server.url(), Some(dir.path()));
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        h.ok("whoami", json!({})).await?;
        let held = h.ok("session", json!({})).await?;
        h.shutdown().await?;
        let saved: Value = serde_json::from_slice(&std::fs::read(dir.path().join("session.json"))?)?;
        Ok(saved["refresh_token"] == held["refresh_token"])
    })
    .await?;
    assert!(ok && !bad);
    Ok(())
}

#[tokio::test]
async fn old_token_after_refresh() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::OldTokenAfterRefresh, |bug| async move {
        let server = server().await?;
        // A slow refresh: the other requests' 401s surely arrive while it is in flight.
        server.add_fault(FaultRule::from_toml(
            "endpoint = \"refresh\", nth = 1, action = { kind = \"delay\", duration = \"1s\" }",
        )?)?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        h.ok("parallel", json!({"count": 4, "op": "whoami", "params": {}}))
            .await?;
        h.shutdown().await?;
        Ok(of(&server, "whoami")
            .iter()
            .filter(|e| e.status == Some(401))
            .count())
    })
    .await?;
    assert_eq!(ok, 4);
    assert!(bad > 4, "{bad}");
    Ok(())
}

#[tokio::test]
async fn ignore_retry_after() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::IgnoreRetryAfter, |bug| async move {
        let server = server().await?;
        server.add_fault(FaultRule::from_toml(
            "endpoint = \"refresh\", nth = 1, action = { kind = \"error\", status = 429, retry_after_ms = 1500 }",
        )?)?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        h.ok("whoami", json!({})).await?;
        h.shutdown().await?;
        let refreshes = of(&server, "refresh");
        Ok(refreshes[1].real_ms - refreshes[0].real_ms)
    })
    .await?;
    assert!(ok >= 1500, "{ok}");
    assert!(bad < 1500, "{bad}");
    Ok(())
}

/// A lifetime equal to the default 60 s margin: the correct client refreshes in the last 30 s.
#[tokio::test]
async fn preempt_storm() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::PreemptStorm, |bug| async move {
        let server = MockHomeserver::builder()
            .refreshable_access_token_lifetime(Duration::from_secs(60))
            .start()
            .await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        h.login().await?;
        for _ in 0..3 {
            h.ok("whoami", json!({})).await?;
        }
        h.shutdown().await?;
        Ok(of(&server, "refresh").len())
    })
    .await?;
    assert_eq!((ok, bad), (0, 3));
    Ok(())
}

/// Restored with `expires_in_ms: 0`: due for a refresh at once, though the server still takes it.
#[tokio::test]
async fn no_preempt() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::NoPreempt, |bug| async move {
        let server = server().await?;
        let minted = server.mint_session("alice")?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let session = json!({"auth": "legacy", "user_id": minted.user_id, "device_id": minted.device_id,
            "access_token": minted.access_token, "refresh_token": minted.refresh_token, "expires_in_ms": 0});
        h.ok("restore", json!({ "session": session })).await?;
        h.ok("whoami", json!({})).await?;
        h.shutdown().await?;
        Ok(of(&server, "refresh").len())
    })
    .await?;
    assert_eq!((ok, bad), (1, 0));
    Ok(())
}

#[tokio::test]
async fn no_refresh_request() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::NoRefreshRequest, |bug| async move {
        let server = server().await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        h.login().await?;
        let held = h.ok("session", json!({})).await?;
        h.shutdown().await?;
        Ok(held["refresh_token"].is_string())
    })
    .await?;
    assert!(ok && !bad);
    Ok(())
}

#[tokio::test]
async fn new_txn_on_retry() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::NewTxnOnRetry, |bug| async move {
        let server = server().await?;
        let room = server.create_room("alice", None)?;
        server.add_fault(FaultRule::from_toml(
            "endpoint = \"send\", nth = 1, action = { kind = \"commit_then_drop\" }",
        )?)?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        h.login().await?;
        h.ok("send", json!({"room_id": room, "body": "once"})).await?;
        h.shutdown().await?;
        Ok(server.count_events(&room, "m.room.message"))
    })
    .await?;
    assert_eq!((ok, bad), (1, 2));
    Ok(())
}

#[tokio::test]
async fn swallow_refresh_failure() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::SwallowRefreshFailure, |bug| async move {
        let server = server().await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.revoke_session("alice", &device)?;
        let e = h.error("whoami", json!({})).await?;
        let held = h.ok("session", json!({})).await?;
        let notes = h.shutdown().await?;
        let logouts = notes.iter().filter(|n| n["method"] == "logged_out").count();
        Ok((
            e["data"]["kind"].clone(),
            logouts,
            held["access_token"].is_string(),
        ))
    })
    .await?;
    assert_eq!(ok, (json!("logged_out"), 1, false));
    assert_eq!(bad, (json!("http"), 0, true));
    Ok(())
}

#[tokio::test]
async fn keep_tokens_after_logout() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::KeepTokensAfterLogout, |bug| async move {
        let server = server().await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        h.login().await?;
        h.ok("logout", json!({})).await?;
        let held = h.ok("session", json!({})).await?;
        let _ = h.call("whoami", json!({})).await?;
        h.shutdown().await?;
        Ok((held["access_token"].is_string(), of(&server, "whoami").len()))
    })
    .await?;
    assert_eq!(ok, (false, 0));
    assert!(bad.0 && bad.1 > 0, "{bad:?}");
    Ok(())
}

/// A restored session with a refresh token but no `expires_in_ms`.
#[tokio::test]
async fn missing_expiry_is_zero() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::MissingExpiryIsZero, |bug| async move {
        let server = server().await?;
        let minted = server.mint_session("alice")?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let session = json!({"auth": "legacy", "user_id": minted.user_id, "device_id": minted.device_id,
            "access_token": minted.access_token, "refresh_token": minted.refresh_token});
        h.ok("restore", json!({ "session": session })).await?;
        h.ok("whoami", json!({})).await?;
        h.shutdown().await?;
        Ok(of(&server, "refresh").len())
    })
    .await?;
    assert_eq!(ok, 0);
    assert!(bad >= 1);
    Ok(())
}

#[tokio::test]
async fn refresh_without_token() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::RefreshWithoutToken, |bug| async move {
        let (server, mut h) = expired_without_refresh_token(opts(bug)).await?;
        h.error("whoami", json!({})).await?;
        h.shutdown().await?;
        Ok(of(&server, "refresh").len())
    })
    .await?;
    assert_eq!((ok, bad), (0, 1));
    Ok(())
}

/// A token expired early on the server, twice. The first 401 comes on the login's token, whose
/// expiry the buggy client does not trust (as matrix-js-sdk, it learns expiries from refreshes
/// only): both clients refresh. The second comes on a refreshed token with 300 s left on the
/// client's clock: the correct client refreshes again; the buggy one takes the 401 as a logout,
/// softly here because the synapse profile's 401 says so.
#[tokio::test]
async fn trust_local_expiry() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::TrustLocalExpiry, |bug| async move {
        let server = server().await?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        h.ok("whoami", json!({})).await?;
        server.expire_session("alice", &device)?;
        let r = h.call("whoami", json!({})).await?;
        let notes = h.shutdown().await?;
        Ok((
            r["result"]["user_id"].clone(),
            r["error"]["data"]["kind"].clone(),
            notes
                .iter()
                .filter(|n| n["method"] == "logged_out")
                .map(|n| n["params"].clone())
                .collect::<Vec<_>>(),
            count(&server, "refresh"),
        ))
    })
    .await?;
    assert_eq!(ok, (json!("@alice:localhost"), Value::Null, vec![], 2));
    assert_eq!(
        bad,
        (
            Value::Null,
            json!("soft_logged_out"),
            vec![json!({"soft_logout": true})],
            1
        )
    );
    Ok(())
}

/// One transient refresh failure (a 500): the correct client retries the refresh within the
/// request, which succeeds; the buggy one fails the request with the 500 (not a logout), keeps
/// its tokens, and the next request refreshes again with the same refresh token.
#[tokio::test]
async fn retry_next_request() -> anyhow::Result<()> {
    let (ok, bad) = both(Bug::RetryNextRequest, |bug| async move {
        let server = server().await?;
        server.add_fault(FaultRule::from_toml(
            "endpoint = \"refresh\", nth = 1, action = { kind = \"error\", status = 500 }",
        )?)?;
        let mut h = Harness::start(opts(bug), &server.url(), None);
        h.initialize().await?;
        let device = h.login().await?;
        server.expire_session("alice", &device)?;
        let first = h.call("whoami", json!({})).await?;
        let refreshes_after_first = count(&server, "refresh");
        let next = h.ok("whoami", json!({})).await?;
        let notes = h.shutdown().await?;
        let refreshes = of(&server, "refresh");
        Ok((
            first["error"]["data"].clone(),
            refreshes_after_first,
            next["user_id"].clone(),
            notes.iter().filter(|n| n["method"] == "logged_out").count(),
            refreshes.iter().map(|e| e.status).collect::<Vec<_>>(),
            presented_rt(&refreshes[0]) == presented_rt(&refreshes[1]),
        ))
    })
    .await?;
    let statuses = vec![Some(500), Some(200)];
    let alice = json!("@alice:localhost");
    assert_eq!(ok, (Value::Null, 2, alice.clone(), 0, statuses.clone(), true));
    assert_eq!(
        bad,
        (
            json!({"kind": "http", "status": 500, "errcode": "M_UNKNOWN"}),
            1,
            alice,
            0,
            statuses,
            true
        )
    );
    Ok(())
}
