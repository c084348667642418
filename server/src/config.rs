//! Server personalities: the profiles and every knob they set, with TOML/JSON (de)serialisation.

use crate::duration;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A named bundle of knobs: which real server the mock imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Exactly what Synapse 1.163 does (the default).
    #[default]
    Synapse,
    /// The Matrix spec's and MSC2918's wording: 401 for reused tokens, rate-limited `/refresh`.
    Spec,
    /// matrix-authentication-service's compat layer: single-use refresh tokens.
    Mas,
    /// A server without refresh support: the login flag is ignored and `/refresh` is 404.
    NoRefresh,
    /// The spec's wording for the legacy API plus the OAuth 2.0 API with the spec's SHOULD: a
    /// replayed, invalidated refresh token revokes the whole session.
    #[serde(rename = "oauth-spec")]
    OAuthSpec,
}

impl Profile {
    /// Every profile, in documentation order.
    pub const ALL: [Profile; 5] = [
        Profile::Synapse,
        Profile::Spec,
        Profile::Mas,
        Profile::NoRefresh,
        Profile::OAuthSpec,
    ];

    /// The profile's name as written in flags and files.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Synapse => "synapse",
            Profile::Spec => "spec",
            Profile::Mas => "mas",
            Profile::NoRefresh => "no-refresh",
            Profile::OAuthSpec => "oauth-spec",
        }
    }

    /// One line saying what the profile imitates.
    pub fn summary(self) -> &'static str {
        match self {
            Profile::Synapse => {
                "Synapse 1.163: old refresh token valid until the successor is used, then 403 M_FORBIDDEN"
            }
            Profile::Spec => {
                "spec/MSC2918 wording: reused refresh token 401 M_UNKNOWN_TOKEN, rate-limited /refresh"
            }
            Profile::Mas => {
                "MAS: compat layer with single-use refresh tokens, plus OAuth 2.0 (replay allowed while the successor is unused)"
            }
            Profile::NoRefresh => {
                "no refresh support: login flag ignored, /refresh answers 404 M_UNRECOGNIZED"
            }
            Profile::OAuthSpec => {
                "spec wording plus OAuth 2.0 where replaying an invalidated refresh token revokes the session"
            }
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown profile name.
#[derive(Debug, thiserror::Error)]
#[error("unknown profile {0:?}; choose one of: synapse, spec, mas, no-refresh, oauth-spec")]
pub struct UnknownProfile(String);

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// What happens when a refresh token that was already exchanged is presented again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReusePolicy {
    /// The old token stays valid until the successor pair is used; afterwards 403 `M_FORBIDDEN`
    /// (Synapse).
    GraceThenForbidden,
    /// The same grace window; afterwards 401 `M_UNKNOWN_TOKEN` (the spec's wording).
    GraceThenUnknown,
    /// No grace: a refresh token works exactly once (MAS compat layer).
    SingleUse,
}

/// What the OAuth 2.0 token endpoint does with a refresh token that was already exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OAuthReusePolicy {
    /// Accepted again while its successor pair is unused (neither the new access token used nor
    /// the new refresh token exchanged); the unused pair is then revoked. Afterwards
    /// `invalid_grant` (MAS).
    Grace,
    /// Exchanged exactly once; any second exchange is `invalid_grant`.
    SingleUse,
}

/// The wording of error bodies and the shape of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// Synapse's messages and `syt_`/`syr_` tokens.
    Synapse,
    /// The spec's messages and `syt_`/`syr_` tokens.
    Spec,
    /// MAS's messages (`Token is not active`, `Invalid refresh token`) and `mct_`/`mcr_` tokens.
    Mas,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: u32,
}

/// Every knob of the mock homeserver. A profile sets them all; each can then be changed alone.
///
/// ```
/// use rotary_server::{Profile, ServerConfig, ReusePolicy};
/// let cfg = ServerConfig::for_profile(Profile::Mas);
/// assert_eq!(cfg.reuse_policy, ReusePolicy::SingleUse);
/// assert!(cfg.revoke_old_access_token);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The profile these knobs started from.
    pub profile: Profile,
    /// The server name in user ids (`@alice:localhost`).
    pub server_name: String,
    /// Lifetime of access tokens issued with a refresh token; `None` turns refresh support off.
    #[serde(with = "duration::optional")]
    pub refreshable_access_token_lifetime: Option<Duration>,
    /// Lifetime of refresh tokens; `None` = they never expire.
    #[serde(with = "duration::optional")]
    pub refresh_token_lifetime: Option<Duration>,
    /// Lifetime of access tokens issued without a refresh token; `None` = never expire.
    #[serde(with = "duration::optional")]
    pub nonrefreshable_access_token_lifetime: Option<Duration>,
    /// Cap on every expiry of a login session; `None` = unlimited.
    #[serde(with = "duration::optional")]
    pub session_lifetime: Option<Duration>,
    /// Whether `/refresh` issues a new refresh token (otherwise the response has none).
    pub rotate_refresh_tokens: bool,
    /// What a reused refresh token gets.
    pub reuse_policy: ReusePolicy,
    /// Whether a refresh revokes the access tokens of the refresh token it consumed.
    pub revoke_old_access_token: bool,
    /// Synapse quirk: an access token that was used keeps working (until its expiry) after a later
    /// refresh deleted its generation, because Synapse's token cache outlives the row.
    pub keep_used_access_token_of_dropped_generation: bool,
    /// Wording of error bodies and shape of tokens.
    pub dialect: Dialect,
    /// `soft_logout` added to every `/refresh` failure (`None` = no such field).
    pub refresh_failure_soft_logout: Option<bool>,
    /// `soft_logout` in the 401 for an expired access token.
    pub expired_token_soft_logout: bool,
    /// Rate limit on `/refresh` (`None` = none), measured on the server clock.
    pub refresh_rate_limit: Option<RateLimit>,
    /// Serve `/_matrix/client/v1/refresh` (only matrix-ios-sdk calls it; Synapse answers 404).
    pub serve_v1_refresh: bool,
    /// Serve `/_matrix/client/unstable/org.matrix.msc2918/refresh`.
    pub serve_unstable_refresh: bool,
    /// Read the unstable `org.matrix.msc2918.refresh_token` login/register field (Synapse 1.163
    /// no longer does; the `spec` profile does, as MSC2918 defines it).
    pub accept_unstable_refresh_flag: bool,
    /// Largest accepted request body in bytes (413 `M_TOO_LARGE` above).
    pub max_body_bytes: usize,
    /// Longest `/sync` long-poll the server will hold, whatever `timeout` asks.
    #[serde(with = "duration::required")]
    pub max_sync_timeout: Duration,
    /// Send `expires_in_ms` in login, register and refresh responses. When off, tokens still
    /// expire, but the client learns it only from a 401 (the spec makes the field optional).
    #[serde(default = "yes")]
    pub send_expires_in_ms: bool,
    /// Serve the OAuth 2.0 API (Matrix v1.15 / MSC3861): `GET /_matrix/client/v1/auth_metadata`
    /// and `/oauth2/{registration,authorize,token,revoke}`. Off: they answer 404 `M_UNRECOGNIZED`.
    #[serde(default)]
    pub oauth: bool,
    /// What the OAuth token endpoint does with a refresh token that was already exchanged.
    #[serde(default = "grace")]
    pub oauth_reuse_policy: OAuthReusePolicy,
    /// The spec's SHOULD: an old, invalidated OAuth refresh token presented again revokes the
    /// whole session (device). MAS does not.
    #[serde(default)]
    pub oauth_replay_revokes_session: bool,
    /// Whether an OAuth refresh revokes the access token of the refresh token it consumed at once
    /// (MAS); otherwise it lives until its expiry.
    #[serde(default = "yes")]
    pub oauth_revoke_old_access_token: bool,
    /// How long an authorization code may wait before it is exchanged (MAS: 10 minutes).
    #[serde(default = "ten_minutes", with = "duration::required")]
    pub oauth_code_lifetime: Duration,
    /// A replayed authorization code is always refused (`invalid_grant`); when the replay comes
    /// later than this after the exchange, the session the code created is revoked too (RFC 6749
    /// §4.1.2; MAS waits 20 s). `None` = never revoke.
    #[serde(default = "twenty_seconds", with = "duration::optional")]
    pub oauth_code_replay_grace: Option<Duration>,
}

fn grace() -> OAuthReusePolicy {
    OAuthReusePolicy::Grace
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

fn twenty_seconds() -> Option<Duration> {
    Some(Duration::from_secs(20))
}

fn yes() -> bool {
    true
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::for_profile(Profile::Synapse)
    }
}

const FIVE_MINUTES: Duration = Duration::from_secs(300);

impl ServerConfig {
    /// All knobs as the given profile sets them.
    pub fn for_profile(profile: Profile) -> Self {
        let synapse = ServerConfig {
            profile,
            server_name: "localhost".to_owned(),
            refreshable_access_token_lifetime: Some(FIVE_MINUTES),
            refresh_token_lifetime: None,
            nonrefreshable_access_token_lifetime: None,
            session_lifetime: None,
            rotate_refresh_tokens: true,
            reuse_policy: ReusePolicy::GraceThenForbidden,
            revoke_old_access_token: false,
            keep_used_access_token_of_dropped_generation: true,
            dialect: Dialect::Synapse,
            refresh_failure_soft_logout: None,
            expired_token_soft_logout: true,
            refresh_rate_limit: None,
            serve_v1_refresh: false,
            serve_unstable_refresh: false,
            accept_unstable_refresh_flag: false,
            max_body_bytes: 1024 * 1024,
            max_sync_timeout: Duration::from_secs(60),
            send_expires_in_ms: true,
            oauth: false,
            oauth_reuse_policy: OAuthReusePolicy::Grace,
            oauth_replay_revokes_session: false,
            oauth_revoke_old_access_token: true,
            oauth_code_lifetime: ten_minutes(),
            oauth_code_replay_grace: twenty_seconds(),
        };
        match profile {
            Profile::Synapse => synapse,
            Profile::Spec | Profile::OAuthSpec => ServerConfig {
                reuse_policy: ReusePolicy::GraceThenUnknown,
                keep_used_access_token_of_dropped_generation: false,
                dialect: Dialect::Spec,
                refresh_rate_limit: Some(RateLimit {
                    per_second: 1.0,
                    burst: 5,
                }),
                serve_unstable_refresh: true,
                accept_unstable_refresh_flag: true,
                oauth: profile == Profile::OAuthSpec,
                // The spec's reading: a refresh token is invalidated by its use, so presenting it
                // again is a replay, and the SHOULD revokes the session.
                oauth_reuse_policy: if profile == Profile::OAuthSpec {
                    OAuthReusePolicy::SingleUse
                } else {
                    OAuthReusePolicy::Grace
                },
                oauth_replay_revokes_session: profile == Profile::OAuthSpec,
                oauth_code_replay_grace: if profile == Profile::OAuthSpec {
                    Some(Duration::ZERO)
                } else {
                    twenty_seconds()
                },
                ..synapse
            },
            Profile::Mas => ServerConfig {
                reuse_policy: ReusePolicy::SingleUse,
                revoke_old_access_token: true,
                keep_used_access_token_of_dropped_generation: false,
                dialect: Dialect::Mas,
                refresh_failure_soft_logout: None,
                expired_token_soft_logout: false,
                oauth: true,
                ..synapse
            },
            Profile::NoRefresh => ServerConfig {
                refreshable_access_token_lifetime: None,
                ..synapse
            },
        }
    }

    /// Whether refresh tokens are issued at all.
    pub fn refresh_enabled(&self) -> bool {
        self.refreshable_access_token_lifetime.is_some()
    }

    /// Checks the knobs for values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let lifetimes = [
            (
                "refreshable_access_token_lifetime",
                self.refreshable_access_token_lifetime,
            ),
            ("refresh_token_lifetime", self.refresh_token_lifetime),
            (
                "nonrefreshable_access_token_lifetime",
                self.nonrefreshable_access_token_lifetime,
            ),
            ("session_lifetime", self.session_lifetime),
        ];
        for (name, value) in lifetimes {
            if value == Some(Duration::ZERO) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be longer than 0 (use \"none\" to switch it off)"
                )));
            }
        }
        if let Some(rl) = self.refresh_rate_limit
            && (!(rl.per_second > 0.0 && rl.per_second.is_finite()) || rl.burst == 0)
        {
            return Err(ConfigError::Invalid(
                "refresh_rate_limit needs per_second > 0 and burst >= 1".to_owned(),
            ));
        }
        if self.server_name.is_empty() || self.server_name.contains(['/', ' ', '@']) {
            return Err(ConfigError::Invalid(format!(
                "server_name {:?} is not a valid server name",
                self.server_name
            )));
        }
        if self.oauth_code_lifetime.is_zero() {
            return Err(ConfigError::Invalid(
                "oauth_code_lifetime must be longer than 0".to_owned(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".to_owned(),
            ));
        }
        Ok(())
    }

    /// Applies a partial JSON object of knobs. A `profile` in the patch first resets every knob
    /// to that profile's values; the other fields then override.
    ///
    /// ```
    /// use rotary_server::{Profile, ServerConfig};
    /// let cfg = ServerConfig::default()
    ///     .patched(&serde_json::json!({"profile": "mas", "rotate_refresh_tokens": false}))
    ///     .unwrap();
    /// assert_eq!(cfg.profile, Profile::Mas);
    /// assert!(!cfg.rotate_refresh_tokens);
    /// ```
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Self, ConfigError> {
        let serde_json::Value::Object(fields) = patch else {
            return Err(ConfigError::Invalid(
                "a config patch must be a JSON object of knobs".to_owned(),
            ));
        };
        let base = match fields.get("profile") {
            Some(p) => {
                let profile: Profile = serde_json::from_value(p.clone())
                    .map_err(|e| ConfigError::Invalid(format!("profile: {e}")))?;
                ServerConfig {
                    server_name: self.server_name.clone(),
                    ..ServerConfig::for_profile(profile)
                }
            }
            None => self.clone(),
        };
        let mut merged = serde_json::to_value(&base)
            .map_err(|e| ConfigError::Invalid(format!("cannot serialise config: {e}")))?;
        if let serde_json::Value::Object(m) = &mut merged {
            for (k, v) in fields {
                m.insert(k.clone(), v.clone());
            }
        }
        let cfg: ServerConfig =
            serde_json::from_value(merged).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a TOML table of knobs (the same names, snake case) over the given profile's values.
    ///
    /// ```
    /// use rotary_server::ServerConfig;
    /// let cfg = ServerConfig::from_toml("profile = \"spec\"\nrefreshable_access_token_lifetime = \"3s\"").unwrap();
    /// assert_eq!(cfg.refreshable_access_token_lifetime, Some(std::time::Duration::from_secs(3)));
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        let json = serde_json::to_value(&table).map_err(|e| ConfigError::Toml(e.to_string()))?;
        ServerConfig::default().patched(&json)
    }
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A knob has an impossible value or an unknown name.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// The TOML could not be parsed.
    #[error("invalid TOML config: {0}")]
    Toml(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_differ_where_documented() {
        let s = ServerConfig::for_profile(Profile::Synapse);
        let spec = ServerConfig::for_profile(Profile::Spec);
        let mas = ServerConfig::for_profile(Profile::Mas);
        let none = ServerConfig::for_profile(Profile::NoRefresh);
        assert_eq!(s.reuse_policy, ReusePolicy::GraceThenForbidden);
        assert_eq!(spec.reuse_policy, ReusePolicy::GraceThenUnknown);
        assert!(spec.refresh_rate_limit.is_some());
        assert_eq!(mas.reuse_policy, ReusePolicy::SingleUse);
        assert!(!none.refresh_enabled());
        assert_eq!(s.refreshable_access_token_lifetime, Some(FIVE_MINUTES));
    }

    #[test]
    fn oauth_profiles_and_knobs_round_trip() {
        let mas = ServerConfig::for_profile(Profile::Mas);
        let spec = ServerConfig::for_profile(Profile::OAuthSpec);
        assert!(mas.oauth && spec.oauth);
        assert_eq!(mas.reuse_policy, ReusePolicy::SingleUse);
        assert_eq!(spec.reuse_policy, ReusePolicy::GraceThenUnknown);
        assert_eq!(mas.oauth_reuse_policy, OAuthReusePolicy::Grace);
        assert_eq!(spec.oauth_reuse_policy, OAuthReusePolicy::SingleUse);
        assert!(!mas.oauth_replay_revokes_session && spec.oauth_replay_revokes_session);
        assert_eq!(spec.oauth_code_replay_grace, Some(Duration::ZERO));
        assert_eq!(spec.profile.name(), "oauth-spec");
        for profile in Profile::ALL {
            let cfg = ServerConfig::for_profile(profile);
            assert_eq!(cfg.oauth, matches!(profile, Profile::Mas | Profile::OAuthSpec));
            let json = serde_json::to_value(&cfg).unwrap();
            assert_eq!(json["profile"], profile.name());
            assert_eq!(ServerConfig::default().patched(&json).unwrap(), cfg);
        }
        // Configs written before the OAuth knobs existed still load.
        let mut old = serde_json::to_value(ServerConfig::default()).unwrap();
        for knob in [
            "oauth",
            "oauth_reuse_policy",
            "oauth_replay_revokes_session",
            "oauth_revoke_old_access_token",
            "oauth_code_lifetime",
            "oauth_code_replay_grace",
        ] {
            old.as_object_mut().unwrap().remove(knob);
        }
        let loaded: ServerConfig = serde_json::from_value(old).unwrap();
        assert_eq!(loaded, ServerConfig::default());
    }

    #[test]
    fn patch_rejects_unknown_knobs_and_bad_values() {
        let base = ServerConfig::default();
        let err = base.patched(&serde_json::json!({"rotate": true})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = base
            .patched(&serde_json::json!({"session_lifetime": "0s"}))
            .unwrap_err();
        assert!(err.to_string().contains("session_lifetime"), "{err}");
        let err = base
            .patched(&serde_json::json!({"profile": "dendrite"}))
            .unwrap_err();
        assert!(err.to_string().contains("dendrite"), "{err}");
        assert!(base.patched(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn patch_accepts_durations_as_text_numbers_and_none() {
        let cfg = ServerConfig::default()
            .patched(&serde_json::json!({
                "refreshable_access_token_lifetime": 1500,
                "refresh_token_lifetime": "2m",
                "session_lifetime": null,
            }))
            .unwrap();
        assert_eq!(
            cfg.refreshable_access_token_lifetime,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(cfg.refresh_token_lifetime, Some(Duration::from_secs(120)));
        let off = ServerConfig::from_toml("refreshable_access_token_lifetime = \"none\"").unwrap();
        assert!(!off.refresh_enabled());
    }

    #[test]
    fn toml_errors_name_the_problem() {
        let err = ServerConfig::from_toml("refresh_token_lifetime = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        assert!(ServerConfig::from_toml("not toml [").is_err());
    }
}
