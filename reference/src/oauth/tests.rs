//! Unit tests of the OAuth module: PKCE, forms, metadata, the authorization request and its
//! redirect, token responses and what they mean, ids and scope.

use super::login::{registration_body, scope};
use super::pkce::{DEVICE_ID_CHARS, new_verifier};
use super::token::{expires_in, parse_tokens};
use super::*;
use crate::api::Reply;
use crate::bugs::{Bug, Bugs};
use crate::error::ClientError;
use crate::refresh::{RefreshOutcome, RefreshedTokens};
use reqwest::Url;
use serde_json::{Value, json};
use std::time::Duration;

fn reply(status: u16, body: Option<Value>) -> Reply {
    Reply {
        status,
        retry_after: None,
        body,
    }
}

fn bugs(list: &[Bug]) -> Bugs {
    list.iter().copied().collect()
}

#[test]
fn pkce_matches_rfc_7636_appendix_b() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert!(is_valid_verifier(verifier));
    assert_eq!(
        code_challenge(verifier),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    for _ in 0..20 {
        let v = new_verifier();
        assert!(is_valid_verifier(&v), "{v}");
        assert_eq!(code_challenge(&v).len(), 43);
    }
    assert_ne!(new_verifier(), new_verifier());
    assert!(!is_valid_verifier("short"));
    assert!(!is_valid_verifier(&"a".repeat(129)));
    assert!(!is_valid_verifier(&format!("{}+", "a".repeat(50))));
}

#[test]
fn forms_are_encoded() {
    assert_eq!(
        refresh_form("mcr_a+b/c=d&e", "01J CLIENT"),
        "grant_type=refresh_token&refresh_token=mcr_a%2Bb%2Fc%3Dd%26e&client_id=01J+CLIENT"
    );
    assert_eq!(
        code_form("c0de", "cid", "v~._-"),
        "grant_type=authorization_code&code=c0de&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&client_id=cid&code_verifier=v%7E._-"
    );
    assert_eq!(
        revocation_form("t", "refresh_token", "cid"),
        "token=t&token_type_hint=refresh_token&client_id=cid"
    );
    // Round trip through a decoder.
    let decoded: Vec<(String, String)> = form_urlencoded::parse(refresh_form("a b+c", "ü").as_bytes())
        .into_owned()
        .collect();
    assert_eq!(decoded[1], ("refresh_token".into(), "a b+c".into()));
    assert_eq!(decoded[2], ("client_id".into(), "ü".into()));
}

fn metadata() -> AuthMetadata {
    let base = Url::parse("http://127.0.0.1:8008").unwrap_or_else(|e| panic!("{e}"));
    AuthMetadata::from_json(
        &json!({
            "issuer": "http://127.0.0.1:8008/",
            "authorization_endpoint": "http://127.0.0.1:8008/oauth2/authorize?x=1",
            "token_endpoint": "/oauth2/token",
            "revocation_endpoint": "http://127.0.0.1:8008/oauth2/revoke",
            "registration_endpoint": "http://127.0.0.1:8008/oauth2/registration",
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
        }),
        &base,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn metadata_is_read() {
    let m = metadata();
    assert_eq!(m.token_endpoint.as_str(), "http://127.0.0.1:8008/oauth2/token");
    assert_eq!(m.code_challenge_methods_supported, vec!["S256"]);
    assert!(m.revocation_endpoint.is_some() && m.registration_endpoint.is_some());
    let base = Url::parse("http://h").unwrap_or_else(|e| panic!("{e}"));
    let no_token = json!({"issuer": "i", "authorization_endpoint": "http://h/a"});
    assert!(AuthMetadata::from_json(&no_token, &base).is_err());
    let bad_type =
        json!({"issuer": 3, "authorization_endpoint": "http://h/a", "token_endpoint": "http://h/t"});
    assert!(AuthMetadata::from_json(&bad_type, &base).is_err());
}

#[test]
fn authorization_request_and_redirect() -> anyhow::Result<()> {
    let m = metadata();
    let req = authorization_request(&m, "cid", "DEVICEABCD", Some("mxid:@alice:localhost"));
    let query = req.url.query().unwrap_or_default().to_owned();
    assert!(
        query.starts_with("x=1&response_type=code&client_id=cid&"),
        "{query}"
    );
    assert!(
        query.contains(
            "&scope=urn%3Amatrix%3Aclient%3Aapi%3A*%20urn%3Amatrix%3Aclient%3Adevice%3ADEVICEABCD&"
        ),
        "{query}"
    );
    assert!(
        query.contains("&code_challenge_method=S256&response_mode=query&"),
        "{query}"
    );
    assert!(
        query.ends_with("&login_hint=mxid%3A%40alice%3Alocalhost"),
        "{query}"
    );
    let pairs: std::collections::HashMap<String, String> = req.url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs["scope"],
        "urn:matrix:client:api:* urn:matrix:client:device:DEVICEABCD"
    );
    assert_eq!(pairs["code_challenge"], code_challenge(&req.verifier));
    assert_eq!(pairs["state"], req.state);
    assert_eq!(pairs["redirect_uri"], REDIRECT_URI);

    let ok = format!("http://127.0.0.1/callback?code=abc&state={}", req.state);
    assert_eq!(code_from_redirect(&ok, &req.state)?, "abc");
    let wrong_state = "http://127.0.0.1/callback?code=abc&state=other";
    assert!(code_from_redirect(wrong_state, &req.state).is_err());
    let elsewhere = format!("http://evil.example/callback?code=abc&state={}", req.state);
    assert!(code_from_redirect(&elsewhere, &req.state).is_err());
    let refused = format!(
        "http://127.0.0.1/callback?error=access_denied&state={}",
        req.state
    );
    let e = code_from_redirect(&refused, &req.state)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("access_denied")));
    Ok(())
}

#[test]
fn token_responses() {
    let full = json!({"access_token": "a", "token_type": "Bearer", "expires_in": 300,
                      "refresh_token": "r", "scope": "urn:matrix:client:api:*"});
    assert_eq!(
        parse_tokens(&full),
        Some(RefreshedTokens {
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            expires_in: Some(Duration::from_secs(300)),
        })
    );
    // No refresh_token: keep the old one; no expires_in: no known expiry.
    let bare = json!({"access_token": "a", "token_type": "bearer"});
    assert_eq!(
        parse_tokens(&bare),
        Some(RefreshedTokens {
            access_token: "a".into(),
            refresh_token: None,
            expires_in: None,
        })
    );
    assert_eq!(
        parse_tokens(&json!({"access_token": "a", "token_type": "mac"})),
        None
    );
    assert_eq!(parse_tokens(&json!({"token_type": "Bearer"})), None);
}

#[test]
fn expires_in_is_seconds() {
    let ms = Duration::from_millis;
    assert_eq!(expires_in(&json!({"expires_in": 300})), Some(ms(300_000)));
    assert_eq!(expires_in(&json!({"expires_in": 0})), Some(ms(0)));
    assert_eq!(expires_in(&json!({"expires_in": 1.5})), Some(ms(1500)));
    assert_eq!(expires_in(&json!({"expires_in": -5})), Some(ms(0)));
    assert_eq!(expires_in(&json!({"expires_in": "300"})), None);
    assert_eq!(expires_in(&json!({"expires_in_ms": 300})), None);
    assert_eq!(expires_in(&json!({})), None);
}

#[test]
fn classification() {
    let none = Bugs::NONE;
    let ok = reply(
        200,
        Some(json!({"access_token": "a", "token_type": "Bearer", "expires_in": 60})),
    );
    assert!(
        matches!(classify(&ok, none), RefreshOutcome::Tokens(t) if t.expires_in == Some(Duration::from_secs(60)))
    );

    // The RFC 6749 refusal: the session is over, hard.
    let invalid_grant = reply(
        400,
        Some(json!({"error": "invalid_grant", "error_description": "refresh token consumed"})),
    );
    match classify(&invalid_grant, none) {
        RefreshOutcome::Definitive { error, soft_logout } => {
            assert!(!soft_logout);
            assert_eq!(
                error,
                ClientError::Http {
                    status: 400,
                    errcode: None,
                    message: "invalid_grant: refresh token consumed".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
    for r in [
        reply(401, Some(json!({"error": "invalid_client"}))),
        reply(400, Some(json!({"error": "unsupported_grant_type"}))),
        reply(403, Some(json!({"errcode": "M_FORBIDDEN", "error": "no"}))),
        reply(404, None),
    ] {
        assert!(
            matches!(
                classify(&r, none),
                RefreshOutcome::Definitive {
                    soft_logout: false,
                    ..
                }
            ),
            "{r:?}"
        );
    }

    // A Matrix-shaped 429 from a rate limiter: wait and retry.
    let limited = Reply {
        status: 429,
        retry_after: Some(Duration::from_secs(2)),
        body: Some(json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1000})),
    };
    match classify(&limited, none) {
        RefreshOutcome::Transient { error, retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
            assert_eq!(error.errcode(), Some("M_LIMIT_EXCEEDED"));
        }
        other => panic!("{other:?}"),
    }
    let limited_rfc = Reply {
        status: 429,
        retry_after: Some(Duration::from_secs(3)),
        body: None,
    };
    assert!(matches!(
        classify(&limited_rfc, none),
        RefreshOutcome::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));

    // 5xx, with HTML, JSON or nothing; a success that is not a token response.
    for r in [
        reply(503, None),
        reply(500, Some(json!({"error": "server_error"}))),
        reply(502, Some(json!({"errcode": "M_UNKNOWN"}))),
        reply(200, None),
        reply(200, Some(json!({"refresh_token": "r"}))),
        reply(302, None),
    ] {
        assert!(
            matches!(classify(&r, none), RefreshOutcome::Transient { .. }),
            "{r:?}"
        );
    }

    // oauth-4xx-not-logout: the refusal is taken as passing.
    let b = bugs(&[Bug::Oauth4xxNotLogout]);
    assert!(matches!(
        classify(&invalid_grant, b),
        RefreshOutcome::Transient { .. }
    ));
    assert!(matches!(classify(&limited, b), RefreshOutcome::Transient { .. }));

    // oauth-matrix-error-logout: the rate limiter's 429 ends the session.
    let b = bugs(&[Bug::OauthMatrixErrorLogout]);
    assert!(matches!(
        classify(&limited, b),
        RefreshOutcome::Definitive {
            soft_logout: false,
            ..
        }
    ));
    assert!(matches!(
        classify(&limited_rfc, b),
        RefreshOutcome::Transient { .. }
    ));
    assert!(matches!(
        classify(&reply(503, None), b),
        RefreshOutcome::Transient { .. }
    ));
}

#[test]
fn ids_and_scope() {
    let d = new_device_id();
    assert_eq!(d.len(), 10);
    assert!(d.bytes().all(|b| DEVICE_ID_CHARS.contains(&b)));
    assert_eq!(
        scope("ABC"),
        "urn:matrix:client:api:* urn:matrix:client:device:ABC"
    );
    assert_eq!(full_user_id("@alice:localhost"), Some("@alice:localhost"));
    assert_eq!(full_user_id("alice"), None);
    assert_eq!(login_hint("@alice:localhost"), "mxid:@alice:localhost");
    assert_eq!(login_hint("alice"), "alice");
    let reg = registration_body();
    assert_eq!(reg["token_endpoint_auth_method"], "none");
    assert_eq!(reg["grant_types"], json!(["authorization_code", "refresh_token"]));
}
