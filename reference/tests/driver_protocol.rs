//! The reference driver's protocol loop, as the harness drives it on in-memory pipes: `initialize`,
//! protocol errors answered while the loop goes on, the end of input, and the real binary on stdio.

mod common;

use anyhow::Context;
use common::{HANG_GUARD, Harness, server, with_bug};
use rotary_reference::{Bug, DriverOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn initialize_reports_name_capabilities_and_bugs() -> anyhow::Result<()> {
    let server = server().await?;
    let mut h = Harness::start(with_bug(Bug::NoRetry), &server.url(), None);
    let r = h.initialize().await?;
    assert_eq!(r["name"], "rotary-reference");
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    let caps: Vec<&str> = r["capabilities"]
        .as_array()
        .context("caps")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for cap in [
        "login",
        "register",
        "restore",
        "resume",
        "whoami",
        "sync",
        "send",
        "parallel",
        "logout",
        "legacy-refresh",
        "oauth-refresh",
        "oauth-login",
    ] {
        assert!(caps.contains(&cap), "{cap} missing from {caps:?}");
    }
    assert_eq!(r["bugs"], json!(["no-retry"]));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn protocol_errors_are_answered_and_the_loop_goes_on() -> anyhow::Result<()> {
    let server = server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.send_line("this is not json").await?;
    let r = h.response_to(Value::Null).await?;
    assert_eq!(r["error"]["code"], -32700);

    let e = h.error("frobnicate", json!({})).await?;
    assert_eq!(e["code"], -32601);
    let e = h.error("whoami", json!({})).await?;
    assert_eq!(e["data"]["kind"], "other", "no session yet: {e}");
    let e = h.error("login", json!({"user": 3})).await?;
    assert_eq!(e["code"], -32602);
    let e = h.error("parallel", json!({"count": 2, "op": "logout"})).await?;
    assert_eq!(e["code"], -32602);
    let e = h
        .error(
            "login",
            json!({"user": "alice", "password": "wrong", "refresh_token": true}),
        )
        .await?;
    assert_eq!(
        e["data"],
        json!({"kind": "http", "status": 403, "errcode": "M_FORBIDDEN"})
    );
    assert_eq!(
        h.ok("session", json!({})).await?,
        json!({"access_token": null, "refresh_token": null})
    );
    h.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_loop_ends_at_end_of_input() -> anyhow::Result<()> {
    let server = server().await?;
    let mut h = Harness::start(DriverOptions::default(), &server.url(), None);
    h.initialize().await?;
    h.writer.shutdown().await?;
    tokio::time::timeout(HANG_GUARD, h.driver).await???;
    Ok(())
}

/// The real binary on real stdio: `--list-bugs`, and a short session ending in `shutdown`.
#[tokio::test]
async fn the_binary_speaks_on_stdio() -> anyhow::Result<()> {
    let exe = env!("CARGO_BIN_EXE_rotary-reference-driver");
    let out = tokio::process::Command::new(exe)
        .arg("--list-bugs")
        .output()
        .await?;
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout)?, rotary_reference::bug_list());

    let out = tokio::process::Command::new(exe)
        .args(["--bug", "nope"])
        .output()
        .await?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("refresh-per-401"));

    let server = server().await?;
    let dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(exe)
        .env("ROTARY_HOMESERVER_URL", server.url())
        .env("ROTARY_SCENARIO", "binary")
        .env("ROTARY_STATE_DIR", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocol": 1}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "login", "params": {"user": "alice", "password": "wonderland", "refresh_token": true}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "shutdown", "params": {}}),
    ];
    let mut lines = Vec::new();
    for request in requests {
        stdin.write_all(format!("{request}\n").as_bytes()).await?;
        loop {
            let mut line = String::new();
            tokio::time::timeout(HANG_GUARD, stdout.read_line(&mut line)).await??;
            let v: Value = serde_json::from_str(&line)?;
            let done = v.get("id") == request.get("id");
            lines.push(v);
            if done {
                break;
            }
        }
    }
    // Stdin stays open: the driver must exit on `shutdown` alone.
    let status = tokio::time::timeout(HANG_GUARD, child.wait()).await??;
    assert!(status.success());
    let methods: Vec<_> = lines
        .iter()
        .map(|l| l.get("method").cloned().unwrap_or(Value::Null))
        .collect();
    assert_eq!(
        methods,
        vec![Value::Null, json!("session_changed"), Value::Null, Value::Null]
    );
    assert!(dir.path().join("session.json").exists());
    drop(stdin);
    Ok(())
}
