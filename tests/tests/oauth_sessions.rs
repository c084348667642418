//! OAuth 2.0 sessions beside the legacy ones: OAuth access tokens on the client-server API (sync,
//! send, transaction ids across a refresh, expiry, logout), and the in-process API (clients, minted
//! sessions, out-of-band rotation) next to the compat layer's own rules.

mod common;

use common::oauth::{env, refresh};
use rotary_server::{OAuthIssued, OAuthMintRequest, Profile};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn oauth_access_tokens_work_on_the_client_server_api() {
    let env = env(Profile::Mas).await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let at = s.issued.access_token.clone();
    assert!(at.starts_with("mat_"));
    let who = env.whoami(&at).await;
    assert_eq!(
        (who.status, who.str("user_id"), who.str("device_id")),
        (200, "@alice:localhost".to_owned(), s.issued.device_id.clone())
    );
    let sync = env.get("/_matrix/client/v3/sync?timeout=0", Some(&at)).await;
    assert_eq!(sync.status, 200);
    let room = env.server.create_room("alice", None).unwrap();
    let sent = env
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"),
            Some(&at),
            Some(json!({"msgtype": "m.text", "body": "hi"})),
        )
        .await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    // After a refresh, the same transaction id on the same device is a duplicate.
    let r = refresh(&env, &s.client_id, s.issued.refresh_token.as_deref().unwrap()).await;
    let again = env
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"),
            Some(&r.str("access_token")),
            Some(json!({"msgtype": "m.text", "body": "hi"})),
        )
        .await;
    assert_eq!(again.body["event_id"], sent.body["event_id"]);
    assert_eq!(env.server.count_events(&room, "m.room.message"), 1);
    // Expiry: 401 M_UNKNOWN_TOKEN with MAS's wording.
    env.server.advance_clock(Duration::from_secs(301));
    let who = env.whoami(&r.str("access_token")).await;
    assert_eq!(
        (who.status, who.errcode(), who.soft_logout()),
        (401, Some("M_UNKNOWN_TOKEN"), Some(false))
    );
    let e = env
        .server
        .trace()
        .into_iter()
        .rfind(|e| e.endpoint == "whoami")
        .unwrap();
    assert_eq!(
        (e.access_token.label.as_str(), e.access_token.state),
        ("at#2", rotary_server::AccessState::Expired)
    );
    // /logout ends an OAuth session too.
    let s = env.server.mint_oauth_session("alice").unwrap();
    assert_eq!(
        env.post(
            "/_matrix/client/v3/logout",
            Some(&s.issued.access_token),
            json!({})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        refresh(&env, &s.client_id, s.issued.refresh_token.as_deref().unwrap())
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn in_process_api_and_the_legacy_layer_side_by_side() {
    let env = env(Profile::Mas).await;
    assert_eq!(env.server.issuer(), format!("{}/", env.server.url()));
    let client = env
        .server
        .register_oauth_client(&["com.example.app:/callback"])
        .unwrap();
    let minted: OAuthIssued = env
        .server
        .mint_oauth_session_with(&OAuthMintRequest {
            user: "bob".into(),
            device_id: Some("TABLET".into()),
            client_id: Some(client.clone()),
        })
        .unwrap();
    assert_eq!(minted.client_id, client);
    assert_eq!(
        minted.scope,
        "urn:matrix:client:api:* urn:matrix:client:device:TABLET"
    );
    assert_eq!(
        (
            minted.issued.access_label.as_str(),
            minted.issued.refresh_label.as_deref()
        ),
        ("at#1", Some("rt#1"))
    );
    assert!(env.server.oauth_clients().iter().any(|c| c.client_id == client));
    let sessions = env.server.sessions(Some("bob"));
    assert_eq!(sessions[0].oauth_client_id.as_deref(), Some(client.as_str()));
    // Out-of-band rotation follows the session's kind.
    let rotated = env.server.rotate_out_of_band("bob", "TABLET", true).unwrap();
    assert!(rotated.refresh_token.unwrap().starts_with("mar_"));
    // The compat layer keeps its own rules: single-use mcr_ tokens at /refresh.
    let (_, rt) = env.alice().await;
    assert!(rt.starts_with("mcr_"));
    assert_eq!(env.refresh(&rt).await.status, 200);
    assert_eq!(env.refresh(&rt).await.status, 401);
    // Errors.
    assert!(matches!(
        env.server.mint_oauth_session_with(&OAuthMintRequest {
            client_id: Some("01NOPE".into()),
            ..OAuthMintRequest::for_user("alice")
        }),
        Err(rotary_server::OpError::UnknownOAuthClient(_))
    ));
    assert!(matches!(
        env.server.mint_oauth_session("nobody"),
        Err(rotary_server::OpError::UnknownUser(_))
    ));
    assert!(matches!(
        env.server.register_oauth_client(&["http://example.com/cb"]),
        Err(rotary_server::OpError::OAuth(_))
    ));
    let off = common::default_env().await;
    assert_eq!(
        off.server.mint_oauth_session("alice").unwrap_err(),
        rotary_server::OpError::OAuthOff
    );
}
