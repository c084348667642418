//! The OAuth 2.0 authorization server's own state, as matrix-authentication-service keeps it:
//! registered clients (RFC 7591) and authorization codes with their PKCE challenges (RFC 6749
//! §4.1, RFC 7636). The tokens a grant issues live in the token store; the HTTP endpoints are in
//! `api::oauth`.

mod client;
mod error;
mod pkce;
mod scope;

pub use client::{ApplicationType, ClientMetadata, GrantType, RegisteredClient, check_redirect_uri};
pub use error::{OAuthError, OAuthErrorCode};
pub use pkce::{is_valid_verifier, s256_challenge, verify_s256};
pub use scope::{
    API_SCOPE, API_SCOPE_UNSTABLE, DEVICE_PREFIX, DEVICE_PREFIX_UNSTABLE, MatrixScope, is_valid_device_id,
    new_device_id, parse_scope,
};

use rand::RngExt;
use std::collections::HashMap;
use std::time::Duration;

/// An approved authorization request, waiting for its code to be exchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthorizationRequest {
    pub client_id: String,
    /// The redirect URI the code was delivered to.
    pub redirect_uri: String,
    /// Whether the request named it (then the token request must repeat it, RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
    /// The `S256` code challenge.
    pub code_challenge: String,
    pub user_id: String,
    pub device_id: String,
    /// The granted scope (it names the device).
    pub scope: String,
}

#[derive(Debug)]
struct CodeEntry {
    request: AuthorizationRequest,
    issued_at_ms: i64,
    exchanged_at_ms: Option<i64>,
}

/// How long codes live and when a replay revokes the session (from the `oauth_code_*` knobs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodeRules {
    pub lifetime: Duration,
    pub replay_grace: Option<Duration>,
}

/// The token request's parameters for the `authorization_code` grant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodeExchange<'a> {
    pub code: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// A refused code exchange; a late replay also names the session to revoke.
#[derive(Debug)]
pub(crate) struct CodeRefusal {
    pub error: OAuthError,
    pub revoke: Option<(String, String)>,
}

impl From<OAuthError> for CodeRefusal {
    fn from(error: OAuthError) -> Self {
        CodeRefusal { error, revoke: None }
    }
}

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Registered clients and outstanding authorization codes. Not thread-safe on its own: the server
/// keeps it behind a mutex (locked before the token store when both are needed).
#[derive(Debug, Default)]
pub(crate) struct OAuthRegistry {
    clients: HashMap<String, RegisteredClient>,
    codes: HashMap<String, CodeEntry>,
}

impl OAuthRegistry {
    /// Registers a client (RFC 7591): checks the metadata, allocates a ULID-shaped client id.
    pub fn register(
        &mut self,
        metadata: &ClientMetadata,
        now_ms: i64,
    ) -> Result<RegisteredClient, OAuthError> {
        let client_id = loop {
            let id = random_from(CROCKFORD, 26);
            if !self.clients.contains_key(&id) {
                break id;
            }
        };
        let client = client::validate(metadata, client_id, now_ms.div_euclid(1000))?;
        self.clients.insert(client.client_id.clone(), client.clone());
        Ok(client)
    }

    /// A registered client.
    pub fn client(&self, client_id: &str) -> Option<&RegisteredClient> {
        self.clients.get(client_id)
    }

    /// Every registered client, oldest first.
    pub fn clients(&self) -> Vec<RegisteredClient> {
        let mut all: Vec<RegisteredClient> = self.clients.values().cloned().collect();
        all.sort_by(|a, b| (a.client_id_issued_at, &a.client_id).cmp(&(b.client_id_issued_at, &b.client_id)));
        all
    }

    /// Stores an approved request; returns its single-use code.
    pub fn issue_code(&mut self, request: AuthorizationRequest, now_ms: i64) -> String {
        let code = loop {
            let c = random_from(ALNUM, 32);
            if !self.codes.contains_key(&c) {
                break c;
            }
        };
        self.codes.insert(
            code.clone(),
            CodeEntry {
                request,
                issued_at_ms: now_ms,
                exchanged_at_ms: None,
            },
        );
        code
    }

    /// Exchanges a code once (RFC 6749 §4.1.3, RFC 7636 §4.6), in MAS's order: unknown, already
    /// used (a replay later than the grace also revokes the session it created), expired, another
    /// client, redirect URI, then PKCE. A missing `code_verifier` is `invalid_request`; a wrong one
    /// `invalid_grant`. A refused exchange leaves the code usable.
    pub fn redeem_code(
        &mut self,
        now_ms: i64,
        rules: CodeRules,
        req: CodeExchange<'_>,
    ) -> Result<AuthorizationRequest, CodeRefusal> {
        let entry = self
            .codes
            .get_mut(req.code)
            .ok_or_else(|| OAuthError::invalid_grant("unknown authorization code"))?;
        if let Some(at) = entry.exchanged_at_ms {
            let revoke = rules
                .replay_grace
                .filter(|g| g.is_zero() || now_ms - at > ms(*g))
                .map(|_| (entry.request.user_id.clone(), entry.request.device_id.clone()));
            let why = if revoke.is_some() {
                "authorization code already used; the session it created was revoked"
            } else {
                "authorization code already used"
            };
            return Err(CodeRefusal {
                error: OAuthError::invalid_grant(why),
                revoke,
            });
        }
        if now_ms - entry.issued_at_ms > ms(rules.lifetime) {
            return Err(OAuthError::invalid_grant("authorization code expired").into());
        }
        let request = &entry.request;
        if request.client_id != req.client_id {
            return Err(OAuthError::invalid_grant("authorization code was issued to another client").into());
        }
        match req.redirect_uri {
            None if request.redirect_uri_given => {
                return Err(OAuthError::invalid_request(
                    "redirect_uri is required: the authorization request named one",
                )
                .into());
            }
            Some(given) if given != request.redirect_uri => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri does not match the authorization request",
                )
                .into());
            }
            _ => {}
        }
        let Some(verifier) = req.code_verifier else {
            return Err(OAuthError::invalid_request("code_verifier is required (PKCE)").into());
        };
        if !verify_s256(&request.code_challenge, verifier) {
            return Err(OAuthError::invalid_grant(
                "PKCE verification failed: code_verifier does not match the code_challenge",
            )
            .into());
        }
        entry.exchanged_at_ms = Some(now_ms);
        Ok(entry.request.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn setup() -> (OAuthRegistry, String, String) {
        let mut reg = OAuthRegistry::default();
        let client = reg
            .register(&ClientMetadata::public_client(&["http://127.0.0.1/cb"]), 0)
            .unwrap();
        let code = reg.issue_code(
            AuthorizationRequest {
                client_id: client.client_id.clone(),
                redirect_uri: "http://127.0.0.1/cb".into(),
                redirect_uri_given: true,
                code_challenge: s256_challenge(VERIFIER),
                user_id: "@alice:localhost".into(),
                device_id: "DEV".into(),
                scope: "urn:matrix:client:api:* urn:matrix:client:device:DEV".into(),
            },
            1_000,
        );
        (reg, client.client_id, code)
    }

    const RULES: CodeRules = CodeRules {
        lifetime: Duration::from_secs(600),
        replay_grace: Some(Duration::from_secs(20)),
    };

    fn exchange<'a>(code: &'a str, client: &'a str, verifier: Option<&'a str>) -> CodeExchange<'a> {
        CodeExchange {
            code,
            client_id: client,
            redirect_uri: Some("http://127.0.0.1/cb"),
            code_verifier: verifier,
        }
    }

    #[test]
    fn a_code_is_single_use_and_a_late_replay_revokes() {
        let (mut reg, client, code) = setup();
        let e = |r: Result<AuthorizationRequest, CodeRefusal>| r.unwrap_err();
        let missing = e(reg.redeem_code(2_000, RULES, exchange(&code, &client, None)));
        assert_eq!(missing.error.code, OAuthErrorCode::InvalidRequest);
        let wrong = e(reg.redeem_code(2_000, RULES, exchange(&code, &client, Some(&"x".repeat(43)))));
        assert_eq!(wrong.error.code, OAuthErrorCode::InvalidGrant);
        let other = e(reg.redeem_code(2_000, RULES, exchange(&code, "OTHER", Some(VERIFIER))));
        assert_eq!(other.error.code, OAuthErrorCode::InvalidGrant);
        let ok = reg
            .redeem_code(2_000, RULES, exchange(&code, &client, Some(VERIFIER)))
            .unwrap();
        assert_eq!(ok.device_id, "DEV");
        let soon = e(reg.redeem_code(3_000, RULES, exchange(&code, &client, Some(VERIFIER))));
        assert_eq!(
            (soon.error.code, soon.revoke),
            (OAuthErrorCode::InvalidGrant, None)
        );
        let late = e(reg.redeem_code(30_000, RULES, exchange(&code, &client, Some(VERIFIER))));
        assert_eq!(
            late.revoke,
            Some(("@alice:localhost".to_owned(), "DEV".to_owned()))
        );
    }

    #[test]
    fn codes_expire_and_redirect_uris_must_match() {
        let (mut reg, client, code) = setup();
        let late = reg
            .redeem_code(1_000 + 600_001, RULES, exchange(&code, &client, Some(VERIFIER)))
            .unwrap_err();
        assert!(late.error.description.contains("expired"));
        let mut req = exchange(&code, &client, Some(VERIFIER));
        req.redirect_uri = Some("http://127.0.0.1/other");
        assert_eq!(
            reg.redeem_code(2_000, RULES, req).unwrap_err().error.code,
            OAuthErrorCode::InvalidGrant
        );
        req.redirect_uri = None;
        assert_eq!(
            reg.redeem_code(2_000, RULES, req).unwrap_err().error.code,
            OAuthErrorCode::InvalidRequest
        );
        assert_eq!(
            reg.redeem_code(2_000, RULES, exchange("nope", &client, Some(VERIFIER)))
                .unwrap_err()
                .error
                .code,
            OAuthErrorCode::InvalidGrant
        );
    }

    #[test]
    fn client_ids_look_like_ulids() {
        let mut reg = OAuthRegistry::default();
        let c = reg
            .register(&ClientMetadata::public_client(&["http://localhost/cb"]), 5_500)
            .unwrap();
        assert_eq!(c.client_id.len(), 26);
        assert_eq!(c.client_id_issued_at, 5);
        assert_eq!(reg.clients().len(), 1);
        assert!(reg.client(&c.client_id).is_some());
    }
}
