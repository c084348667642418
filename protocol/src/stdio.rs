//! The driver's side of the transport: requests read one per line, answers and notifications
//! written one per line through a single writer, flushed after each.
//!
//! See the crate's front page for an example.

use crate::rpc::RpcError;
use serde_json::{Value, json};
use std::future::Future;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Where a driver's lines go: a handle on the single writer. Clone it into anything that sends
/// notifications (an SDK's session callback, a background task).
#[derive(Clone, Debug)]
pub struct Output(mpsc::UnboundedSender<String>);

impl Output {
    /// Queues one message; `false` once the writer is gone (the harness stopped reading).
    pub fn send(&self, message: &Value) -> bool {
        match serde_json::to_string(message) {
            Ok(line) => self.0.send(line).is_ok(),
            Err(_) => true,
        }
    }

    /// Sends a notification (`session_changed`, `logged_out`, `log`); `false` once the writer is gone.
    pub fn notify(&self, method: &str, params: Value) -> bool {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    /// Answers request `id`; `false` once the writer is gone.
    pub fn respond(&self, id: Value, answer: Result<Value, RpcError>) -> bool {
        match answer {
            Ok(result) => self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result})),
            Err(error) => self.send(&json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})),
        }
    }
}

/// A driver: answers one call at a time. `shutdown` must be answered too (with `{}`); the loop
/// ends after a successful answer to it.
pub trait Handler {
    /// Answers `method` with `params` (`{}` when the request had none).
    fn handle(&mut self, method: &str, params: &Value) -> impl Future<Output = Result<Value, RpcError>>;

    /// Called once when input ends without a `shutdown` (e.g. to drop an SDK whose tasks hold an
    /// [`Output`], so that the writer can finish).
    fn end_of_input(&mut self) {}
}

/// What a line from the harness turned out to be.
enum Incoming {
    /// A request to answer.
    Call {
        id: Value,
        method: String,
        params: Value,
    },
    /// A notification from the harness: ignored.
    Notification,
    /// A line to answer with an error.
    Bad { id: Value, error: RpcError },
}

fn classify(line: &[u8]) -> Incoming {
    let request: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Incoming::Bad {
                id: Value::Null,
                error: RpcError::new(RpcError::PARSE_ERROR, format!("parse error: {e}")),
            };
        }
    };
    let method = request.get("method").and_then(Value::as_str);
    match (request.get("id"), method) {
        (Some(id), Some(method)) => Incoming::Call {
            id: id.clone(),
            method: method.to_owned(),
            params: request.get("params").cloned().unwrap_or_else(|| json!({})),
        },
        (None, Some(_)) => Incoming::Notification,
        (id, _) => Incoming::Bad {
            id: id.cloned().unwrap_or(Value::Null),
            error: RpcError::new(
                RpcError::INVALID_REQUEST,
                "invalid request: need `id` and `method`",
            ),
        },
    }
}

/// Runs a driver over a pair of streams. `make` builds the handler from the [`Output`] it may
/// notify through. Returns after `shutdown` (answered) or at the end of input, once every queued
/// line has been written; an error only when reading or writing fails.
pub async fn run<R, W, H, F>(input: R, output: W, make: F) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    H: Handler,
    F: FnOnce(Output) -> H,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let out = Output(tx);
    let handler = make(out.clone());
    // The handler and `out` are dropped when `serve` ends, which ends the writer.
    let serve = serve(input, handler, out);
    let (served, written) = tokio::join!(serve, write_lines(rx, output));
    written?;
    served
}

async fn serve<R: AsyncBufRead + Unpin, H: Handler>(
    mut input: R,
    mut handler: H,
    out: Output,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).await? == 0 {
            handler.end_of_input();
            return Ok(());
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (id, method, params) = match classify(&buf) {
            Incoming::Call { id, method, params } => (id, method, params),
            Incoming::Notification => continue,
            Incoming::Bad { id, error } => {
                if !out.respond(id, Err(error)) {
                    return Ok(());
                }
                continue;
            }
        };
        let answer = handler.handle(&method, &params).await;
        let shutdown = method == "shutdown" && answer.is_ok();
        if !out.respond(id, answer) || shutdown {
            return Ok(());
        }
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<String>,
    mut out: W,
) -> std::io::Result<()> {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        out.write_all(line.as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl Handler for Counter {
        async fn handle(&mut self, method: &str, _: &Value) -> Result<Value, RpcError> {
            self.0 += 1;
            match method {
                "shutdown" => Ok(json!({})),
                "count" => Ok(json!(self.0)),
                other => Err(RpcError::method_not_found(other)),
            }
        }
    }

    async fn exchange(input: &str) -> Vec<Value> {
        let mut output = Vec::new();
        run(input.as_bytes(), &mut output, |_| Counter(0)).await.unwrap();
        String::from_utf8(output)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn garbage_gets_errors_and_the_loop_goes_on() {
        let lines = exchange(
            "not json\n\n{\"id\":1}\n{\"method\":\"note\"}\n{\"id\":2,\"method\":\"fly\"}\n{\"id\":3,\"method\":\"count\"}\n{\"id\":4,\"method\":\"shutdown\"}\n{\"id\":5,\"method\":\"count\"}\n",
        )
        .await;
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[0]["error"]["code"], -32700);
        assert_eq!(lines[1]["error"]["code"], -32600);
        assert_eq!(lines[1]["id"], 1);
        assert_eq!(lines[2]["error"]["code"], -32601);
        assert_eq!(lines[3]["result"], 2);
        assert_eq!(lines[4]["result"], json!({}));
    }

    #[tokio::test]
    async fn end_of_input_ends_the_loop() {
        assert!(exchange("").await.is_empty());
    }
}
