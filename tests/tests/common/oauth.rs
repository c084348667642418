//! Shared by the `oauth_*` tests: form encoding, requests to the OAuth 2.0 endpoints (registration,
//! authorization without following the redirect, the token endpoint's grants), reading redirects,
//! and redaction of OAuth secrets, ids and the server's address for snapshots.

use super::{Env, Reply, start};
use rotary_server::{MockHomeserver, Profile, s256_challenge};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const REDIRECT: &str = "http://127.0.0.1/callback";
pub const FORM: &str = "application/x-www-form-urlencoded";

pub async fn env(profile: Profile) -> Env {
    start(MockHomeserver::builder().profile(profile).user("bob", "builder")).await
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn enc(s: &str) -> String {
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

pub fn encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A reply with its headers.
pub struct Full {
    pub reply: Reply,
    pub headers: reqwest::header::HeaderMap,
}

impl Full {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn full(req: reqwest::RequestBuilder) -> Full {
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
pub async fn post_form(env: &Env, path: &str, pairs: &[(&str, &str)]) -> Full {
    full(
        env.http
            .post(env.url(path))
            .header("content-type", FORM)
            .body(encode(pairs)),
    )
    .await
}

pub async fn refresh(env: &Env, client_id: &str, rt: &str) -> Reply {
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

pub async fn register(env: &Env, metadata: Value) -> Full {
    full(env.http.post(env.url("/oauth2/registration")).json(&metadata)).await
}

pub async fn register_client(env: &Env) -> String {
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
pub async fn authorize(env: &Env, params: &[(&str, &str)]) -> Full {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    full(client.get(format!("{}?{}", env.url("/oauth2/authorize"), encode(params)))).await
}

/// Decodes one `application/x-www-form-urlencoded` value.
pub fn decode(v: &str) -> String {
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
pub fn callback(location: &str) -> (String, &'static str, BTreeMap<String, String>) {
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

pub fn standard_authorize<'a>(
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
pub async fn login(env: &Env, client_id: &str, device: &str) -> Reply {
    let challenge = s256_challenge(VERIFIER);
    let scope = format!("urn:matrix:client:api:* urn:matrix:client:device:{device}");
    let r = authorize(env, &standard_authorize(client_id, &challenge, &scope)).await;
    assert_eq!(r.reply.status, 302);
    let (_, _, params) = callback(r.header("location").expect("a redirect"));
    let t = exchange(env, client_id, &params["code"], Some(VERIFIER)).await;
    assert_eq!(t.reply.status, 200, "{:?}", t.reply.body);
    t.reply
}

pub async fn exchange(env: &Env, client_id: &str, code: &str, verifier: Option<&str>) -> Full {
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

pub async fn send(env: &Env, pairs: Vec<(String, String)>) -> Full {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    post_form(env, "/oauth2/token", &borrowed).await
}

pub async fn new_code(env: &Env, client: &str, challenge: &str, scope: &str) -> String {
    let r = authorize(env, &standard_authorize(client, challenge, scope)).await;
    callback(r.header("location").expect("a redirect")).2["code"].clone()
}

/// Redacts secrets, ids, times and the server's address for snapshots.
pub fn redact(env: &Env, v: &Value) -> Value {
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
    super::redact(&walk(v, &base))
}

pub fn step(env: &Env, name: &str, r: &Reply) -> Value {
    json!({"step": name, "status": r.status, "body": redact(env, &r.body)})
}

pub fn redirect_step(env: &Env, name: &str, r: &Full) -> Value {
    let location = r.header("location").map(|l| {
        let (base, part, params) = callback(l);
        json!({"to": base, "in": part, "params": redact(env, &json!(params))})
    });
    json!({"step": name, "status": r.reply.status, "location": location, "body": redact(env, &r.reply.body)})
}

pub fn oauth_entries(env: &Env, endpoint: &str) -> Vec<rotary_server::TraceEntry> {
    env.server
        .trace()
        .into_iter()
        .filter(|e| e.endpoint == endpoint)
        .collect()
}
