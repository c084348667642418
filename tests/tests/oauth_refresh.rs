//! The OAuth 2.0 refresh-token grant over real HTTP: rotation and revocation of the old access
//! token, what the trace records, `expires_in` rounding and capping, refresh without rotation, and
//! every error of the grant.

mod common;

use common::oauth::{
    REDIRECT, encode, env, full, login, oauth_entries, post_form, redact, refresh, register, register_client,
    step,
};
use common::start;
use rotary_server::{MockHomeserver, Profile};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn refresh_grant_rotates_and_revokes_the_old_access_token() {
    let env = env(Profile::Mas).await;
    let client = register_client(&env).await;
    let first = login(&env, &client, "PHONE").await;
    let mut out = vec![step(&env, "login", &first)];
    let (mut at, mut rt) = (first.str("access_token"), first.str("refresh_token"));
    for n in 1..=3 {
        let r = refresh(&env, &client, &rt).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["expires_in"], 300);
        assert_ne!(r.str("access_token"), at);
        assert_ne!(r.str("refresh_token"), rt);
        // MAS revokes the old access token at once.
        let old = env.whoami(&at).await;
        assert_eq!((old.status, old.soft_logout()), (401, Some(false)));
        assert_eq!(old.body["error"], "Token is not active");
        if n == 1 {
            out.push(step(&env, "refresh", &r));
            out.push(step(&env, "old access token", &old));
        }
        at = r.str("access_token");
        rt = r.str("refresh_token");
        assert_eq!(env.whoami(&at).await.str("device_id"), "PHONE");
    }
    insta::assert_json_snapshot!("refresh_chain", out);
    // The trace of a refresh: what the harness counts.
    let refreshes: Vec<_> = oauth_entries(&env, "oauth_token")
        .into_iter()
        .filter(|e| e.flags.get("grant_type") == Some(&json!("refresh_token")))
        .collect();
    assert_eq!(refreshes.len(), 3);
    let e = &refreshes[0];
    assert_eq!(e.flags["client_id"], json!(client));
    let presented = e.refresh_token.as_ref().unwrap();
    assert_eq!(
        (presented.label.as_str(), presented.state),
        ("rt#1", rotary_server::RefreshState::Current)
    );
    let issued = e.issued.as_ref().unwrap();
    assert_eq!(
        (
            issued.access_token.as_deref(),
            issued.refresh_token.as_deref(),
            issued.expires_in_ms
        ),
        (Some("at#2"), Some("rt#2"), Some(300_000))
    );
    assert!(issued.expires_at_ms.is_some());
    assert_eq!(
        (e.user_id.as_deref(), e.device_id.as_deref()),
        (Some("@alice:localhost"), Some("PHONE"))
    );
    let value = serde_json::to_value(e).unwrap();
    insta::assert_json_snapshot!("refresh_trace_entry", redact(&env, &value));
}

#[tokio::test]
async fn expires_in_is_rounded_down_and_capped_by_the_session() {
    let env = start(
        MockHomeserver::builder()
            .profile(Profile::Mas)
            .refreshable_access_token_lifetime(Duration::from_millis(1_999))
            .session_lifetime(Duration::from_secs(10)),
    )
    .await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let rt = s.issued.refresh_token.clone().unwrap();
    let r = refresh(&env, &s.client_id, &rt).await;
    assert_eq!(r.body["expires_in"], 1);
    let e = oauth_entries(&env, "oauth_token").pop().unwrap();
    assert_eq!(e.issued.unwrap().expires_in_ms, Some(1_999));
    env.server.advance_clock(Duration::from_millis(9_500));
    let r = refresh(&env, &s.client_id, &r.str("refresh_token")).await;
    assert_eq!(r.body["expires_in"], 0);
    env.server.advance_clock(Duration::from_secs(1));
    let r = refresh(&env, &s.client_id, &r.str("refresh_token")).await;
    assert_eq!((r.status, r.str("error").as_str()), (400, "invalid_grant"));

    // Without expires_in_ms, the token response omits expires_in.
    let quiet = start(
        MockHomeserver::builder()
            .profile(Profile::Mas)
            .configure(|c| c.send_expires_in_ms = false),
    )
    .await;
    let s = quiet.server.mint_oauth_session("alice").unwrap();
    let r = refresh(&quiet, &s.client_id, s.issued.refresh_token.as_deref().unwrap()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("expires_in").is_none());
}

#[tokio::test]
async fn without_rotation_the_client_keeps_its_refresh_token() {
    let env = start(
        MockHomeserver::builder()
            .profile(Profile::Mas)
            .rotate_refresh_tokens(false),
    )
    .await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let rt = s.issued.refresh_token.unwrap();
    let a = refresh(&env, &s.client_id, &rt).await;
    assert_eq!(a.status, 200);
    assert!(a.body.get("refresh_token").is_none());
    let b = refresh(&env, &s.client_id, &rt).await;
    assert_eq!(b.status, 200);
    assert_eq!(env.whoami(&a.str("access_token")).await.status, 401);
    assert_eq!(env.whoami(&b.str("access_token")).await.status, 200);
    insta::assert_json_snapshot!("refresh_without_rotation", redact(&env, &b.body));
}

#[tokio::test]
async fn refresh_grant_errors() {
    let env = env(Profile::Mas).await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let rt = s.issued.refresh_token.clone().unwrap();
    let other = env
        .server
        .register_oauth_client(&["http://127.0.0.1/other"])
        .unwrap();
    let code_only = register(
        &env,
        json!({"redirect_uris": [REDIRECT], "grant_types": ["authorization_code"]}),
    )
    .await
    .reply
    .str("client_id");
    let legacy = env.login("alice", "wonderland", true).await;
    let mut out = Vec::new();
    out.push(step(&env, "another client", &refresh(&env, &other, &rt).await));
    out.push(step(&env, "unknown client", &refresh(&env, "01NOPE", &rt).await));
    out.push(step(
        &env,
        "client without the refresh grant",
        &refresh(&env, &code_only, &rt).await,
    ));
    out.push(step(
        &env,
        "unknown refresh token",
        &refresh(
            &env,
            &s.client_id,
            &rotary_server::generate_oauth_token(rotary_server::TokenKind::Refresh),
        )
        .await,
    ));
    out.push(step(
        &env,
        "garbage",
        &refresh(&env, &s.client_id, "garbage").await,
    ));
    out.push(step(
        &env,
        "a legacy refresh token",
        &refresh(&env, &s.client_id, &legacy.str("refresh_token")).await,
    ));
    let r = post_form(
        &env,
        "/oauth2/token",
        &[("grant_type", "refresh_token"), ("client_id", &s.client_id)],
    )
    .await;
    out.push(step(&env, "no refresh_token", &r.reply));
    let r = post_form(
        &env,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", &s.client_id),
            ("scope", "urn:matrix:client:api:* urn:synapse:admin:*"),
        ],
    )
    .await;
    out.push(step(&env, "a wider scope", &r.reply));
    let r = full(
        env.http
            .post(env.url("/oauth2/token"))
            .json(&json!({"grant_type": "refresh_token", "refresh_token": rt, "client_id": s.client_id})),
    )
    .await;
    out.push(step(&env, "JSON body", &r.reply));
    let r = full(
        env.http
            .post(env.url("/oauth2/token"))
            .header("content-type", "text/plain")
            .body(encode(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", &s.client_id),
            ])),
    )
    .await;
    out.push(step(&env, "text/plain body", &r.reply));
    // The OAuth refresh token is no legacy refresh token either.
    out.push(step(&env, "OAuth token at /v3/refresh", &env.refresh(&rt).await));
    insta::assert_json_snapshot!("refresh_errors", out);
    // None of that used the token up; a narrower (equal) scope is fine; charset is fine.
    let r = full(
        env.http
            .post(env.url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded; charset=UTF-8")
            .body(encode(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", &s.client_id),
                ("scope", "urn:matrix:client:api:*"),
            ])),
    )
    .await;
    assert_eq!(r.reply.status, 200, "{:?}", r.reply.body);
    let errcodes: Vec<Option<String>> = oauth_entries(&env, "oauth_token")
        .into_iter()
        .map(|e| e.errcode)
        .collect();
    assert_eq!(errcodes[0].as_deref(), Some("invalid_grant"));
    assert_eq!(errcodes[1].as_deref(), Some("invalid_client"));
    assert_eq!(errcodes[2].as_deref(), Some("unauthorized_client"));
}
