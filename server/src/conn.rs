//! Connection-level faults: an IO wrapper around each accepted socket that a request can tell to
//! reset the connection, close it without a byte, or write raw bytes instead of the response.

use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the connection does instead of writing the response hyper hands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawAction {
    /// Close without writing anything.
    Empty,
    /// Reset the connection (SO_LINGER 0, then close: the peer sees RST).
    Reset,
    /// Write these bytes, then close.
    Bytes(Bytes),
}

/// Per-connection handle, reachable from the connection's task through [`current`].
#[derive(Debug)]
pub struct ConnHandle {
    /// The client's address.
    pub peer: SocketAddr,
    armed: AtomicBool,
    action: Mutex<Option<RawAction>>,
    /// When the connection was accepted (the base of `idle_since_ms`).
    base: tokio::time::Instant,
    /// Requests being handled on this connection.
    busy: AtomicU32,
    /// When the last request finished (or the connection was accepted), ms after `base`.
    idle_since_ms: AtomicU64,
}

impl ConnHandle {
    /// A handle for a connection from `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            armed: AtomicBool::new(false),
            action: Mutex::new(None),
            base: tokio::time::Instant::now(),
            busy: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// Notes a request being handled until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    fn idle_since(&self) -> u64 {
        self.idle_since_ms.load(Ordering::Acquire)
    }

    /// Makes the next response write perform `action` instead.
    pub fn set(&self, action: RawAction) {
        *self.action.lock().unwrap_or_else(|p| p.into_inner()) = Some(action);
        self.armed.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<RawAction> {
        // The common case (no fault) costs one atomic load per write, no lock.
        if !self.armed.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.action.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A request in progress on a connection (see [`ConnHandle::request`]).
#[derive(Debug)]
pub struct BusyGuard(Arc<ConnHandle>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let h = &self.0;
        let ms = u64::try_from(h.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        h.idle_since_ms.store(ms, Ordering::Release);
        h.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Returns once the connection has been without a request in progress for `limit` since its last
/// request finished (or since it was accepted): a client that never finishes its headers, or a
/// connection left idle. One timer per connection, moved only when it fires — not a timer per
/// request, as hyper's `header_read_timeout` arms.
pub async fn idle_watchdog(handle: &ConnHandle, limit: std::time::Duration) {
    let mut seen = handle.idle_since();
    let mut deadline = handle.base + std::time::Duration::from_millis(seen) + limit;
    loop {
        tokio::time::sleep_until(deadline).await;
        let now_seen = handle.idle_since();
        if handle.busy.load(Ordering::Acquire) > 0 {
            // A request is being handled (a long-poll, a slow body): look again later.
            deadline = tokio::time::Instant::now() + limit;
        } else if now_seen != seen {
            deadline = handle.base + std::time::Duration::from_millis(now_seen) + limit;
        } else {
            return;
        }
        seen = now_seen;
    }
}

tokio::task_local! {
    /// The handle of the connection whose task is running: requests find it here rather than in
    /// their extensions, which would cost an allocated map per request.
    static CONN: Arc<ConnHandle>;
}

/// Runs a connection's future with its handle reachable through [`current`].
pub async fn scope<F: std::future::Future>(handle: Arc<ConnHandle>, f: F) -> F::Output {
    CONN.scope(handle, f).await
}

/// The handle of the connection being served, when called from a connection's task.
pub fn current() -> Option<Arc<ConnHandle>> {
    CONN.try_with(Arc::clone).ok()
}

/// A `TcpStream` that obeys its [`ConnHandle`] when hyper writes.
#[derive(Debug)]
pub struct FaultIo {
    inner: TcpStream,
    handle: Arc<ConnHandle>,
    pending: Option<(Bytes, usize)>,
}

impl FaultIo {
    /// Wraps an accepted stream.
    pub fn new(inner: TcpStream, handle: Arc<ConnHandle>) -> Self {
        Self {
            inner,
            handle,
            pending: None,
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by an injected fault",
    )
}

impl AsyncRead for FaultIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match self.handle.take() {
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
                Some(RawAction::Empty) => {
                    let _ = socket2::SockRef::from(&self.inner).shutdown(std::net::Shutdown::Both);
                    return Poll::Ready(Err(closed()));
                }
                Some(RawAction::Reset) => {
                    let _ = socket2::SockRef::from(&self.inner).set_linger(Some(std::time::Duration::ZERO));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "injected reset",
                    )));
                }
                Some(RawAction::Bytes(b)) => self.pending = Some((b, 0)),
            }
        }
        loop {
            let this = &mut *self;
            let Some((bytes, pos)) = this.pending.as_mut() else {
                return Poll::Ready(Err(closed()));
            };
            if *pos >= bytes.len() {
                let _ = socket2::SockRef::from(&this.inner).shutdown(std::net::Shutdown::Both);
                return Poll::Ready(Err(closed()));
            }
            let chunk = bytes.slice(*pos..);
            match Pin::new(&mut this.inner).poll_write(cx, &chunk) {
                Poll::Ready(Ok(n)) => *pos += n.max(1),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // No fault armed: hand hyper's buffers to the socket in one writev, as a bare server does.
        if self.pending.is_none() && !self.handle.armed.load(Ordering::Acquire) {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
