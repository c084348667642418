//! Requests a tool sends to the upstream itself, beside the proxied traffic: no faults, no trace,
//! no token graph (e.g. `rotary soak --upstream` registering its users or deleting a device).

use super::upstream::ProxyBody;
use super::{RunningProxy, Shared};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use std::time::Duration;

/// The largest answer a direct call reads.
const MAX_ANSWER: usize = 1 << 20;
/// How long a direct call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a direct call to the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The request could not be built (a bad path).
    #[error("{method} {path}: {reason}")]
    Request {
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The upstream could not be reached, or its answer not read.
    #[error("{method} {path}: the upstream did not answer: {reason}")]
    Unreachable {
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// An upstream's answer to a direct call: the status and the JSON body (`null` when it was not
/// JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct DirectAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body as JSON, or `Value::Null`.
    pub body: serde_json::Value,
}

impl RunningProxy {
    /// Sends one JSON request to the upstream directly: not through the proxy's faults, trace or
    /// token graph. `path` includes the query (`/_matrix/client/v3/register`).
    ///
    /// ```no_run
    /// # async fn f(proxy: &rotary_rollout::RunningProxy) -> Result<(), rotary_rollout::proxy::DirectError> {
    /// let answer = proxy
    ///     .call_upstream(hyper::Method::GET, "/_matrix/client/versions", None, None)
    ///     .await?;
    /// assert_eq!(answer.status, 200);
    /// # Ok(()) }
    /// ```
    pub async fn call_upstream(
        &self,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<DirectAnswer, DirectError> {
        call(&self.shared, method, path, access_token, body).await
    }

    /// Tells the token graph that a session ended out of band (a device deleted by a direct
    /// call): its tokens are `revoked` from now on.
    pub fn session_revoked(&self, user_id: &str, device_id: &str) {
        self.shared.lock_graph().end_device(user_id, device_id);
    }
}

async fn call(
    shared: &Shared,
    method: Method,
    path: &str,
    access_token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<DirectAnswer, DirectError> {
    let origin = &shared.cfg.upstream;
    let bad = |reason: String| DirectError::Request {
        method: method.clone(),
        path: path.to_owned(),
        reason,
    };
    let unreachable = |reason: String| DirectError::Unreachable {
        method: method.clone(),
        path: path.to_owned(),
        reason,
    };
    let uri: hyper::Uri = format!("{}://{}{path}", origin.scheme, origin.authority)
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(e.to_string()))?;
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(hyper::header::HOST, origin.authority.as_str());
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
    let req = req.body(body).map_err(|e| bad(e.to_string()))?;
    let answer = async {
        let resp = shared
            .client
            .request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let collected = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let body = serde_json::from_slice(&collected).unwrap_or(serde_json::Value::Null);
        Ok(DirectAnswer { status, body })
    };
    tokio::time::timeout(TIMEOUT, answer)
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", TIMEOUT.as_secs())))?
}
