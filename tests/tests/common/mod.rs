//! Shared helpers for the end-to-end tests: an HTTP client, login/refresh shortcuts, redaction; the
//! `robustness_*` tests' raw-HTTP probing in [`robustness`], the `oauth_*` tests' OAuth 2.0 requests in
//! [`oauth`].
#![allow(dead_code)]

pub mod oauth;
pub mod robustness;

use rotary_server::{MockHomeserver, MockHomeserverBuilder};
use serde_json::{Map, Value, json};

/// A started server and a client for it.
pub struct Env {
    pub server: MockHomeserver,
    pub http: reqwest::Client,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn errcode(&self) -> Option<&str> {
        self.body.get("errcode").and_then(Value::as_str)
    }
    pub fn soft_logout(&self) -> Option<bool> {
        self.body.get("soft_logout").and_then(Value::as_bool)
    }
    pub fn str(&self, key: &str) -> String {
        self.body
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn start(builder: MockHomeserverBuilder) -> Env {
    let server = builder.start().await.expect("server starts");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    Env { server, http }
}

pub async fn default_env() -> Env {
    start(MockHomeserver::builder()).await
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::reply(req).await
    }

    pub async fn raw(&self, method: &str, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        Self::reply(self.http.request(method, self.url(path)).body(body)).await
    }

    pub async fn raw_with_token(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        Self::reply(
            self.http
                .request(method, self.url(path))
                .bearer_auth(token)
                .body(body),
        )
        .await
    }

    async fn reply(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("answered");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply { status, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call("POST", path, token, Some(body)).await
    }

    pub async fn login(&self, user: &str, password: &str, refresh: bool) -> Reply {
        self.post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password, "refresh_token": refresh}),
        )
        .await
    }

    /// Logs alice in with a refresh token; returns (access, refresh).
    pub async fn alice(&self) -> (String, String) {
        let r = self.login("alice", "wonderland", true).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        (r.str("access_token"), r.str("refresh_token"))
    }

    pub async fn refresh(&self, rt: &str) -> Reply {
        self.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": rt}))
            .await
    }

    pub async fn whoami(&self, at: &str) -> Reply {
        self.get("/_matrix/client/v3/account/whoami", Some(at)).await
    }
}

const TIME_KEYS: &[&str] = &[
    "t_ms",
    "real_ms",
    "duration_ms",
    "origin_server_ts",
    "age",
    "expires_at_ms",
    "now_ms",
    "trace_time_ms",
];
const ID_KEYS: &[&str] = &[
    "device_id",
    "session",
    "room_id",
    "event_id",
    "next_batch",
    "prev_batch",
    "start",
    "end",
];

/// Replaces secrets, ids and times by placeholders so that snapshots are stable.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let r = if TIME_KEYS.contains(&k.as_str()) && v.is_number() {
                    json!("[time]")
                } else if k == "expires_in_ms" && v.is_number() {
                    json!("[ms]")
                } else if ID_KEYS.contains(&k.as_str()) && v.is_string() {
                    json!(format!("[{k}]"))
                } else {
                    redact(v)
                };
                out.insert(k.clone(), r);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::String(s) if ["syt_", "syr_", "mct_", "mcr_"].iter().any(|p| s.starts_with(p)) => {
            json!("[token]")
        }
        other => other.clone(),
    }
}
