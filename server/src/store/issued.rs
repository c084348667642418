//! What the store hands out: issued tokens, authenticated owners, device listings and OAuth grants.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The OAuth 2.0 grant an OAuth session was created by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthGrant {
    /// The client the session belongs to.
    pub client_id: String,
    /// The granted scope, space-separated (it names the device).
    pub scope: String,
}

/// Tokens handed out by a login, registration, refresh or mint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The full user id.
    pub user_id: String,
    /// The device the tokens belong to.
    pub device_id: String,
    /// The new access token (a secret: never put it in a trace).
    pub access_token: String,
    /// Its label, e.g. `at#4`.
    pub access_label: String,
    /// The new refresh token, if one was issued.
    pub refresh_token: Option<String>,
    /// Its label.
    pub refresh_label: Option<String>,
    /// Expiry of the access token, ms since the epoch; `None` = never.
    pub valid_until_ms: Option<i64>,
}

impl Issued {
    /// `expires_in_ms` as Synapse computes it: the expiry minus the time of the response.
    pub fn expires_in_ms(&self, now_ms: i64) -> Option<i64> {
        self.valid_until_ms.map(|v| v - now_ms)
    }
}

/// [`Issued`] as the request path takes it: the tokens and ids shared with the store, the labels
/// made once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedShared {
    /// Who the tokens belong to.
    pub owner: Owner,
    /// The new access token (a secret: never put it in a trace).
    pub access_token: Arc<str>,
    /// Its label, e.g. `at#4`.
    pub access_label: String,
    /// The new refresh token, if one was issued.
    pub refresh_token: Option<Arc<str>>,
    /// Its label.
    pub refresh_label: Option<String>,
    /// Expiry of the access token, ms since the epoch; `None` = never.
    pub valid_until_ms: Option<i64>,
}

impl From<IssuedShared> for Issued {
    fn from(s: IssuedShared) -> Issued {
        Issued {
            user_id: s.owner.user_id.to_string(),
            device_id: s.owner.device_id.to_string(),
            access_token: s.access_token.to_string(),
            access_label: s.access_label,
            refresh_token: s.refresh_token.map(|t| t.to_string()),
            refresh_label: s.refresh_label,
            valid_until_ms: s.valid_until_ms,
        }
    }
}

/// Who a valid access token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authed {
    /// The full user id.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The token's label.
    pub label: String,
}

/// The user and device a token was issued to, shared with the store (no copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The full user id.
    pub user_id: Arc<str>,
    /// The device.
    pub device_id: Arc<str>,
}

/// A device of a user, as `GET /devices` and the control API list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// The device id.
    pub device_id: String,
    /// The owner.
    pub user_id: String,
    /// The display name given at login.
    pub display_name: Option<String>,
    /// Labels of the access tokens that still work.
    pub live_access_tokens: Vec<String>,
    /// Labels of the refresh tokens not yet deleted.
    pub live_refresh_tokens: Vec<String>,
    /// Label of the newest refresh token.
    pub current_refresh_token: Option<String>,
    /// The OAuth client of an OAuth 2.0 session (absent for legacy sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_client_id: Option<String>,
}
