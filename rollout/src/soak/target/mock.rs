//! The embedded mock homeserver as a soak target: a fresh server with the soak's lifetimes.

use super::{BoxFuture, SoakTarget, SubscriptionFeed, TargetError, TraceFeed};
use crate::soak::fleet::Account;
use rotary_server::{FaultRule, MockHomeserver, Profile, TraceConfig};
use std::time::Duration;

/// The embedded mock homeserver: a fresh one with the lifetimes the soak chose, a small trace
/// window (the judge streams the trace; nothing is kept per request beyond the window).
pub struct MockTarget {
    server: MockHomeserver,
    description: String,
}

impl std::fmt::Debug for MockTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockTarget")
            .field("url", &self.server.url())
            .finish()
    }
}

/// Entries the embedded mock keeps in memory (the judge reads the live feed, not this window).
pub const MOCK_TRACE_WINDOW: usize = 2_048;
/// The live feed's capacity: how far the judge may fall behind before it loses entries.
pub const MOCK_FEED_CAPACITY: usize = 65_536;

impl MockTarget {
    /// Starts a fresh mock (the `synapse` profile) with this access-token lifetime.
    pub async fn start(lifetime: Duration) -> Result<MockTarget, TargetError> {
        let server = MockHomeserver::builder()
            .profile(Profile::Synapse)
            .refreshable_access_token_lifetime(lifetime)
            .trace_config(TraceConfig {
                window: MOCK_TRACE_WINDOW,
                spill: None,
                subscriber_capacity: MOCK_FEED_CAPACITY,
            })
            .start()
            .await
            .map_err(|e| TargetError::Start(e.to_string()))?;
        Ok(MockTarget {
            description: format!(
                "embedded mock homeserver at {} (synapse profile, {} access tokens)",
                server.url(),
                rotary_judge::duration::format_duration(lifetime)
            ),
            server,
        })
    }

    /// The server, for tests and for what the trait does not cover.
    pub fn server(&self) -> &MockHomeserver {
        &self.server
    }
}

impl SoakTarget for MockTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn base_url(&self) -> String {
        self.server.url()
    }

    fn accounts<'a>(&'a self, prefix: &'a str, n: usize) -> BoxFuture<'a, Result<Vec<Account>, TargetError>> {
        let made = (0..n)
            .map(|i| {
                let (user, password) = (format!("{prefix}{i}"), format!("pw-{prefix}{i}"));
                self.server
                    .add_user(&user, &password)
                    .map_err(|e| TargetError::Refused(format!("cannot create user {user}: {e}")))?;
                Ok(Account::new(user, password))
            })
            .collect();
        Box::pin(std::future::ready(made))
    }

    fn add_faults(&self, rules: &[FaultRule]) -> Result<(), TargetError> {
        for r in rules {
            self.server
                .add_fault(r.clone())
                .map_err(|e| TargetError::Refused(format!("fault rule refused: {e}")))?;
        }
        Ok(())
    }

    fn clear_faults(&self) -> Result<(), TargetError> {
        self.server.clear_faults();
        Ok(())
    }

    fn advance_clock(&self, by: Duration) -> Result<(), TargetError> {
        self.server.advance_clock(by);
        Ok(())
    }

    fn revoke<'a>(&'a self, user_id: &'a str, device_id: &'a str) -> BoxFuture<'a, Result<(), TargetError>> {
        let done = self
            .server
            .revoke_session(user_id, device_id)
            .map_err(|e| TargetError::Refused(format!("cannot revoke {user_id} {device_id}: {e}")));
        Box::pin(std::future::ready(done))
    }

    fn subscribe(&self) -> Box<dyn TraceFeed> {
        Box::new(SubscriptionFeed(self.server.subscribe_trace()))
    }
}
