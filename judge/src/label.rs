//! Token labels: how traces and reports name tokens (`at#3`, `rt#2`) so that no secret is ever shown.
//!
//! ```
//! use rotary_judge::label::{access_label, label_number, refresh_label};
//! assert_eq!(access_label(0), "at#1");
//! assert_eq!(refresh_label(2), "rt#3");
//! assert_eq!(label_number("at#12"), Some(12));
//! assert_eq!(label_number("at#?"), None);
//! ```

/// The label of "no token presented".
pub const NO_TOKEN: &str = "-";
/// The label of an access token the labeller never saw issued.
pub const UNKNOWN_ACCESS: &str = "at#?";
/// The label of a refresh token the labeller never saw issued.
pub const UNKNOWN_REFRESH: &str = "rt#?";

/// The trace label of the n-th access token (`at#1` is the first, index 0).
pub fn access_label(index: u32) -> String {
    format!("at#{}", u64::from(index) + 1)
}

/// The trace label of the n-th refresh token (`rt#1` is the first, index 0).
pub fn refresh_label(index: u32) -> String {
    format!("rt#{}", u64::from(index) + 1)
}

/// The number in a label (`at#12` → 12); unknown labels and `-` have none.
pub fn label_number(label: &str) -> Option<u64> {
    label.split_once('#').and_then(|(_, n)| n.parse().ok())
}

/// Whether a label names a token that was seen issued (not `-`, `at#?` or `rt#?`).
pub fn is_known(label: &str) -> bool {
    label_number(label).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for i in [0u32, 1, 41, u32::MAX] {
            assert_eq!(label_number(&access_label(i)), Some(u64::from(i) + 1));
            assert_eq!(label_number(&refresh_label(i)), Some(u64::from(i) + 1));
        }
        assert!(!is_known(NO_TOKEN));
        assert!(!is_known(UNKNOWN_ACCESS));
        assert!(!is_known(UNKNOWN_REFRESH));
        assert!(is_known("rt#7"));
    }
}
