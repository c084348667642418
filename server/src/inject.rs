//! Applying a fired fault rule to a request: what to send instead of the answer, before it, or
//! after performing the request. The mock's request path and `rotary proxy` (in front of a real
//! homeserver) share it, so an action means the same in both.

use crate::conn::RawAction;
use crate::error::{ErrorInfo, MatrixError};
use crate::fault::{FaultAction, FaultRule};
use crate::trace::Delivery;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::time::Duration;

/// What the request path does about a fault.
pub enum Plan {
    /// Handle the request normally.
    Handle,
    /// Send this instead, without performing the request.
    Respond(Response),
    /// Wait, then handle normally.
    Delay(Duration),
    /// Never answer.
    Hang,
    /// Do not perform the request; the connection does this instead of answering.
    Raw(RawAction, Delivery),
    /// Perform the request, then close the connection without the answer.
    HandleThenDrop,
    /// Perform the request, then send half of the answer.
    HandleThenTruncate,
}

/// The plan for a fired rule (or none).
pub fn plan(rule: Option<&FaultRule>) -> Plan {
    let Some(rule) = rule else {
        return Plan::Handle;
    };
    match &rule.action {
        FaultAction::Error { .. } | FaultAction::Html { .. } | FaultAction::OauthError { .. } => {
            Plan::Respond(injected_error(rule))
        }
        FaultAction::Delay { duration } => Plan::Delay(*duration),
        FaultAction::Hang => Plan::Hang,
        FaultAction::Reset => Plan::Raw(RawAction::Reset, Delivery::Reset),
        FaultAction::EmptyReply => Plan::Raw(RawAction::Empty, Delivery::Empty),
        FaultAction::Garbage { bytes } => {
            let raw = bytes
                .clone()
                .map_or_else(|| Bytes::from_static(DEFAULT_GARBAGE), Bytes::from);
            Plan::Raw(RawAction::Bytes(raw), Delivery::Garbage)
        }
        FaultAction::CommitThenDrop => Plan::HandleThenDrop,
        FaultAction::Truncate => Plan::HandleThenTruncate,
    }
}

const HTML_PAGE: &str = "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const DEFAULT_GARBAGE: &[u8] = b"\xde\xad\xbe\xef\x00\xff not an HTTP response \x01\x02\r\n\r\n\xfe";

fn injected_error(rule: &FaultRule) -> Response {
    match &rule.action {
        FaultAction::Error {
            status,
            errcode,
            error,
            soft_logout,
            retry_after_ms,
        } => {
            let code = errcode.clone().unwrap_or_else(|| {
                match status {
                    429 => "M_LIMIT_EXCEEDED",
                    401 => "M_UNKNOWN_TOKEN",
                    403 => "M_FORBIDDEN",
                    404 => "M_NOT_FOUND",
                    _ => "M_UNKNOWN",
                }
                .to_owned()
            });
            let msg = error
                .clone()
                .unwrap_or_else(|| format!("Injected fault #{}", rule.id.unwrap_or(0)));
            let mut e = MatrixError::new(*status, &code, msg);
            e.soft_logout = *soft_logout;
            e.retry_after_ms = *retry_after_ms;
            e.into_response()
        }
        FaultAction::Html { status } => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            let label = format!("{} {}", code.as_u16(), code.canonical_reason().unwrap_or(""));
            (
                code,
                [(header::CONTENT_TYPE, "text/html")],
                HTML_PAGE.replace("{status}", label.trim()),
            )
                .into_response()
        }
        FaultAction::OauthError {
            status,
            error,
            error_description,
            retry_after_ms,
        } => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
            let description = error_description
                .clone()
                .unwrap_or_else(|| format!("Injected fault #{}", rule.id.unwrap_or(0)));
            let mut resp = (
                code,
                [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
                axum::Json(serde_json::json!({"error": error, "error_description": description})),
            )
                .into_response();
            if let Some(ms) = retry_after_ms
                && let Ok(v) = header::HeaderValue::from_str(&ms.div_ceil(1000).to_string())
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp.extensions_mut().insert(ErrorInfo {
                errcode: Some(error.clone()),
                soft_logout: None,
            });
            resp
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Turns a response into the raw bytes of its head and the first half of its body.
pub async fn truncated_bytes(resp: Response) -> (Response, Bytes) {
    let (parts, body) = resp.into_parts();
    let full = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let mut raw = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (k, v) in &parts.headers {
        if k != header::CONTENT_LENGTH {
            raw.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap_or("")));
        }
    }
    raw.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        full.len()
    ));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(&full[..full.len() / 2]);
    let rebuilt = Response::from_parts(parts, Body::from(full));
    (rebuilt, Bytes::from(bytes))
}
