//! The session a client holds — who it is, its tokens, when the access token expires — and the
//! preemptive-refresh rule.

use std::time::{Duration, Instant};

/// A session as a login, a registration or the application hands it to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionData {
    /// The full user id, e.g. `@alice:localhost`.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, if the session has one.
    pub refresh_token: Option<String>,
    /// `expires_in_ms` as received: the access token's lifetime from the moment it was received;
    /// `None` means it does not expire (as far as the server said).
    pub expires_in: Option<Duration>,
}

/// When the access token expires, as the client computed it on receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// Receipt time plus `expires_in_ms`.
    pub at: Instant,
    /// `expires_in_ms` itself: the lifetime the server gave this token.
    pub lifetime: Duration,
}

impl Expiry {
    /// The expiry of a token received at `received` with this `expires_in_ms`. With
    /// `missing_is_zero` (the `missing-expiry-is-zero` bug) a missing value means "already expired".
    pub fn on_receipt(
        received: Instant,
        expires_in: Option<Duration>,
        missing_is_zero: bool,
    ) -> Option<Expiry> {
        match expires_in {
            Some(lifetime) => Some(Expiry {
                at: received + lifetime,
                lifetime,
            }),
            None if missing_is_zero => Some(Expiry {
                at: received,
                lifetime: Duration::ZERO,
            }),
            None => None,
        }
    }

    /// Time left at `now` (zero once expired).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// Whether the token has expired (locally) at `now`.
    pub fn has_passed(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// Whether a request at `now` should refresh first: the token has expired, or less than the
    /// effective margin is left.
    pub fn wants_refresh(&self, now: Instant, margin: Duration, uncapped: bool) -> bool {
        self.has_passed(now) || self.remaining(now) < effective_margin(margin, self.lifetime, uncapped)
    }
}

/// How long before expiry to refresh: the configured margin, but at most half the lifetime, so that a
/// lifetime shorter than the margin does not cause a refresh before every request. `uncapped` is the
/// `preempt-storm` bug.
pub fn effective_margin(margin: Duration, lifetime: Duration, uncapped: bool) -> Duration {
    if uncapped {
        margin
    } else {
        margin.min(lifetime / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn margin_is_capped_by_half_the_lifetime() {
        assert_eq!(effective_margin(S(60), S(300), false), S(60));
        assert_eq!(effective_margin(S(60), S(10), false), S(5));
        assert_eq!(effective_margin(S(60), S(10), true), S(60));
        assert_eq!(effective_margin(S(60), Duration::ZERO, false), Duration::ZERO);
    }

    #[test]
    fn when_to_refresh() {
        let t0 = Instant::now();
        let e = Expiry::on_receipt(t0, Some(S(300)), false).unwrap_or_else(|| panic!("an expiry"));
        assert!(!e.wants_refresh(t0, S(60), false));
        assert!(!e.wants_refresh(t0 + S(239), S(60), false));
        assert!(e.wants_refresh(t0 + S(241), S(60), false));
        assert!(e.wants_refresh(t0 + S(400), S(60), false));
        assert_eq!(e.remaining(t0 + S(400)), Duration::ZERO);

        // A 10 s lifetime under a 60 s margin: refresh in the last 5 s only, unless uncapped.
        let short = Expiry::on_receipt(t0, Some(S(10)), false).unwrap_or_else(|| panic!("an expiry"));
        assert!(!short.wants_refresh(t0 + S(1), S(60), false));
        assert!(short.wants_refresh(t0 + S(6), S(60), false));
        assert!(short.wants_refresh(t0 + S(1), S(60), true));

        assert_eq!(Expiry::on_receipt(t0, None, false), None);
        let zero = Expiry::on_receipt(t0, None, true).unwrap_or_else(|| panic!("an expiry"));
        assert!(zero.wants_refresh(t0, S(60), false));
    }
}
