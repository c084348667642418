//! The HTTP layer: endpoint URLs, sending one request, and reading a reply as the Matrix
//! client-server API shapes it. No retry or refresh logic lives here.

use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

use crate::error::ClientError;

/// One HTTP request, ready to send any number of times (a retry sends it again).
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// GET, POST, PUT…
    pub method: Method,
    /// The full URL.
    pub url: Url,
    /// The body, if any.
    pub body: Option<Body>,
    /// The whole request's time limit.
    pub timeout: Duration,
}

/// A request body.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Body {
    /// JSON (`application/json`), as the client-server API takes it.
    Json(Value),
    /// An already encoded `application/x-www-form-urlencoded` body, as OAuth 2.0 endpoints take it.
    Form(String),
}

/// A response that arrived in full (status and body).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, in seconds, if present and numeric.
    pub retry_after: Option<Duration>,
    /// The body parsed as JSON; `None` when it is empty or not JSON.
    pub body: Option<Value>,
}

impl Reply {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A string field of the body.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.body.as_ref()?.get(name)?.as_str()
    }

    /// The Matrix `errcode`, if the body is a Matrix error.
    pub fn errcode(&self) -> Option<&str> {
        self.str_field("errcode")
    }

    /// The body's `soft_logout` flag (absent = false, as the spec says).
    pub fn soft_logout(&self) -> bool {
        self.body
            .as_ref()
            .and_then(|b| b.get("soft_logout"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether this is the "your access token is not valid" answer.
    pub fn is_unknown_token(&self) -> bool {
        self.status == 401 && self.errcode() == Some("M_UNKNOWN_TOKEN")
    }

    /// This reply as an [`ClientError::Http`].
    pub fn to_error(&self) -> ClientError {
        let message = match (&self.body, self.str_field("error")) {
            (_, Some(text)) => text.to_owned(),
            (Some(_), None) => "error response without a message".to_owned(),
            (None, None) => "error response without a JSON body".to_owned(),
        };
        ClientError::Http {
            status: self.status,
            errcode: self.errcode().map(str::to_owned),
            message,
        }
    }

    /// The JSON body of a success, or an error saying what was wrong with it.
    pub fn into_success_body(self) -> Result<Value, ClientError> {
        match self.body {
            Some(Value::Object(map)) => Ok(Value::Object(map)),
            _ => Err(ClientError::Other(format!(
                "the server answered {} with a body that is not a JSON object",
                self.status
            ))),
        }
    }
}

/// The URL of `/_matrix/client/<segments…>` on `base`; each segment is percent-encoded.
pub(crate) fn client_url(base: &Url, segments: &[&str]) -> Result<Url, ClientError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| ClientError::Other(format!("{base} cannot be a homeserver URL")))?;
        path.pop_if_empty().extend(["_matrix", "client"]).extend(segments);
    }
    Ok(url)
}

/// Sends `call`, with `access_token` as a bearer token if given, and reads the whole response.
/// An error here means no complete response arrived: it is always [`ClientError::Network`].
pub(crate) async fn execute(
    http: &reqwest::Client,
    call: &Call,
    access_token: Option<&str>,
) -> Result<Reply, ClientError> {
    let mut req = http
        .request(call.method.clone(), call.url.clone())
        .timeout(call.timeout);
    if let Some(token) = access_token {
        req = req.bearer_auth(token);
    }
    match &call.body {
        Some(Body::Json(body)) => req = req.json(body),
        Some(Body::Form(form)) => {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone());
        }
        None => {}
    }
    let resp = req.send().await.map_err(|e| ClientError::network(&e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = resp.bytes().await.map_err(|e| ClientError::network(&e))?;
    let body = serde_json::from_slice(&bytes).ok();
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_are_built_and_encoded() -> anyhow::Result<()> {
        let base = Url::parse("http://127.0.0.1:8008")?;
        let url = client_url(
            &base,
            &["v3", "rooms", "!abc:localhost", "send", "m.room.message", "t/1"],
        )?;
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8008/_matrix/client/v3/rooms/!abc:localhost/send/m.room.message/t%2F1"
        );
        let with_slash = Url::parse("http://h/prefix/")?;
        assert_eq!(
            client_url(&with_slash, &["v3", "login"])?.as_str(),
            "http://h/prefix/_matrix/client/v3/login"
        );
        let room = client_url(&base, &["v3", "rooms", "#a b?c"])?;
        assert!(room.as_str().ends_with("/v3/rooms/%23a%20b%3Fc"), "{room}");
        Ok(())
    }

    #[test]
    fn replies() {
        let r = Reply {
            status: 401,
            retry_after: None,
            body: Some(json!({"errcode": "M_UNKNOWN_TOKEN", "error": "expired", "soft_logout": true})),
        };
        assert!(r.is_unknown_token() && r.soft_logout() && !r.is_success());
        assert_eq!(
            r.to_error(),
            ClientError::Http {
                status: 401,
                errcode: Some("M_UNKNOWN_TOKEN".into()),
                message: "expired".into()
            }
        );
        let bare = Reply {
            status: 502,
            retry_after: None,
            body: None,
        };
        assert!(!bare.soft_logout() && bare.errcode().is_none());
        assert!(bare.into_success_body().is_err());
    }
}
