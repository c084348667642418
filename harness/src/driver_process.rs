//! A driver process: spawned from a shell command line, spoken to in JSON-RPC 2.0 over stdin/stdout,
//! watched for crashes, hangs, garbage and enormous lines, and always killed with its process group.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Longest line a driver may write (4 MiB); a longer one is a protocol error.
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// How much of a driver's stderr is kept (the tail).
pub const STDERR_KEEP: usize = 64 * 1024;

/// What went wrong talking to a driver. Its `Display` says what happened, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverFailure {
    /// The command could not be started.
    #[error("the driver command could not be started: {0}")]
    Spawn(String),
    /// No answer within the call timeout.
    #[error("the driver did not answer `{method}` within {}", humantime::format_duration(*.after))]
    Timeout {
        /// The method.
        method: String,
        /// The timeout.
        after: Duration,
    },
    /// The driver's stdout closed (it exited or crashed) before answering.
    #[error("the driver exited before answering `{method}` ({status})")]
    Exited {
        /// The method.
        method: String,
        /// Exit status in words.
        status: String,
    },
    /// A line that is not a JSON-RPC object.
    #[error("the driver printed a line that is not JSON-RPC: {line:?} ({why})")]
    Garbage {
        /// The start of the line.
        line: String,
        /// What is wrong with it.
        why: String,
    },
    /// A line longer than [`MAX_LINE`].
    #[error("the driver wrote a line longer than {} bytes", MAX_LINE)]
    TooLong,
    /// A response to a request the harness did not send (or not now).
    #[error("the driver answered id {got} while the harness waited for id {expected} (`{method}`)")]
    WrongId {
        /// The id answered.
        got: String,
        /// The id awaited.
        expected: u64,
        /// The method awaited.
        method: String,
    },
    /// The driver's stdin is closed.
    #[error("cannot write to the driver: {0}")]
    Write(String),
}

impl DriverFailure {
    /// Whether the failure is a timeout (verdict `timeout`) rather than an error.
    pub fn is_timeout(&self) -> bool {
        matches!(self, DriverFailure::Timeout { .. })
    }
}

/// A JSON-RPC error answer (the call failed on the client; not a protocol failure).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// `code`.
    pub code: i64,
    /// `message`.
    pub message: String,
    /// `data`, if any.
    pub data: Option<Value>,
}

/// A notification as received, raw (tokens not yet labelled).
#[derive(Debug, Clone, PartialEq)]
pub struct RawNotification {
    /// Real ms since the scenario's server started.
    pub at_ms: i64,
    /// Step running at the time.
    pub step: usize,
    /// Trace length at the time.
    pub trace_len: u64,
    /// Method.
    pub method: String,
    /// Params.
    pub params: Value,
}

enum Incoming {
    Response {
        id: Value,
        outcome: Result<Value, RpcError>,
    },
    Failure(DriverFailure),
    Eof,
}

/// One line of the exchange with a driver, raw (tokens not yet labelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// Real ms since the scenario's server started.
    pub at_ms: i64,
    /// `true` for harness → driver.
    pub to_driver: bool,
    /// The line (cut at [`TRANSCRIPT_LINE_MAX`] bytes).
    pub line: String,
}

/// Most `session_changed` (and, separately, `logged_out`) notifications kept per scenario.
pub const MAX_NOTIFICATIONS: usize = 10_000;
/// Most `log` (or unknown) notifications kept per method and scenario.
pub const MAX_LOG_NOTIFICATIONS: usize = 1_000;

/// Longest line kept in a transcript.
pub const TRANSCRIPT_LINE_MAX: usize = 2048;
/// Most lines kept in a transcript.
pub const TRANSCRIPT_MAX_LINES: usize = 5000;

/// Where notifications go, and how they are stamped.
#[derive(Clone)]
pub struct Sink {
    /// Collected notifications.
    pub notifications: Arc<Mutex<Vec<RawNotification>>>,
    /// Every line exchanged with the driver.
    pub transcript: Arc<Mutex<Vec<RawLine>>>,
    /// Notifications kept so far, per method.
    pub counts: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    /// Notifications not kept because of the limits.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
    /// The step running now.
    pub step: Arc<AtomicUsize>,
    /// The scenario's time origin (server start).
    pub t0: Instant,
    /// Reads the trace length now.
    pub trace_len: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Sink {
    /// Records a line of the exchange.
    pub fn record(&self, to_driver: bool, line: &[u8]) {
        let mut t = self.transcript.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= TRANSCRIPT_MAX_LINES {
            return;
        }
        let cut = &line[..line.len().min(TRANSCRIPT_LINE_MAX)];
        let mut text = String::from_utf8_lossy(cut).into_owned();
        if line.len() > TRANSCRIPT_LINE_MAX {
            text.push_str(&format!("… ({} bytes)", line.len()));
        }
        t.push(RawLine {
            at_ms: ms_since(self.t0),
            to_driver,
            line: text,
        });
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("t0", &self.t0)
            .finish_non_exhaustive()
    }
}

/// A running driver process.
pub struct Driver {
    child: Child,
    pgid: Option<Pid>,
    stdin: Option<ChildStdin>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    sink: Sink,
    next_id: u64,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    dead: Option<DriverFailure>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("pgid", &self.pgid)
            .finish_non_exhaustive()
    }
}

fn ms_since(t0: Instant) -> i64 {
    i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX)
}

fn preview(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
    if line.len() > 120 {
        format!("{text}…")
    } else {
        text
    }
}

/// Reads one line of at most `max` bytes. `Ok(None)` at EOF; `Err(())` when the line is too long.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Result<(), ()>>> {
    buf.clear();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() { None } else { Some(Ok(())) });
        }
        let (used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + used > max + 1 {
            r.consume(used);
            return Ok(Some(Err(())));
        }
        buf.extend_from_slice(&available[..used]);
        r.consume(used);
        if done {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(Ok(())));
        }
    }
}

fn classify(line: &[u8], sink: &Sink) -> Option<Incoming> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    sink.record(false, line);
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Some(Incoming::Failure(DriverFailure::Garbage {
                line: preview(line),
                why: format!("not JSON: {e}"),
            }));
        }
    };
    let garbage = |why: &str| {
        Some(Incoming::Failure(DriverFailure::Garbage {
            line: preview(line),
            why: why.to_owned(),
        }))
    };
    let Value::Object(obj) = value else {
        return garbage("not a JSON object");
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return garbage("missing \"jsonrpc\": \"2.0\"");
    }
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    if let Some(method) = obj.get("method").and_then(Value::as_str) {
        if !id.is_null() {
            return garbage("the driver sent a request; drivers only answer and notify");
        }
        let rec = RawNotification {
            at_ms: ms_since(sink.t0),
            step: sink.step.load(Ordering::SeqCst),
            trace_len: (sink.trace_len)(),
            method: method.to_owned(),
            params: obj.get("params").cloned().unwrap_or(Value::Null),
        };
        let mut kept = sink.notifications.lock().unwrap_or_else(|p| p.into_inner());
        // A flooding driver must not exhaust memory: keep a bounded number, and always room for
        // the notifications the checks read.
        let limit = match method {
            "session_changed" | "logged_out" => MAX_NOTIFICATIONS,
            _ => MAX_LOG_NOTIFICATIONS,
        };
        let mut counts = sink.counts.lock().unwrap_or_else(|p| p.into_inner());
        let seen = counts.entry(method.to_owned()).or_insert(0);
        if *seen < limit {
            *seen += 1;
            kept.push(rec);
        } else {
            sink.dropped.fetch_add(1, Ordering::Relaxed);
        }
        return None;
    }
    if let Some(result) = obj.get("result") {
        return Some(Incoming::Response {
            id,
            outcome: Ok(result.clone()),
        });
    }
    if let Some(error) = obj.get("error") {
        let code = error.get("code").and_then(Value::as_i64);
        let message = error.get("message").and_then(Value::as_str);
        let (Some(code), Some(message)) = (code, message) else {
            return garbage("an error object needs an integer \"code\" and a string \"message\"");
        };
        return Some(Incoming::Response {
            id,
            outcome: Err(RpcError {
                code,
                message: message.to_owned(),
                data: error.get("data").cloned(),
            }),
        });
    }
    garbage("neither a response (result/error) nor a notification (method)")
}

impl Driver {
    /// Starts `command` with `sh -c` in its own process group, with the protocol's environment.
    pub fn spawn(
        command: &str,
        homeserver_url: &str,
        scenario: &str,
        state_dir: &Path,
        sink: Sink,
    ) -> Result<Driver, DriverFailure> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .env("ROTARY_HOMESERVER_URL", homeserver_url)
            .env("ROTARY_SCENARIO", scenario)
            .env("ROTARY_STATE_DIR", state_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| DriverFailure::Spawn(format!("sh -c {command:?}: {e}")))?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DriverFailure::Spawn("no stdout pipe".to_owned()))?;
        let stderr_pipe = child.stderr.take();
        let (tx, incoming) = mpsc::unbounded_channel();
        let reader_sink = sink.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, stdout);
            let mut buf = Vec::new();
            loop {
                match read_line(&mut reader, &mut buf, MAX_LINE).await {
                    Ok(None) | Err(_) => {
                        let _ = tx.send(Incoming::Eof);
                        return;
                    }
                    Ok(Some(Err(()))) => {
                        let _ = tx.send(Incoming::Failure(DriverFailure::TooLong));
                        return;
                    }
                    Ok(Some(Ok(()))) => {
                        if let Some(msg) = classify(&buf, &reader_sink)
                            && tx.send(msg).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(mut pipe) = stderr_pipe {
            let keep = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    let mut q = keep.lock().unwrap_or_else(|p| p.into_inner());
                    q.extend(&chunk[..n]);
                    let excess = q.len().saturating_sub(STDERR_KEEP);
                    q.drain(..excess);
                }
            });
        }
        Ok(Driver {
            child,
            pgid,
            stdin,
            incoming,
            sink,
            next_id: 0,
            stderr,
            dead: None,
        })
    }

    /// The kept tail of the driver's stderr so far.
    pub fn stderr(&self) -> String {
        let q = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = q.as_slices();
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await {
            Ok(Ok(status)) => describe_status(status),
            Ok(Err(e)) => format!("exit status unknown: {e}"),
            Err(_) => "stdout closed, process still running".to_owned(),
        }
    }

    /// Sends a request and waits for its answer. `Ok(Err(..))` is a JSON-RPC error answer (the
    /// call failed on the client); `Err(..)` is a broken driver.
    pub async fn call(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Result<Value, RpcError>, DriverFailure> {
        if let Some(dead) = &self.dead {
            return Err(dead.clone());
        }
        self.next_id += 1;
        let id = self.next_id;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string() + "\n";
        self.sink.record(true, line.trim_end().as_bytes());
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(DriverFailure::Write("stdin closed".to_owned()));
        };
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        let written = tokio::time::timeout(timeout, write).await;
        match written {
            Err(_) => {
                return Err(self.fail(DriverFailure::Timeout {
                    method: method.to_owned(),
                    after: timeout,
                }));
            }
            Ok(Err(_)) => {
                // A closed pipe means the driver is gone: say how it ended.
                let status = self.exit_status().await;
                return Err(self.fail(DriverFailure::Exited {
                    method: method.to_owned(),
                    status,
                }));
            }
            Ok(Ok(())) => {}
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.incoming.recv()).await;
            let msg = match next {
                Err(_) => {
                    return Err(self.fail(DriverFailure::Timeout {
                        method: method.to_owned(),
                        after: timeout,
                    }));
                }
                Ok(None) | Ok(Some(Incoming::Eof)) => {
                    let status = self.exit_status().await;
                    return Err(self.fail(DriverFailure::Exited {
                        method: method.to_owned(),
                        status,
                    }));
                }
                Ok(Some(m)) => m,
            };
            match msg {
                Incoming::Failure(f) => return Err(self.fail(f)),
                Incoming::Eof => {}
                Incoming::Response { id: got, outcome } => {
                    if got.as_u64() == Some(id) {
                        return Ok(outcome);
                    }
                    return Err(self.fail(DriverFailure::WrongId {
                        got: got.to_string(),
                        expected: id,
                        method: method.to_owned(),
                    }));
                }
            }
        }
    }

    fn fail(&mut self, f: DriverFailure) -> DriverFailure {
        self.dead = Some(f.clone());
        f
    }

    /// Kills the whole process group (SIGKILL) and reaps the child.
    pub async fn kill(&mut self) {
        self.killpg();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    fn killpg(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // The group may already be gone; that is fine.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }

    /// Asks the driver to shut down (short timeout), then kills whatever is left of its group.
    pub async fn shutdown(&mut self, timeout: Duration) {
        if self.dead.is_none() {
            let _ = self.call("shutdown", json!({}), timeout).await;
            self.stdin = None;
            let _ = tokio::time::timeout(timeout, self.child.wait()).await;
        }
        self.kill().await;
        // Give the stderr reader a moment to drain what the process wrote last.
        tokio::task::yield_now().await;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.killpg();
    }
}

/// Kills every process still carrying `ROTARY_STATE_DIR=<state_dir>` in its environment: the
/// descendants of a scenario's drivers that left the process group (`setsid`, daemons). Returns
/// how many were killed. Linux only (reads `/proc`); elsewhere it finds none.
pub fn kill_stragglers(state_dir: &Path) -> usize {
    let needle = format!("ROTARY_STATE_DIR={}", state_dir.display()).into_bytes();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == me) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|var| var == needle.as_slice())
            && nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => match Signal::try_from(s) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {s}"),
        },
        _ => "exit status unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> Sink {
        Sink {
            notifications: Arc::default(),
            transcript: Arc::default(),
            counts: Arc::default(),
            dropped: Arc::default(),
            step: Arc::default(),
            t0: Instant::now(),
            trace_len: Arc::new(|| 0),
        }
    }

    fn spawn(cmd: &str) -> Driver {
        Driver::spawn(cmd, "http://127.0.0.1:1", "t.t", Path::new("/tmp"), sink()).unwrap()
    }

    const SHORT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_well_behaved_driver_answers() {
        let mut d = spawn(
            r#"read l; echo '{"jsonrpc":"2.0","method":"log","params":{"message":"hi"}}'; echo '{"jsonrpc":"2.0","id":1,"result":{"ok":1}}'; read l"#,
        );
        let r = d.call("initialize", json!({}), SHORT).await.unwrap();
        assert_eq!(r, Ok(json!({"ok": 1})));
        d.kill().await;
    }

    #[tokio::test]
    async fn garbage_crash_wrong_id_and_long_lines_are_failures() {
        let mut d = spawn("read l; echo 'hello there'");
        let e = d.call("initialize", json!({}), SHORT).await.unwrap_err();
        assert!(matches!(e, DriverFailure::Garbage { .. }), "{e}");

        let mut d = spawn("read l; echo oops >&2; exit 3");
        let e = d.call("initialize", json!({}), SHORT).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the driver exited before answering `initialize` (exit code 3)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(d.stderr().contains("oops"));

        let mut d = spawn(r#"read l; echo '{"jsonrpc":"2.0","id":7,"result":{}}'"#);
        let e = d.call("initialize", json!({}), SHORT).await.unwrap_err();
        assert!(matches!(e, DriverFailure::WrongId { .. }), "{e}");

        let mut d = spawn("read l; head -c 5000000 /dev/zero | tr '\\0' x; echo");
        let e = d.call("initialize", json!({}), SHORT).await.unwrap_err();
        assert_eq!(e, DriverFailure::TooLong);
    }

    #[tokio::test]
    async fn a_silent_driver_times_out_and_is_killed() {
        let mut d = spawn("sleep 30");
        let e = d
            .call("initialize", json!({}), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        d.kill().await;
    }
}
