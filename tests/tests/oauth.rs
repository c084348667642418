//! The OAuth 2.0 API (Matrix v1.15, as MAS serves it) over real HTTP: server metadata, client
//! registration, the authorization endpoint, the token endpoint's two grants with every RFC 6749 /
//! RFC 7636 error, MAS's and the spec's replay rules, faults, revocation, the control API and the
//! trace.

mod common;

use common::{Env, Reply, start};
use rotary_server::{
    Delivery, FaultAction, FaultRule, MockHomeserver, OAuthIssued, OAuthMintRequest, Profile, s256_challenge,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://127.0.0.1/callback";
const FORM: &str = "application/x-www-form-urlencoded";

async fn env(profile: Profile) -> Env {
    start(MockHomeserver::builder().profile(profile).user("bob", "builder")).await
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A reply with its headers.
struct Full {
    reply: Reply,
    headers: reqwest::header::HeaderMap,
}

impl Full {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn full(req: reqwest::RequestBuilder) -> Full {
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Full {
        reply: Reply { status, body },
        headers,
    }
}

/// `POST` a form-encoded body.
async fn post_form(env: &Env, path: &str, pairs: &[(&str, &str)]) -> Full {
    full(
        env.http
            .post(env.url(path))
            .header("content-type", FORM)
            .body(encode(pairs)),
    )
    .await
}

async fn refresh(env: &Env, client_id: &str, rt: &str) -> Reply {
    post_form(
        env,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", client_id),
        ],
    )
    .await
    .reply
}

async fn register(env: &Env, metadata: Value) -> Full {
    full(env.http.post(env.url("/oauth2/registration")).json(&metadata)).await
}

async fn register_client(env: &Env) -> String {
    let r = register(
        env,
        json!({
            "client_name": "Test client",
            "redirect_uris": [REDIRECT, "https://app.example.com/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web",
        }),
    )
    .await;
    assert_eq!(r.reply.status, 201, "{:?}", r.reply.body);
    r.reply.str("client_id")
}

/// `GET /oauth2/authorize` without following the redirect.
async fn authorize(env: &Env, params: &[(&str, &str)]) -> Full {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    full(client.get(format!("{}?{}", env.url("/oauth2/authorize"), encode(params)))).await
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn decode(v: &str) -> String {
    let v = v.replace('+', " ");
    let raw = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .filter(|_| raw[i] == b'%')
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(raw[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// The parameters a redirect carried, and in which part of the URI.
fn callback(location: &str) -> (String, &'static str, BTreeMap<String, String>) {
    let (base, part, rest) = if let Some((b, r)) = location.split_once('#') {
        (b, "fragment", r)
    } else if let Some((b, r)) = location.split_once('?') {
        (b, "query", r)
    } else {
        (location, "none", "")
    };
    let params = rest
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), decode(v))
        })
        .collect();
    (base.to_owned(), part, params)
}

fn standard_authorize<'a>(
    client_id: &'a str,
    challenge: &'a str,
    device: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", device),
        ("state", "st4te"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Authorizes and exchanges the code: a full browserless login. Returns the token response.
async fn login(env: &Env, client_id: &str, device: &str) -> Reply {
    let challenge = s256_challenge(VERIFIER);
    let scope = format!("urn:matrix:client:api:* urn:matrix:client:device:{device}");
    let r = authorize(env, &standard_authorize(client_id, &challenge, &scope)).await;
    assert_eq!(r.reply.status, 302);
    let (_, _, params) = callback(r.header("location").expect("a redirect"));
    let t = exchange(env, client_id, &params["code"], Some(VERIFIER)).await;
    assert_eq!(t.reply.status, 200, "{:?}", t.reply.body);
    t.reply
}

async fn exchange(env: &Env, client_id: &str, code: &str, verifier: Option<&str>) -> Full {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
    ];
    if let Some(v) = verifier {
        pairs.push(("code_verifier", v));
    }
    post_form(env, "/oauth2/token", &pairs).await
}

async fn send(env: &Env, pairs: Vec<(String, String)>) -> Full {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    post_form(env, "/oauth2/token", &borrowed).await
}

async fn new_code(env: &Env, client: &str, challenge: &str, scope: &str) -> String {
    let r = authorize(env, &standard_authorize(client, challenge, scope)).await;
    callback(r.header("location").expect("a redirect")).2["code"].clone()
}

/// Redacts secrets, ids, times and the server's address for snapshots.
fn redact(env: &Env, v: &Value) -> Value {
    let base = env.server.url();
    fn walk(v: &Value, base: &str) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    let r = match k.as_str() {
                        "client_id" if v.is_string() => json!("[client_id]"),
                        "code" if v.is_string() => json!("[code]"),
                        "client_id_issued_at" => json!("[time]"),
                        "scope" => json!(
                            v.as_str()
                                .unwrap_or_default()
                                .split(' ')
                                .map(|t| match t.rsplit_once(':') {
                                    Some((p, _)) if p.ends_with(":device") => format!("{p}:[device]"),
                                    _ => t.to_owned(),
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                        _ => walk(v, base),
                    };
                    out.insert(k.clone(), r);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| walk(v, base)).collect()),
            Value::String(s) if s.starts_with("mat_") || s.starts_with("mar_") => json!("[token]"),
            Value::String(s) => json!(s.replace(base, "[base]")),
            other => other.clone(),
        }
    }
    common::redact(&walk(v, &base))
}

fn step(env: &Env, name: &str, r: &Reply) -> Value {
    json!({"step": name, "status": r.status, "body": redact(env, &r.body)})
}

fn redirect_step(env: &Env, name: &str, r: &Full) -> Value {
    let location = r.header("location").map(|l| {
        let (base, part, params) = callback(l);
        json!({"to": base, "in": part, "params": redact(env, &json!(params))})
    });
    json!({"step": name, "status": r.reply.status, "location": location, "body": redact(env, &r.reply.body)})
}

fn oauth_entries(env: &Env, endpoint: &str) -> Vec<rotary_server::TraceEntry> {
    env.server
        .trace()
        .into_iter()
        .filter(|e| e.endpoint == endpoint)
        .collect()
}

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
