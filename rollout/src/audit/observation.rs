//! What the probe observes: one [`Behaviour`] per table row, its value as a short string, and the
//! spec's verdict on that value.

use serde::Serialize;
use std::collections::BTreeMap;

/// A behaviour the probe observes, in the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// The newest spec version `/versions` advertises (informational).
    Versions,
    /// Whether `GET /_matrix/client/v1/auth_metadata` offers the OAuth 2.0 API.
    OAuthOffered,
    /// Whether login (or register) with `refresh_token: true` returns a refresh token.
    RefreshTokenIssued,
    /// The `expires_in_ms` of the login (or register) answer.
    LoginExpiresIn,
    /// The tokens' prefixes (`syt_`/`syr_` Synapse, `mct_`/`mcr_` MAS).
    TokenShape,
    /// The `/refresh` path versions served.
    RefreshPaths,
    /// The answer to an unknown refresh token.
    RefreshUnknownToken,
    /// The answer to the first refresh.
    RefreshAnswer,
    /// Whether the refresh returns a new refresh token.
    Rotation,
    /// The refresh answer's `expires_in_ms`.
    RefreshExpiresIn,
    /// The old access token right after the refresh, before the new pair is used.
    OldAccessBeforeUse,
    /// The old refresh token again, before the new pair is used.
    ReuseBeforeUse,
    /// The access token of the pair the reuse discarded.
    DiscardedPairAccess,
    /// The old access token after the new one was used.
    OldAccessAfterUse,
    /// The old refresh token again, after the new pair was used.
    ReuseAfterUse,
    /// The (used) old access token after the next refresh dropped its generation.
    OldAccessDropped,
    /// An expired access token (waits for the announced lifetime).
    ExpiredAccess,
    /// A refresh after the access token expired.
    RefreshAfterExpiry,
    /// The access token after `/logout`.
    LogoutAccess,
    /// The refresh token after `/logout`.
    LogoutRefresh,
    /// The refresh token of a device after `/logout/all` (only with `--register`).
    LogoutAllRefresh,
}

impl Behaviour {
    /// Every behaviour in table order.
    pub const ALL: [Behaviour; 21] = [
        Behaviour::Versions,
        Behaviour::OAuthOffered,
        Behaviour::RefreshTokenIssued,
        Behaviour::LoginExpiresIn,
        Behaviour::TokenShape,
        Behaviour::RefreshPaths,
        Behaviour::RefreshUnknownToken,
        Behaviour::RefreshAnswer,
        Behaviour::Rotation,
        Behaviour::RefreshExpiresIn,
        Behaviour::OldAccessBeforeUse,
        Behaviour::ReuseBeforeUse,
        Behaviour::DiscardedPairAccess,
        Behaviour::OldAccessAfterUse,
        Behaviour::ReuseAfterUse,
        Behaviour::OldAccessDropped,
        Behaviour::ExpiredAccess,
        Behaviour::RefreshAfterExpiry,
        Behaviour::LogoutAccess,
        Behaviour::LogoutRefresh,
        Behaviour::LogoutAllRefresh,
    ];

    /// The key in JSON (`reuse_after_use`).
    pub fn key(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The row's title in the table.
    pub fn title(self) -> &'static str {
        match self {
            Behaviour::Versions => "newest version in /versions",
            Behaviour::OAuthOffered => "OAuth 2.0 offered (auth_metadata)",
            Behaviour::RefreshTokenIssued => "login refresh_token:true",
            Behaviour::LoginExpiresIn => "login expires_in_ms",
            Behaviour::TokenShape => "token prefixes",
            Behaviour::RefreshPaths => "/refresh paths served",
            Behaviour::RefreshUnknownToken => "unknown refresh token",
            Behaviour::RefreshAnswer => "refresh",
            Behaviour::Rotation => "refresh rotates",
            Behaviour::RefreshExpiresIn => "refresh expires_in_ms",
            Behaviour::OldAccessBeforeUse => "old access token, new unused",
            Behaviour::ReuseBeforeUse => "old refresh token, new unused",
            Behaviour::DiscardedPairAccess => "access token of discarded pair",
            Behaviour::OldAccessAfterUse => "old access token, new used",
            Behaviour::ReuseAfterUse => "old refresh token, new used",
            Behaviour::OldAccessDropped => "old access token, generation dropped",
            Behaviour::ExpiredAccess => "expired access token",
            Behaviour::RefreshAfterExpiry => "refresh after expiry",
            Behaviour::LogoutAccess => "access token after logout",
            Behaviour::LogoutRefresh => "refresh token after logout",
            Behaviour::LogoutAllRefresh => "refresh token after logout/all",
        }
    }

    /// Whether the row takes part in matching (informational rows do not).
    pub fn compared(self) -> bool {
        !matches!(self, Behaviour::Versions)
    }
}

/// A value that says the probe did not run this row: never a difference.
pub fn is_not_applicable(value: &str) -> bool {
    value.starts_with("n/a")
}

/// A value for a skipped row.
pub fn skipped(reason: &str) -> String {
    format!("skipped: {reason}")
}

/// The observed (or predicted) values, one per behaviour.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Observations(pub BTreeMap<Behaviour, String>);

/// One row where two observations differ.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// The behaviour's key.
    pub behaviour: Behaviour,
    /// What the server did.
    pub observed: String,
    /// What the profile (or config) predicts.
    pub predicted: String,
}

impl Observations {
    /// Records a value.
    pub fn set(&mut self, b: Behaviour, value: impl Into<String>) {
        self.0.insert(b, value.into());
    }

    /// A value, or `-` when the row was not reached.
    pub fn get(&self, b: Behaviour) -> &str {
        self.0.get(&b).map_or("-", String::as_str)
    }

    /// The compared rows where `predicted` differs from these observations (`n/a` on either side
    /// never differs).
    pub fn differences(&self, predicted: &Observations) -> Vec<Difference> {
        Behaviour::ALL
            .into_iter()
            .filter(|b| b.compared())
            .filter_map(|b| {
                let (o, p) = (self.get(b), predicted.get(b));
                (o != p && !is_not_applicable(o) && !is_not_applicable(p)).then(|| Difference {
                    behaviour: b,
                    observed: o.to_owned(),
                    predicted: p.to_owned(),
                })
            })
            .collect()
    }
}

/// How strongly the spec asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A requirement: a broken one is flagged.
    Must,
    /// A recommendation or the spec's own wording.
    Should,
}

/// The spec's verdict on one observed value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// Must or should.
    pub level: Level,
    /// Whether the value meets it.
    pub ok: bool,
    /// What the spec says.
    pub rule: &'static str,
}

impl Verdict {
    /// The table's cell: `ok`, `MUST broken`, `should: …`.
    pub fn cell(&self) -> String {
        match (self.ok, self.level) {
            (true, Level::Must) => "ok (must)".to_owned(),
            (true, Level::Should) => "ok".to_owned(),
            (false, Level::Must) => format!("MUST BROKEN: {}", self.rule),
            (false, Level::Should) => format!("differs: {}", self.rule),
        }
    }
}

fn refused(v: &str) -> bool {
    v.starts_with('4')
}

/// The spec's verdict on a value, where the spec says something about it (and the row ran).
pub fn verdict(b: Behaviour, value: &str) -> Option<Verdict> {
    if value == "-" || value.starts_with("skipped") || is_not_applicable(value) {
        return None;
    }
    let v = |level, ok, rule| {
        Some(Verdict {
            behaviour: b,
            level,
            ok,
            rule,
        })
    };
    match b {
        Behaviour::RefreshUnknownToken => v(
            Level::Should,
            value.starts_with("401 M_UNKNOWN_TOKEN"),
            "spec answers 401 M_UNKNOWN_TOKEN",
        ),
        Behaviour::RefreshAnswer | Behaviour::RefreshAfterExpiry => v(
            Level::Must,
            value.starts_with("200"),
            "a valid refresh token gets a new access token",
        ),
        Behaviour::ReuseBeforeUse => v(
            Level::Must,
            value.starts_with("200"),
            "old refresh token valid until the new pair is used",
        ),
        Behaviour::ReuseAfterUse => {
            if !refused(value) {
                v(
                    Level::Must,
                    false,
                    "old refresh token revoked once the new pair is used",
                )
            } else {
                v(
                    Level::Should,
                    value.starts_with("401 M_UNKNOWN_TOKEN"),
                    "spec answers 401 M_UNKNOWN_TOKEN",
                )
            }
        }
        Behaviour::ExpiredAccess => {
            if !value.starts_with("401 M_UNKNOWN_TOKEN") {
                v(Level::Must, false, "expired token gets 401 M_UNKNOWN_TOKEN")
            } else {
                v(
                    Level::Should,
                    value.ends_with("sl=true"),
                    "preferably soft_logout: true",
                )
            }
        }
        Behaviour::LogoutAccess | Behaviour::LogoutRefresh | Behaviour::LogoutAllRefresh => v(
            Level::Must,
            refused(value),
            "logout invalidates the device's tokens",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_skip_informational_and_not_applicable_rows() {
        let mut a = Observations::default();
        let mut b = Observations::default();
        a.set(Behaviour::Versions, "v1.12");
        b.set(Behaviour::Versions, "v1.15");
        a.set(
            Behaviour::OldAccessAfterUse,
            "n/a (the token was about to expire)",
        );
        b.set(Behaviour::OldAccessAfterUse, "200");
        assert!(a.differences(&b).is_empty());
        a.set(Behaviour::ReuseAfterUse, "403 M_FORBIDDEN");
        b.set(Behaviour::ReuseAfterUse, "401 M_UNKNOWN_TOKEN");
        let d = a.differences(&b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].behaviour.key(), "reuse_after_use");
    }

    #[test]
    fn verdicts_flag_broken_musts_only() {
        let ok = verdict(Behaviour::ReuseAfterUse, "403 M_FORBIDDEN").unwrap();
        assert!(!ok.ok && ok.level == Level::Should, "{ok:?}");
        let broken = verdict(Behaviour::ReuseAfterUse, "200").unwrap();
        assert!(!broken.ok && broken.level == Level::Must);
        assert!(broken.cell().starts_with("MUST BROKEN"));
        let mas = verdict(Behaviour::ReuseBeforeUse, "401 M_UNKNOWN_TOKEN").unwrap();
        assert_eq!((mas.level, mas.ok), (Level::Must, false));
        let soft = verdict(Behaviour::ExpiredAccess, "401 M_UNKNOWN_TOKEN sl=false").unwrap();
        assert_eq!((soft.level, soft.ok), (Level::Should, false));
        assert!(verdict(Behaviour::ExpiredAccess, "skipped: lifetime 5m > --max-wait 2m").is_none());
        assert!(verdict(Behaviour::TokenShape, "syt_ syr_").is_none());
    }

    #[test]
    fn every_behaviour_has_a_key_and_a_title() {
        for b in Behaviour::ALL {
            assert!(!b.key().is_empty() && !b.title().is_empty(), "{b:?}");
        }
    }
}
