//! Matrix scopes (spec v1.15 "Scope"): the client-server API token and the device token, in their
//! stable and MSC2967 forms.

use super::error::{OAuthError, OAuthErrorCode};
use rand::RngExt;

/// Full client-server API access.
pub const API_SCOPE: &str = "urn:matrix:client:api:*";
/// The MSC2967 form of [`API_SCOPE`].
pub const API_SCOPE_UNSTABLE: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
/// The prefix of the device scope token: `urn:matrix:client:device:<device_id>`.
pub const DEVICE_PREFIX: &str = "urn:matrix:client:device:";
/// The MSC2967 form of [`DEVICE_PREFIX`].
pub const DEVICE_PREFIX_UNSTABLE: &str = "urn:matrix:org.matrix.msc2967.client:device:";

/// A scope checked for Matrix: it grants the client-server API and names at most one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixScope {
    /// The scope tokens, in the order given, without duplicates.
    pub tokens: Vec<String>,
    /// The device the scope names, if any.
    pub device_id: Option<String>,
}

impl MatrixScope {
    /// The scope as a space-separated string.
    pub fn to_scope_string(&self) -> String {
        self.tokens.join(" ")
    }

    /// Names a device when the scope named none: adds `urn:matrix:client:device:<id>`.
    pub fn with_device(mut self, device_id: &str) -> Self {
        if self.device_id.is_none() {
            self.tokens.push(format!("{DEVICE_PREFIX}{device_id}"));
            self.device_id = Some(device_id.to_owned());
        }
        self
    }
}

fn invalid_scope(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidScope, description)
}

/// Whether a device id uses only RFC 3986's unreserved characters (the spec lets a server refuse
/// any other), and is 1 to 255 of them.
pub fn is_valid_device_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A new random device id: ten upper-case letters, as the server picks for a legacy login.
pub fn new_device_id() -> String {
    let mut rng = rand::rng();
    (0..10)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}

/// Parses a requested scope (RFC 6749 §3.3): space-separated tokens of `%x21 / %x23-5B /
/// %x5D-7E`. It must grant the client-server API ([`API_SCOPE`] or its MSC2967 form) and may name
/// one device (both forms may name the same one). Other tokens (`openid`, …) are kept as they are.
/// Errors are `invalid_scope`.
///
/// ```
/// use rotary_server::parse_scope;
/// let s = parse_scope("urn:matrix:client:api:* urn:matrix:client:device:ABCDEF").unwrap();
/// assert_eq!(s.device_id.as_deref(), Some("ABCDEF"));
/// assert!(parse_scope("openid").is_err());
/// ```
pub fn parse_scope(scope: &str) -> Result<MatrixScope, OAuthError> {
    let mut tokens: Vec<String> = Vec::new();
    let mut device_id: Option<String> = None;
    let mut api = false;
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        let well_formed = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !well_formed {
            return Err(invalid_scope(format!(
                "scope token {token:?} has characters RFC 6749 §3.3 does not allow"
            )));
        }
        if token == API_SCOPE || token == API_SCOPE_UNSTABLE {
            api = true;
        }
        let device = token
            .strip_prefix(DEVICE_PREFIX)
            .or_else(|| token.strip_prefix(DEVICE_PREFIX_UNSTABLE));
        if let Some(id) = device {
            if !is_valid_device_id(id) {
                return Err(invalid_scope(format!(
                    "device id {id:?} must be 1 to 255 of A-Z a-z 0-9 - . _ ~"
                )));
            }
            match &device_id {
                Some(existing) if existing != id => {
                    return Err(invalid_scope(
                        "the scope names more than one device (there must be exactly one device scope token)",
                    ));
                }
                _ => device_id = Some(id.to_owned()),
            }
        }
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_owned());
        }
    }
    if !api {
        return Err(invalid_scope(format!(
            "the scope must grant the client-server API ({API_SCOPE})"
        )));
    }
    Ok(MatrixScope { tokens, device_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_scopes_in_both_forms() {
        let s = parse_scope(
            "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:DEV1",
        )
        .unwrap();
        assert_eq!(s.device_id.as_deref(), Some("DEV1"));
        let both =
            parse_scope("openid urn:matrix:client:api:* urn:matrix:client:device:D urn:matrix:org.matrix.msc2967.client:device:D")
                .unwrap();
        assert_eq!(both.tokens.len(), 4);
        let err =
            parse_scope("urn:matrix:client:api:* urn:matrix:client:device:A urn:matrix:client:device:B")
                .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidScope);
        assert!(parse_scope("urn:matrix:client:api:* urn:matrix:client:device:a/b").is_err());
        assert!(parse_scope("urn:matrix:client:api:* urn:matrix:client:device:").is_err());
        assert!(parse_scope("urn:matrix:client:api:* bad\"quote").is_err());
        assert!(parse_scope("").is_err());
    }

    #[test]
    fn a_device_is_added_only_when_missing() {
        let s = parse_scope("urn:matrix:client:api:*").unwrap().with_device("XYZ");
        assert_eq!(
            s.to_scope_string(),
            "urn:matrix:client:api:* urn:matrix:client:device:XYZ"
        );
        let kept = parse_scope("urn:matrix:client:api:*  urn:matrix:client:device:OLD")
            .unwrap()
            .with_device("NEW");
        assert_eq!(kept.device_id.as_deref(), Some("OLD"));
        assert!(is_valid_device_id(&new_device_id()));
    }
}
