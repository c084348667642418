//! How strictly a requirement binds a client: `must`, `should` or `info` — for scenarios and live
//! invariants alike.
//!
//! ```
//! use rotary_judge::Level;
//! assert_eq!(Level::Should.name(), "should");
//! assert_eq!("must".parse::<Level>(), Ok(Level::Must));
//! ```

use serde::{Deserialize, Serialize};

/// A scenario's level: how strictly its requirement binds a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The spec requires it, or users lose their session without it.
    Must,
    /// Good practice; failing it is reported as `non-strict`.
    Should,
    /// Observes behaviour; never passes or fails.
    Info,
}

impl Level {
    /// The level's name as written in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Info => "info",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Level, String> {
        match s {
            "must" => Ok(Level::Must),
            "should" => Ok(Level::Should),
            "info" => Ok(Level::Info),
            other => Err(format!("unknown level {other:?}; known: must, should, info")),
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for l in [Level::Must, Level::Should, Level::Info] {
            assert_eq!(serde_json::to_value(l).unwrap(), serde_json::json!(l.name()));
            assert_eq!(l.name().parse::<Level>(), Ok(l));
        }
    }
}
