//! Refresh-token replays at the OAuth 2.0 token endpoint: MAS accepts a consumed token only while its
//! successor is unused; the spec's rules (and a grace window) treat a second use as a replay that
//! ends the session.

mod common;

use common::oauth::{env, oauth_entries, redact, refresh};
use common::start;
use rotary_server::{MockHomeserver, Profile};
use std::time::Duration;

#[tokio::test]
async fn mas_accepts_a_consumed_token_only_while_its_successor_is_unused() {
    let env = env(Profile::Mas).await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let (c, a) = (s.client_id.clone(), s.issued.refresh_token.clone().unwrap());
    let b = refresh(&env, &c, &a).await;
    assert_eq!(b.status, 200);
    // The response was lost: the client retries with the old token. The unused pair is revoked.
    let c2 = refresh(&env, &c, &a).await;
    assert_eq!(c2.status, 200, "{:?}", c2.body);
    assert_eq!(env.whoami(&b.str("access_token")).await.status, 401);
    let stale = refresh(&env, &c, &b.str("refresh_token")).await;
    assert_eq!(
        (stale.status, stale.str("error").as_str()),
        (400, "invalid_grant")
    );
    // Once the new access token is used, the old refresh token is refused — and the session lives.
    assert_eq!(env.whoami(&c2.str("access_token")).await.status, 200);
    let replay = refresh(&env, &c, &a).await;
    assert_eq!(
        (replay.status, replay.str("error").as_str()),
        (400, "invalid_grant")
    );
    assert_eq!(env.whoami(&c2.str("access_token")).await.status, 200);
    let states: Vec<String> = oauth_entries(&env, "oauth_token")
        .iter()
        .map(|e| {
            let rt = e.refresh_token.as_ref().unwrap();
            format!("{} {:?} {:?}", rt.label, rt.state, e.status)
        })
        .collect();
    insta::assert_json_snapshot!("mas_replay_states", states);
    // The successor refresh token works.
    assert_eq!(refresh(&env, &c, &c2.str("refresh_token")).await.status, 200);
}

#[tokio::test]
async fn oauth_spec_treats_any_second_use_as_a_replay() {
    // The profile's default: a refresh token is invalidated by its use, so even the retry after a
    // lost response is a replay, refused, and the session revoked.
    let env = env(Profile::OAuthSpec).await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let (c, a) = (s.client_id.clone(), s.issued.refresh_token.clone().unwrap());
    let b = refresh(&env, &c, &a).await;
    assert_eq!(b.status, 200);
    let replay = refresh(&env, &c, &a).await;
    assert_eq!(
        (replay.status, replay.str("error").as_str()),
        (400, "invalid_grant")
    );
    let who = env.whoami(&b.str("access_token")).await;
    assert_eq!((who.status, who.errcode()), (401, Some("M_UNKNOWN_TOKEN")));
    assert!(env.server.sessions(Some("alice")).is_empty());
}

#[tokio::test]
async fn replay_revocation_with_a_grace_window() {
    // `oauth_replay_revokes_session` with MAS's grace window: a refused replay revokes.
    let env = start(
        MockHomeserver::builder()
            .profile(Profile::OAuthSpec)
            .configure(|c| c.oauth_reuse_policy = rotary_server::OAuthReusePolicy::Grace)
            .user("bob", "builder"),
    )
    .await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let (c, a) = (s.client_id.clone(), s.issued.refresh_token.clone().unwrap());
    let b = refresh(&env, &c, &a).await;
    // The grace window: the successor is unused.
    let b2 = refresh(&env, &c, &a).await;
    assert_eq!(b2.status, 200);
    assert_eq!(env.whoami(&b2.str("access_token")).await.status, 200);
    let replay = refresh(&env, &c, &a).await;
    assert_eq!(
        (replay.status, replay.str("error").as_str()),
        (400, "invalid_grant")
    );
    insta::assert_json_snapshot!("oauth_spec_replay", redact(&env, &replay.body));
    // The whole session is gone.
    let who = env.whoami(&b2.str("access_token")).await;
    assert_eq!((who.status, who.errcode()), (401, Some("M_UNKNOWN_TOKEN")));
    let next = refresh(&env, &c, &b2.str("refresh_token")).await;
    assert_eq!(next.status, 400);
    assert!(env.server.sessions(Some("alice")).is_empty());
    let e = oauth_entries(&env, "oauth_token").swap_remove(2);
    assert_eq!(e.flags["session_revoked"], true);
    assert_eq!(
        e.refresh_token.unwrap().state,
        rotary_server::RefreshState::Consumed
    );
    // The first refresh's pair was revoked by the retry.
    assert_eq!(env.whoami(&b.str("access_token")).await.status, 401);
    // Expired OAuth access tokens get the spec profile's soft logout.
    let s = env.server.mint_oauth_session("alice").unwrap();
    env.server.advance_clock(Duration::from_secs(301));
    let who = env.whoami(&s.issued.access_token).await;
    assert_eq!((who.status, who.soft_logout()), (401, Some(true)));
}
