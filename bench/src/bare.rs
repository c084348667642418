//! A bare axum server answering only `whoami`: the baseline for the whoami throughput comparison.
//!
//! It does what Rotary's whoami minimally has to do (find the Bearer token in a locked map, answer
//! JSON) and nothing else: no classification, trace, fault injection or per-connection handle. It
//! is served by `axum::serve` on whatever runtime [`start`] is awaited on (the bench's server
//! runtime, the same one Rotary runs on).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// Access token → (user id, device id).
type Tokens = Arc<RwLock<HashMap<String, (String, String)>>>;

/// The only token the baseline accepts.
pub const TOKEN: &str = "syt_bench_token";

async fn whoami(State(tokens): State<Tokens>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let found = token.and_then(|t| {
        let map = tokens.read().unwrap_or_else(|p| p.into_inner());
        map.get(t).cloned()
    });
    match found {
        Some((user_id, device_id)) => axum::Json(json!({
            "user_id": user_id,
            "device_id": device_id,
            "is_guest": false,
        }))
        .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "errcode": "M_UNKNOWN_TOKEN",
                "error": "Invalid access token passed.",
                "soft_logout": false,
            })),
        )
            .into_response(),
    }
}

/// A running baseline server; it stops when dropped.
#[derive(Debug)]
pub struct BareServer {
    /// The bound address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BareServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `127.0.0.1:0` and serves in the background on the current runtime.
pub async fn start() -> std::io::Result<BareServer> {
    let mut map = HashMap::new();
    map.insert(
        TOKEN.to_owned(),
        ("@alice:localhost".to_owned(), "BENCHDEVICE".to_owned()),
    );
    let tokens: Tokens = Arc::new(RwLock::new(map));
    let app = Router::new()
        .route("/_matrix/client/v3/account/whoami", get(whoami))
        .with_state(tokens);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(BareServer { addr, task })
}
