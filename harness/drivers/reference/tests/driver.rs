//! The reference driver end to end: the in-process mock homeserver, and the driver loop on in-memory
//! pipes speaking the driver protocol, as the harness would.

use anyhow::{Context, bail, ensure};
use rotary_reference::{Bug, DriverEnv, DriverOptions, run};
use rotary_server::{FaultRule, MockHomeserver};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

/// Only a guard against a hung test, never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

async fn server() -> anyhow::Result<MockHomeserver> {
    Ok(MockHomeserver::builder()
        .refreshable_access_token_lifetime(Duration::from_secs(300))
        .start()
        .await?)
}

/// The harness's side of one driver process.
struct Harness {
    writer: WriteHalf<DuplexStream>,
    reader: BufReader<ReadHalf<DuplexStream>>,
    next_id: u64,
    notifications: Vec<Value>,
    driver: JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    fn start(opts: DriverOptions, url: &str, state_dir: Option<&Path>) -> Harness {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (their_read, their_write) = tokio::io::split(theirs);
        let env = DriverEnv {
            homeserver_url: Some(url.to_owned()),
            scenario: Some("test".into()),
            state_dir: state_dir.map(Path::to_path_buf),
        };
        let driver = tokio::spawn(run(opts, env, BufReader::new(their_read), their_write));
        let (read, writer) = tokio::io::split(ours);
        Harness {
            writer,
            reader: BufReader::new(read),
            next_id: 0,
            notifications: Vec::new(),
            driver,
        }
    }

    async fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.writer.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(())
    }

    async fn read_message(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(HANG_GUARD, self.reader.read_line(&mut line))
            .await
            .context("the driver did not answer")??;
        ensure!(n > 0, "the driver closed its output");
        let v: Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line:?}"))?;
        ensure!(v["jsonrpc"] == "2.0", "not JSON-RPC 2.0: {v}");
        Ok(v)
    }

    /// Sends a request; returns its response, keeping the notifications that came before it.
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&request.to_string()).await?;
        self.response_to(json!(id)).await
    }

    async fn response_to(&mut self, id: Value) -> anyhow::Result<Value> {
        loop {
            let message = self.read_message().await?;
            match message.get("id") {
                None => self.notifications.push(message),
                Some(got) if *got == id => return Ok(message),
                Some(other) => bail!("a response to {other} while waiting for {id}: {message}"),
            }
        }
    }

    async fn ok(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let response = self.call(method, params).await?;
        match response.get("result") {
            Some(result) => Ok(result.clone()),
            None => bail!("{method} failed: {response}"),
        }
    }

    async fn error(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let response = self.call(method, params).await?;
        match response.get("error") {
            Some(error) => Ok(error.clone()),
            None => bail!("{method} should have failed: {response}"),
        }
    }

    fn notified(&self, method: &str) -> Vec<Value> {
        self.notifications
            .iter()
            .filter(|n| n["method"] == method)
            .map(|n| n["params"].clone())
            .collect()
    }

    async fn initialize(&mut self) -> anyhow::Result<Value> {
        self.ok("initialize", json!({"protocol": 1, "scenario": "test"}))
            .await
    }

    async fn login(&mut self) -> anyhow::Result<String> {
        let r = self
            .ok(
                "login",
                json!({"user": "alice", "password": "wonderland", "refresh_token": true}),
            )
            .await?;
        ensure!(r["user_id"] == "@alice:localhost", "{r}");
        Ok(r["device_id"].as_str().context("device_id")?.to_owned())
    }

    async fn shutdown(mut self) -> anyhow::Result<Vec<Value>> {
        let r = self.ok("shutdown", json!({})).await?;
        ensure!(r == json!({}));
        tokio::time::timeout(HANG_GUARD, self.driver).await???;
        Ok(self.notifications)
    }
}

/// The trace entries of one endpoint.
fn of(server: &MockHomeserver, endpoint: &str) -> Vec<rotary_server::TraceEntry> {
    server
        .trace()
        .into_iter()
        .filter(|e| e.endpoint == endpoint)
        .collect()
}

fn count(server: &MockHomeserver, endpoint: &str) -> usize {
    of(server, endpoint).len()
}

/// Driver options with at most one bug switch on.
fn opts(bug: Option<Bug>) -> DriverOptions {
    DriverOptions {
        bugs: bug.into_iter().collect(),
        ..DriverOptions::default()
    }
}

fn with_bug(bug: Bug) -> DriverOptions {
    opts(Some(bug))
}

/// A server whose tokens come without a refresh token, a client logged in there without one, and
/// its access token expired on the server: the next request gets a 401 it cannot refresh away.
async fn expired_without_refresh_token(options: DriverOptions) -> anyhow::Result<(MockHomeserver, Harness)> {
    let server = MockHomeserver::builder()
        .refreshable_access_token_lifetime(Duration::from_secs(300))
        .nonrefreshable_access_token_lifetime(Duration::from_secs(300))
        .start()
        .await?;
    let mut h = Harness::start(options, &server.url(), None);
    h.initialize().await?;
    let r = h
        .ok(
            "login",
            json!({"user": "alice", "password": "wonderland", "refresh_token": false}),
        )
        .await?;
    server.expire_session("alice", r["device_id"].as_str().context("device_id")?)?;
    Ok((server, h))
}

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

/// Each bug switch changes what the server sees (or what the harness is told) in a small case where
/// the correct client does the right thing. This is the crate's own check that every switch is
/// wired; the scenario catalogue's kill matrix is the real one.
mod bug_switches {
    use super::*;
    use rotary_server::TraceEntry;

    fn presented_rt(e: &TraceEntry) -> Option<String> {
        e.refresh_token.as_ref().map(|t| t.label.clone())
    }

    /// Runs `case` against the correct client and against `bug`, each on its own server.
    async fn both<F, Fut, T>(bug: Bug, case: F) -> anyhow::Result<(T, T)>
    where
        F: Fn(Option<Bug>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let correct = case(None).await.context("the correct client")?;
        let buggy = case(Some(bug))
            .await
            .with_context(|| format!("with --bug {}", bug.name()))?;
        Ok((correct, buggy))
    }

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
}

/// OAuth 2.0 sessions (Matrix v1.15) against the mock server's `mas` profile: discovery, the token
/// endpoint, the headless authorization-code login, revocation, and the two OAuth bug switches.
mod oauth_sessions {
    use super::*;
    use rotary_server::{OAuthIssued, Profile, TraceEntry};

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

    fn presented_rt(e: &TraceEntry) -> Option<String> {
        e.refresh_token.as_ref().map(|t| t.label.clone())
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
        let plain = super::server().await?;
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

    /// Runs `case` against the correct client and against `bug`, each on its own server.
    async fn both<F, Fut, T>(bug: Bug, case: F) -> anyhow::Result<(T, T)>
    where
        F: Fn(Option<Bug>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let correct = case(None).await.context("the correct client")?;
        let buggy = case(Some(bug))
            .await
            .with_context(|| format!("with --bug {}", bug.name()))?;
        Ok((correct, buggy))
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
}
