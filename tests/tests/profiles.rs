//! Each profile's differences: reuse outcome, old access token, error bodies, rate limit, paths.

mod common;

use common::{Env, Reply, redact, start};
use rotary_server::{MockHomeserver, Profile};
use serde_json::{Value, json};
use std::time::Duration;

async fn env(profile: Profile) -> Env {
    start(MockHomeserver::builder().profile(profile)).await
}

/// The core exchange every profile answers differently: login, refresh, use the new token, reuse
/// the old refresh token, use the old access token, expire, unknown token.
async fn core_flow(profile: Profile) -> Value {
    let env = env(profile).await;
    let mut out = Vec::new();
    let mut add = |label: &str, r: &Reply| {
        out.push(json!({"step": label, "status": r.status, "body": redact(&r.body)}))
    };
    let l = env.login("alice", "wonderland", true).await;
    add("login", &l);
    let (at0, rt0) = (l.str("access_token"), l.str("refresh_token"));
    if rt0.is_empty() {
        add("refresh (no refresh support)", &env.refresh("syr_x").await);
        env.server.advance_clock(Duration::from_secs(3600));
        add("old access token an hour later", &env.whoami(&at0).await);
        return Value::Array(out);
    }
    let r1 = env.refresh(&rt0).await;
    add("refresh", &r1);
    add("old access token after refresh", &env.whoami(&at0).await);
    add("reuse before successor used", &env.refresh(&rt0).await);
    let fresh = env.login("alice", "wonderland", true).await;
    let f1 = env.refresh(&fresh.str("refresh_token")).await;
    add("new access token", &env.whoami(&f1.str("access_token")).await);
    add(
        "reuse after successor used",
        &env.refresh(&fresh.str("refresh_token")).await,
    );
    add(
        "unknown refresh token",
        &env.refresh("syr_YWxpY2U_AAAAAAAAAAAAAAAAAAAAAAAA_000000").await,
    );
    add("unknown access token", &env.whoami("syt_nope").await);
    env.server.advance_clock(Duration::from_secs(301));
    add("expired access token", &env.whoami(&f1.str("access_token")).await);
    Value::Array(out)
}

#[tokio::test]
async fn core_flow_synapse() {
    insta::assert_json_snapshot!("core_synapse", core_flow(Profile::Synapse).await);
}

#[tokio::test]
async fn core_flow_spec() {
    insta::assert_json_snapshot!("core_spec", core_flow(Profile::Spec).await);
}

#[tokio::test]
async fn core_flow_mas() {
    insta::assert_json_snapshot!("core_mas", core_flow(Profile::Mas).await);
}

#[tokio::test]
async fn core_flow_no_refresh() {
    insta::assert_json_snapshot!("core_no_refresh", core_flow(Profile::NoRefresh).await);
}

#[tokio::test]
async fn reuse_outcomes_differ_per_profile() {
    for (profile, status, errcode) in [
        (Profile::Synapse, 403, "M_FORBIDDEN"),
        (Profile::Spec, 401, "M_UNKNOWN_TOKEN"),
        (Profile::Mas, 401, "M_UNKNOWN_TOKEN"),
    ] {
        let env = env(profile).await;
        let (_, rt) = env.alice().await;
        let next = env.refresh(&rt).await;
        assert_eq!(env.whoami(&next.str("access_token")).await.status, 200);
        let reused = env.refresh(&rt).await;
        assert_eq!(
            (reused.status, reused.errcode()),
            (status, Some(errcode)),
            "{profile}"
        );
    }
}

#[tokio::test]
async fn mas_has_no_grace_window_and_kills_the_old_access_token() {
    let env = env(Profile::Mas).await;
    let (at, rt) = env.alice().await;
    assert!(at.starts_with("mct_") && rt.starts_with("mcr_"));
    let next = env.refresh(&rt).await;
    assert_eq!(next.status, 200);
    let old = env.whoami(&at).await;
    assert_eq!(
        old.body,
        json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Token is not active", "soft_logout": false})
    );
    // Unused successor or not: the old refresh token is consumed at once.
    let again = env.refresh(&rt).await;
    assert_eq!(
        again.body,
        json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid refresh token"})
    );
}

#[tokio::test]
async fn spec_profile_rate_limits_refresh_on_the_server_clock() {
    let env = env(Profile::Spec).await;
    let mut limited = None;
    for _ in 0..10 {
        let r = env.refresh("syr_whatever").await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the spec profile rate-limits /refresh");
    assert_eq!(r.errcode(), Some("M_LIMIT_EXCEEDED"));
    assert!(r.body["retry_after_ms"].as_u64().unwrap() > 0);
    env.server.advance_clock(Duration::from_secs(10));
    assert_ne!(env.refresh("syr_whatever").await.status, 429);
    // The unstable MSC2918 path and login flag are honoured by the spec profile.
    let r = env
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "user": "alice", "password": "wonderland", "org.matrix.msc2918.refresh_token": true}),
        )
        .await;
    let rt = r.str("refresh_token");
    assert!(!rt.is_empty());
    let r = env
        .post(
            "/_matrix/client/unstable/org.matrix.msc2918/refresh",
            None,
            json!({"refresh_token": rt}),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn no_refresh_profile_ignores_the_flag_and_hides_the_endpoint() {
    let env = env(Profile::NoRefresh).await;
    let l = env.login("alice", "wonderland", true).await;
    assert!(l.body.get("refresh_token").is_none() && l.body.get("expires_in_ms").is_none());
    let r = env.refresh("syr_x").await;
    assert_eq!((r.status, r.errcode()), (404, Some("M_UNRECOGNIZED")));
}

#[tokio::test]
async fn single_knobs_change_one_behaviour() {
    let env = start(MockHomeserver::builder().configure(|c| {
        c.rotate_refresh_tokens = false;
        c.refresh_failure_soft_logout = Some(true);
        c.serve_v1_refresh = true;
    }))
    .await;
    let (_, rt) = env.alice().await;
    let r = env
        .post("/_matrix/client/v1/refresh", None, json!({"refresh_token": rt}))
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.get("refresh_token").is_none(),
        "non-rotating: the old refresh token stays"
    );
    assert_eq!(env.refresh(&rt).await.status, 200);
    let bad = env.refresh("syr_nope").await;
    assert_eq!(bad.soft_logout(), Some(true));
}

#[tokio::test]
async fn the_synapse_token_cache_quirk_is_a_knob() {
    for keep in [true, false] {
        let env = start(
            MockHomeserver::builder().configure(|c| c.keep_used_access_token_of_dropped_generation = keep),
        )
        .await;
        let (at0, rt0) = env.alice().await;
        assert_eq!(env.whoami(&at0).await.status, 200);
        let r1 = env.refresh(&rt0).await;
        assert_eq!(env.whoami(&r1.str("access_token")).await.status, 200);
        let r2 = env.refresh(&r1.str("refresh_token")).await;
        assert_eq!(r2.status, 200);
        // at0's generation is gone now; Synapse still answers a used token from its cache.
        let status = env.whoami(&at0).await.status;
        assert_eq!(status, if keep { 200 } else { 401 });
    }
}
