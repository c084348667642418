//! What the proxy reads from the bodies it buffers: the request fields the trace records as flags,
//! the refresh token a request presents, and the tokens and identity an answer issues — without
//! ever copying a raw token into the trace.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Endpoints whose request body the proxy buffers (they are small and carry what the trace needs).
pub fn buffers_request(endpoint: &str) -> bool {
    matches!(
        endpoint,
        "login" | "register" | "refresh" | "oauth_token" | "oauth_revoke" | "send"
    )
}

/// Endpoints whose successful answer the proxy buffers to learn from (tokens, identity, discovery).
pub fn buffers_response(endpoint: &str, method: &str, path: &str) -> bool {
    matches!(
        endpoint,
        "login"
            | "register"
            | "refresh"
            | "oauth_token"
            | "whoami"
            | "well_known"
            | "auth_metadata"
            | "logout"
            | "logout_all"
            | "oauth_revoke"
    ) || (endpoint == "device" && method == "DELETE")
        || super::discovery::is_metadata_path(path)
}

/// What a request body says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFacts {
    /// Flags for the trace (`refresh_token: true` on a login, `grant_type`, `txn_id`, …).
    pub flags: BTreeMap<String, Value>,
    /// The refresh token presented (a `/refresh` body, the OAuth refresh grant's form).
    pub refresh_token: Option<String>,
    /// A token an OAuth revocation names.
    pub revoked_token: Option<String>,
}

/// Reads a buffered request body.
///
/// ```
/// use rotary_rollout::proxy::learn::request_facts;
/// let f = request_facts("login", br#"{"type":"m.login.password","refresh_token":true,"password":"x"}"#);
/// assert_eq!(f.flags["refresh_token"], true);
/// assert!(!f.flags.contains_key("password"));
/// let f = request_facts("oauth_token", b"grant_type=refresh_token&refresh_token=secret&client_id=c");
/// assert_eq!((f.flags["grant_type"].as_str(), f.refresh_token.as_deref()), (Some("refresh_token"), Some("secret")));
/// ```
pub fn request_facts(endpoint: &str, body: &[u8]) -> RequestFacts {
    let mut out = RequestFacts::default();
    match endpoint {
        "login" | "register" | "refresh" => {
            let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
                return out;
            };
            if endpoint == "refresh" {
                out.refresh_token = m.get("refresh_token").and_then(Value::as_str).map(str::to_owned);
                return out;
            }
            for key in [
                "refresh_token",
                "org.matrix.msc2918.refresh_token",
                "inhibit_login",
                "device_id",
            ] {
                if let Some(v) = m.get(key) {
                    out.flags.insert(key.to_owned(), v.clone());
                }
            }
            if let Some(t) = m.get("type").and_then(Value::as_str) {
                out.flags.insert("type".to_owned(), json!(t));
            }
        }
        "oauth_token" | "oauth_revoke" => {
            for (k, v) in url::form_urlencoded::parse(body) {
                match k.as_ref() {
                    "grant_type" => {
                        out.flags.insert("grant_type".into(), json!(v));
                    }
                    "refresh_token" => out.refresh_token = Some(v.into_owned()),
                    "token" if endpoint == "oauth_revoke" => out.revoked_token = Some(v.into_owned()),
                    "token_type_hint" => {
                        out.flags.insert("token_type_hint".into(), json!(v));
                    }
                    _ => {}
                }
            }
            if out.flags.get("grant_type").and_then(Value::as_str) != Some("refresh_token") {
                out.refresh_token = None;
            }
        }
        "send" => {
            out.flags
                .insert("body_hash".into(), json!(rotary_judge::trace::body_hash(body)));
        }
        _ => {}
    }
    out
}

/// What an answer issued.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Issued {
    /// The new access token.
    pub access_token: String,
    /// The new refresh token, if the answer had one.
    pub refresh_token: Option<String>,
    /// The announced lifetime, ms (`expires_in_ms`, or OAuth's `expires_in` seconds).
    pub expires_in_ms: Option<i64>,
    /// The user, if the answer names it.
    pub user_id: Option<String>,
    /// The device, if the answer names it (or the OAuth scope does).
    pub device_id: Option<String>,
}

/// The device an OAuth scope grants (`urn:matrix:client:device:ID`, or the MSC2967 form).
pub fn device_from_scope(scope: &str) -> Option<&str> {
    scope.split(' ').find_map(|s| {
        s.strip_prefix("urn:matrix:client:device:")
            .or_else(|| s.strip_prefix("urn:matrix:org.matrix.msc2967.client:device:"))
    })
}

/// Reads the tokens a successful login, register, refresh or token-endpoint answer issued.
///
/// ```
/// use rotary_rollout::proxy::learn::issued;
/// let body = serde_json::json!({"access_token": "a", "expires_in": 300, "refresh_token": "r", "scope": "urn:matrix:client:device:PHONE"});
/// let i = issued("oauth_token", body.as_object().unwrap()).unwrap();
/// assert_eq!((i.expires_in_ms, i.device_id.as_deref()), (Some(300_000), Some("PHONE")));
/// ```
pub fn issued(endpoint: &str, body: &Map<String, Value>) -> Option<Issued> {
    let access_token = body.get("access_token")?.as_str()?.to_owned();
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let expires_in_ms = if endpoint == "oauth_token" {
        body.get("expires_in")
            .and_then(Value::as_i64)
            .map(|s| s.saturating_mul(1000))
    } else {
        body.get("expires_in_ms").and_then(Value::as_i64)
    };
    let device_id = text("device_id").or_else(|| {
        body.get("scope")
            .and_then(Value::as_str)
            .and_then(device_from_scope)
            .map(str::to_owned)
    });
    Some(Issued {
        access_token,
        refresh_token: text("refresh_token"),
        expires_in_ms,
        user_id: text("user_id"),
        device_id,
    })
}

/// The Matrix `errcode` and `soft_logout` of an error body (or OAuth's `error`).
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<bool>) {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let errcode = m
        .get("errcode")
        .or_else(|| m.get("error").filter(|_| !m.contains_key("errcode")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    (errcode, m.get("soft_logout").and_then(Value::as_bool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_become_flags() {
        let f = request_facts("refresh", br#"{"refresh_token":"secret"}"#);
        assert!(f.flags.is_empty());
        assert_eq!(f.refresh_token.as_deref(), Some("secret"));
        let f = request_facts(
            "oauth_token",
            b"grant_type=authorization_code&code=c&refresh_token=x",
        );
        assert_eq!(f.refresh_token, None, "only the refresh grant presents one");
        let f = request_facts("oauth_revoke", b"token=secret&token_type_hint=refresh_token");
        assert_eq!(f.revoked_token.as_deref(), Some("secret"));
        assert!(
            !serde_json::to_string(&f.flags)
                .unwrap_or_default()
                .contains("secret")
        );
    }

    #[test]
    fn garbage_bodies_give_nothing() {
        assert_eq!(request_facts("login", b"\xff{"), RequestFacts::default());
        assert_eq!(request_facts("refresh", b"[\"rt\"]"), RequestFacts::default());
        assert_eq!(error_fields(b"<html>"), (None, None));
        let body = json!({"access_token": 5});
        assert_eq!(issued("login", body.as_object().unwrap_or(&Map::new())), None);
    }

    #[test]
    fn error_bodies_of_both_dialects() {
        assert_eq!(
            error_fields(br#"{"errcode":"M_UNKNOWN_TOKEN","soft_logout":true}"#),
            (Some("M_UNKNOWN_TOKEN".into()), Some(true))
        );
        assert_eq!(
            error_fields(br#"{"error":"invalid_grant"}"#),
            (Some("invalid_grant".into()), None)
        );
    }
}
