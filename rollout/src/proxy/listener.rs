//! The proxy's accept loop: HTTP/1.1 with keep-alive on fault-aware sockets (the mock's), TLS on
//! top when a certificate is given, the header timeout against slowloris, and the split between
//! the control API and forwarded traffic.

use super::upstream::ProxyBody;
use super::{Shared, control, handler};
use hyper_util::rt::TokioIo;
use rotary_server::conn::{ConnHandle, FaultIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// A client must send its headers within this after the previous response (or the accept), as
/// `rotary serve` has it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (`serve`'s limit too).
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Reads a PEM certificate chain and private key into a TLS acceptor.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = super::upstream::tls_provider();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether a path is the control API's (`/_rotary` and below; not `/_rotary-origin/…`).
fn is_control_path(path: &str) -> bool {
    path == "/_rotary" || path.starts_with("/_rotary/")
}

/// Accepts connections until the proxy shuts down.
pub async fn accept_loop(shared: Arc<Shared>, listener: tokio::net::TcpListener, tls: Option<TlsAcceptor>) {
    let control = control::router(shared.clone());
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handle = Arc::new(ConnHandle::new(peer));
        let io = FaultIo::new(stream, handle.clone());
        let shared = shared.clone();
        let control = control.clone();
        let tls = tls.clone();
        tokio::spawn(rotary_server::conn::scope(handle.clone(), async move {
            match tls {
                None => serve(shared, control, handle, TokioIo::new(io)).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => serve(shared, control, handle, TokioIo::new(stream)).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        }));
    }
}

async fn serve<I>(shared: Arc<Shared>, control: axum::Router, handle: Arc<ConnHandle>, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = handle.peer.ip();
    let requests = handle.clone();
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let busy = requests.request();
        let shared = svc_shared.clone();
        let control = control.clone();
        async move {
            let resp: hyper::Response<ProxyBody> = if is_control_path(req.uri().path()) {
                control::serve(control, req).await
            } else {
                handler::handle(shared, req, Some(peer)).await
            };
            drop(busy);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .serve_connection(io, service);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::trace!(error = %e, "connection ended");
            }
        }
        _ = rotary_server::conn::idle_watchdog(&handle, HEADER_READ_TIMEOUT) => {
            tracing::trace!("connection closed: no request within the header timeout");
        }
        _ = shared.shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_are_only_under_rotary() {
        assert!(is_control_path("/_rotary") && is_control_path("/_rotary/faults"));
        assert!(!is_control_path("/_rotary-origin/1/oauth2/token"));
        assert!(!is_control_path("/_rotaryx") && !is_control_path("/_matrix/client/versions"));
    }

    #[test]
    fn unreadable_certificates_say_which_file() {
        let e = acceptor(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
