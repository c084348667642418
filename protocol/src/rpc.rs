//! JSON-RPC 2.0 errors as the protocol uses them: the standard codes for broken requests, and
//! `-32000` with `data.kind` (and `status`, `errcode`) for a call that failed on the client.
//!
//! ```
//! use rotary_protocol::{ErrorKind, RpcError};
//! let e = RpcError::call(ErrorKind::Http, "401 from whoami").status(401).errcode("M_UNKNOWN_TOKEN");
//! let json = e.to_json();
//! assert_eq!(json["code"], -32000);
//! assert_eq!(json["data"]["kind"], "http");
//! assert_eq!(json["data"]["status"], 401);
//! ```

use crate::names::ErrorKind;
use serde_json::{Map, Value, json};

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// The code: one of the `RpcError::*` constants.
    pub code: i64,
    /// Human text.
    pub message: String,
    /// `{"kind", "status"?, "errcode"?}` for a failed call.
    pub data: Option<Value>,
}

impl RpcError {
    /// The line is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a request (no `id` or `method`).
    pub const INVALID_REQUEST: i64 = -32600;
    /// The driver does not implement the method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// A parameter is missing or has the wrong type.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The protocol's code for a call that failed on the client (`data.kind` says how).
    pub const CALL_FAILED: i64 = -32000;

    /// An error with a code and a message.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// [`RpcError::INVALID_PARAMS`].
    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(RpcError::INVALID_PARAMS, message)
    }

    /// [`RpcError::METHOD_NOT_FOUND`] for `method`.
    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(RpcError::METHOD_NOT_FOUND, format!("method not found: {method}"))
    }

    /// A failed call of `kind`; add [`status`](RpcError::status) and
    /// [`errcode`](RpcError::errcode) for `http` errors.
    pub fn call(kind: ErrorKind, message: impl Into<String>) -> RpcError {
        RpcError {
            code: RpcError::CALL_FAILED,
            message: message.into(),
            data: Some(json!({"kind": kind.as_str()})),
        }
    }

    fn data_field(mut self, key: &str, value: Value) -> RpcError {
        let mut data = match self.data.take() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        data.insert(key.to_owned(), value);
        self.data = Some(Value::Object(data));
        self
    }

    /// Adds `data.status`.
    pub fn status(self, status: u16) -> RpcError {
        self.data_field("status", json!(status))
    }

    /// Adds `data.errcode`.
    pub fn errcode(self, errcode: impl Into<String>) -> RpcError {
        self.data_field("errcode", Value::String(errcode.into()))
    }

    /// The error object as it goes on the wire.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            v["data"] = data.clone();
        }
        v
    }

    /// One-line text for logs: `-32000 http: 401 from whoami`.
    pub fn describe(&self) -> String {
        match self
            .data
            .as_ref()
            .and_then(|d| d.get("kind"))
            .and_then(Value::as_str)
        {
            Some(kind) => format!("{} {kind}: {}", self.code, self.message),
            None => format!("{}: {}", self.code, self.message),
        }
    }
}

/// An `Outcome` of one operation of a `parallel` call: `{"ok": true, "result"}` or
/// `{"ok": false, "error"}`.
pub fn outcome(result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(e) => json!({"ok": false, "error": e.to_json()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            RpcError::method_not_found("fly").to_json(),
            json!({"code": -32601, "message": "method not found: fly"})
        );
        let e = RpcError::call(ErrorKind::LoggedOut, "gone");
        assert_eq!(e.describe(), "-32000 logged_out: gone");
        assert_eq!(
            outcome(Err(e)),
            json!({"ok": false, "error": {"code": -32000, "message": "gone", "data": {"kind": "logged_out"}}})
        );
        assert_eq!(outcome(Ok(json!(1))), json!({"ok": true, "result": 1}));
    }
}
