//! How the probe waits: real time against a real server, the mock's clock against an embedded
//! mock (so the predictions need not sleep through token lifetimes or `retry_after_ms`).

use rotary_server::MockHomeserver;
use std::sync::Arc;
use std::time::Duration;

/// What "wait this long" means for the server being probed.
#[derive(Clone)]
pub enum Waiter {
    /// Sleep (a real homeserver).
    Real,
    /// Advance the embedded mock's clock at once.
    Mock(Arc<MockHomeserver>),
}

impl Waiter {
    /// Lets `d` pass on the server's clock.
    pub async fn wait(&self, d: Duration) {
        match self {
            Waiter::Real => tokio::time::sleep(d).await,
            Waiter::Mock(server) => server.advance_clock(d),
        }
    }
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Waiter::Real => "Waiter::Real",
            Waiter::Mock(_) => "Waiter::Mock",
        })
    }
}
