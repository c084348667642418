//! The OAuth 2.0 authorization-code grant over real HTTP: the authorization endpoint's redirects
//! (code and state in the query or the fragment; errors only to a known redirect URI) and the code
//! exchange at the token endpoint with PKCE (RFC 7636) and every RFC 6749 error, code replays and
//! expiry.

mod common;

use common::oauth::{
    REDIRECT, VERIFIER, authorize, callback, env, exchange, full, new_code, oauth_entries, post_form,
    redirect_step, register, register_client, send, standard_authorize, step,
};
use rotary_server::{Profile, s256_challenge};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn authorize_redirects_with_code_and_state_in_query_or_fragment() {
    let env = env(Profile::Mas).await;
    let client = register_client(&env).await;
    let challenge = s256_challenge(VERIFIER);
    let scope = "urn:matrix:client:api:* urn:matrix:client:device:PHONE1";
    let q = authorize(&env, &standard_authorize(&client, &challenge, scope)).await;
    assert_eq!(q.reply.status, 302);
    let (to, part, params) = callback(q.header("location").unwrap());
    assert_eq!((to.as_str(), part), (REDIRECT, "query"));
    assert_eq!(params["state"], "st4te");
    assert_eq!(params["code"].len(), 32);

    let mut fragment = standard_authorize(&client, &challenge, scope);
    fragment.push(("response_mode", "fragment"));
    fragment.push(("login_hint", "mxid:@bob:localhost"));
    let f = authorize(&env, &fragment).await;
    let (_, part, params) = callback(f.header("location").unwrap());
    assert_eq!(part, "fragment");
    assert_eq!(params["state"], "st4te");
    // The code is bob's, for the device the scope named.
    let t = exchange(&env, &client, &params["code"], Some(VERIFIER)).await;
    assert_eq!(t.reply.status, 200, "{:?}", t.reply.body);
    assert_eq!(
        t.reply.str("scope"),
        "urn:matrix:client:api:* urn:matrix:client:device:PHONE1"
    );
    let who = env.whoami(&t.reply.str("access_token")).await;
    assert_eq!(
        (who.str("user_id"), who.str("device_id")),
        ("@bob:localhost".to_owned(), "PHONE1".to_owned())
    );

    // No device scope: a new random device, named in the granted scope. The MSC2967 API scope
    // is accepted. A loopback redirect URI matches on any port.
    let r = authorize(
        &env,
        &[
            ("response_type", "code"),
            ("client_id", &client),
            ("redirect_uri", "http://127.0.0.1:4444/callback"),
            ("scope", "urn:matrix:org.matrix.msc2967.client:api:*"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let (to, _, params) = callback(r.header("location").expect("a redirect"));
    assert_eq!(to, "http://127.0.0.1:4444/callback");
    assert!(!params.contains_key("state"));
    let t = post_form(
        &env,
        "/oauth2/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", "http://127.0.0.1:4444/callback"),
            ("client_id", &client),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    let scope = t.reply.str("scope");
    let device = scope.rsplit_once(':').unwrap().1.to_owned();
    assert!(scope.starts_with("urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:client:device:"));
    assert_eq!(
        env.whoami(&t.reply.str("access_token")).await.str("device_id"),
        device
    );
    let e = &oauth_entries(&env, "oauth_authorize")[0];
    assert_eq!((e.status, e.device_id.as_deref()), (Some(302), Some("PHONE1")));
    assert_eq!(e.flags["response_type"], "code");
}

#[tokio::test]
async fn authorize_errors_redirect_only_to_a_known_redirect_uri() {
    let env = env(Profile::Mas).await;
    let client = register_client(&env).await;
    let challenge = s256_challenge(VERIFIER);
    let scope = "urn:matrix:client:api:*";
    let base = standard_authorize(&client, &challenge, scope);
    let with = |changes: &[(&'static str, Option<&'static str>)]| {
        let mut p: Vec<(&str, &str)> = base.clone();
        for (k, v) in changes {
            p.retain(|(pk, _)| pk != k);
            if let Some(v) = v {
                p.push((k, v));
            }
        }
        p
    };
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no client_id", with(&[("client_id", None)])),
        ("unknown client", with(&[("client_id", Some("01NOPE"))])),
        (
            "unregistered redirect_uri",
            with(&[("redirect_uri", Some("https://evil.example/cb"))]),
        ),
        (
            "no redirect_uri with two registered",
            with(&[("redirect_uri", None)]),
        ),
        ("no code_challenge", with(&[("code_challenge", None)])),
        (
            "no code_challenge_method (plain)",
            with(&[("code_challenge_method", None)]),
        ),
        ("plain method", with(&[("code_challenge_method", Some("plain"))])),
        ("short code_challenge", with(&[("code_challenge", Some("abc"))])),
        ("response_type token", with(&[("response_type", Some("token"))])),
        ("no response_type", with(&[("response_type", None)])),
        (
            "unknown response_mode",
            with(&[("response_mode", Some("form_post"))]),
        ),
        ("scope without the API", with(&[("scope", Some("openid"))])),
        (
            "two devices",
            with(&[(
                "scope",
                Some("urn:matrix:client:api:* urn:matrix:client:device:A urn:matrix:client:device:B"),
            )]),
        ),
        (
            "unknown user",
            with(&[("login_hint", Some("mxid:@nobody:localhost"))]),
        ),
    ];
    let mut repeated = base.clone();
    repeated.push(("state", "again"));
    let cases = cases.into_iter().chain([("repeated state", repeated)]);
    let mut out = Vec::new();
    for (name, params) in cases {
        let r = authorize(&env, &params).await;
        out.push(redirect_step(&env, name, &r));
    }
    // A client registered without the code grant.
    let refresh_only = register(
        &env,
        json!({"redirect_uris": [REDIRECT], "grant_types": ["refresh_token"], "response_types": []}),
    )
    .await
    .reply
    .str("client_id");
    let r = authorize(&env, &standard_authorize(&refresh_only, &challenge, scope)).await;
    out.push(redirect_step(&env, "client without the code grant", &r));
    insta::assert_json_snapshot!("authorize_errors", out);
    let errors: Vec<Option<String>> = oauth_entries(&env, "oauth_authorize")
        .into_iter()
        .map(|e| e.errcode)
        .collect();
    assert_eq!(errors[0].as_deref(), Some("invalid_request"));
    assert_eq!(errors[8].as_deref(), Some("unsupported_response_type"));
}

#[tokio::test]
async fn code_exchange_with_pkce_and_its_errors() {
    let env = env(Profile::Mas).await;
    let client = register_client(&env).await;
    let other = register_client(&env).await;
    let challenge = s256_challenge(VERIFIER);
    let scope = "urn:matrix:client:api:* urn:matrix:client:device:LAPTOP";
    let mut out = Vec::new();
    let c = new_code(&env, &client, &challenge, scope).await;
    let pairs = |code: &str, client: &str| {
        vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), REDIRECT.to_owned()),
            ("client_id".to_owned(), client.to_owned()),
            ("code_verifier".to_owned(), VERIFIER.to_owned()),
        ]
    };
    let without = |mut p: Vec<(String, String)>, key: &str| {
        p.retain(|(k, _)| k != key);
        p
    };
    let replace = |mut p: Vec<(String, String)>, key: &str, value: &str| {
        for (k, v) in &mut p {
            if k == key {
                *v = value.to_owned();
            }
        }
        p
    };
    let r = send(&env, replace(pairs(&c, &client), "client_id", &other)).await;
    out.push(step(&env, "code issued to another client", &r.reply));
    let r = send(&env, replace(pairs(&c, &client), "client_id", "01UNKNOWN")).await;
    out.push(step(&env, "unknown client", &r.reply));
    let r = send(&env, without(pairs(&c, &client), "client_id")).await;
    out.push(step(&env, "no client_id", &r.reply));
    let r = send(&env, without(pairs(&c, &client), "code_verifier")).await;
    out.push(step(&env, "no code_verifier", &r.reply));
    let r = send(
        &env,
        replace(
            pairs(&c, &client),
            "code_verifier",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
        ),
    )
    .await;
    out.push(step(&env, "wrong code_verifier", &r.reply));
    let r = send(
        &env,
        replace(pairs(&c, &client), "redirect_uri", "https://app.example.com/cb"),
    )
    .await;
    out.push(step(&env, "another redirect_uri", &r.reply));
    let r = send(&env, without(pairs(&c, &client), "redirect_uri")).await;
    out.push(step(&env, "no redirect_uri", &r.reply));
    let r = send(&env, without(pairs(&c, &client), "code")).await;
    out.push(step(&env, "no code", &r.reply));
    let r = send(&env, replace(pairs(&c, &client), "code", "nope")).await;
    out.push(step(&env, "unknown code", &r.reply));
    let r = send(&env, without(pairs(&c, &client), "grant_type")).await;
    out.push(step(&env, "no grant_type", &r.reply));
    let r = send(&env, replace(pairs(&c, &client), "grant_type", "password")).await;
    out.push(step(&env, "unsupported grant_type", &r.reply));
    let mut dup = pairs(&c, &client);
    dup.push(("code".to_owned(), c.clone()));
    let r = send(&env, dup).await;
    out.push(step(&env, "repeated parameter", &r.reply));
    let json_body = full(
        env.http
            .post(env.url("/oauth2/token"))
            .json(&json!({"grant_type": "authorization_code", "code": c, "client_id": client})),
    )
    .await;
    out.push(step(&env, "JSON body", &json_body.reply));
    // None of the failures used the code up.
    let ok = send(&env, pairs(&c, &client)).await;
    assert_eq!(ok.reply.status, 200, "{:?}", ok.reply.body);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert_eq!(ok.header("pragma"), Some("no-cache"));
    out.push(step(&env, "exchange", &ok.reply));
    let at = ok.reply.str("access_token");
    assert_eq!(env.whoami(&at).await.str("device_id"), "LAPTOP");
    // A replay soon after is refused; one more than 20 s later also ends the session (MAS).
    let r = send(&env, pairs(&c, &client)).await;
    out.push(step(&env, "replayed at once", &r.reply));
    assert_eq!(env.whoami(&at).await.status, 200);
    env.server.advance_clock(Duration::from_secs(21));
    let r = send(&env, pairs(&c, &client)).await;
    out.push(step(&env, "replayed 21 s later", &r.reply));
    assert_eq!(env.whoami(&at).await.status, 401);
    // Codes live 10 minutes.
    let late = new_code(&env, &client, &challenge, scope).await;
    env.server.advance_clock(Duration::from_secs(601));
    let r = send(&env, pairs(&late, &client)).await;
    out.push(step(&env, "expired code", &r.reply));
    insta::assert_json_snapshot!("code_exchange", out);
    let trace = oauth_entries(&env, "oauth_token");
    let exchanged = trace.iter().find(|e| e.status == Some(200)).unwrap();
    assert_eq!(exchanged.flags["grant_type"], "authorization_code");
    assert_eq!(exchanged.flags["client_id"], json!(client));
    assert_eq!(exchanged.device_id.as_deref(), Some("LAPTOP"));
    let issued = exchanged.issued.as_ref().unwrap();
    assert_eq!(issued.expires_in_ms, Some(300_000));
    let revoking = trace.iter().rev().nth(1).unwrap();
    assert_eq!(revoking.flags["session_revoked"], true);
}
