//! Dynamic client registration (RFC 7591, with the Matrix spec's redirect URI rules): the metadata a
//! client sends, its checks, and the registered client.

use super::error::{OAuthError, OAuthErrorCode};
use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// A grant type the token endpoint serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `authorization_code` (RFC 6749 §4.1).
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
}

impl GrantType {
    /// The name as sent in `grant_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    /// The grant type a `grant_type` value names, if it is one the server serves.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            _ => None,
        }
    }
}

/// What kind of client registers (OpenID Connect Registration §2, used by the Matrix spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    /// A web client (the default): `https` redirect URIs (Rotary also takes `http` on a loopback
    /// host, for local testing).
    #[default]
    Web,
    /// A native client: private-use scheme, loopback `http` or `https` redirect URIs.
    Native,
}

/// Client metadata as sent to the registration endpoint (RFC 7591 §2). Unknown fields, including
/// localized ones such as `client_name#fr`, are ignored as RFC 7591 §2 asks.
///
/// ```
/// use rotary_server::ClientMetadata;
/// let m: ClientMetadata = serde_json::from_value(serde_json::json!({
///     "client_name": "Example",
///     "redirect_uris": ["http://127.0.0.1/callback"],
///     "grant_types": ["authorization_code", "refresh_token"],
///     "token_endpoint_auth_method": "none",
/// })).unwrap();
/// assert_eq!(m.redirect_uris.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// Redirect URIs; required for the `authorization_code` grant.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Grant types; RFC 7591's default is `["authorization_code"]`. Types the server does not
    /// serve are dropped from the registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    /// Response types; default `["code"]`, the only one served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    /// Only `none` (a public client) is served; absent means `none` here (RFC 7591 §3.2.1 lets a
    /// server replace a requested value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// `web` (default) or `native`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// A name to show people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Its logo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// Its terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// Its privacy policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
}

impl ClientMetadata {
    /// A public native client with both grants and these redirect URIs — what the harness
    /// registers for minted sessions.
    pub fn public_client(redirect_uris: &[&str]) -> Self {
        ClientMetadata {
            redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
            grant_types: Some(vec![
                GrantType::AuthorizationCode.as_str().to_owned(),
                GrantType::RefreshToken.as_str().to_owned(),
            ]),
            response_types: Some(vec!["code".to_owned()]),
            token_endpoint_auth_method: Some("none".to_owned()),
            application_type: Some("native".to_owned()),
            client_name: Some("Rotary harness client".to_owned()),
            ..ClientMetadata::default()
        }
    }
}

/// A registered client: its id and the metadata the server accepted (RFC 7591 §3.2.1), which is
/// also the registration response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredClient {
    /// The allocated client id.
    pub client_id: String,
    /// When it was issued, seconds since the epoch on the server clock.
    pub client_id_issued_at: i64,
    /// The registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The grants the client may use.
    pub grant_types: Vec<GrantType>,
    /// Always `["code"]`.
    pub response_types: Vec<String>,
    /// Always `none`.
    pub token_endpoint_auth_method: String,
    /// `web` or `native`.
    pub application_type: ApplicationType,
    /// See [`ClientMetadata::client_name`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// See [`ClientMetadata::client_uri`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// See [`ClientMetadata::logo_uri`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// See [`ClientMetadata::tos_uri`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// See [`ClientMetadata::policy_uri`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
}

impl RegisteredClient {
    /// Whether the client registered this grant.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The registered redirect URI that `given` matches: the same string, or — for `http` on a
    /// loopback host — the same URI on any port (RFC 8252 §7.3).
    pub fn matching_redirect_uri(&self, given: &str) -> Option<&str> {
        self.redirect_uris
            .iter()
            .map(String::as_str)
            .find(|r| *r == given || same_loopback_uri_but_port(r, given))
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn same_loopback_uri_but_port(registered: &str, given: &str) -> bool {
    let (Ok(a), Ok(b)) = (Url::parse(registered), Url::parse(given)) else {
        return false;
    };
    a.scheme() == "http"
        && b.scheme() == "http"
        && is_loopback(&a)
        && a.host() == b.host()
        && a.path() == b.path()
        && a.query() == b.query()
        && b.fragment().is_none()
        && b.username().is_empty()
        && b.password().is_none()
}

fn redirect_error(uri: &str, why: &str) -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidRedirectUri,
        format!("redirect URI {uri:?} {why}"),
    )
}

/// Checks one redirect URI against the Matrix spec's rules ("Redirect URI validation"): an
/// absolute URI without a fragment or user info; `https`; `http` only on a loopback host
/// (`localhost`, `127.0.0.1`, `[::1]`; any port); for native clients also a private-use scheme in
/// reverse-DNS form (with a dot) and without an authority (`com.example.app:/callback`).
pub fn check_redirect_uri(uri: &str, app: ApplicationType) -> Result<(), OAuthError> {
    let url = Url::parse(uri).map_err(|e| redirect_error(uri, &format!("is not an absolute URI ({e})")))?;
    if url.fragment().is_some() {
        return Err(redirect_error(uri, "must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(redirect_error(uri, "must not carry a user or password"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "https" => Err(redirect_error(uri, "has no host")),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(redirect_error(
            uri,
            "uses http on a host other than localhost, 127.0.0.1 or [::1]",
        )),
        scheme if app == ApplicationType::Native => {
            if !scheme.contains('.') {
                return Err(redirect_error(
                    uri,
                    "uses a private-use scheme that is not in reverse-DNS form (e.g. com.example.app:/callback)",
                ));
            }
            if url.has_authority() {
                return Err(redirect_error(
                    uri,
                    "must not have an authority after a private-use scheme (use one slash: com.example.app:/callback)",
                ));
            }
            Ok(())
        }
        _ => Err(redirect_error(
            uri,
            "is not https (web clients; native clients may use a private-use scheme)",
        )),
    }
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClientMetadata, description)
}

fn check_web_uri(field: &str, value: &Option<String>) -> Result<(), OAuthError> {
    if let Some(v) = value {
        let ok = Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(metadata_error(format!("{field} {v:?} is not an http(s) URL")));
        }
    }
    Ok(())
}

/// Checks client metadata and fills in the defaults; the result lacks only the id.
/// Errors are RFC 7591's `invalid_redirect_uri` and `invalid_client_metadata`.
pub(crate) fn validate(
    m: &ClientMetadata,
    client_id: String,
    issued_at_s: i64,
) -> Result<RegisteredClient, OAuthError> {
    let application_type = match m.application_type.as_deref() {
        None | Some("web") => ApplicationType::Web,
        Some("native") => ApplicationType::Native,
        Some(other) => {
            return Err(metadata_error(format!(
                "application_type {other:?} is neither \"web\" nor \"native\""
            )));
        }
    };
    match m.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => {
            return Err(metadata_error(format!(
                "token_endpoint_auth_method {other:?} is not supported: only public clients (\"none\") are"
            )));
        }
    }
    let requested = m
        .grant_types
        .clone()
        .unwrap_or_else(|| vec![GrantType::AuthorizationCode.as_str().to_owned()]);
    let mut grant_types: Vec<GrantType> = Vec::new();
    for g in requested.iter().filter_map(|g| GrantType::parse(g)) {
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    if grant_types.is_empty() {
        return Err(metadata_error(
            "grant_types names no grant this server supports (authorization_code, refresh_token)",
        ));
    }
    let response_types = m
        .response_types
        .clone()
        .unwrap_or_else(|| vec!["code".to_owned()]);
    if let Some(bad) = response_types.iter().find(|r| *r != "code") {
        return Err(metadata_error(format!(
            "response type {bad:?} is not supported (only \"code\")"
        )));
    }
    let code_grant = grant_types.contains(&GrantType::AuthorizationCode);
    if code_grant != response_types.iter().any(|r| r == "code") {
        return Err(metadata_error(
            "grant_types and response_types disagree: the authorization_code grant goes with the \"code\" response type (RFC 7591 §2.1)",
        ));
    }
    if code_grant && m.redirect_uris.is_empty() {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidRedirectUri,
            "redirect_uris is required for the authorization_code grant",
        ));
    }
    for uri in &m.redirect_uris {
        check_redirect_uri(uri, application_type)?;
    }
    check_web_uri("client_uri", &m.client_uri)?;
    check_web_uri("logo_uri", &m.logo_uri)?;
    check_web_uri("tos_uri", &m.tos_uri)?;
    check_web_uri("policy_uri", &m.policy_uri)?;
    Ok(RegisteredClient {
        client_id,
        client_id_issued_at: issued_at_s,
        redirect_uris: m.redirect_uris.clone(),
        grant_types,
        response_types: vec!["code".to_owned()],
        token_endpoint_auth_method: "none".to_owned(),
        application_type,
        client_name: m.client_name.clone(),
        client_uri: m.client_uri.clone(),
        logo_uri: m.logo_uri.clone(),
        tos_uri: m.tos_uri.clone(),
        policy_uri: m.policy_uri.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: Result<(), OAuthError>) -> Option<OAuthErrorCode> {
        e.err().map(|e| e.code)
    }

    #[test]
    fn redirect_uris_follow_the_spec() {
        use ApplicationType::{Native, Web};
        for ok in [
            "https://app.example.com/cb",
            "https://example.com:5173/?query=value",
            "http://127.0.0.1/callback",
            "http://localhost:1234/cb",
            "http://[::1]/cb",
        ] {
            assert_eq!(code(check_redirect_uri(ok, Web)), None, "{ok}");
        }
        for ok in ["com.example.app:/callback", "com.example:callback"] {
            assert_eq!(code(check_redirect_uri(ok, Native)), None, "{ok}");
        }
        for bad in [
            "https://example.com/cb#frag",
            "http://example.com/cb",
            "https://user:pw@example.com/cb",
            "example:/callback",
            "com.example.app://callback",
            "/relative",
        ] {
            assert_eq!(
                code(check_redirect_uri(bad, Native)),
                Some(OAuthErrorCode::InvalidRedirectUri),
                "{bad}"
            );
        }
        assert!(check_redirect_uri("com.example.app:/callback", Web).is_err());
    }

    #[test]
    fn loopback_uris_match_on_any_port() {
        let m = ClientMetadata::public_client(&["http://127.0.0.1/callback", "com.example.app:/cb"]);
        let c = validate(&m, "C".into(), 0).unwrap();
        assert!(
            c.matching_redirect_uri("http://127.0.0.1:4567/callback")
                .is_some()
        );
        assert!(c.matching_redirect_uri("http://127.0.0.1:4567/other").is_none());
        assert!(c.matching_redirect_uri("com.example.app:/cb").is_some());
        assert!(c.matching_redirect_uri("com.example.app:/cb2").is_none());
    }

    #[test]
    fn metadata_defaults_and_errors() {
        let m = ClientMetadata {
            redirect_uris: vec!["https://example.com/cb".into()],
            grant_types: Some(vec![
                "authorization_code".into(),
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ]),
            ..ClientMetadata::default()
        };
        let c = validate(&m, "C".into(), 7).unwrap();
        assert_eq!(c.grant_types, vec![GrantType::AuthorizationCode]);
        assert_eq!(c.application_type, ApplicationType::Web);
        assert_eq!(c.token_endpoint_auth_method, "none");
        let bad = |m: ClientMetadata| validate(&m, "C".into(), 0).unwrap_err().code;
        assert_eq!(bad(ClientMetadata::default()), OAuthErrorCode::InvalidRedirectUri);
        assert_eq!(
            bad(ClientMetadata {
                token_endpoint_auth_method: Some("client_secret_basic".into()),
                ..m.clone()
            }),
            OAuthErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            bad(ClientMetadata {
                response_types: Some(vec!["token".into()]),
                ..m.clone()
            }),
            OAuthErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            bad(ClientMetadata {
                grant_types: Some(vec!["refresh_token".into()]),
                ..m.clone()
            }),
            OAuthErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            bad(ClientMetadata {
                client_uri: Some("not a url".into()),
                ..m.clone()
            }),
            OAuthErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            bad(ClientMetadata {
                application_type: Some("desktop".into()),
                ..m
            }),
            OAuthErrorCode::InvalidClientMetadata
        );
    }
}
