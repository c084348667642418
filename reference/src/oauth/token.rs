//! The token endpoint's answers: the tokens of a success, OAuth errors as client errors, and what
//! one answer to a refresh means for the session.

use serde_json::Value;
use std::time::Duration;

use crate::api::Reply;
use crate::bugs::{Bug, Bugs};
use crate::error::ClientError;
use crate::refresh::{RefreshOutcome, RefreshedTokens};

/// `expires_in` (seconds) as a duration; negative values are clamped to zero, fractions kept.
pub(crate) fn expires_in(body: &Value) -> Option<Duration> {
    let v = body.get("expires_in")?;
    if let Some(secs) = v.as_u64() {
        return Some(Duration::from_secs(secs));
    }
    let secs = v.as_f64()?;
    Some(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX))
}

/// The tokens of a successful token response; `None` when it has no access token or one of a
/// type other than `Bearer` (RFC 6749 §7.1: a client must not use a token type it does not know).
pub(crate) fn parse_tokens(body: &Value) -> Option<RefreshedTokens> {
    let access_token = body.get("access_token")?.as_str().filter(|t| !t.is_empty())?;
    match body.get("token_type").and_then(Value::as_str) {
        Some(kind) if !kind.eq_ignore_ascii_case("bearer") => return None,
        _ => {}
    }
    Some(RefreshedTokens {
        access_token: access_token.to_owned(),
        refresh_token: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        expires_in: expires_in(body),
    })
}

/// Whether the body is an RFC 6749 §5.2 error (`{"error": "invalid_grant", …}`, no `errcode`).
fn oauth_error_code(reply: &Reply) -> Option<&str> {
    if reply.errcode().is_some() {
        return None;
    }
    reply.str_field("error")
}

/// A failed OAuth request as a client error. A Matrix-shaped body keeps its `errcode`; an RFC
/// 6749 error puts its code and description in the message.
pub(crate) fn oauth_error(reply: &Reply) -> ClientError {
    match oauth_error_code(reply) {
        Some(code) => {
            let message = match reply.str_field("error_description") {
                Some(description) => format!("{code}: {description}"),
                None => code.to_owned(),
            };
            ClientError::Http {
                status: reply.status,
                errcode: None,
                message,
            }
        }
        None => reply.to_error(),
    }
}

/// What one token-endpoint answer to a refresh means. `bugs` are the client's switches
/// (`oauth-4xx-not-logout`, `oauth-matrix-error-logout` change the answer).
pub(crate) fn classify(reply: &Reply, bugs: Bugs) -> RefreshOutcome {
    let status = reply.status;
    if reply.is_success() {
        return match reply.body.as_ref().and_then(parse_tokens) {
            Some(tokens) => RefreshOutcome::Tokens(tokens),
            None => RefreshOutcome::Transient {
                error: ClientError::Http {
                    status,
                    errcode: None,
                    message: "token response is not JSON with a Bearer access_token".into(),
                },
                retry_after: None,
            },
        };
    }
    let error = oauth_error(reply);
    // The bug: a Matrix error is read as "the homeserver refused the session".
    if reply.errcode().is_some() && bugs.has(Bug::OauthMatrixErrorLogout) {
        return RefreshOutcome::Definitive {
            error,
            soft_logout: false,
        };
    }
    if status == 429 {
        // Rate limited, whoever said it (a Matrix-shaped body comes from a rate limiter or a proxy
        // in front of the token endpoint): wait as long as asked, then try again.
        let retry_after = crate::refresh::retry_after_of(reply);
        return RefreshOutcome::Transient { error, retry_after };
    }
    if (400..500).contains(&status) {
        if bugs.has(Bug::Oauth4xxNotLogout) {
            return RefreshOutcome::Transient {
                error,
                retry_after: None,
            };
        }
        // The spec: any 4xx from the token endpoint means the session is over. OAuth has no soft
        // logout.
        return RefreshOutcome::Definitive {
            error,
            soft_logout: false,
        };
    }
    // 5xx (JSON or not), or anything else unexpected (1xx, 3xx): passing, as far as we can tell.
    RefreshOutcome::Transient {
        error,
        retry_after: None,
    }
}

/// A token response to a login (authorization code grant): the tokens, or what went wrong.
pub(crate) fn login_tokens(reply: Reply) -> Result<RefreshedTokens, ClientError> {
    if !reply.is_success() {
        return Err(oauth_error(&reply));
    }
    reply
        .body
        .as_ref()
        .and_then(parse_tokens)
        .ok_or_else(|| ClientError::Other("the token response has no Bearer access_token".into()))
}
