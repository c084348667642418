//! What a `/refresh` answer means for the client, and how long to wait before trying again.
//!
//! The rule (spec "Refreshing access tokens", and the OAuth 2.0 section for the same question):
//! only a definite "no" from the server ends the session. Anything that may be a passing problem —
//! no response, a 5xx, a 429, a body that is not what the spec says — is retried later with the
//! *same* refresh token, which the server keeps valid until the new tokens are used.

use serde_json::Value;
use std::time::Duration;

use crate::api::Reply;
use crate::error::ClientError;

/// First wait between refresh attempts; doubled after each failure.
pub const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait of the doubling backoff.
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Longest wait a 429's `retry_after_ms` / `Retry-After` can impose.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(10);

/// New tokens from a successful refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RefreshedTokens {
    /// The new access token.
    pub access_token: String,
    /// The new refresh token; `None` = keep using the old one.
    pub refresh_token: Option<String>,
    /// The new access token's lifetime; `None` = it does not expire.
    pub expires_in: Option<Duration>,
}

/// What one `/refresh` attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RefreshOutcome {
    /// New tokens.
    Tokens(RefreshedTokens),
    /// Possibly passing: try again later with the same refresh token.
    Transient {
        /// What to report if no attempt succeeds.
        error: ClientError,
        /// The wait the server asked for (429).
        retry_after: Option<Duration>,
    },
    /// The server refused the refresh token: the session is over.
    Definitive {
        /// The server's error.
        error: ClientError,
        /// The error body's `soft_logout` flag.
        soft_logout: bool,
    },
}

/// A `expires_in_ms` value as a duration (negative or fractional values are clamped).
pub(crate) fn expires_in(body: &Value) -> Option<Duration> {
    let v = body.get("expires_in_ms")?;
    // Negative means "already expired"; a float is read as whole milliseconds.
    let ms = v
        .as_u64()
        .or_else(|| v.as_i64().map(|_| 0))
        .or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))?;
    Some(Duration::from_millis(ms))
}

/// Sorts a complete `/refresh` reply (a network error is always [`RefreshOutcome::Transient`]).
/// How long a 429 asks the client to wait: the longer of the body's `retry_after_ms` and the
/// `Retry-After` header, if either is there.
pub(crate) fn retry_after_of(reply: &Reply) -> Option<Duration> {
    let from_body = reply
        .body
        .as_ref()
        .and_then(|b| b.get("retry_after_ms"))
        .and_then(Value::as_u64)
        .map(Duration::from_millis);
    match (from_body, reply.retry_after) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn classify(reply: &Reply) -> RefreshOutcome {
    let status = reply.status;
    if reply.is_success() {
        let tokens = reply.body.as_ref().and_then(|body| {
            Some(RefreshedTokens {
                access_token: body.get("access_token")?.as_str()?.to_owned(),
                refresh_token: body
                    .get("refresh_token")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                expires_in: expires_in(body),
            })
        });
        return match tokens {
            Some(t) => RefreshOutcome::Tokens(t),
            None => RefreshOutcome::Transient {
                error: ClientError::Http {
                    status,
                    errcode: None,
                    message: "refresh response is not JSON with an access_token".into(),
                },
                retry_after: None,
            },
        };
    }
    if status == 429 {
        let retry_after = retry_after_of(reply);
        return RefreshOutcome::Transient {
            error: reply.to_error(),
            retry_after,
        };
    }
    // A 4xx that is a Matrix error is the server's answer about the token. A 4xx without one came
    // from something else on the way (a proxy, a load balancer) and says nothing about it.
    if (400..500).contains(&status) && reply.errcode().is_some() {
        return RefreshOutcome::Definitive {
            error: reply.to_error(),
            soft_logout: reply.soft_logout(),
        };
    }
    RefreshOutcome::Transient {
        error: reply.to_error(),
        retry_after: None,
    }
}

/// How long to wait after the `failures`-th failed attempt (1-based): 200 ms doubling up to 2 s, or
/// the server's `retry_after` if longer (at most 10 s). `no_wait` is the `ignore-retry-after` bug.
pub fn retry_delay(failures: u32, retry_after: Option<Duration>, no_wait: bool) -> Duration {
    if no_wait {
        return Duration::ZERO;
    }
    let doublings = failures.saturating_sub(1).min(16);
    let backoff = BACKOFF_START.saturating_mul(1 << doublings).min(BACKOFF_CAP);
    match retry_after {
        Some(wait) => backoff.max(wait.min(RETRY_AFTER_CAP)),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, body: Option<Value>) -> Reply {
        Reply {
            status,
            retry_after: None,
            body,
        }
    }

    #[test]
    fn success() {
        let r = reply(
            200,
            Some(json!({"access_token": "a", "refresh_token": "r", "expires_in_ms": 300000})),
        );
        assert_eq!(
            classify(&r),
            RefreshOutcome::Tokens(RefreshedTokens {
                access_token: "a".into(),
                refresh_token: Some("r".into()),
                expires_in: Some(Duration::from_secs(300)),
            })
        );
        let bare = reply(200, Some(json!({"access_token": "a"})));
        assert!(
            matches!(classify(&bare), RefreshOutcome::Tokens(t) if t.refresh_token.is_none() && t.expires_in.is_none())
        );
    }

    #[test]
    fn transient_and_definitive() {
        for r in [
            reply(200, None),
            reply(200, Some(json!({"refresh_token": "r"}))),
            reply(500, Some(json!({"errcode": "M_UNKNOWN", "error": "boom"}))),
            reply(502, None),
            reply(400, None),
        ] {
            assert!(matches!(classify(&r), RefreshOutcome::Transient { .. }), "{r:?}");
        }
        let limited = Reply {
            status: 429,
            retry_after: Some(Duration::from_secs(1)),
            body: Some(json!({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 3000})),
        };
        assert!(matches!(
            classify(&limited),
            RefreshOutcome::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        let unknown = reply(401, Some(json!({"errcode": "M_UNKNOWN_TOKEN", "error": "gone"})));
        assert!(matches!(
            classify(&unknown),
            RefreshOutcome::Definitive {
                soft_logout: false,
                ..
            }
        ));
        let soft = reply(
            401,
            Some(json!({"errcode": "M_UNKNOWN_TOKEN", "soft_logout": true})),
        );
        assert!(matches!(
            classify(&soft),
            RefreshOutcome::Definitive {
                soft_logout: true,
                ..
            }
        ));
        let forbidden = reply(403, Some(json!({"errcode": "M_FORBIDDEN"})));
        assert!(matches!(classify(&forbidden), RefreshOutcome::Definitive { .. }));
    }

    #[test]
    fn backoff() {
        let ms = Duration::from_millis;
        assert_eq!(retry_delay(1, None, false), ms(200));
        assert_eq!(retry_delay(2, None, false), ms(400));
        assert_eq!(retry_delay(4, None, false), ms(1600));
        assert_eq!(retry_delay(5, None, false), ms(2000));
        assert_eq!(retry_delay(99, None, false), ms(2000));
        assert_eq!(retry_delay(1, Some(ms(3000)), false), ms(3000));
        assert_eq!(retry_delay(5, Some(ms(100)), false), ms(2000));
        assert_eq!(retry_delay(1, Some(ms(60_000)), false), ms(10_000));
        assert_eq!(retry_delay(3, Some(ms(3000)), true), Duration::ZERO);
    }
}
