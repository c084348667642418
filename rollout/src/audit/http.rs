//! The probe's HTTP side: one client for `http://` and `https://` (rustls, the system's roots),
//! token labels instead of raw tokens, a log of every exchange, and bounded honouring of 429
//! `retry_after_ms`.

use super::clock::Waiter;
use super::error::AuditError;
use crate::proxy::upstream::{Origin, ProxyBody, UpstreamClient, client};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest answer read.
const MAX_ANSWER: usize = 1 << 20;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Times a rate-limited request is sent at most.
const MAX_ATTEMPTS: u32 = 4;
/// The longest `retry_after_ms` honoured; a longer one ends the audit.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// One answer: status, JSON body (`Null` when not JSON) and content type.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body as JSON, or `Value::Null`.
    pub body: Value,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The `Retry-After` header in milliseconds (seconds form only).
    pub retry_after_header_ms: Option<u64>,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The Matrix `errcode`, if any.
    pub fn errcode(&self) -> Option<&str> {
        self.body.get("errcode").and_then(Value::as_str)
    }

    /// A string field of the body.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// The answer as the table shows it: `200`, `401 M_UNKNOWN_TOKEN sl=true`.
    pub fn outcome(&self) -> String {
        if self.ok() {
            return self.status.to_string();
        }
        let mut s = self.status.to_string();
        if let Some(e) = self.errcode() {
            s.push(' ');
            s.push_str(e);
        }
        if let Some(sl) = self.body.get("soft_logout").and_then(Value::as_bool) {
            s.push_str(if sl { " sl=true" } else { " sl=false" });
        }
        s
    }

    /// Status, errcode and message for an error line.
    pub fn describe(&self) -> String {
        let msg = self.str("error").unwrap_or("");
        format!("{} {msg}", self.outcome()).trim().to_owned()
    }
}

/// One request of the probe, as the JSON report lists it (labels, never raw tokens).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Exchange {
    /// The probe step.
    pub step: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Milliseconds since the audit began.
    pub t_ms: u64,
    /// Status (0 when no answer came).
    pub status: u16,
    /// The answer's errcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<String>,
    /// The answer's `soft_logout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_logout: Option<bool>,
    /// The access token presented (`at0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The refresh token presented (`rt0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Labels of the tokens the answer issued.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issued: Vec<String>,
}

#[derive(Default)]
struct Labels {
    by_token: HashMap<String, String>,
    access: u32,
    refresh: u32,
}

impl Labels {
    fn label(&mut self, token: &str, refresh: bool) -> String {
        if let Some(l) = self.by_token.get(token) {
            return l.clone();
        }
        let l = if refresh {
            self.refresh += 1;
            format!("rt{}", self.refresh - 1)
        } else {
            self.access += 1;
            format!("at{}", self.access - 1)
        };
        self.by_token.insert(token.to_owned(), l.clone());
        l
    }

    fn known(&self, token: &str) -> String {
        self.by_token
            .get(token)
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// The probe's client for one homeserver.
pub struct Http {
    client: UpstreamClient,
    origin: Origin,
    url: String,
    waiter: Waiter,
    started: Instant,
    labels: Mutex<Labels>,
    log: Mutex<Vec<Exchange>>,
    /// Time the mock's clock was advanced by (zero against a real server, where waits sleep).
    advanced: Mutex<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether an error chain reads like a TLS failure.
fn is_tls(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "tls",
        "certificate",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
        "ssl",
    ]
    .iter()
    .any(|w| r.contains(w))
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

impl Http {
    /// A client for the homeserver at `url` (a base URL).
    pub fn new(url: &str, waiter: Waiter) -> Result<Http, AuditError> {
        let origin = Origin::parse(url.trim_end_matches('/')).map_err(|e| AuditError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let client = client(Duration::from_secs(10)).map_err(|e| AuditError::BadUrl {
            url: url.to_owned(),
            reason: format!("cannot load the system's TLS roots: {e}"),
        })?;
        Ok(Http {
            client,
            url: origin.to_string(),
            origin,
            waiter,
            started: Instant::now(),
            labels: Mutex::new(Labels::default()),
            log: Mutex::new(Vec::new()),
            advanced: Mutex::new(Duration::ZERO),
        })
    }

    /// The homeserver's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Time on the server's clock since the audit began (real time, plus what the mock's clock
    /// was advanced by).
    pub fn now(&self) -> Duration {
        self.started.elapsed() + *lock(&self.advanced)
    }

    /// Lets `d` pass on the server's clock (a sleep, or a jump of the mock's clock).
    pub async fn wait(&self, d: Duration) {
        self.waiter.wait(d).await;
        if matches!(self.waiter, Waiter::Mock(_)) {
            *lock(&self.advanced) += d;
        }
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.log).clone()
    }

    /// How many requests were sent.
    pub fn requests(&self) -> usize {
        lock(&self.log).len()
    }

    /// The label of a token the probe has seen (`at3`), or `unknown`.
    pub fn label(&self, token: &str) -> String {
        lock(&self.labels).known(token)
    }

    /// Sends one JSON request, honouring 429 `retry_after_ms` a bounded number of times.
    pub async fn send(
        &self,
        step: &str,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, AuditError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let answer = self
                .send_once(step, method.clone(), path, access_token, body)
                .await?;
            if answer.status != 429 {
                return Ok(answer);
            }
            let retry_after_ms = answer
                .body
                .get("retry_after_ms")
                .and_then(Value::as_u64)
                .or(answer.retry_after_header_ms)
                .unwrap_or(1000);
            let wait = Duration::from_millis(retry_after_ms);
            if attempts >= MAX_ATTEMPTS || wait > MAX_RETRY_AFTER {
                return Err(AuditError::RateLimited {
                    step: step.to_owned(),
                    retry_after_ms,
                    attempts,
                });
            }
            tracing::info!(step, retry_after_ms, "rate limited; waiting as the server asked");
            self.wait(wait).await;
        }
    }

    async fn send_once(
        &self,
        step: &str,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, AuditError> {
        let unexpected = |answer: String| AuditError::Unexpected {
            step: step.to_owned(),
            answer,
        };
        let mut entry = {
            let labels = lock(&self.labels);
            Exchange {
                step: step.to_owned(),
                method: method.to_string(),
                path: path.to_owned(),
                t_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                status: 0,
                errcode: None,
                soft_logout: None,
                access_token: access_token.map(|t| labels.known(t)),
                refresh_token: body
                    .and_then(|b| b.get("refresh_token"))
                    .and_then(Value::as_str)
                    .map(|t| labels.known(t)),
                issued: Vec::new(),
            }
        };
        let uri: hyper::Uri = format!("{}{path}", self.url)
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| unexpected(format!("bad path {path}: {e}")))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, self.origin.authority.as_str())
            .header(
                hyper::header::USER_AGENT,
                concat!("rotary-audit/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = access_token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let body: ProxyBody = Full::new(bytes).map_err(|never| match never {}).boxed_unsync();
        let req = req.body(body).map_err(|e| unexpected(e.to_string()))?;
        let transport = |reason: String| {
            if self.origin.scheme == "https" && is_tls(&reason) {
                AuditError::Tls {
                    step: step.to_owned(),
                    url: self.url.clone(),
                    reason,
                }
            } else {
                AuditError::Unreachable {
                    step: step.to_owned(),
                    url: self.url.clone(),
                    reason,
                }
            }
        };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| transport(chain(&e)))?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let retry_after_header_ms = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| secs.saturating_mul(1000));
            let collected = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
            let body = serde_json::from_slice(&collected).unwrap_or(Value::Null);
            Ok::<_, AuditError>(Answer {
                status,
                body,
                content_type,
                retry_after_header_ms,
            })
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(transport(format!(
                "no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        };
        if let Ok(a) = &answer {
            entry.status = a.status;
            entry.errcode = a.errcode().map(str::to_owned);
            entry.soft_logout = a.body.get("soft_logout").and_then(Value::as_bool);
            let mut labels = lock(&self.labels);
            if let Some(t) = a.str("access_token") {
                entry.issued.push(labels.label(t, false));
            }
            if let Some(t) = a.str("refresh_token") {
                entry.issued.push(labels.label(t, true));
            }
        }
        tracing::debug!(step, path, status = entry.status, "audit request");
        lock(&self.log).push(entry);
        answer
    }
}
