//! The mechanism-neutral notion of a refresh, in one place: a legacy `/refresh` request, or an
//! OAuth 2.0 token-endpoint request with `grant_type=refresh_token`. Checks count refreshes with
//! it, and fault rules and `request_count` match the neutral endpoint name [`REFRESH`] with it.
//!
//! ```
//! use rotary_judge::refresh::{endpoint_matches, is_refresh};
//! assert!(is_refresh("refresh", None));
//! assert!(is_refresh("oauth_token", Some("refresh_token")));
//! assert!(!is_refresh("oauth_token", Some("authorization_code")));
//! assert!(endpoint_matches("refresh", "oauth_token", Some("refresh_token")));
//! assert!(!endpoint_matches("legacy_refresh", "oauth_token", Some("refresh_token")));
//! assert!(endpoint_matches("oauth_token", "oauth_token", Some("authorization_code")));
//! ```

/// The neutral name: a refresh of either mechanism.
pub const REFRESH: &str = "refresh";
/// The legacy `/refresh` endpoint alone (`/v3`, `/r0`, `/v1` and the MSC2918 unstable path).
pub const LEGACY_REFRESH: &str = "legacy_refresh";
/// The OAuth 2.0 token endpoint (every grant).
pub const OAUTH_TOKEN: &str = "oauth_token";

/// Whether a request to `endpoint` (its trace name) with this `grant_type` (OAuth form field) is a
/// refresh.
pub fn is_refresh(endpoint: &str, grant_type: Option<&str>) -> bool {
    match endpoint {
        REFRESH => true,
        OAUTH_TOKEN => grant_type == Some("refresh_token"),
        _ => false,
    }
}

/// Whether the endpoint name a rule or check gives (`name`) names a request to `endpoint` with this
/// `grant_type`: [`REFRESH`] matches a refresh of either mechanism, [`LEGACY_REFRESH`] the legacy
/// `/refresh` alone, any other name the endpoint of that name.
pub fn endpoint_matches(name: &str, endpoint: &str, grant_type: Option<&str>) -> bool {
    match name {
        REFRESH => is_refresh(endpoint, grant_type),
        LEGACY_REFRESH => endpoint == REFRESH,
        other => other == endpoint,
    }
}

/// The names beyond the endpoints' own that [`endpoint_matches`] understands.
pub const EXTRA_NAMES: &[&str] = &[LEGACY_REFRESH];
