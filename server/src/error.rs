//! Matrix error responses (`{"errcode","error"}`) and how each profile words token failures.

use crate::config::{Dialect, ReusePolicy, ServerConfig};
use crate::store::{AccessError, RefreshError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// What the trace needs to know about an error response without parsing its body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The `errcode`.
    pub errcode: Option<String>,
    /// The `soft_logout` flag.
    pub soft_logout: Option<bool>,
}

/// A Matrix error: status, `errcode`, `error` and optional extra fields.
///
/// ```
/// use rotary_server::MatrixError;
/// let e = MatrixError::new(400, "M_NOT_JSON", "Content not JSON.");
/// assert_eq!(e.body()["errcode"], "M_NOT_JSON");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixError {
    /// HTTP status.
    pub status: StatusCode,
    /// `errcode`, e.g. `M_UNKNOWN_TOKEN`.
    pub errcode: String,
    /// Human-readable `error`.
    pub error: String,
    /// `soft_logout`, when the error carries one.
    pub soft_logout: Option<bool>,
    /// `retry_after_ms`, for 429.
    pub retry_after_ms: Option<u64>,
    /// Any other fields (UIA's `flows`, `params`, `session`).
    pub extra: Map<String, Value>,
}

impl MatrixError {
    /// An error with this status, errcode and message.
    pub fn new(status: u16, errcode: &str, error: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            errcode: errcode.to_owned(),
            error: error.into(),
            soft_logout: None,
            retry_after_ms: None,
            extra: Map::new(),
        }
    }

    /// Adds `soft_logout`.
    pub fn soft_logout(mut self, soft: bool) -> Self {
        self.soft_logout = Some(soft);
        self
    }

    /// 400 `M_NOT_JSON`.
    pub fn not_json() -> Self {
        Self::new(400, "M_NOT_JSON", "Content not JSON.")
    }

    /// 400 `M_BAD_JSON`.
    pub fn bad_json(msg: impl Into<String>) -> Self {
        Self::new(400, "M_BAD_JSON", msg)
    }

    /// 400 `M_MISSING_PARAM` in Synapse's wording.
    pub fn missing_param(name: &str) -> Self {
        Self::new(400, "M_MISSING_PARAM", format!("Missing params: ['{name}']"))
    }

    /// 400 `M_INVALID_PARAM`.
    pub fn invalid_param(msg: impl Into<String>) -> Self {
        Self::new(400, "M_INVALID_PARAM", msg)
    }

    /// 404 `M_UNRECOGNIZED`.
    pub fn unrecognized() -> Self {
        Self::new(404, "M_UNRECOGNIZED", "Unrecognized request")
    }

    /// 405 `M_UNRECOGNIZED`.
    pub fn method_not_allowed() -> Self {
        Self::new(405, "M_UNRECOGNIZED", "Unrecognized request")
    }

    /// 413 `M_TOO_LARGE`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "M_TOO_LARGE",
            format!("Request body is larger than {limit} bytes"),
        )
    }

    /// 401 `M_MISSING_TOKEN`.
    pub fn missing_token() -> Self {
        Self::new(401, "M_MISSING_TOKEN", "Missing access token")
    }

    /// 404 `M_NOT_FOUND`.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(404, "M_NOT_FOUND", msg)
    }

    /// 403 `M_FORBIDDEN`.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(403, "M_FORBIDDEN", msg)
    }

    /// 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`.
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        let mut e = Self::new(429, "M_LIMIT_EXCEEDED", "Too Many Requests");
        e.retry_after_ms = Some(retry_after_ms);
        e
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("errcode".into(), json!(self.errcode));
        body.insert("error".into(), json!(self.error));
        if let Some(s) = self.soft_logout {
            body.insert("soft_logout".into(), json!(s));
        }
        if let Some(ms) = self.retry_after_ms {
            body.insert("retry_after_ms".into(), json!(ms));
        }
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let info = ErrorInfo {
            errcode: Some(self.errcode.clone()),
            soft_logout: self.soft_logout,
        };
        let retry = self.retry_after_ms;
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(ms) = retry
            && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp.extensions_mut().insert(info);
        resp
    }
}

/// The 401 a refused access token gets under the configured dialect.
pub fn access_error(cfg: &ServerConfig, err: AccessError) -> MatrixError {
    match (cfg.dialect, err) {
        (Dialect::Mas, AccessError::Expired) => {
            MatrixError::new(401, "M_UNKNOWN_TOKEN", "Token is not active")
                .soft_logout(cfg.expired_token_soft_logout)
        }
        (Dialect::Mas, _) => {
            MatrixError::new(401, "M_UNKNOWN_TOKEN", "Token is not active").soft_logout(false)
        }
        (_, AccessError::Expired) => MatrixError::new(401, "M_UNKNOWN_TOKEN", "Access token has expired")
            .soft_logout(cfg.expired_token_soft_logout),
        (_, AccessError::Unknown | AccessError::Revoked) => {
            MatrixError::new(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.").soft_logout(false)
        }
    }
}

/// The error a refused refresh gets under the configured dialect and reuse policy.
pub fn refresh_error(cfg: &ServerConfig, err: RefreshError) -> MatrixError {
    let mut e = match cfg.dialect {
        Dialect::Mas => MatrixError::new(401, "M_UNKNOWN_TOKEN", "Invalid refresh token"),
        Dialect::Spec => MatrixError::new(
            401,
            "M_UNKNOWN_TOKEN",
            match err {
                RefreshError::Malformed | RefreshError::Unknown | RefreshError::WrongClient => {
                    "Unknown refresh token"
                }
                RefreshError::Consumed | RefreshError::ReplayRevokedSession => {
                    "Refresh token has already been used"
                }
                RefreshError::Expired => "Refresh token has expired",
                RefreshError::SessionExpired => "Session has expired",
            },
        ),
        Dialect::Synapse => match err {
            RefreshError::Malformed => MatrixError::new(401, "M_UNKNOWN_TOKEN", "invalid refresh token"),
            RefreshError::Unknown | RefreshError::WrongClient => {
                MatrixError::new(401, "M_UNKNOWN_TOKEN", "refresh token does not exist")
            }
            RefreshError::Consumed | RefreshError::ReplayRevokedSession
                if cfg.reuse_policy == ReusePolicy::GraceThenForbidden =>
            {
                MatrixError::forbidden("refresh token isn't valid anymore")
            }
            RefreshError::Consumed | RefreshError::ReplayRevokedSession => {
                MatrixError::new(401, "M_UNKNOWN_TOKEN", "refresh token isn't valid anymore")
            }
            RefreshError::Expired => MatrixError::forbidden("The supplied refresh token has expired"),
            RefreshError::SessionExpired => {
                MatrixError::forbidden("The session has expired and can no longer be refreshed")
            }
        },
    };
    e.soft_logout = cfg.refresh_failure_soft_logout;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    #[test]
    fn profiles_word_failures_differently() {
        let syn = ServerConfig::for_profile(Profile::Synapse);
        let spec = ServerConfig::for_profile(Profile::Spec);
        let mas = ServerConfig::for_profile(Profile::Mas);
        assert_eq!(
            refresh_error(&syn, RefreshError::Consumed).status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            refresh_error(&spec, RefreshError::Consumed).errcode,
            "M_UNKNOWN_TOKEN"
        );
        assert_eq!(
            refresh_error(&mas, RefreshError::Consumed).error,
            "Invalid refresh token"
        );
        assert_eq!(access_error(&syn, AccessError::Expired).soft_logout, Some(true));
        assert_eq!(access_error(&mas, AccessError::Expired).soft_logout, Some(false));
        assert_eq!(
            access_error(&syn, AccessError::Unknown).body()["soft_logout"],
            false
        );
    }

    #[test]
    fn limit_exceeded_has_retry_after() {
        let resp = MatrixError::limit_exceeded(1500).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            resp.extensions().get::<ErrorInfo>().unwrap().errcode.as_deref(),
            Some("M_LIMIT_EXCEEDED")
        );
    }
}
