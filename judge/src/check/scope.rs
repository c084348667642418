//! What a check's fields refer to: steps (by number or name, alone or as a window), count bounds,
//! endpoints and rooms — and their resolution against the scenario's [`Shape`].
//!
//! ```
//! use rotary_judge::check::Bounds;
//! let b = Bounds::new(None, Some(1), Some(2)).unwrap();
//! assert!(b.holds(2) && !b.holds(3));
//! assert_eq!(b.to_string(), "between 1 and 2");
//! assert!(Bounds::new(Some(1), Some(1), None).is_err());
//! ```

use super::kind::Shape;
use serde::{Deserialize, Serialize};

/// A reference to a step: its 1-based number or its `name`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StepRef {
    /// 1-based position.
    Index(usize),
    /// A step's `name`.
    Name(String),
}

impl std::fmt::Display for StepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepRef::Index(i) => write!(f, "{i}"),
            StepRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// An inclusive range of steps, resolved to 1-based indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRange {
    /// First step.
    pub from: usize,
    /// Last step.
    pub to: usize,
}

impl std::fmt::Display for StepRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "step {}", self.from)
        } else {
            write!(f, "steps {}–{}", self.from, self.to)
        }
    }
}

/// Bounds on a count: exactly, or at least and/or at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Exactly this many.
    pub exactly: Option<u64>,
    /// At least.
    pub at_least: Option<u64>,
    /// At most.
    pub at_most: Option<u64>,
}

impl Bounds {
    /// Bounds as a check's fields give them: `exactly`, or `at_least` / `at_most`, at least one.
    pub fn new(exactly: Option<u64>, at_least: Option<u64>, at_most: Option<u64>) -> Result<Bounds, String> {
        if exactly.is_some() && (at_least.is_some() || at_most.is_some()) {
            return Err("give `exactly`, or `at_least` / `at_most`, not both".to_owned());
        }
        if exactly.is_none() && at_least.is_none() && at_most.is_none() {
            return Err("needs `exactly`, `at_least` or `at_most`".to_owned());
        }
        if let (Some(l), Some(m)) = (at_least, at_most)
            && l > m
        {
            return Err(format!("at_least ({l}) is above at_most ({m})"));
        }
        Ok(Bounds {
            exactly,
            at_least,
            at_most,
        })
    }

    /// Whether `n` is within the bounds.
    pub fn holds(&self, n: u64) -> bool {
        self.exactly.is_none_or(|e| n == e)
            && self.at_least.is_none_or(|l| n >= l)
            && self.at_most.is_none_or(|m| n <= m)
    }
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.exactly, self.at_least, self.at_most) {
            (Some(e), _, _) => write!(f, "exactly {e}"),
            (None, Some(l), Some(m)) => write!(f, "between {l} and {m}"),
            (None, Some(l), None) => write!(f, "at least {l}"),
            (None, None, Some(m)) => write!(f, "at most {m}"),
            (None, None, None) => write!(f, "any number of"),
        }
    }
}

impl Shape<'_> {
    /// The step a reference names.
    pub fn step(&self, r: &StepRef) -> Result<usize, String> {
        let found = match r {
            StepRef::Index(i) => (*i >= 1 && *i <= self.steps.len()).then_some(*i),
            StepRef::Name(n) => self
                .steps
                .iter()
                .find(|s| s.name.as_deref() == Some(n.as_str()))
                .map(|s| s.index),
        };
        found.ok_or_else(|| format!("step {r} does not exist"))
    }

    /// A `steps = [from, to]` window.
    pub fn window(&self, span: Option<&(StepRef, StepRef)>) -> Result<Option<StepRange>, String> {
        let Some((a, b)) = span else {
            return Ok(None);
        };
        let (from, to) = (self.step(a)?, self.step(b)?);
        if from > to {
            return Err(format!("steps [{a}, {b}] run backwards"));
        }
        Ok(Some(StepRange { from, to }))
    }

    /// A step that must be a driver call.
    pub fn driver_step(&self, r: &StepRef) -> Result<usize, String> {
        let i = self.step(r)?;
        match self.steps.get(i - 1) {
            Some(s) if s.driver_call => Ok(i),
            _ => Err(format!("step {i} is not a driver call")),
        }
    }

    /// A `session` step: the one named, or the last one.
    pub fn session_step(&self, r: Option<&StepRef>) -> Result<usize, String> {
        let i = match r {
            Some(r) => self.step(r)?,
            None => self
                .steps
                .iter()
                .rev()
                .find(|s| s.action == "session")
                .map(|s| s.index)
                .ok_or_else(|| "needs a `session` step to look at".to_owned())?,
        };
        match self.steps.get(i - 1) {
            Some(s) if s.action == "session" => Ok(i),
            _ => Err(format!("step {i} is not a `session` step")),
        }
    }

    /// An endpoint name the server knows.
    pub fn endpoint(&self, name: &str) -> Result<(), String> {
        if self.endpoints.contains(&name) || crate::refresh::EXTRA_NAMES.contains(&name) {
            Ok(())
        } else {
            Err(format!(
                "unknown endpoint {name:?}; known: {}",
                self.endpoints.join(", ")
            ))
        }
    }

    /// A room made by a `create_room` step.
    pub fn room(&self, handle: &str) -> Result<(), String> {
        if self.rooms.iter().any(|r| r == handle) {
            Ok(())
        } else {
            Err(format!("room {handle:?} is not made by a `create_room` step"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kind::StepShape;
    use super::*;

    #[test]
    fn references_resolve_or_say_why_not() {
        let steps = [
            StepShape::driver(1, None, "login"),
            StepShape::server(2, Some("wait"), "advance_clock"),
            StepShape::driver(3, Some("look"), "session"),
        ];
        let shape = Shape {
            steps: &steps,
            rooms: &["main".to_owned()],
            endpoints: &["refresh"],
        };
        assert_eq!(shape.step(&StepRef::Name("wait".into())), Ok(2));
        assert_eq!(
            shape.step(&StepRef::Index(4)),
            Err("step 4 does not exist".into())
        );
        assert_eq!(
            shape.window(Some(&(StepRef::Index(3), StepRef::Index(1)))),
            Err("steps [3, 1] run backwards".into())
        );
        assert_eq!(
            shape.driver_step(&StepRef::Index(2)),
            Err("step 2 is not a driver call".into())
        );
        assert_eq!(shape.session_step(None), Ok(3));
        assert!(shape.session_step(Some(&StepRef::Index(1))).is_err());
        assert!(shape.endpoint("whoami").is_err() && shape.endpoint("refresh").is_ok());
        assert!(shape.room("main").is_ok() && shape.room("side").is_err());
    }
}
