//! The proxy's control API under `/_rotary` on its own port — the same routes as `rotary serve`
//! where they apply (`faults`, `trace`, `sessions` as observed, `reset`), plus `metrics`
//! (Prometheus text) and `violations`. Loopback clients only, unless a control token is set.

use super::Shared;
use super::upstream::{BoxError, ProxyBody};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http_body_util::BodyExt;
use rotary_server::control::control_allowed;
use rotary_server::error::MatrixError;
use rotary_server::fault::FaultRule;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tower::ServiceExt;

type St = State<Arc<Shared>>;

/// The control router, nested at `/_rotary`.
pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/", get(index))
        .route("/faults", get(list_faults).post(add_faults).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/trace", get(trace))
        .route("/sessions", get(sessions))
        .route("/violations", get(violations))
        .route("/metrics", get(metrics))
        .route("/reset", post(reset))
        .fallback(|| async {
            MatrixError::new(
                404,
                "M_UNRECOGNIZED",
                "no such control route; GET /_rotary lists them",
            )
            .into_response()
        })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared);
    Router::new().nest("/_rotary", api)
}

/// Serves one control request.
pub async fn serve(router: Router, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<ProxyBody> {
    let resp = match router.oneshot(req.map(axum::body::Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    resp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync())
}

async fn guard(State(st): St, req: Request, next: Next) -> Response {
    let peer = rotary_server::conn::current().map(|c| c.peer.ip());
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if control_allowed(peer, auth, &st.cfg.control) {
        next.run(req).await
    } else {
        MatrixError::forbidden(
            "the control API answers loopback clients only (start `rotary proxy --control-token T` and send `Authorization: Bearer T` to allow others)",
        )
        .into_response()
    }
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

async fn index() -> Response {
    ok(json!({"routes": [
        "GET    /_rotary/faults",
        "POST   /_rotary/faults                     a rule, or [rules]",
        "DELETE /_rotary/faults                     remove every rule",
        "DELETE /_rotary/faults/{id}",
        "GET    /_rotary/trace?after=SEQ&limit=N    the trace in memory, paged",
        "GET    /_rotary/sessions                   sessions as observed (tokens as labels)",
        "GET    /_rotary/violations                 live invariant violations (kept ones) and counts",
        "GET    /_rotary/metrics                    Prometheus text",
        "POST   /_rotary/reset                      forget faults, trace, sessions and violations",
    ]}))
}

async fn list_faults(State(st): St) -> Response {
    ok(json!({"faults": st.lock_faults().list()}))
}

async fn add_faults(State(st): St, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return MatrixError::bad_json(format!("invalid control request body: {e}")).into_response(),
    };
    let items = match value {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut rules = Vec::new();
    for item in items {
        match serde_json::from_value::<FaultRule>(item) {
            Ok(r) => match r.validate(&rotary_server::endpoint_names()) {
                Ok(()) => rules.push(r),
                Err(e) => return MatrixError::new(400, "M_INVALID_PARAM", e.to_string()).into_response(),
            },
            Err(e) => return MatrixError::bad_json(format!("invalid fault rule: {e}")).into_response(),
        }
    }
    let mut set = st.lock_faults();
    let ids: Vec<u64> = rules.into_iter().map(|r| set.add(r)).collect();
    ok(json!({"ids": ids}))
}

async fn clear_faults(State(st): St) -> Response {
    st.lock_faults().clear();
    ok(json!({}))
}

async fn remove_fault(State(st): St, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return MatrixError::new(400, "M_INVALID_PARAM", "a fault id is a number").into_response();
    };
    if st.lock_faults().remove(id) {
        ok(json!({}))
    } else {
        MatrixError::new(404, "M_NOT_FOUND", format!("no fault rule {id}")).into_response()
    }
}

#[derive(Deserialize)]
struct TraceQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

async fn trace(
    State(st): St,
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return MatrixError::new(400, "M_INVALID_PARAM", "after and limit are numbers").into_response();
    };
    let page = st.trace.page(q.after, q.limit.unwrap_or(1000).clamp(1, 10_000));
    let entries: Vec<&rotary_judge::TraceEntry> = page.entries.iter().map(|e| e.as_ref()).collect();
    ok(json!({
        "evicted": page.evicted,
        "first_seq": page.first_seq,
        "last_seq": page.last_seq,
        "missed": page.missed,
        "more": page.more,
        "next_after": page.next_after,
        "trace": entries,
    }))
}

async fn sessions(State(st): St) -> Response {
    ok(json!({"sessions": st.lock_graph().sessions()}))
}

async fn violations(State(st): St) -> Response {
    let log = st.lock_violations();
    ok(json!({
        "counts": log.counts(),
        "total": log.total(),
        "violations": log.kept(),
    }))
}

async fn metrics(State(st): St) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

async fn reset(State(st): St) -> Response {
    st.lock_faults().clear();
    st.lock_graph().clear();
    st.trace.clear();
    st.lock_violations().reset(st.cfg.watch.clone());
    st.judged
        .store(st.finished.load(Ordering::Acquire), Ordering::Release);
    ok(json!({}))
}
