//! OAuth 2.0 token revocation (RFC 7009) over real HTTP: revoking an access or a refresh token ends
//! the session; unknown, revoked and legacy tokens are answered 200 and left alone; the errors; and
//! what the trace records.

mod common;

use common::oauth::{env, oauth_entries, post_form, refresh, step};
use rotary_server::Profile;
use serde_json::json;

#[tokio::test]
async fn revocation_ends_the_session() {
    let env = env(Profile::Mas).await;
    let mut out = Vec::new();
    // By access token.
    let s = env.server.mint_oauth_session("alice").unwrap();
    let r = post_form(
        &env,
        "/oauth2/revoke",
        &[
            ("token", &s.issued.access_token),
            ("token_type_hint", "access_token"),
            ("client_id", &s.client_id),
        ],
    )
    .await;
    out.push(step(&env, "revoke access token", &r.reply));
    assert_eq!(env.whoami(&s.issued.access_token).await.status, 401);
    let rt = s.issued.refresh_token.clone().unwrap();
    assert_eq!(refresh(&env, &s.client_id, &rt).await.status, 400);
    // By refresh token, with a hint that names the other type and no client id (RFC 7009:
    // the search goes on; the spec: revoke even without a client id).
    let s2 = env.server.mint_oauth_session("alice").unwrap();
    let rt2 = s2.issued.refresh_token.clone().unwrap();
    let r = post_form(
        &env,
        "/oauth2/revoke",
        &[("token", &rt2), ("token_type_hint", "access_token")],
    )
    .await;
    out.push(step(&env, "revoke refresh token", &r.reply));
    assert_eq!(env.whoami(&s2.issued.access_token).await.status, 401);
    // Unknown, already revoked, and legacy tokens: 200, nothing happens.
    let legacy = env.login("alice", "wonderland", true).await;
    for (name, token) in [
        ("unknown token", "mat_nope".to_owned()),
        ("already revoked", s.issued.access_token.clone()),
        ("legacy token", legacy.str("access_token")),
    ] {
        let r = post_form(&env, "/oauth2/revoke", &[("token", &token)]).await;
        out.push(step(&env, name, &r.reply));
    }
    assert_eq!(env.whoami(&legacy.str("access_token")).await.status, 200);
    let r = post_form(&env, "/oauth2/revoke", &[("token_type_hint", "access_token")]).await;
    out.push(step(&env, "no token", &r.reply));
    let r = post_form(
        &env,
        "/oauth2/revoke",
        &[("token", "x"), ("token_type_hint", "id_token")],
    )
    .await;
    out.push(step(&env, "unsupported hint", &r.reply));
    let r = env.post("/oauth2/revoke", None, json!({"token": "x"})).await;
    out.push(step(&env, "JSON body", &r));
    insta::assert_json_snapshot!("revocation", out);
    let trace = oauth_entries(&env, "oauth_revoke");
    assert_eq!(trace[0].flags["token"], "at#1");
    assert_eq!(trace[0].flags["session_revoked"], true);
    assert_eq!(trace[0].device_id, Some(s.issued.device_id.clone()));
    assert_eq!(trace[1].flags["token"], "rt#2");
    assert_eq!(trace[2].flags["token"], "unknown");
    assert_eq!(trace[2].flags["session_revoked"], false);
}
