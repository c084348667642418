//! Steps that make the client do work with its session: `whoami`, `sync`, `send`, and `parallel`
//! (many at once).

use super::context::{Broken, Ctx, StepAt, call_error};
use super::kind::{StepKind, Validation};
use crate::record::{CallError, StepOutcome};
use crate::redact::preview;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

fn main_room() -> String {
    "main".to_owned()
}
fn hello() -> String {
    "hello".to_owned()
}

/// Driver `whoami`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Whoami {}

impl StepKind for Whoami {
    const SUMMARY: &'static str = "driver `whoami`";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];
    const METHOD: Option<&'static str> = Some("whoami");

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        ctx.call(at, "whoami", json!({})).await
    }
}

/// Driver `sync`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Long-poll timeout (default 0).
    #[serde(default)]
    pub timeout_ms: u64,
    /// A `since` token, or `"last"` for the previous sync's `next_batch`.
    #[serde(default)]
    pub since: Option<String>,
}

impl StepKind for Sync {
    const SUMMARY: &'static str = "driver `sync` (a long-poll when `timeout_ms` is given)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("timeout_ms", "long-poll timeout (default 0)"),
        (
            "since",
            "a `since` token, or `\"last\"` for the previous sync's `next_batch`",
        ),
    ];
    const METHOD: Option<&'static str> = Some("sync");

    fn summary(&self) -> String {
        match &self.since {
            Some(s) => format!("timeout_ms={}, since={s}", self.timeout_ms),
            None => format!("timeout_ms={}", self.timeout_ms),
        }
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        let mut p = json!({"timeout_ms": self.timeout_ms});
        match self.since.as_deref() {
            Some("last") => {
                if let Some(b) = &ctx.last_next_batch {
                    p["since"] = json!(b);
                }
            }
            Some(s) => p["since"] = json!(s),
            None => {}
        }
        let out = ctx.call(at, "sync", p).await?;
        if let StepOutcome::Ok { result } = &out
            && let Some(b) = result.get("next_batch").and_then(Value::as_str)
        {
            ctx.last_next_batch = Some(b.to_owned());
        }
        Ok(out)
    }
}

/// Driver `send` of a text message.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// A room made by `create_room` (its handle, default `main`) or a literal `!room:id`.
    #[serde(default = "main_room")]
    pub room: String,
    /// Message body (default `hello`).
    #[serde(default = "hello")]
    pub body: String,
}

impl StepKind for Send {
    const SUMMARY: &'static str = "driver `send` of a text message into a room made by `create_room`";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        (
            "room",
            "a `create_room` handle (default `main`) or a literal `!room:id`",
        ),
        ("body", "message body (default `hello`)"),
    ];
    const METHOD: Option<&'static str> = Some("send");

    fn summary(&self) -> String {
        format!("room={}, body={:?}", self.room, self.body)
    }

    fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
        v.room(&self.room)
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        let room_id = ctx.room_id(&self.room);
        let out = ctx
            .call(at, "send", json!({"room_id": room_id, "body": self.body}))
            .await?;
        ctx.room_sends
            .entry(self.room.clone())
            .or_default()
            .push(out.clone());
        Ok(out)
    }
}

/// The operation of a `parallel` step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParallelOp {
    /// `whoami`.
    Whoami,
    /// `sync`.
    Sync,
    /// `send`.
    Send,
}

impl ParallelOp {
    /// The method name.
    pub fn name(self) -> &'static str {
        match self {
            ParallelOp::Whoami => "whoami",
            ParallelOp::Sync => "sync",
            ParallelOp::Send => "send",
        }
    }
}

/// Driver `parallel`: `count` operations started at once.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Parallel {
    /// How many.
    pub count: u32,
    /// Which operation.
    pub op: ParallelOp,
    /// Parameters of each operation (for `send`, `room` is a handle as above).
    #[serde(default)]
    pub params: toml::Table,
    /// Optional protocol extension: start operation i after `i × interval_ms` (drivers that do not
    /// know it start all at once).
    #[serde(default)]
    pub interval_ms: Option<u64>,
}

impl Parallel {
    fn room(&self) -> String {
        self.params
            .get("room")
            .and_then(|v| v.as_str())
            .unwrap_or("main")
            .to_owned()
    }
}

fn parse_outcome(v: &Value) -> Result<StepOutcome, String> {
    let field = |e: &Value, k: &str| e.get("data").and_then(|d| d.get(k)).or_else(|| e.get(k)).cloned();
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(StepOutcome::Ok {
            result: v.get("result").cloned().unwrap_or(Value::Null),
        }),
        Some(false) => {
            let e = v.get("error").cloned().unwrap_or(Value::Null);
            Ok(StepOutcome::Failed {
                error: CallError {
                    kind: field(&e, "kind")
                        .and_then(|k| k.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "other".to_owned()),
                    message: e.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
                    status: field(&e, "status")
                        .and_then(|s| s.as_u64())
                        .and_then(|s| u16::try_from(s).ok()),
                    errcode: field(&e, "errcode").and_then(|c| c.as_str().map(str::to_owned)),
                },
            })
        }
        None => Err(format!("an Outcome needs \"ok\": true|false, got {}", preview(v))),
    }
}

impl StepKind for Parallel {
    const SUMMARY: &'static str =
        "driver `parallel`: `count` operations started at once (optionally `interval_ms` apart)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("count", "how many (1–1000)"),
        ("op", "`whoami`, `sync` or `send`"),
        (
            "params",
            "the operation's parameters (for `send`, `room` is a handle)",
        ),
        (
            "interval_ms",
            "start operation i after i × interval_ms (a protocol extension)",
        ),
    ];
    const METHOD: Option<&'static str> = Some("parallel");

    fn summary(&self) -> String {
        match self.interval_ms {
            Some(i) => format!("{} × {}, {i} ms apart", self.count, self.op.name()),
            None => format!("{} × {}", self.count, self.op.name()),
        }
    }

    fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
        if self.count == 0 || self.count > 1000 {
            return Err("count must be between 1 and 1000".to_owned());
        }
        if self.op == ParallelOp::Send {
            v.room(&self.room())?;
        }
        v.need(self.op.name(), &format!("runs `{}` in parallel", self.op.name()))
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        let mut p = match serde_json::to_value(&self.params).unwrap_or(Value::Null) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let room_handle = self.room();
        match self.op {
            ParallelOp::Send => {
                p.remove("room");
                p.insert("room_id".into(), json!(ctx.room_id(&room_handle)));
                p.entry("body").or_insert_with(|| json!("hello"));
            }
            ParallelOp::Sync => {
                p.entry("timeout_ms").or_insert_with(|| json!(0));
            }
            ParallelOp::Whoami => {}
        }
        let mut call = json!({"count": self.count, "op": self.op.name(), "params": Value::Object(p)});
        if let Some(i) = self.interval_ms {
            call["interval_ms"] = json!(i);
        }
        let count = self.count as usize;
        let out = match ctx.raw_call(Some(at), "parallel", call).await? {
            Err(e) => StepOutcome::Failed { error: call_error(e) },
            Ok(result) => {
                let Some(results) = result.get("results").and_then(Value::as_array) else {
                    return Err(ctx.error(
                        Some(at),
                        format!(
                            "the `parallel` result needs \"results\": [..], got {}",
                            preview(&result)
                        ),
                    ));
                };
                if results.len() != count {
                    return Err(ctx.error(
                        Some(at),
                        format!(
                            "`parallel` asked for {count} operations but {} results came back",
                            results.len()
                        ),
                    ));
                }
                let mut outs = Vec::with_capacity(count);
                for r in results {
                    outs.push(parse_outcome(r).map_err(|why| {
                        ctx.error(Some(at), format!("a `parallel` result is malformed: {why}"))
                    })?);
                }
                StepOutcome::Parallel { results: outs }
            }
        };
        if self.op == ParallelOp::Send {
            let each: Vec<StepOutcome> = match &out {
                StepOutcome::Parallel { results } => results.clone(),
                other => vec![other.clone(); count],
            };
            ctx.room_sends.entry(room_handle).or_default().extend(each);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_parse_from_both_error_shapes() {
        let o = parse_outcome(
            &json!({"ok": false, "error": {"code": -32000, "message": "m", "data": {"kind": "http", "status": 401}}}),
        )
        .unwrap();
        assert_eq!(o.errors()[0].status, Some(401));
        assert_eq!(o.errors()[0].kind, "http");
        assert!(parse_outcome(&json!({"fine": 1})).is_err());
    }
}
