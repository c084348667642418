//! Faults on the OAuth 2.0 endpoints: lost, delayed, reset and error answers hit the token endpoint
//! as they hit `/refresh`, rules pick a refresh by token label and user, and an injected OAuth error
//! looks like a real token-endpoint error.

mod common;

use common::oauth::{FORM, encode, oauth_entries, post_form, refresh};
use common::start;
use rotary_server::{Delivery, FaultAction, FaultRule, MockHomeserver, Profile};
use std::time::Duration;

#[tokio::test]
async fn faults_hit_the_token_endpoint_like_refresh() {
    let env = start(
        MockHomeserver::builder()
            .profile(Profile::Mas)
            .fault(FaultRule::on("oauth_token", FaultAction::CommitThenDrop).nth(1)),
    )
    .await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let (c, a) = (s.client_id.clone(), s.issued.refresh_token.clone().unwrap());
    let lost = env
        .http
        .post(env.url("/oauth2/token"))
        .header("content-type", FORM)
        .body(encode(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &a),
            ("client_id", &c),
        ]))
        .send()
        .await;
    assert!(lost.is_err(), "the response must be lost");
    let e = oauth_entries(&env, "oauth_token").remove(0);
    assert_eq!((e.status, e.delivery), (Some(200), Delivery::Dropped));
    assert_eq!(e.fault.as_ref().unwrap().action, "commit_then_drop");
    assert_eq!(e.issued.as_ref().unwrap().refresh_token.as_deref(), Some("rt#2"));
    // The server rotated; under MAS the retry with the old token is accepted.
    let retry = refresh(&env, &c, &a).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    let e = oauth_entries(&env, "oauth_token").remove(1);
    assert_eq!(
        e.refresh_token.unwrap().state,
        rotary_server::RefreshState::PreviousUnused
    );
    assert_eq!(env.whoami(&retry.str("access_token")).await.status, 200);

    // A Matrix error body, an HTML page, a reset: the request is not performed.
    let rt = retry.str("refresh_token");
    let error = FaultAction::Error {
        status: 503,
        errcode: None,
        error: None,
        soft_logout: None,
        retry_after_ms: None,
    };
    env.server
        .add_fault(FaultRule::on("oauth_token", error).first(1))
        .unwrap();
    let r = refresh(&env, &c, &rt).await;
    assert_eq!((r.status, r.errcode()), (503, Some("M_UNKNOWN")));
    env.server
        .add_fault(FaultRule::on("oauth_token", FaultAction::Html { status: 502 }).first(1))
        .unwrap();
    let r = refresh(&env, &c, &rt).await;
    assert_eq!(r.status, 502);
    assert!(r.body.as_str().unwrap_or_default().contains("nginx"));
    env.server
        .add_fault(FaultRule::on("oauth_token", FaultAction::Reset).first(1))
        .unwrap();
    assert!(
        env.http
            .post(env.url("/oauth2/token"))
            .header("content-type", FORM)
            .body(encode(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", &c),
            ]))
            .send()
            .await
            .is_err()
    );
    let ok = refresh(&env, &c, &rt).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    // A rule can pick a refresh by the presented token's label and by user.
    let next_rt = ok.str("refresh_token");
    let label = env.server.label_of(&next_rt).unwrap();
    let mut by_token = FaultRule::on("oauth_token", FaultAction::Html { status: 504 });
    by_token.token = Some(label);
    by_token.user = Some("alice".into());
    env.server.add_fault(by_token).unwrap();
    assert_eq!(refresh(&env, &c, &next_rt).await.status, 504);
    env.server.clear_faults();
    // A delay answers late but normally; revocation can be faulted too.
    env.server
        .add_fault(
            FaultRule::on(
                "oauth_token",
                FaultAction::Delay {
                    duration: Duration::from_millis(50),
                },
            )
            .first(1),
        )
        .unwrap();
    assert_eq!(refresh(&env, &c, &next_rt).await.status, 200);
    env.server
        .add_fault(FaultRule::on("oauth_revoke", FaultAction::Html { status: 502 }).first(1))
        .unwrap();
    let r = post_form(&env, "/oauth2/revoke", &[("token", "x")]).await;
    assert_eq!(r.reply.status, 502);
}

#[tokio::test]
async fn an_injected_oauth_error_looks_like_a_token_endpoint_error() {
    let rule = FaultRule::from_toml(
        r#"endpoint = "oauth_token"
nth = 1
action = { kind = "oauth_error", status = 429, error = "temporarily_unavailable", retry_after_ms = 1500 }"#,
    )
    .unwrap();
    let env = start(MockHomeserver::builder().profile(Profile::Mas).fault(rule)).await;
    let s = env.server.mint_oauth_session("alice").unwrap();
    let (c, a) = (s.client_id.clone(), s.issued.refresh_token.clone().unwrap());
    let r = post_form(
        &env,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &a),
            ("client_id", &c),
        ],
    )
    .await;
    assert_eq!(r.reply.status, 429);
    assert_eq!(r.reply.str("error"), "temporarily_unavailable");
    assert!(
        r.reply.body.get("errcode").is_none(),
        "an OAuth body, not a Matrix one"
    );
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let e = oauth_entries(&env, "oauth_token").swap_remove(0);
    assert_eq!(e.errcode.as_deref(), Some("temporarily_unavailable"));
    assert_eq!(e.fault.map(|f| f.action), Some("oauth_error".to_owned()));
    // Not performed: the refresh token still works once the fault is spent.
    assert_eq!(refresh(&env, &c, &a).await.status, 200);
}
