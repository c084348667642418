//! One request through the proxy: classify it, label the tokens it presents, decide on a fault,
//! forward it (streaming, or buffered where the trace needs the body), learn from the answer,
//! rewrite discovery, and complete its trace entry.

use super::graph::Issue;
use super::learn;
use super::upstream::{BoxError, ProxyBody, forward_headers, strip_hop_by_hop};
use super::{Shared, discovery};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use rotary_judge::{Delivery, FiredFault, TraceEntry};
use rotary_server::conn::RawAction;
use rotary_server::error::{ErrorInfo, MatrixError};
use rotary_server::fault::RequestFacts;
use rotary_server::inject::{self, Plan};
use rotary_server::trace::{Completion, Ticket};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest answer the proxy buffers to learn from; larger ones pass unread.
const MAX_LEARN_BYTES: usize = 1 << 20;
/// How long a request body may take to arrive when the proxy buffers it.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A body the proxy makes itself.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn axum_to_proxy(resp: axum::response::Response) -> Response<ProxyBody> {
    resp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync())
}

fn error_response(e: MatrixError) -> Response<ProxyBody> {
    use axum::response::IntoResponse;
    axum_to_proxy(e.into_response())
}

/// Marks the entry abandoned if the client goes away before it is completed.
struct FinishGuard {
    shared: Arc<Shared>,
    ticket: Ticket,
    started: Instant,
    armed: bool,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.finish(
                self.ticket,
                Completion {
                    delivery: Some(Delivery::Abandoned),
                    duration_ms: elapsed_ms(self.started),
                    ..Completion::default()
                },
            );
        }
    }
}

fn elapsed_ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}

fn presented_access(req: &Request<hyper::body::Incoming>) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION)
        && let Ok(s) = v.to_str()
        && let Some(t) = s.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_owned());
    }
    req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    })
}

/// The proxy's base URL as this client reaches it.
fn proxy_base(shared: &Shared, req: &Request<hyper::body::Incoming>) -> String {
    if let Some(url) = &shared.cfg.public_url {
        return url.clone();
    }
    let scheme = if shared.tls { "https" } else { "http" };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| shared.addr.to_string(), str::to_owned);
    format!("{scheme}://{host}")
}

/// The upstream's answer, ready for the client, and what the trace learns from it.
struct Answer {
    response: Response<ProxyBody>,
    done: Completion,
}

/// Handles one client request (everything but the control API).
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<hyper::body::Incoming>,
    peer: Option<std::net::IpAddr>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let Some(target) = shared.origins.target(&path_and_query) else {
        return error_response(MatrixError::new(
            404,
            "M_UNRECOGNIZED",
            "no such upstream origin: the proxy forwards only to the homeserver and the origins its discovery named",
        ));
    };
    let path = target.path_and_query.split('?').next().unwrap_or("/").to_owned();
    let method = req.method().clone();
    let endpoint: &'static str = shared.origins.oauth_endpoint(&target).unwrap_or_else(|| {
        if target.index == 0 {
            rotary_server::classify(&path, method.as_str(), &shared.classify_cfg).name()
        } else {
            "unknown"
        }
    });
    let base = proxy_base(&shared, &req);
    let access = presented_access(&req);
    let now = elapsed_ms(shared.started);

    let mut entry = TraceEntry::new(endpoint, method.to_string(), path.clone());
    entry.t_ms = now;
    entry.real_ms = now;
    if endpoint == "send" {
        // The transaction id: the last path segment of `…/send/{type}/{txnId}`.
        if let Some(txn) = path.rsplit('/').next().filter(|_| method == Method::PUT) {
            entry.flags.insert("txn_id".into(), json!(txn));
        }
    }
    if endpoint == "sync"
        && let Some(q) = req.uri().query()
    {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k == "timeout" || k == "since" {
                entry.flags.insert(k.into_owned(), json!(v));
            }
        }
    }

    // The body: buffered where the trace needs it, streamed (with the size limit) otherwise.
    let (mut parts, body) = req.into_parts();
    let limit = shared.cfg.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return error_response(MatrixError::new(
            413,
            "M_TOO_LARGE",
            format!("Request body is larger than {limit} bytes"),
        ));
    }
    let mut facts = learn::RequestFacts::default();
    let body: ProxyBody = if learn::buffers_request(endpoint) {
        let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await;
        let bytes = match collected {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return error_response(MatrixError::new(
                    413,
                    "M_TOO_LARGE",
                    format!("Request body is larger than {limit} bytes"),
                ));
            }
            Ok(Err(_)) | Err(_) => {
                return error_response(MatrixError::new(
                    400,
                    "M_UNKNOWN",
                    "the request body did not arrive",
                ));
            }
        };
        facts = learn::request_facts(endpoint, &bytes);
        full(bytes)
    } else {
        Limited::new(body, limit).boxed_unsync()
    };
    entry.flags.append(&mut facts.flags);

    // Token labels and states, as the traffic showed them.
    let (access_seen, refresh_seen) = {
        let mut g = shared.lock_graph();
        let a = access.as_deref().map(|t| g.access(t, now));
        let r = facts.refresh_token.as_deref().map(|t| g.refresh(t, now));
        (a, r)
    };
    if let Some(a) = &access_seen {
        entry.access_token = a.view.clone();
        entry.user_id.clone_from(&a.user_id);
        entry.device_id.clone_from(&a.device_id);
    }
    if let Some(r) = &refresh_seen {
        entry.refresh_token = Some(r.view.clone());
        if entry.device_id.is_none() {
            entry.user_id.clone_from(&r.user_id);
            entry.device_id.clone_from(&r.device_id);
        }
    }

    let fired = {
        let facts = RequestFacts {
            endpoint,
            method: method.as_str(),
            path: &path,
            access_label: access_seen.as_ref().map(|a| a.view.label.as_str()),
            refresh_label: refresh_seen.as_ref().map(|r| r.view.label.as_str()),
            user_id: entry.user_id.as_deref(),
            refresh_grant: endpoint == "oauth_token"
                && entry.flags.get("grant_type").and_then(|g| g.as_str()) == Some("refresh_token"),
        };
        shared.lock_faults().decide(&facts)
    };
    entry.fault = fired.as_ref().map(|r| {
        Box::new(FiredFault {
            id: r.id.unwrap_or(0),
            name: r.name.clone(),
            action: r.action.kind().to_owned(),
        })
    });

    let ticket = shared.trace.begin(entry);
    let mut guard = FinishGuard {
        shared: shared.clone(),
        ticket,
        started,
        armed: true,
    };
    forward_headers(
        &mut parts.headers,
        peer,
        if shared.tls { "https" } else { "http" },
    );
    if learn::buffers_response(endpoint, method.as_str(), &path) {
        // Bodies the proxy reads must not come back compressed.
        parts.headers.remove(header::ACCEPT_ENCODING);
    }
    let ctx = Forward {
        shared: shared.clone(),
        endpoint,
        method: method.clone(),
        path: path.clone(),
        base,
        target,
        access_session: access_seen.as_ref().and_then(|a| a.session),
        refresh_seen,
        revoked_token: facts.revoked_token,
        user_id: access_seen.as_ref().and_then(|a| a.user_id.clone()),
    };
    let conn = rotary_server::conn::current();
    let set_raw = |action: RawAction| match &conn {
        Some(c) => c.set(action),
        None => tracing::warn!("connection-level fault without a connection handle"),
    };
    let send = |parts: hyper::http::request::Parts, body: ProxyBody, buffer_all: bool| {
        ctx.send(Request::from_parts(parts, body), buffer_all)
    };

    let (mut answer, delivery) = match inject::plan(fired.as_ref()) {
        Plan::Handle => (send(parts, body, false).await, Delivery::Sent),
        Plan::Respond(resp) => {
            let info = resp.extensions().get::<ErrorInfo>().cloned().unwrap_or_default();
            let status = resp.status().as_u16();
            let done = Completion {
                status: Some(status),
                errcode: info.errcode,
                soft_logout: info.soft_logout,
                ..Completion::default()
            };
            (
                Answer {
                    response: axum_to_proxy(resp),
                    done,
                },
                Delivery::Sent,
            )
        }
        Plan::Delay(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shared.shutdown.cancelled() => {}
            }
            (send(parts, body, false).await, Delivery::Sent)
        }
        Plan::Hang => {
            shared.shutdown.cancelled().await;
            guard.armed = false;
            shared.finish(
                ticket,
                Completion {
                    delivery: Some(Delivery::Pending),
                    duration_ms: elapsed_ms(started),
                    ..Completion::default()
                },
            );
            return error_response(MatrixError::new(503, "M_UNKNOWN", "the proxy is shutting down"));
        }
        Plan::Raw(action, delivery) => {
            set_raw(action);
            (
                Answer {
                    response: Response::new(full(Bytes::new())),
                    done: Completion::default(),
                },
                delivery,
            )
        }
        Plan::HandleThenDrop => {
            // The upstream performs the request (and rotates); the client never hears of it.
            let answer = send(parts, body, true).await;
            set_raw(RawAction::Empty);
            (answer, Delivery::Dropped)
        }
        Plan::HandleThenTruncate => {
            let answer = send(parts, body, true).await;
            let (resp_parts, body) = answer.response.into_parts();
            let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let rebuilt = axum::response::Response::from_parts(resp_parts, axum::body::Body::from(bytes));
            let (resp, raw) = inject::truncated_bytes(rebuilt).await;
            set_raw(RawAction::Bytes(raw));
            (
                Answer {
                    response: axum_to_proxy(resp),
                    done: answer.done,
                },
                Delivery::Truncated,
            )
        }
    };
    let produced = !matches!(delivery, Delivery::Reset | Delivery::Empty | Delivery::Garbage);
    if !produced {
        answer.done.status = None;
        answer.done.errcode = None;
        answer.done.soft_logout = None;
    }
    answer.done.delivery = Some(delivery);
    answer.done.duration_ms = elapsed_ms(started);
    guard.armed = false;
    shared.finish(ticket, answer.done);
    answer.response
}

/// What one forward needs to know.
struct Forward {
    shared: Arc<Shared>,
    endpoint: &'static str,
    method: Method,
    path: String,
    base: String,
    target: discovery::Target,
    access_session: Option<u64>,
    refresh_seen: Option<super::graph::RefreshSeen>,
    revoked_token: Option<String>,
    user_id: Option<String>,
}

impl Forward {
    /// Sends the request upstream and turns the answer into the client's response. With
    /// `buffer_all` the whole answer is read first (a fault will withhold or cut it).
    async fn send(&self, mut req: Request<ProxyBody>, buffer_all: bool) -> Answer {
        let uri = format!("{}{}", self.target.origin, self.target.path_and_query);
        match uri.parse::<hyper::Uri>() {
            Ok(u) => *req.uri_mut() = u,
            Err(e) => return self.failed(format!("bad upstream URI {uri:?}: {e}")),
        }
        let sent = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(self.shared.cfg.upstream_timeout, self.shared.client.request(req)) => r,
            _ = self.shared.shutdown.cancelled() => {
                return self.failed("the proxy is shutting down".to_owned());
            }
        };
        let resp = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    "upstream unreachable"
                } else {
                    "upstream failed"
                };
                return self.failed(format!("{kind}: {}", error_chain(&e)));
            }
            Err(_) => {
                return self.failed(format!(
                    "upstream did not answer within {}",
                    rotary_server::format_duration(self.shared.cfg.upstream_timeout)
                ));
            }
        };
        self.shared
            .metrics
            .upstream_latency
            .observe(sent.elapsed().as_secs_f64());
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let status = parts.status.as_u16();
        let ok = (200..300).contains(&status);
        let buffered = learn::buffers_response(self.endpoint, self.method.as_str(), &self.path);
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        // Error answers are read for their errcode unless they say they are large (Synapse sends
        // them chunked, without a length).
        let read = buffered || buffer_all || (!ok && length.is_none_or(|n| n <= MAX_LEARN_BYTES));
        let mut done = Completion {
            status: Some(status),
            ..Completion::default()
        };
        if !read {
            let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
            return Answer {
                response: Response::from_parts(parts, body),
                done,
            };
        }
        let bytes = match Limited::new(body, MAX_LEARN_BYTES.max(self.shared.cfg.max_body_bytes))
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) => return self.failed(format!("upstream failed while sending its answer: {e}")),
        };
        let mut bytes = bytes;
        if ok {
            if let Some(rewritten) = self.learn(&bytes, &mut done) {
                bytes = rewritten;
                parts.headers.remove(header::CONTENT_LENGTH);
            }
        } else {
            let (errcode, soft_logout) = learn::error_fields(&bytes);
            done.errcode = errcode;
            done.soft_logout = soft_logout;
        }
        if let Ok(v) = HeaderValue::from_str(&bytes.len().to_string()) {
            parts.headers.insert(header::CONTENT_LENGTH, v);
        }
        Answer {
            response: Response::from_parts(parts, full(bytes)),
            done,
        }
    }

    /// A clean 502 with a Matrix error body, and a trace entry that says what the upstream did.
    fn failed(&self, why: String) -> Answer {
        tracing::warn!(endpoint = self.endpoint, error = %why, "upstream");
        self.shared
            .metrics
            .upstream_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut done = Completion {
            status: Some(502),
            errcode: Some("M_UNKNOWN".to_owned()),
            ..Completion::default()
        };
        done.flags.insert("upstream_error".into(), json!(why));
        Answer {
            response: error_response(MatrixError::new(502, "M_UNKNOWN", why)),
            done,
        }
    }

    /// Learns from a successful answer; returns the rewritten body where discovery changed it.
    fn learn(&self, bytes: &Bytes, done: &mut Completion) -> Option<Bytes> {
        let now = elapsed_ms(self.shared.started);
        let mut g = self.shared.lock_graph();
        // Session ends need no body (a revocation answers an empty one).
        match (self.endpoint, self.method.as_str()) {
            ("logout", _) => {
                if let Some(s) = self.access_session {
                    g.end_session(s);
                }
            }
            ("logout_all", _) => {
                if let Some(u) = &self.user_id {
                    g.end_user(u);
                }
            }
            ("device", "DELETE") => {
                if let (Some(u), Some(d)) = (&self.user_id, self.path.rsplit('/').next()) {
                    g.end_device(u, d);
                }
            }
            ("oauth_revoke", _) => {
                if let Some(t) = &self.revoked_token {
                    g.revoke_token(t);
                }
            }
            _ => {}
        }
        let mut value = serde_json::from_slice::<Value>(bytes).ok()?;
        if self.endpoint == "well_known" {
            drop(g);
            discovery::rewrite_well_known(&mut value, &self.base);
            return serde_json::to_vec(&value).ok().map(Bytes::from);
        }
        if discovery::is_metadata_path(&self.path) || self.endpoint == "auth_metadata" {
            drop(g);
            self.shared.origins.rewrite_metadata(&mut value, &self.base);
            return serde_json::to_vec(&value).ok().map(Bytes::from);
        }
        let map = value.as_object()?;
        match self.endpoint {
            "login" | "register" | "refresh" | "oauth_token" => {
                let i = learn::issued(self.endpoint, map)?;
                let labels = match &self.refresh_seen {
                    Some(rt) if self.endpoint != "login" && self.endpoint != "register" => g.issue(
                        Issue::refreshed(rt, &i.access_token, i.refresh_token.as_deref(), i.expires_in_ms),
                        now,
                    ),
                    _ => g.issue(
                        Issue::new_session(
                            i.user_id.as_deref(),
                            i.device_id.as_deref(),
                            &i.access_token,
                            i.refresh_token.as_deref(),
                            i.expires_in_ms,
                        ),
                        now,
                    ),
                };
                // The session as the trace names it (a stand-in where the answer names no device).
                done.device_id = g.device_of(&i.access_token);
                done.user_id = i
                    .user_id
                    .or_else(|| self.refresh_seen.as_ref().and_then(|r| r.user_id.clone()));
                done.issued = Some(labels);
            }
            "whoami" => {
                if let (Some(session), Some(user)) =
                    (self.access_session, map.get("user_id").and_then(Value::as_str))
                {
                    g.learn_identity(session, user, map.get("device_id").and_then(Value::as_str));
                }
            }
            _ => {}
        }
        self.shared
            .metrics
            .sessions
            .store(g.len() as u64, std::sync::atomic::Ordering::Relaxed);
        None
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
