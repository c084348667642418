//! Synapse's own refresh tests (tests/rest/client/test_auth.py::RefreshAuthTests), reproduced
//! against the `synapse` profile over HTTP, with the server clock advanced instead of sleeping.

mod common;

use common::{Env, start};
use rotary_server::MockHomeserver;
use serde_json::json;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn env_with(
    f: impl FnOnce(rotary_server::MockHomeserverBuilder) -> rotary_server::MockHomeserverBuilder,
) -> Env {
    start(f(MockHomeserver::builder().user("test", "pass"))).await
}

async fn login(env: &Env, refresh: bool) -> common::Reply {
    let r = env.login("test", "pass", refresh).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r
}

/// 1. Login without the flag gives no refresh token; with it, a refresh token and an expiry.
#[tokio::test]
async fn login_issue_refresh_token() {
    let env = env_with(|b| b).await;
    let plain = login(&env, false).await;
    assert!(plain.body.get("refresh_token").is_none());
    assert!(plain.body.get("expires_in_ms").is_none());
    let with = login(&env, true).await;
    assert!(with.body["refresh_token"].is_string());
    assert!(with.body["expires_in_ms"].is_number());
}

/// 2. The same for `/register` with dummy auth.
#[tokio::test]
async fn register_issue_refresh_token() {
    let env = env_with(|b| b).await;
    let reg = |user: &str, refresh: bool| {
        env.post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": user, "password": "pass", "auth": {"type": "m.login.dummy"}, "refresh_token": refresh}),
        )
    };
    let plain = reg("u1", false).await;
    assert_eq!(plain.status, 200);
    assert!(plain.body.get("refresh_token").is_none() && plain.body.get("expires_in_ms").is_none());
    let with = reg("u2", true).await;
    assert_eq!(with.status, 200);
    assert!(with.body["refresh_token"].is_string() && with.body["expires_in_ms"].is_number());
}

/// 3. `/refresh` returns new tokens, both different from the login ones.
#[tokio::test]
async fn token_refresh() {
    let env = env_with(|b| b).await;
    let l = login(&env, true).await;
    let r = env.refresh(&l.str("refresh_token")).await;
    assert_eq!(r.status, 200);
    assert!(r.body["expires_in_ms"].is_number());
    assert_ne!(r.str("access_token"), l.str("access_token"));
    assert_ne!(r.str("refresh_token"), l.str("refresh_token"));
}

/// 4. Lifetime 1 min: `expires_in_ms` ≈ 60000 at login and refresh; the refreshed token works at
///    +59 s and is refused at +61 s.
#[tokio::test]
async fn refreshable_access_token_expiration() {
    let env = env_with(|b| b.refreshable_access_token_lifetime(MIN)).await;
    let l = login(&env, true).await;
    let ms = l.body["expires_in_ms"].as_i64().unwrap();
    assert!((ms - 60_000).abs() <= 100, "{ms}");
    let r = env.refresh(&l.str("refresh_token")).await;
    let ms = r.body["expires_in_ms"].as_i64().unwrap();
    assert!((ms - 60_000).abs() <= 100, "{ms}");
    let at = r.str("access_token");
    env.server.advance_clock(secs(59));
    assert_eq!(env.whoami(&at).await.status, 200);
    env.server.advance_clock(secs(2));
    let expired = env.whoami(&at).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.errcode(), Some("M_UNKNOWN_TOKEN"));
    assert_eq!(expired.soft_logout(), Some(true));
}

/// 5. Refreshable 1 min and non-refreshable 10 min lifetimes apply to their own tokens.
#[tokio::test]
async fn different_expiry_for_refreshable_and_nonrefreshable_access_tokens() {
    let env = env_with(|b| {
        b.refreshable_access_token_lifetime(MIN)
            .nonrefreshable_access_token_lifetime(10 * MIN)
    })
    .await;
    let refreshable = login(&env, true).await.str("access_token");
    let plain = login(&env, false).await;
    assert!(plain.body.get("refresh_token").is_none());
    assert!(plain.body["expires_in_ms"].is_number());
    let plain = plain.str("access_token");
    env.server.advance_clock(secs(59));
    assert_eq!(env.whoami(&refreshable).await.status, 200);
    assert_eq!(env.whoami(&plain).await.status, 200);
    env.server.advance_clock(secs(2));
    assert_eq!(env.whoami(&refreshable).await.status, 401);
    assert_eq!(env.whoami(&plain).await.status, 200);
    env.server.advance_clock(secs(599 - 61));
    assert_eq!(env.whoami(&plain).await.status, 200);
    env.server.advance_clock(secs(2));
    assert_eq!(env.whoami(&refreshable).await.status, 401);
    assert_eq!(env.whoami(&plain).await.status, 401);
}

/// 6. Access 1 min, refresh token 2 min: refreshing at 119 s works and gives a new refresh token;
///    that one is refused 121 s later.
#[tokio::test]
async fn refresh_token_expiry() {
    let env = env_with(|b| {
        b.refreshable_access_token_lifetime(MIN)
            .refresh_token_lifetime(2 * MIN)
    })
    .await;
    let l = login(&env, true).await;
    env.server.advance_clock(secs(119));
    let r = env.refresh(&l.str("refresh_token")).await;
    assert_eq!(r.status, 200);
    let rt = r.str("refresh_token");
    assert_ne!(rt, l.str("refresh_token"));
    env.server.advance_clock(secs(121));
    let refused = env.refresh(&rt).await;
    assert_eq!((refused.status, refused.errcode()), (403, Some("M_FORBIDDEN")));
    assert_eq!(refused.body["error"], "The supplied refresh token has expired");
}

/// 7. Access 2 min, refresh 2 min, session 3 min: the refresh at 119 s is capped to the session
///    (`expires_in_ms` == 61000 exactly); 61 s later the session is over.
#[tokio::test]
async fn ultimate_session_expiry() {
    let env = env_with(|b| {
        b.refreshable_access_token_lifetime(2 * MIN)
            .refresh_token_lifetime(2 * MIN)
            .session_lifetime(3 * MIN)
    })
    .await;
    let l = login(&env, true).await;
    env.server.advance_clock(secs(119));
    let r = env.refresh(&l.str("refresh_token")).await;
    assert_eq!(r.status, 200);
    let ms = r.body["expires_in_ms"].as_i64().unwrap();
    // Synapse computes it from its own `now`; real time passing between login and refresh may
    // shave a few ms off the remainder (never add).
    assert!((59_000..=61_000).contains(&ms), "{ms}");
    env.server.advance_clock(secs(61));
    let refused = env.refresh(&r.str("refresh_token")).await;
    assert_eq!((refused.status, refused.errcode()), (403, Some("M_FORBIDDEN")));
}

/// 8. The invalidation chain of rotated refresh tokens.
#[tokio::test]
async fn refresh_token_invalidation() {
    let env = env_with(|b| b).await;
    let l = login(&env, true).await;
    let (login_at, login_rt) = (l.str("access_token"), l.str("refresh_token"));
    let first = env.refresh(&login_rt).await;
    assert_eq!(first.status, 200);
    // Reuse the login refresh token before the first successor was used: accepted.
    let second = env.refresh(&login_rt).await;
    assert_eq!(second.status, 200);
    // The first successor pair was discarded.
    let r = env.refresh(&first.str("refresh_token")).await;
    assert_eq!((r.status, r.errcode()), (401, Some("M_UNKNOWN_TOKEN")));
    let r = env.whoami(&first.str("access_token")).await;
    assert_eq!((r.status, r.errcode()), (401, Some("M_UNKNOWN_TOKEN")));
    // The login and second access tokens still work.
    assert_eq!(env.whoami(&login_at).await.status, 200);
    assert_eq!(env.whoami(&second.str("access_token")).await.status, 200);
    // Now that the second access token was used, the login refresh token is refused...
    let r = env.refresh(&login_rt).await;
    assert_eq!((r.status, r.errcode()), (403, Some("M_FORBIDDEN")));
    // ...and the second refresh token works.
    assert_eq!(env.refresh(&second.str("refresh_token")).await.status, 200);
}

/// 9. One access and one refresh token after login; two of each after five refreshes; none after
///    logout with the latest access token.
#[tokio::test]
async fn many_token_refresh() {
    let env = env_with(|b| b).await;
    let l = login(&env, true).await;
    assert_eq!(env.server.live_token_counts(), (1, 1));
    let (mut at, mut rt) = (l.str("access_token"), l.str("refresh_token"));
    for _ in 0..5 {
        let r = env.refresh(&rt).await;
        assert_eq!(r.status, 200);
        (at, rt) = (r.str("access_token"), r.str("refresh_token"));
        assert_eq!(env.whoami(&at).await.status, 200);
    }
    assert_eq!(env.server.live_token_counts(), (2, 2));
    assert_eq!(
        env.post("/_matrix/client/v3/logout", Some(&at), json!({}))
            .await
            .status,
        200
    );
    assert_eq!(env.server.live_token_counts(), (0, 0));
}

/// 10. A device deleted by another device: its access token gets 401 `M_UNKNOWN_TOKEN`.
#[tokio::test]
async fn device_deleted_by_another_device() {
    let env = env_with(|b| b).await;
    let victim = login(&env, true).await;
    let other = login(&env, true).await.str("access_token");
    let device = victim.str("device_id");
    let auth = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "test"}, "password": "pass"}});
    let r = env
        .call(
            "DELETE",
            &format!("/_matrix/client/v3/devices/{device}"),
            Some(&other),
            Some(auth),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = env.whoami(&victim.str("access_token")).await;
    assert_eq!((r.status, r.errcode()), (401, Some("M_UNKNOWN_TOKEN")));
}
