//! Human-friendly durations (`300ms`, `3s`, `5m`, `24h`) for scenario files, config files, flags and the control API.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (write e.g. 300ms, 3s, 5m, 24h)")]
pub struct DurationError {
    input: String,
    reason: String,
}

/// Parses `300ms`, `3s`, `5m`, `24h`, `1h 30m` or a bare number of milliseconds.
///
/// ```
/// use rotary_judge::duration::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
/// assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    if let Ok(ms) = trimmed.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(trimmed).map_err(|e| DurationError {
        input: input.to_owned(),
        reason: e.to_string(),
    })
}

/// Parses a duration that may also be switched off with `none`, `never`, `off` or `null`.
///
/// ```
/// use rotary_judge::duration::parse_optional_duration;
/// assert_eq!(parse_optional_duration("never").unwrap(), None);
/// assert!(parse_optional_duration("5m").unwrap().is_some());
/// ```
pub fn parse_optional_duration(input: &str) -> Result<Option<Duration>, DurationError> {
    match input.trim().to_ascii_lowercase().as_str() {
        "none" | "never" | "off" | "null" | "infinite" => Ok(None),
        _ => parse_duration(input).map(Some),
    }
}

/// Writes a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    // Every digit, down to the nanosecond: a value rounded to the millisecond (or capped at
    // u64::MAX ms) would not read back as itself, e.g. `1ns` would print as `0s`.
    humantime::format_duration(d).to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Millis(u64),
    Text(String),
}

/// Serde adapter for `Option<Duration>`: a string (`"5m"`, `"never"`), a number of ms, or null.
pub mod optional {
    use super::*;

    /// Serializes `None` as null and `Some(d)` as a humantime string.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes a string, a number of ms, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Millis(ms)) => Ok(Some(Duration::from_millis(ms))),
            Some(Raw::Text(t)) => parse_optional_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Serde adapter for `Duration`: a string (`"5m"`) or a number of ms.
pub mod required {
    use super::*;

    /// Serializes as a humantime string.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*value))
    }

    /// Deserializes a string or a number of ms.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_optional_duration("off"), Ok(None));
    }

    #[test]
    fn rejects_nonsense_with_a_helpful_message() {
        let err = parse_duration("5 minutes-ish").unwrap_err().to_string();
        assert!(err.contains("5 minutes-ish") && err.contains("300ms"), "{err}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["300ms", "3s", "5m", "24h"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
