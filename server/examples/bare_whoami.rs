//! A bare axum server answering only `whoami`: the baseline for the whoami throughput comparison.
//!
//! It does what Rotary's whoami minimally has to do (find the Bearer token in a locked map, answer
//! JSON) and nothing else: no classification, trace, fault injection or per-connection handle.
//! `scripts/bench-whoami.sh` runs it next to `rotary serve`.
//!
//! ```text
//! cargo run --release -p rotary-server --example bare_whoami -- [PORT]   # default 18100
//! ```

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

const DEFAULT_PORT: u16 = 18100;

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        Some(p) => p.parse::<u16>().map_err(|e| format!("bad port {p:?}: {e}"))?,
        None => DEFAULT_PORT,
    };
    let mut map = HashMap::new();
    map.insert(
        "syt_bench_token".to_owned(),
        ("@alice:localhost".to_owned(), "BENCHDEVICE".to_owned()),
    );
    let tokens: Tokens = Arc::new(RwLock::new(map));
    let app = Router::new()
        .route("/_matrix/client/v3/account/whoami", get(whoami))
        .with_state(tokens);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("bare_whoami listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
