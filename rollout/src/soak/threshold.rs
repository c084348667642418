//! Thresholds, k6-style: `metric op number [unit]` (`'violations.must == 0'`,
//! `'refresh.p99 < 50ms'`, `'memory.growth < 64MiB'`). Every one must hold for the soak to pass.
//! A bad expression is an error that points at the character.
//!
//! ```
//! use rotary_rollout::soak::threshold::Threshold;
//! let t: Threshold = "refresh.p99 < 0.05s".parse().unwrap();
//! assert_eq!(t.value, 50.0); // in the metric's unit: ms
//! assert!(t.holds(12.0));
//! let e = "refresh.p99 <> 5".parse::<Threshold>().unwrap_err();
//! assert_eq!(e.at, 13);
//! ```

use super::metrics::{Unit, metric};
use serde::Serialize;
use std::fmt;

/// The thresholds that apply when none is given.
pub const DEFAULT_THRESHOLDS: &[&str] = &[
    "violations.must == 0",
    "sessions.lost == 0",
    "sessions.zombie == 0",
    "messages.lost == 0",
    "messages.duplicated == 0",
    "app.401 == 0",
    "refresh.per_lifetime <= 3",
    "drivers.errors == 0",
    "trace.lagged == 0",
    "memory.growth < 256MiB",
];

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    /// How it is written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One parsed threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Threshold {
    /// The expression as written.
    pub expr: String,
    /// The metric (a name of [`super::metrics::catalogue`]).
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The bound, in the metric's unit (ms for times, bytes for memory).
    pub value: f64,
}

impl Threshold {
    /// Whether `actual` (in the metric's unit) satisfies the threshold.
    pub fn holds(&self, actual: f64) -> bool {
        match self.op {
            Op::Eq => actual == self.value,
            Op::Ne => actual != self.value,
            Op::Lt => actual < self.value,
            Op::Le => actual <= self.value,
            Op::Gt => actual > self.value,
            Op::Ge => actual >= self.value,
        }
    }

    /// The default thresholds, parsed.
    pub fn defaults() -> Vec<Threshold> {
        DEFAULT_THRESHOLDS.iter().filter_map(|t| t.parse().ok()).collect()
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.value)
    }
}

/// An expression that is not a threshold: what is wrong and at which character (0-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ThresholdError {
    /// The expression.
    pub expr: String,
    /// The character (not byte) where it goes wrong.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ThresholdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid threshold at character {}: {}",
            self.at + 1,
            self.message
        )?;
        writeln!(f, "  {}", self.expr)?;
        write!(f, "  {}^", " ".repeat(self.at))
    }
}

struct Cursor<'a> {
    chars: Vec<char>,
    pos: usize,
    expr: &'a str,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn err(&self, at: usize, message: impl Into<String>) -> ThresholdError {
        ThresholdError {
            expr: self.expr.to_owned(),
            at,
            message: message.into(),
        }
    }
}

fn unit_factor(unit: Unit, word: &str) -> Option<f64> {
    match (unit, word) {
        (Unit::Millis, "ms") => Some(1.0),
        (Unit::Millis, "s") => Some(1_000.0),
        (Unit::Millis, "m") => Some(60_000.0),
        (Unit::Bytes, "B") => Some(1.0),
        (Unit::Bytes, "KiB") => Some(1024.0),
        (Unit::Bytes, "MiB") => Some(1024.0 * 1024.0),
        (Unit::Bytes, "GiB") => Some(1024.0 * 1024.0 * 1024.0),
        _ => None,
    }
}

fn units_of(unit: Unit) -> &'static str {
    match unit {
        Unit::Millis => "ms, s or m (a bare number is ms)",
        Unit::Bytes => "B, KiB, MiB or GiB (a bare number is bytes)",
        Unit::Count | Unit::Number => "none: this metric is a plain number",
    }
}

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(expr: &str) -> Result<Threshold, ThresholdError> {
        let mut c = Cursor {
            chars: expr.chars().collect(),
            pos: 0,
            expr,
        };
        c.skip_ws();
        let name_at = c.pos;
        let name = c.take_while(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
        if name.is_empty() {
            let msg = match c.peek() {
                None => "empty: expected a metric, e.g. 'violations.must == 0'".to_owned(),
                Some(ch) => format!("expected a metric name, found {ch:?}"),
            };
            return Err(c.err(name_at, msg));
        }
        let Some(info) = metric(&name) else {
            let near = super::metrics::catalogue()
                .into_iter()
                .filter(|m| m.name.split('.').next() == name.split('.').next())
                .map(|m| m.name)
                .collect::<Vec<_>>();
            let hint = if near.is_empty() {
                "; `rotary soak --list-metrics` lists them".to_owned()
            } else {
                format!("; did you mean one of {}?", near.join(", "))
            };
            return Err(c.err(name_at, format!("unknown metric {name:?}{hint}")));
        };
        c.skip_ws();
        let op_at = c.pos;
        let two: String = c.chars.iter().skip(c.pos).take(2).collect();
        let (op, len) = match two.as_str() {
            "==" => (Op::Eq, 2),
            "!=" => (Op::Ne, 2),
            "<=" => (Op::Le, 2),
            ">=" => (Op::Ge, 2),
            _ => match c.peek() {
                Some('<') => (Op::Lt, 1),
                Some('>') => (Op::Gt, 1),
                Some('=') => return Err(c.err(op_at, "a single '=': compare with '=='")),
                Some(ch) => {
                    return Err(c.err(
                        op_at,
                        format!("expected a comparison (==, !=, <, <=, >, >=), found {ch:?}"),
                    ));
                }
                None => return Err(c.err(op_at, "expected a comparison (==, !=, <, <=, >, >=)")),
            },
        };
        c.pos += len;
        c.skip_ws();
        let num_at = c.pos;
        let mut text = String::new();
        if c.peek() == Some('-') {
            c.pos += 1;
            text.push('-');
        }
        text.push_str(&c.take_while(|ch| ch.is_ascii_digit() || ch == '.'));
        let number: f64 = match text.parse() {
            Ok(n) if text != "-" => n,
            _ => {
                let msg = match c.chars.get(num_at) {
                    None => "expected a number".to_owned(),
                    Some(ch) => format!("expected a number, found {ch:?}"),
                };
                return Err(c.err(num_at, msg));
            }
        };
        let unit_at = c.pos;
        let word = c.take_while(|ch| ch.is_ascii_alphabetic() || ch == '%');
        let factor = if word.is_empty() {
            1.0
        } else {
            unit_factor(info.unit, &word).ok_or_else(|| {
                c.err(
                    unit_at,
                    format!(
                        "unit {word:?} does not fit {name}: units are {}",
                        units_of(info.unit)
                    ),
                )
            })?
        };
        c.skip_ws();
        if let Some(ch) = c.peek() {
            return Err(c.err(
                c.pos,
                format!("unexpected {ch:?} after the threshold (one comparison per --threshold)"),
            ));
        }
        Ok(Threshold {
            expr: expr.trim().to_owned(),
            metric: name,
            op,
            value: number * factor,
        })
    }
}

/// One threshold checked against a soak's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// The expression as written.
    pub threshold: String,
    /// The metric's value.
    pub actual: f64,
    /// Whether it held.
    pub ok: bool,
}

/// Checks every threshold against the metrics (a missing metric counts as 0).
pub fn check(thresholds: &[Threshold], values: &super::metrics::Values) -> Vec<Outcome> {
    thresholds
        .iter()
        .map(|t| {
            let actual = values.get(&t.metric).copied().unwrap_or(0.0);
            Outcome {
                threshold: t.expr.clone(),
                actual,
                ok: t.holds(actual),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
