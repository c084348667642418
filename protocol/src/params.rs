//! Reading a call's parameters, with the `-32602` errors the harness reports as protocol mistakes,
//! and the operations a `parallel` call may run.
//!
//! ```
//! use rotary_protocol::{ParallelOp, Params};
//! let p = serde_json::json!({"user": "alice", "refresh_token": true, "timeout_ms": 30000});
//! assert_eq!(Params(&p).req_str("user").unwrap(), "alice");
//! assert_eq!(Params(&p).opt_bool("refresh_token").unwrap(), Some(true));
//! assert!(Params(&p).req_str("password").is_err());
//! let op = ParallelOp::parse("sync", &p).unwrap();
//! assert_eq!(op, ParallelOp::Sync { timeout_ms: 30000, since: None });
//! ```

use crate::rpc::RpcError;
use serde_json::Value;

/// A call's `params` object; a `null` field counts as absent.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a>(pub &'a Value);

impl<'a> Params<'a> {
    /// The field, unless absent or `null`.
    pub fn field(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A string that must be there.
    pub fn req_str(&self, name: &str) -> Result<String, RpcError> {
        self.opt_str(name)?
            .ok_or_else(|| RpcError::invalid_params(format!("missing string param `{name}`")))
    }

    /// A string, if given.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>, RpcError> {
        match self.field(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(RpcError::invalid_params(format!(
                "param `{name}` must be a string"
            ))),
        }
    }

    /// A non-negative integer, if given.
    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, RpcError> {
        match self.field(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                RpcError::invalid_params(format!("param `{name}` must be a non-negative integer"))
            }),
        }
    }

    /// A boolean, if given.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.field(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(RpcError::invalid_params(format!(
                "param `{name}` must be a boolean"
            ))),
        }
    }
}

/// One operation of a `parallel` call, parsed before anything starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParallelOp {
    /// `whoami`.
    Whoami,
    /// `sync` with a long-poll timeout and an optional `since`.
    Sync {
        /// `timeout_ms` (default 0).
        timeout_ms: u64,
        /// `since`.
        since: Option<String>,
    },
    /// `send` of a text message.
    Send {
        /// `room_id`.
        room_id: String,
        /// `body`.
        body: String,
    },
}

impl ParallelOp {
    /// Parses `op` and its `params`.
    pub fn parse(op: &str, params: &Value) -> Result<ParallelOp, RpcError> {
        let p = Params(params);
        match op {
            "whoami" => Ok(ParallelOp::Whoami),
            "sync" => Ok(ParallelOp::Sync {
                timeout_ms: p.opt_u64("timeout_ms")?.unwrap_or(0),
                since: p.opt_str("since")?,
            }),
            "send" => Ok(ParallelOp::Send {
                room_id: p.req_str("room_id")?,
                body: p.req_str("body")?,
            }),
            other => Err(RpcError::invalid_params(format!(
                "op must be whoami, sync or send, not {other:?}"
            ))),
        }
    }

    /// Parses a whole `parallel` call's params: `count`, `op`, `params`, optional `interval_ms`.
    /// `max` bounds `count`.
    pub fn parse_call(params: &Value, max: u64) -> Result<(u64, ParallelOp, u64), RpcError> {
        let p = Params(params);
        let count = p
            .opt_u64("count")?
            .ok_or_else(|| RpcError::invalid_params("missing integer param `count`"))?;
        if count > max {
            return Err(RpcError::invalid_params(format!("count is at most {max}")));
        }
        let op = p.req_str("op")?;
        let inner = p
            .field("params")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let op = ParallelOp::parse(&op, &inner)?;
        Ok((count, op, p.opt_u64("interval_ms")?.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_are_invalid_params() {
        let p = json!({"a": 1, "b": "x", "n": null});
        let e = Params(&p).opt_str("a").unwrap_err();
        assert_eq!(e.code, RpcError::INVALID_PARAMS);
        assert!(Params(&p).opt_u64("b").is_err());
        assert!(Params(&p).opt_bool("a").is_err());
        assert_eq!(Params(&p).opt_str("n").unwrap(), None);
    }

    #[test]
    fn parallel_calls_parse() {
        let call =
            json!({"count": 3, "op": "send", "params": {"room_id": "!r:x", "body": "hi"}, "interval_ms": 5});
        let (n, op, gap) = ParallelOp::parse_call(&call, 10).unwrap();
        assert_eq!((n, gap), (3, 5));
        assert_eq!(
            op,
            ParallelOp::Send {
                room_id: "!r:x".into(),
                body: "hi".into()
            }
        );
        assert!(ParallelOp::parse_call(&json!({"op": "whoami"}), 10).is_err());
        assert!(ParallelOp::parse_call(&json!({"count": 11, "op": "whoami"}), 10).is_err());
        assert!(ParallelOp::parse_call(&json!({"count": 1, "op": "fly"}), 10).is_err());
    }
}
