//! A bare forwarding hop: the baseline for the proxy benchmark, as `bare.rs` is for whoami.
//!
//! It does what any reverse proxy must (accept HTTP/1.1, send each request on to the upstream,
//! stream the answer back) and nothing else: one upstream connection per client connection
//! (hyper's client connection API, no pool), headers passed unchanged, no trace, graph, faults,
//! watch or metrics. The gap between it and the mock direct is the second hop's own cost; the gap
//! between it and `rotary proxy` is the proxy's bookkeeping and pooled client.

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

/// A running hop; it stops when dropped.
#[derive(Debug)]
pub struct BareHop {
    /// The bound address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BareHop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Upstream = Arc<tokio::sync::Mutex<SendRequest<Incoming>>>;

async fn forward(upstream: Upstream, req: Request<Incoming>) -> Result<Response<Incoming>, hyper::Error> {
    let mut sender = upstream.lock().await;
    sender.ready().await?;
    sender.send_request(req).await
}

async fn serve(stream: tokio::net::TcpStream, upstream_addr: SocketAddr) {
    let Ok(up) = tokio::net::TcpStream::connect(upstream_addr).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await else {
        return;
    };
    let client = tokio::spawn(async move {
        let _ = conn.await;
    });
    let upstream: Upstream = Arc::new(tokio::sync::Mutex::new(sender));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| forward(upstream.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    client.abort();
}

/// Binds `127.0.0.1:0` and forwards to `upstream` in the background on the current runtime.
pub async fn start(upstream: SocketAddr) -> std::io::Result<BareHop> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            conns.spawn(serve(stream, upstream));
            // Reap finished connections so that the set stays bounded.
            while conns.try_join_next().is_some() {}
        }
    });
    Ok(BareHop { addr, task })
}
