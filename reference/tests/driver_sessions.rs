//! The reference driver's sessions against the mock homeserver: rotated tokens persisted and resumed
//! by a new process, logout forgetting them, and register, restore, sync and send.

mod common;

use anyhow::Context;
use common::{Harness, count, server};
use rotary_reference::DriverOptions;
use serde_json::{Value, json};

#[tokio::test]
async fn rotated_tokens_are_persisted_and_resumed() -> anyhow::Result<()> {
    let server = server().await?;
    let dir = tempfile::tempdir()?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), Some(dir.path()));
    h.initialize().await?;
    let device = h.login().await?;
    server.expire_session("alice", &device)?;
    h.ok("whoami", json!({})).await?;
    let held = h.ok("session", json!({})).await?;
    h.shutdown().await?;

    let saved: Value = serde_json::from_slice(&std::fs::read(dir.path().join("session.json"))?)?;
    assert_eq!(saved["access_token"], held["access_token"]);
    assert_eq!(saved["refresh_token"], held["refresh_token"]);

    // A new process picks the session up.
    let mut h = Harness::start(DriverOptions::default(), &server.url(), Some(dir.path()));
    h.initialize().await?;
    assert_eq!(h.ok("resume", json!({})).await?, json!({}));
    assert_eq!(h.notified("session_changed"), vec![held.clone()]);
    h.ok("whoami", json!({})).await?;
    assert_eq!(count(&server, "refresh"), 1);

    // Logging out forgets it.
    h.ok("logout", json!({})).await?;
    assert!(
        h.notified("logged_out").is_empty(),
        "an explicit logout is not signalled"
    );
    assert!(!dir.path().join("session.json").exists());
    assert_eq!(
        h.ok("session", json!({})).await?,
        json!({"access_token": null, "refresh_token": null})
    );
    h.shutdown().await?;

    let mut h = Harness::start(DriverOptions::default(), &server.url(), Some(dir.path()));
    h.initialize().await?;
    let e = h.error("resume", json!({})).await?;
    assert_eq!(e["data"]["kind"], "other");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn register_restore_sync_and_send() -> anyhow::Result<()> {
    let server = server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    let r = h
        .ok(
            "register",
            json!({"user": "bob", "password": "builder", "refresh_token": true}),
        )
        .await?;
    assert_eq!(r["user_id"], "@bob:localhost");
    let room = server.create_room("bob", None)?;

    let sync = h.ok("sync", json!({"timeout_ms": 0})).await?;
    let since = sync["next_batch"].as_str().context("next_batch")?.to_owned();
    h.ok("sync", json!({"timeout_ms": 0, "since": since})).await?;

    let sent = h.ok("send", json!({"room_id": room, "body": "hello"})).await?;
    assert!(
        sent["event_id"].as_str().is_some_and(|e| e.starts_with('$')),
        "{sent}"
    );
    let r = h
        .ok(
            "parallel",
            json!({"count": 3, "op": "send", "params": {"room_id": room, "body": "hi"}, "interval_ms": 5}),
        )
        .await?;
    let ids: std::collections::HashSet<_> = r["results"]
        .as_array()
        .context("results")?
        .iter()
        .map(|o| o["result"]["event_id"].clone())
        .collect();
    assert_eq!(ids.len(), 3, "each send is its own message: {r}");
    assert_eq!(server.count_events(&room, "m.room.message"), 4);

    // Restore a session minted on the server, with its lifetime counted from now.
    let minted = server.mint_session("alice")?;
    let mut h2 = Harness::start(DriverOptions::default(), &server.url(), None);
    h2.initialize().await?;
    let session = json!({
        "auth": "legacy",
        "user_id": minted.user_id,
        "device_id": minted.device_id,
        "access_token": minted.access_token,
        "refresh_token": minted.refresh_token,
        "expires_in_ms": 300_000,
    });
    h2.ok("restore", json!({ "session": session })).await?;
    assert_eq!(
        h2.ok("whoami", json!({})).await?,
        json!({"user_id": "@alice:localhost"})
    );
    let e = h2
        .error(
            "restore",
            json!({"session": {"auth": "oauth", "user_id": "@a:b", "device_id": "D", "access_token": "x"}}),
        )
        .await?;
    assert_eq!(e["code"], -32602, "an OAuth session needs its client_id: {e}");
    let e = h2
        .error(
            "restore",
            json!({"session": {"auth": "saml", "user_id": "@a:b", "device_id": "D", "access_token": "x"}}),
        )
        .await?;
    assert_eq!(e["data"]["kind"], "unsupported");
    h2.shutdown().await?;
    h.shutdown().await?;
    Ok(())
}
