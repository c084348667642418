//! What the fleet talks to, and where faults, clock jumps and the trace come from: the embedded
//! mock homeserver ([`MockTarget`]), or Rotary's proxy in front of a real homeserver
//! (`--upstream`, [`upstream::UpstreamTarget`]).
//!
//! A soak needs six things of a target, the [`SoakTarget`] trait: a base URL, accounts, fault
//! rules on and off, a clock to move (where there is one), sessions to revoke, and a live feed of completed trace
//! entries ([`TraceFeed`]) for the judge.

use super::fleet::Account;
use rotary_judge::TraceEntry;
use rotary_server::FaultRule;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A target that cannot do what the soak asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// It could not start or be reached.
    #[error("cannot start the target: {0}")]
    Start(String),
    /// It refused an operation (a fault rule, a user).
    #[error("{0}")]
    Refused(String),
    /// It cannot do this at all (e.g. move a real homeserver's clock).
    #[error("the target cannot {0}")]
    Unsupported(&'static str),
}

/// A boxed future, as the trait's async methods answer.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One item of a live trace feed.
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// A completed entry.
    Entry(Arc<TraceEntry>),
    /// The feed fell behind and dropped this many entries.
    Lagged(u64),
    /// The feed is over (the target stopped).
    Closed,
}

/// A live feed of completed trace entries, in completion order.
pub trait TraceFeed: Send {
    /// The next item; waits for it.
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = FeedItem> + Send + '_>>;
}

/// What a soak needs of the server side.
pub trait SoakTarget: Send + Sync {
    /// For reports: what it is (`embedded mock (synapse, 5s tokens)`).
    fn describe(&self) -> String;
    /// The base URL the clients use.
    fn base_url(&self) -> String;
    /// `n` accounts whose names start with `prefix` (created if the target can).
    fn accounts<'a>(&'a self, prefix: &'a str, n: usize) -> BoxFuture<'a, Result<Vec<Account>, TargetError>>;
    /// Turns these fault rules on (in addition to those on).
    fn add_faults(&self, rules: &[FaultRule]) -> Result<(), TargetError>;
    /// Turns every fault rule off.
    fn clear_faults(&self) -> Result<(), TargetError>;
    /// Moves the server's clock forward.
    fn advance_clock(&self, by: Duration) -> Result<(), TargetError>;
    /// Revokes a session (device) of a user, as an admin would: a definitive refusal.
    fn revoke<'a>(&'a self, user_id: &'a str, device_id: &'a str) -> BoxFuture<'a, Result<(), TargetError>>;
    /// A live feed of every entry completed from now on.
    fn subscribe(&self) -> Box<dyn TraceFeed>;
    /// Tidies up after the soak (the fleet has stopped): e.g. logs out the devices the soak left
    /// on a real homeserver. The default does nothing.
    fn cleanup(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A [`TraceFeed`] over a server-side trace subscription (the mock's or the proxy's).
struct SubscriptionFeed(rotary_server::TraceSubscription);

impl TraceFeed for SubscriptionFeed {
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = FeedItem> + Send + '_>> {
        Box::pin(async move {
            match self.0.recv().await {
                Ok(e) => FeedItem::Entry(e),
                Err(rotary_server::trace::SubscriptionError::Lagged(n)) => FeedItem::Lagged(n),
                Err(_) => FeedItem::Closed,
            }
        })
    }
}

mod mock;
pub mod upstream;

pub use mock::{MOCK_FEED_CAPACITY, MOCK_TRACE_WINDOW, MockTarget};
pub use upstream::{UpstreamOptions, UpstreamTarget};
