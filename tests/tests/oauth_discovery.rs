//! OAuth 2.0 discovery and client registration over real HTTP (Matrix v1.15, as MAS serves it): the
//! server metadata, its issuer, where it is served (and where not), and dynamic client registration
//! (RFC 7591) with its errors.

mod common;

use common::oauth::{env, full, oauth_entries, post_form, redact, register, step};
use common::start;
use rotary_server::{MockHomeserver, Profile};
use serde_json::json;

#[tokio::test]
async fn auth_metadata_lists_the_endpoints_and_what_they_support() {
    let env = env(Profile::Mas).await;
    let stable = env.get("/_matrix/client/v1/auth_metadata", None).await;
    assert_eq!(stable.status, 200);
    let unstable = env
        .get("/_matrix/client/unstable/org.matrix.msc2965/auth_metadata", None)
        .await;
    assert_eq!(unstable.body, stable.body);
    assert_eq!(stable.str("issuer"), env.server.issuer());
    insta::assert_json_snapshot!("auth_metadata", redact(&env, &stable.body));
    // POST is not served there.
    let post = env
        .post("/_matrix/client/v1/auth_metadata", None, json!({}))
        .await;
    assert_eq!((post.status, post.errcode()), (405, Some("M_UNRECOGNIZED")));

    // Off by default in the synapse profile: 404, yet the trace names the endpoint.
    let off = common::default_env().await;
    for path in [
        "/_matrix/client/v1/auth_metadata",
        "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
    ] {
        let r = off.get(path, None).await;
        assert_eq!((r.status, r.errcode()), (404, Some("M_UNRECOGNIZED")));
    }
    let r = post_form(&off, "/oauth2/token", &[("grant_type", "refresh_token")]).await;
    assert_eq!(r.reply.status, 404);
    let names: Vec<String> = off
        .server
        .trace()
        .iter()
        .map(|e| e.endpoint.to_string())
        .collect();
    assert_eq!(names, ["auth_metadata", "auth_metadata", "oauth_token"]);

    // A Synapse that delegates to MAS: the knob alone turns it on.
    let delegated = start(MockHomeserver::builder().oauth(true)).await;
    let r = delegated.get("/_matrix/client/v1/auth_metadata", None).await;
    assert_eq!(r.status, 200);
    // Without refresh support the refresh grant is not offered.
    let no_refresh = start(
        MockHomeserver::builder()
            .profile(Profile::NoRefresh)
            .configure(|c| c.oauth = true),
    )
    .await;
    let r = no_refresh.get("/_matrix/client/v1/auth_metadata", None).await;
    assert_eq!(r.body["grant_types_supported"], json!(["authorization_code"]));
}

#[tokio::test]
async fn the_issuer_follows_the_host_header() {
    let env = env(Profile::Mas).await;
    let r = full(
        env.http
            .get(env.url("/_matrix/client/v1/auth_metadata"))
            .header("host", "matrix.example.test:8008"),
    )
    .await;
    assert_eq!(r.reply.str("issuer"), "http://matrix.example.test:8008/");
    assert_eq!(
        r.reply.str("token_endpoint"),
        "http://matrix.example.test:8008/oauth2/token"
    );
}

#[tokio::test]
async fn client_registration_and_its_errors() {
    let env = env(Profile::Mas).await;
    let mut out = Vec::new();
    let ok = register(
        &env,
        json!({
            "client_name": "My App",
            "client_name#fr": "Mon application",
            "client_uri": "https://example.com/",
            "redirect_uris": ["https://app.example.com/callback", "http://127.0.0.1/cb", "com.example.app:/cb"],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
            "unknown_field": 1,
        }),
    )
    .await;
    assert_eq!(ok.reply.status, 201);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert_eq!(ok.header("pragma"), Some("no-cache"));
    assert_eq!(ok.reply.str("client_id").len(), 26);
    out.push(step(&env, "registered", &ok.reply));
    let defaults = register(&env, json!({"redirect_uris": ["https://app.example.com/cb"]})).await;
    out.push(step(&env, "defaults", &defaults.reply));
    let bad = [
        ("not JSON", None),
        ("not an object", Some(json!(["x"]))),
        (
            "redirect_uris not a list",
            Some(json!({"redirect_uris": "https://a.example/cb"})),
        ),
        ("no redirect_uris", Some(json!({"client_name": "x"}))),
        (
            "fragment",
            Some(json!({"redirect_uris": ["https://a.example/cb#f"]})),
        ),
        (
            "http on a remote host",
            Some(json!({"redirect_uris": ["http://a.example/cb"]})),
        ),
        (
            "private-use scheme for a web client",
            Some(json!({"redirect_uris": ["com.example.app:/cb"]})),
        ),
        (
            "private-use scheme with an authority",
            Some(json!({"redirect_uris": ["com.example.app://cb"], "application_type": "native"})),
        ),
        (
            "confidential client",
            Some(
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            ),
        ),
        (
            "unsupported response type",
            Some(json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]})),
        ),
        (
            "no supported grant",
            Some(json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]})),
        ),
        (
            "unknown application type",
            Some(json!({"redirect_uris": ["https://a.example/cb"], "application_type": "desktop"})),
        ),
    ];
    for (name, body) in bad {
        let r = match body {
            Some(b) => register(&env, b).await.reply,
            None => env.raw("POST", "/oauth2/registration", "{not json").await,
        };
        assert_eq!(r.status, 400, "{name}: {:?}", r.body);
        out.push(step(&env, name, &r));
    }
    insta::assert_json_snapshot!("registration", out);
    let trace = oauth_entries(&env, "oauth_registration");
    assert_eq!(trace[0].status, Some(201));
    assert!(trace[0].flags.contains_key("client_id"));
    assert_eq!(trace[3].errcode.as_deref(), Some("invalid_client_metadata"));
}
