//! OAuth 2.0 through the control API and the configuration: registering clients and minting OAuth
//! sessions over `/_rotary`, the profiles' OAuth defaults, and the OAuth knobs set by PATCH and TOML.

mod common;

use common::oauth::{env, redact, refresh};
use rotary_server::Profile;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn control_api_registers_clients_and_mints_oauth_sessions() {
    let env = env(Profile::Mas).await;
    let client = env.post("/_rotary/oauth/clients", None, json!({})).await;
    assert_eq!(client.status, 200, "{:?}", client.body);
    assert_eq!(
        client.body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    let client_id = client.str("client_id");
    let bad = env
        .post(
            "/_rotary/oauth/clients",
            None,
            json!({"redirect_uris": ["http://example.com/cb"]}),
        )
        .await;
    assert_eq!((bad.status, bad.errcode()), (400, Some("M_INVALID_PARAM")));
    let listed = env.get("/_rotary/oauth/clients", None).await;
    assert_eq!(listed.body["clients"].as_array().unwrap().len(), 1);
    let minted = env
        .post(
            "/_rotary/sessions",
            None,
            json!({"user": "alice", "client_id": client_id, "device_id": "CTRL"}),
        )
        .await;
    assert_eq!(minted.status, 200, "{:?}", minted.body);
    insta::assert_json_snapshot!("control_mint", redact(&env, &minted.body));
    let fresh = env
        .post("/_rotary/sessions", None, json!({"user": "bob", "oauth": true}))
        .await;
    assert_eq!(fresh.status, 200);
    assert_ne!(fresh.str("client_id"), client_id);
    let r = refresh(&env, &fresh.str("client_id"), &fresh.str("refresh_token")).await;
    assert_eq!(r.status, 200);
    let sessions = env.get("/_rotary/sessions?user=alice", None).await;
    assert_eq!(sessions.body["sessions"][0]["oauth_client_id"], json!(client_id));
    let no = env
        .post(
            "/_rotary/sessions",
            None,
            json!({"user": "alice", "oauth": true, "refresh_token": false}),
        )
        .await;
    assert_eq!(no.status, 400);
    let unknown = env
        .post(
            "/_rotary/sessions",
            None,
            json!({"user": "alice", "client_id": "01NOPE"}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    let off = common::default_env().await;
    let r = off
        .post("/_rotary/sessions", None, json!({"user": "alice", "oauth": true}))
        .await;
    assert_eq!(r.status, 409);
    // The control API's own OAuth state goes with a reset.
    assert_eq!(env.post("/_rotary/reset", None, json!({})).await.status, 200);
    let listed = env.get("/_rotary/oauth/clients", None).await;
    assert_eq!(listed.body["clients"], json!([]));
}

#[tokio::test]
async fn profiles_and_knobs() {
    use rotary_server::{OAuthReusePolicy, ServerConfig};
    let mas = ServerConfig::for_profile(Profile::Mas);
    let spec = ServerConfig::for_profile(Profile::OAuthSpec);
    assert!(mas.oauth && spec.oauth);
    assert!(!mas.oauth_replay_revokes_session && spec.oauth_replay_revokes_session);
    for p in [Profile::Synapse, Profile::Spec, Profile::NoRefresh] {
        assert!(!ServerConfig::for_profile(p).oauth, "{p}");
    }
    assert_eq!("oauth-spec".parse::<Profile>().unwrap(), Profile::OAuthSpec);
    // Every knob alone, through the control API: single-use OAuth refresh tokens.
    let env = env(Profile::Mas).await;
    let cfg = env
        .call(
            "PATCH",
            "/_rotary/config",
            None,
            Some(json!({"oauth_reuse_policy": "single-use", "oauth_revoke_old_access_token": false})),
        )
        .await;
    assert_eq!(cfg.status, 200, "{:?}", cfg.body);
    assert_eq!(
        env.server.config().oauth_reuse_policy,
        OAuthReusePolicy::SingleUse
    );
    let s = env.server.mint_oauth_session("alice").unwrap();
    let rt = s.issued.refresh_token.clone().unwrap();
    assert_eq!(refresh(&env, &s.client_id, &rt).await.status, 200);
    assert_eq!(refresh(&env, &s.client_id, &rt).await.status, 400);
    assert_eq!(env.whoami(&s.issued.access_token).await.status, 200);
    let cfg = env
        .call(
            "PATCH",
            "/_rotary/config",
            None,
            Some(json!({"oauth_code_lifetime": "0s"})),
        )
        .await;
    assert_eq!(cfg.status, 400);
    // TOML, as `rotary serve --config` reads it.
    let cfg = ServerConfig::from_toml(
        "profile = \"oauth-spec\"\noauth_code_lifetime = \"1m\"\noauth_code_replay_grace = \"none\"",
    )
    .unwrap();
    assert_eq!(cfg.oauth_code_lifetime, Duration::from_secs(60));
    assert_eq!(cfg.oauth_code_replay_grace, None);
}
