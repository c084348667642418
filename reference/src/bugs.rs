//! Bug switches: each one makes the reference client repeat one real mistake that client SDKs have made.
//!
//! The test suite runs the catalogue once against the correct client (every scenario must pass) and
//! once per bug (at least one scenario must catch it: the kill matrix).

use std::fmt;

/// One deliberate mistake the client can be told to make (`--bug NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// No single flight: every 401 runs its own refresh, even when the token was already replaced.
    RefreshPer401,
    /// Every refresh presents the refresh token received at login / restore.
    StaleRefreshToken,
    /// A refresh response without `refresh_token` makes the client forget its refresh token.
    DropRefreshToken,
    /// Any refresh failure (network, 5xx, 429, garbage) is taken as definitive: hard logout.
    LogoutOnTransient,
    /// After refreshing on a 401 the request is not retried: the caller gets the 401.
    NoRetry,
    /// Failed refreshes, and refresh-and-retry rounds of a request, are retried without bound.
    RetryForever,
    /// Every logout is reported as hard (`soft_logout: false`).
    IgnoreSoftLogout,
    /// Rotated tokens are never written to the state dir.
    NoPersist,
    /// Requests that waited for a refresh are sent with the access token captured before waiting.
    OldTokenAfterRefresh,
    /// Failed refreshes are retried at once: no backoff, `retry_after_ms` ignored.
    IgnoreRetryAfter,
    /// The preemptive margin is not capped by half the lifetime: short lifetimes refresh every time.
    PreemptStorm,
    /// Never refreshes before expiry, only after a 401.
    NoPreempt,
    /// Never asks for a refresh token at login / register.
    NoRefreshRequest,
    /// A send retried after a network error gets a new transaction id.
    NewTxnOnRetry,
    /// A definitive refresh failure is returned as an HTTP error; logout is never signalled.
    SwallowRefreshFailure,
    /// After a logout the tokens are kept and still used.
    KeepTokensAfterLogout,
    /// A response without `expires_in_ms` is taken as already expired.
    MissingExpiryIsZero,
    /// On a 401 without a refresh token, `/refresh` is called anyway with an empty token.
    RefreshWithoutToken,
    /// OAuth: a 4xx from the token endpoint (e.g. `invalid_grant`) is taken as transient: retried,
    /// the dead session kept, logout never signalled.
    Oauth4xxNotLogout,
    /// OAuth: a Matrix-shaped error (`{"errcode": …}`) from the token endpoint — e.g. a 429
    /// `M_LIMIT_EXCEEDED` from a rate limiter — is taken as a logout.
    OauthMatrixErrorLogout,
    /// Once a refresh has told it the access token's expiry, a 401 `M_UNKNOWN_TOKEN` while the
    /// client's own clock says at least 60 s remain is taken as a logout (with the 401's
    /// `soft_logout` flag): no refresh, although the server's 401 is authoritative (matrix-js-sdk
    /// `_handleUnknownToken`, which learns expiries from its own refreshes only).
    TrustLocalExpiry,
    /// A transient refresh failure is not retried within the request: the request fails with the
    /// failure (not a logout), the tokens are kept, and the next request refreshes again with the
    /// same refresh token (matrix-js-sdk: `TokenRefreshError`).
    RetryNextRequest,
}

/// A bug's command-line name and what it does.
#[derive(Clone, Copy, Debug)]
pub struct BugInfo {
    /// The switch.
    pub bug: Bug,
    /// Its name for `--bug`.
    pub name: &'static str,
    /// One line saying what the client then does wrong.
    pub description: &'static str,
}

/// Every bug switch, in the order `--list-bugs` prints them.
pub const BUGS: &[BugInfo] = &[
    BugInfo {
        bug: Bug::RefreshPer401,
        name: "refresh-per-401",
        description: "no single flight: every request that gets a 401 runs its own refresh",
    },
    BugInfo {
        bug: Bug::StaleRefreshToken,
        name: "stale-refresh-token",
        description: "keeps presenting the refresh token received at login/restore",
    },
    BugInfo {
        bug: Bug::DropRefreshToken,
        name: "drop-refresh-token",
        description: "forgets the refresh token when a refresh response carries none",
    },
    BugInfo {
        bug: Bug::LogoutOnTransient,
        name: "logout-on-transient",
        description: "treats any refresh failure (network, 5xx, 429) as definitive: hard logout",
    },
    BugInfo {
        bug: Bug::NoRetry,
        name: "no-retry",
        description: "refreshes on a 401 but returns the 401 instead of retrying the request",
    },
    BugInfo {
        bug: Bug::RetryForever,
        name: "retry-forever",
        description: "retries failed refreshes and refresh-and-retry rounds without bound",
    },
    BugInfo {
        bug: Bug::IgnoreSoftLogout,
        name: "ignore-soft-logout",
        description: "reports every logout as hard (soft_logout: false)",
    },
    BugInfo {
        bug: Bug::NoPersist,
        name: "no-persist",
        description: "never persists rotated tokens to the state dir",
    },
    BugInfo {
        bug: Bug::OldTokenAfterRefresh,
        name: "old-token-after-refresh",
        description: "requests that waited for a refresh are sent with the old access token",
    },
    BugInfo {
        bug: Bug::IgnoreRetryAfter,
        name: "ignore-retry-after",
        description: "retries failed refreshes at once, ignoring backoff and retry_after_ms",
    },
    BugInfo {
        bug: Bug::PreemptStorm,
        name: "preempt-storm",
        description: "preemptive margin not capped by lifetime/2: short lifetimes refresh every time",
    },
    BugInfo {
        bug: Bug::NoPreempt,
        name: "no-preempt",
        description: "never refreshes before expiry, only reactively on a 401",
    },
    BugInfo {
        bug: Bug::NoRefreshRequest,
        name: "no-refresh-request",
        description: "never asks for a refresh token at login/register",
    },
    BugInfo {
        bug: Bug::NewTxnOnRetry,
        name: "new-txn-on-retry",
        description: "retries a send after a network error with a new transaction id",
    },
    BugInfo {
        bug: Bug::SwallowRefreshFailure,
        name: "swallow-refresh-failure",
        description: "a definitive refresh failure is an HTTP error, never a logout; dead tokens kept",
    },
    BugInfo {
        bug: Bug::KeepTokensAfterLogout,
        name: "keep-tokens-after-logout",
        description: "keeps and keeps using its tokens after a logout",
    },
    BugInfo {
        bug: Bug::MissingExpiryIsZero,
        name: "missing-expiry-is-zero",
        description: "a response without expires_in_ms is taken as already expired",
    },
    BugInfo {
        bug: Bug::RefreshWithoutToken,
        name: "refresh-without-token",
        description: "on a 401 without a refresh token, calls /refresh with an empty token anyway",
    },
    BugInfo {
        bug: Bug::Oauth4xxNotLogout,
        name: "oauth-4xx-not-logout",
        description: "OAuth: a 4xx from the token endpoint (invalid_grant…) is transient: retried, never a logout",
    },
    BugInfo {
        bug: Bug::OauthMatrixErrorLogout,
        name: "oauth-matrix-error-logout",
        description: "OAuth: a Matrix {errcode} error from the token endpoint (e.g. 429 M_LIMIT_EXCEEDED) is a logout",
    },
    BugInfo {
        bug: Bug::TrustLocalExpiry,
        name: "trust-local-expiry",
        description: "after a refresh told it the expiry, a 401 while its clock says at least 60 s remain is a logout (the 401's soft_logout), no refresh",
    },
    BugInfo {
        bug: Bug::RetryNextRequest,
        name: "retry-next-request",
        description: "a transient refresh failure fails the request (not a logout); only the next request refreshes again, same refresh token",
    },
];

/// `--bug` named a switch that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug '{name}'; valid names: {}", valid_names().join(", "))]
pub struct UnknownBug {
    /// The name given.
    pub name: String,
}

fn valid_names() -> Vec<&'static str> {
    BUGS.iter().map(|b| b.name).collect()
}

impl Bug {
    /// The switch called `name` (as `--bug` takes it).
    pub fn from_name(name: &str) -> Result<Bug, UnknownBug> {
        BUGS.iter()
            .find(|b| b.name == name)
            .map(|b| b.bug)
            .ok_or_else(|| UnknownBug {
                name: name.to_owned(),
            })
    }

    /// This switch's entry in [`BUGS`].
    pub fn info(self) -> &'static BugInfo {
        // Every variant has an entry (a unit test checks it); the fallback is never taken.
        BUGS.iter().find(|b| b.bug == self).unwrap_or(&BUGS[0])
    }

    /// Its `--bug` name.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Its position in [`BUGS`], used as a bit in [`Bugs`].
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::from_name(s)
    }
}

/// A set of active bug switches (empty: the correct client).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs(u32);

impl Bugs {
    /// No bug: the correct client.
    pub const NONE: Bugs = Bugs(0);

    /// Whether `bug` is switched on.
    pub fn has(self, bug: Bug) -> bool {
        self.0 & bug.bit() != 0
    }

    /// Switches `bug` on.
    pub fn insert(&mut self, bug: Bug) {
        self.0 |= bug.bit();
    }

    /// Whether no bug is switched on.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The active switches, in [`BUGS`] order.
    pub fn iter(self) -> impl Iterator<Item = Bug> {
        BUGS.iter().map(|b| b.bug).filter(move |b| self.has(*b))
    }

    /// The active switches' names.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Bug::name).collect()
    }
}

impl FromIterator<Bug> for Bugs {
    fn from_iter<I: IntoIterator<Item = Bug>>(iter: I) -> Self {
        let mut set = Bugs::NONE;
        for bug in iter {
            set.insert(bug);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_every_variant_has_one_entry() {
        let names: HashSet<_> = BUGS.iter().map(|b| b.name).collect();
        assert_eq!(names.len(), BUGS.len());
        let bugs: HashSet<_> = BUGS.iter().map(|b| b.bug).collect();
        assert_eq!(bugs.len(), BUGS.len());
        for (i, info) in BUGS.iter().enumerate() {
            // The bit of a bug is its discriminant; the table is in declaration order.
            assert_eq!(info.bug as usize, i, "{} out of order", info.name);
            assert_eq!(info.bug.name(), info.name);
            assert!(!info.description.is_empty() && !info.description.contains('\n'));
            assert!(
                info.name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'-' || c.is_ascii_digit())
            );
        }
        assert!(BUGS.len() < 32);
    }

    #[test]
    fn parsing() {
        assert_eq!(Bug::from_name("refresh-per-401"), Ok(Bug::RefreshPer401));
        assert_eq!("no-persist".parse::<Bug>(), Ok(Bug::NoPersist));
        let err = Bug::from_name("nope")
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown bug 'nope'"), "{err}");
        assert!(err.contains("stale-refresh-token"), "{err}");
    }

    #[test]
    fn the_readme_lists_every_bug() {
        let readme = include_str!("../README.md");
        for info in BUGS {
            assert!(
                readme.contains(&format!("| `{}` |", info.name)),
                "{} missing from README.md",
                info.name
            );
        }
    }

    #[test]
    fn set() {
        let set: Bugs = [Bug::NoRetry, Bug::RefreshPer401].into_iter().collect();
        assert!(set.has(Bug::NoRetry) && set.has(Bug::RefreshPer401) && !set.has(Bug::NoPersist));
        assert_eq!(set.names(), vec!["refresh-per-401", "no-retry"]);
        assert!(Bugs::NONE.is_empty() && !set.is_empty());
    }
}
