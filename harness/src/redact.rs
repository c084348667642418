//! Tokens out of everything the driver said: every raw token in a result, notification, log line
//! or transcript line becomes its label (`at#3`), or `[token]` when the server never issued it.
//!
//! ```
//! use rotary_harness::redact_tokens;
//! let label_of = |t: &str| (t == "syt_known_1234567890abcdef").then(|| "at#1".to_owned());
//! assert_eq!(redact_tokens("with syt_known_1234567890abcdef.", &label_of), "with at#1.");
//! ```

use crate::record::{CallError, StepOutcome};
use rotary_judge::label::{UNKNOWN_ACCESS, UNKNOWN_REFRESH};
use serde_json::Value;

const TOKEN_PREFIXES: &[&str] = &["syt_", "syr_", "mct_", "mcr_", "mat_", "mar_"];

/// Replaces every token-shaped word in `text` with its label (or `[token]` when unknown).
pub fn redact_tokens(text: &str, label_of: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = TOKEN_PREFIXES.iter().filter_map(|p| rest.find(p)).min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let token = &tail[..len];
        match label_of(token) {
            Some(l) => out.push_str(&l),
            None if len > 12 => out.push_str("[token]"),
            None => out.push_str(token),
        }
        rest = &tail[len..];
    }
}

/// A transcript line with its tokens labelled: parsed and relabelled when it is JSON, else
/// scanned for token-shaped words.
pub(crate) fn redact_json_line(line: &str, label_of: &dyn Fn(&str) -> Option<String>) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => label_json(&v, label_of).to_string(),
        Err(_) => redact_tokens(line, label_of),
    }
}

/// Replaces every string in a JSON value that is a token the server issued with its label;
/// token-looking strings it never issued become `at#?` / `rt#?`.
pub(crate) fn label_json(v: &Value, label_of: &dyn Fn(&str) -> Option<String>) -> Value {
    match v {
        Value::String(s) => match label_of(s) {
            Some(l) => Value::String(l),
            None if TOKEN_PREFIXES.iter().any(|p| s.starts_with(p)) => {
                Value::String(redact_tokens(s, label_of))
            }
            None => Value::String(s.clone()),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| label_json(x, label_of)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let labelled = if matches!(k.as_str(), "access_token" | "refresh_token") {
                        match x {
                            Value::String(s) => Value::String(label_of(s).unwrap_or_else(|| {
                                if k == "access_token" {
                                    UNKNOWN_ACCESS.to_owned()
                                } else {
                                    UNKNOWN_REFRESH.to_owned()
                                }
                            })),
                            other => label_json(other, label_of),
                        }
                    } else {
                        label_json(x, label_of)
                    };
                    (k.clone(), labelled)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

pub(crate) fn label_outcome(o: &StepOutcome, label_of: &dyn Fn(&str) -> Option<String>) -> StepOutcome {
    match o {
        StepOutcome::Ok { result } => StepOutcome::Ok {
            result: label_json(result, label_of),
        },
        StepOutcome::Failed { error } => StepOutcome::Failed {
            error: CallError {
                message: redact_tokens(&error.message, label_of),
                ..error.clone()
            },
        },
        StepOutcome::Parallel { results } => StepOutcome::Parallel {
            results: results.iter().map(|r| label_outcome(r, label_of)).collect(),
        },
        StepOutcome::Aborted { reason } => StepOutcome::Aborted {
            reason: reason.clone(),
        },
    }
}

/// A JSON value cut to about 200 characters, for messages.
pub(crate) fn preview(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}…", &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_replaced_by_labels() {
        let label_of = |t: &str| (t == "syt_known_1234567890abcdef").then(|| "at#1".to_owned());
        assert_eq!(
            redact_tokens(
                "using syt_known_1234567890abcdef and syr_other_1234567890abc.",
                &label_of
            ),
            "using at#1 and [token]."
        );
        let v = json!({"access_token": "syt_known_1234567890abcdef", "refresh_token": "weird", "x": ["syt_known_1234567890abcdef"]});
        assert_eq!(
            label_json(&v, &label_of),
            json!({"access_token": "at#1", "refresh_token": "rt#?", "x": ["at#1"]})
        );
    }
}
