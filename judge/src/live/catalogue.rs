//! The live invariants: what a correct client never does, stated so that it can be judged on
//! traffic nobody scripted — each with a stable id, a level, a one-line requirement and references.

use crate::level::Level;
use serde::Serialize;

/// One live invariant, as documentation and reports name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Invariant {
    /// Stable id (`live.single-flight`).
    pub id: &'static str,
    /// How strictly it binds a client.
    pub level: Level,
    /// The requirement, in one sentence.
    pub requirement: &'static str,
    /// Spec sections, MSCs, SDK bugs.
    pub references: &'static [&'static str],
}

/// Two refreshes with the same refresh token at once.
pub const SINGLE_FLIGHT: Invariant = Invariant {
    id: "live.single-flight",
    level: Level::Must,
    requirement: "A client runs one refresh at a time: no two refreshes presenting the same refresh token overlap.",
    references: &[
        "matrix-org/matrix-ios-sdk#1319 (no double refresh under concurrent requests)",
        "catalogue: concurrency.401-storm, concurrency.late-401",
    ],
};

/// A refresh token presented after its successor reached the client.
pub const STALE_REFRESH_TOKEN: Invariant = Invariant {
    id: "live.stale-refresh-token",
    level: Level::Must,
    requirement: "A client presents the newest refresh token it received: never one whose successor was already delivered to it.",
    references: &[
        "Matrix spec v1.3, 'Refreshing access tokens' (rotation)",
        "MSC2918",
        "catalogue: rotation.chain, restore.resume-chain",
    ],
};

/// An access token older than one already delivered.
pub const STALE_ACCESS_TOKEN: Invariant = Invariant {
    id: "live.stale-access-token",
    level: Level::Should,
    requirement: "A client uses the newest access token it received: never one older than a token already delivered to it.",
    references: &["catalogue: concurrency.requests-during-refresh (no_stale_access_token)"],
};

/// A logout or a fresh login soon after a refresh failed transiently.
pub const LOGOUT_AFTER_TRANSIENT: Invariant = Invariant {
    id: "live.logout-after-transient",
    level: Level::Must,
    requirement: "A transient refresh failure (5xx, 429, timeout, a dropped response) is not a logout: no logout, fresh login or new device follows it unless the server refused definitively.",
    references: &[
        "Matrix spec v1.15, OAuth 2.0 token refresh ('retry later')",
        "matrix-org/matrix-rust-sdk#7038",
        "matrix-org/matrix-js-sdk#5494",
        "catalogue: faults.refresh-500, lost-response.refresh-synapse",
    ],
};

/// More refreshes than the announced lifetime explains.
pub const REFRESH_LOOP: Invariant = Invariant {
    id: "live.refresh-loop",
    level: Level::Must,
    requirement: "A client refreshes no more often than the lifetime the server announced explains: at most 3 answered refreshes (and at most 10 attempts) per announced lifetime.",
    references: &["catalogue: concurrency.refresh-storm-rate, expiry.lifetime-below-margin"],
};

/// A message resent with a new transaction id after a lost response.
pub const TXN_ID_REUSED: Invariant = Invariant {
    id: "live.txn-id-kept",
    level: Level::Must,
    requirement: "A message resent after a lost or failed response keeps its transaction id, so the server stores it once.",
    references: &[
        "Matrix spec, 'Transaction identifiers' (scoped to the device, not the token)",
        "catalogue: lost-response.send-across-refresh",
    ],
};

/// A request with a token the client could know had expired.
pub const EXPIRED_TOKEN_USED: Invariant = Invariant {
    id: "live.expired-token-used",
    level: Level::Should,
    requirement: "A client that was told when its access token expires refreshes before using it past that time (by its own account of time since delivery).",
    references: &["MSC2918 (expires_in_ms)", "catalogue: expiry.preemptive"],
};

/// Every live invariant, in report order.
pub const INVARIANTS: &[Invariant] = &[
    SINGLE_FLIGHT,
    STALE_REFRESH_TOKEN,
    STALE_ACCESS_TOKEN,
    LOGOUT_AFTER_TRANSIENT,
    REFRESH_LOOP,
    TXN_ID_REUSED,
    EXPIRED_TOKEN_USED,
];

/// The invariant with this id.
pub fn invariant(id: &str) -> Option<&'static Invariant> {
    INVARIANTS.iter().find(|i| i.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_found() {
        for i in INVARIANTS {
            assert_eq!(invariant(i.id), Some(i));
            assert!(i.id.starts_with("live."));
            assert!(!i.references.is_empty());
        }
        let mut ids: Vec<&str> = INVARIANTS.iter().map(|i| i.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), INVARIANTS.len());
    }
}
