//! Shared by the `driver_*` tests: the harness's side of a driver running in-process on in-memory
//! pipes, a mock homeserver for it, trace lookups, driver options with a bug switch, and running a
//! case against the correct client and a buggy one.
#![allow(dead_code)]

use anyhow::{Context, bail, ensure};
use rotary_reference::{Bug, DriverEnv, DriverOptions, run};
use rotary_server::{MockHomeserver, TraceEntry};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

/// Only a guard against a hung test, never a timing assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

pub async fn server() -> anyhow::Result<MockHomeserver> {
    Ok(MockHomeserver::builder()
        .refreshable_access_token_lifetime(Duration::from_secs(300))
        .start()
        .await?)
}

/// The harness's side of one driver process.
pub struct Harness {
    pub writer: WriteHalf<DuplexStream>,
    pub reader: BufReader<ReadHalf<DuplexStream>>,
    pub next_id: u64,
    pub notifications: Vec<Value>,
    pub driver: JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    pub fn start(opts: DriverOptions, url: &str, state_dir: Option<&Path>) -> Harness {
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

    pub async fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.writer.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(())
    }

    pub async fn read_message(&mut self) -> anyhow::Result<Value> {
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
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&request.to_string()).await?;
        self.response_to(json!(id)).await
    }

    pub async fn response_to(&mut self, id: Value) -> anyhow::Result<Value> {
        loop {
            let message = self.read_message().await?;
            match message.get("id") {
                None => self.notifications.push(message),
                Some(got) if *got == id => return Ok(message),
                Some(other) => bail!("a response to {other} while waiting for {id}: {message}"),
            }
        }
    }

    pub async fn ok(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let response = self.call(method, params).await?;
        match response.get("result") {
            Some(result) => Ok(result.clone()),
            None => bail!("{method} failed: {response}"),
        }
    }

    pub async fn error(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let response = self.call(method, params).await?;
        match response.get("error") {
            Some(error) => Ok(error.clone()),
            None => bail!("{method} should have failed: {response}"),
        }
    }

    pub fn notified(&self, method: &str) -> Vec<Value> {
        self.notifications
            .iter()
            .filter(|n| n["method"] == method)
            .map(|n| n["params"].clone())
            .collect()
    }

    pub async fn initialize(&mut self) -> anyhow::Result<Value> {
        self.ok("initialize", json!({"protocol": 1, "scenario": "test"}))
            .await
    }

    pub async fn login(&mut self) -> anyhow::Result<String> {
        let r = self
            .ok(
                "login",
                json!({"user": "alice", "password": "wonderland", "refresh_token": true}),
            )
            .await?;
        ensure!(r["user_id"] == "@alice:localhost", "{r}");
        Ok(r["device_id"].as_str().context("device_id")?.to_owned())
    }

    pub async fn shutdown(mut self) -> anyhow::Result<Vec<Value>> {
        let r = self.ok("shutdown", json!({})).await?;
        ensure!(r == json!({}));
        tokio::time::timeout(HANG_GUARD, self.driver).await???;
        Ok(self.notifications)
    }
}

/// The trace entries of one endpoint.
pub fn of(server: &MockHomeserver, endpoint: &str) -> Vec<rotary_server::TraceEntry> {
    server
        .trace()
        .into_iter()
        .filter(|e| e.endpoint == endpoint)
        .collect()
}

pub fn count(server: &MockHomeserver, endpoint: &str) -> usize {
    of(server, endpoint).len()
}

/// Driver options with at most one bug switch on.
pub fn opts(bug: Option<Bug>) -> DriverOptions {
    DriverOptions {
        bugs: bug.into_iter().collect(),
        ..DriverOptions::default()
    }
}

pub fn with_bug(bug: Bug) -> DriverOptions {
    opts(Some(bug))
}

/// A server whose tokens come without a refresh token, a client logged in there without one, and
/// its access token expired on the server: the next request gets a 401 it cannot refresh away.
pub async fn expired_without_refresh_token(
    options: DriverOptions,
) -> anyhow::Result<(MockHomeserver, Harness)> {
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

/// The label of the refresh token a request presented.
pub fn presented_rt(e: &TraceEntry) -> Option<String> {
    e.refresh_token.as_ref().map(|t| t.label.clone())
}

/// Runs `case` against the correct client and against `bug`, each on its own server.
pub async fn both<F, Fut, T>(bug: Bug, case: F) -> anyhow::Result<(T, T)>
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
