//! What a simulated app does and as whom: the app profile (rates, shares, deadlines) and accounts.

use rotary_judge::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A message sent and not yet seen is remembered at most this long by default (then it is lost).
pub const DEFAULT_MESSAGE_DEADLINE: Duration = Duration::from_secs(60);

/// A user account a session logs in with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The user (localpart or full id), as `/login` takes it.
    pub user: String,
    /// The password.
    pub password: String,
}

impl Account {
    /// An account.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Account {
        Account {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// What the simulated app does, and how often. Every field has a default; a schedule's
/// `[workload]` table sets any of them (durations as `"10s"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppProfile {
    /// The sync loop's long-poll timeout.
    #[serde(with = "duration::required")]
    pub sync_timeout: Duration,
    /// Share of the sessions that run in the background: instead of long polls, a sync with
    /// timeout 0 every `background_sync_interval` (no connection held between them).
    pub background_share: f64,
    /// How often a background session syncs.
    #[serde(with = "duration::required")]
    pub background_sync_interval: Duration,
    /// Mean time between two actions (each wait is drawn between half and one and a half times it).
    #[serde(with = "duration::required")]
    pub action_interval: Duration,
    /// Share of the actions that send a message (0: no room, no messages).
    pub send_share: f64,
    /// Share of the actions that are a burst of `burst_size` concurrent requests (a send, if
    /// messages are on, and `whoami`s), as an app opening a screen.
    pub burst_share: f64,
    /// Requests in a burst.
    pub burst_size: usize,
    /// Wait before logging in again after a logout.
    #[serde(with = "duration::required")]
    pub relogin_delay: Duration,
    /// A message sent and not seen by sync this long after is counted lost.
    #[serde(with = "duration::required")]
    pub message_deadline: Duration,
}

impl Default for AppProfile {
    fn default() -> Self {
        AppProfile {
            sync_timeout: Duration::from_secs(10),
            background_share: 0.0,
            background_sync_interval: Duration::from_secs(5),
            action_interval: Duration::from_secs(1),
            send_share: 0.3,
            burst_share: 0.25,
            burst_size: 3,
            relogin_delay: Duration::from_secs(1),
            message_deadline: DEFAULT_MESSAGE_DEADLINE,
        }
    }
}

impl AppProfile {
    /// Checks that every share is in 0..=1 and every duration and size is usable.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("background_share", self.background_share),
            ("send_share", self.send_share),
            ("burst_share", self.burst_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} = {v} is not between 0 and 1"));
            }
        }
        if self.send_share + self.burst_share > 1.0 {
            return Err(format!(
                "send_share + burst_share = {} is more than 1",
                self.send_share + self.burst_share
            ));
        }
        for (name, d) in [
            ("action_interval", self.action_interval),
            ("background_sync_interval", self.background_sync_interval),
            ("message_deadline", self.message_deadline),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be longer than 0"));
            }
        }
        if !(1..=32).contains(&self.burst_size) {
            return Err(format!(
                "burst_size = {} is not between 1 and 32",
                self.burst_size
            ));
        }
        Ok(())
    }

    /// Whether sessions keep a room and send messages.
    pub fn messaging(&self) -> bool {
        self.send_share > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_checked() {
        assert_eq!(AppProfile::default().validate(), Ok(()));
        let bad = AppProfile {
            send_share: 1.5,
            ..AppProfile::default()
        };
        assert!(bad.validate().is_err_and(|e| e.contains("send_share")));
        let zero = AppProfile {
            action_interval: Duration::ZERO,
            ..AppProfile::default()
        };
        assert!(zero.validate().is_err());
        let parsed: AppProfile = toml::from_str("sync_timeout = \"30s\"\nsend_share = 0").unwrap();
        assert_eq!(parsed.sync_timeout, Duration::from_secs(30));
        assert!(!parsed.messaging());
        assert!(toml::from_str::<AppProfile>("sync_timeot = \"30s\"").is_err());
    }
}
