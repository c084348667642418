//! The schedule file: the phases of a soak (ramp-up, steady, chaos windows with fault rules and
//! probabilities, server clock jumps, a suspension of a share of the sessions) and the app
//! profile, as TOML. [`DEFAULT_SCHEDULE`] ships with Rotary.
//!
//! ```
//! use rotary_rollout::soak::schedule::Schedule;
//! let s = Schedule::from_toml(r#"
//! [[phase]]
//! name = "steady"
//! duration = "rest"
//! "#).unwrap();
//! assert_eq!(s.phases.len(), 1);
//! assert!(Schedule::from_toml("[[phase]]\nname = \"x\"\nduration = \"rest\"\ncolour = 1").is_err());
//! ```

use super::fleet::AppProfile;
use rotary_judge::duration::parse_duration;
use rotary_server::FaultRule;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// The default schedule: ramp-up, steady, a clock jump past every expiry, chaos (refresh
/// 500/429/lost, lost sends, 502s), an outage of `/refresh` (429 with `retry_after_ms`), a suspension of 30 %
/// of the sessions, a revocation of 20 % of them, recovery.
pub const DEFAULT_SCHEDULE: &str = include_str!("default-schedule.toml");

/// A schedule: what the app does and the phases, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// What every simulated app does (the defaults of [`AppProfile`] for what is not set).
    #[serde(default)]
    pub workload: AppProfile,
    /// The phases, in order.
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
}

/// One phase of a soak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Its name, unique in the schedule (reports and the series name it).
    pub name: String,
    /// How long it lasts.
    pub duration: Span,
    /// The sessions start evenly over this phase (only the first phase may say so).
    #[serde(default)]
    pub ramp_up: bool,
    /// Fault rules active during the phase (the rules of `rotary serve --fault`).
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultRule>,
    /// At the phase's start, the server's clock jumps forward by this much.
    #[serde(default)]
    pub clock_jump: Option<Amount>,
    /// At the phase's start, a share of the sessions is suspended (no request at all) for a while.
    #[serde(default)]
    pub suspend: Option<Suspend>,
    /// At the phase's start, the server revokes the sessions of a share of the fleet (a
    /// definitive refusal: their clients must log out, and the app logs in again).
    #[serde(default)]
    pub revoke: Option<Revoke>,
}

/// A revocation of a share of the sessions by the server (an admin, a password change).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// Share of the sessions, 0..=1 (chosen with the seed).
    pub share: f64,
}

/// A suspension of a share of the sessions, as apps sent to the background.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suspend {
    /// Share of the sessions, 0..=1 (chosen with the seed).
    pub share: f64,
    /// For how long.
    pub duration: Amount,
}

/// How long a phase lasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Span {
    /// A fixed time (`"30s"`).
    Fixed(Duration),
    /// A share of the soak's duration (`"25%"`, stored as 0.25).
    Share(f64),
    /// What the other phases leave (`"rest"`; at most one phase).
    Rest,
}

/// An amount of time: fixed (`"90s"`) or a multiple of the access-token lifetime (`"2x"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    /// A fixed time.
    Fixed(Duration),
    /// This many access-token lifetimes.
    Lifetimes(f64),
}

impl Amount {
    /// The time it stands for, given the access-token lifetime.
    pub fn resolve(self, lifetime: Duration) -> Duration {
        match self {
            Amount::Fixed(d) => d,
            Amount::Lifetimes(k) => lifetime.mul_f64(k),
        }
    }
}

fn parse_share(text: &str, what: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{what} {text:?} is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{what} {text:?} is not a positive number"));
    }
    Ok(v)
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        let t = s.trim();
        if t == "rest" {
            return Ok(Span::Rest);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v = parse_share(p, "share")?;
            if v <= 0.0 || v > 100.0 {
                return Err(format!("{t:?}: a share must be above 0% and at most 100%"));
            }
            return Ok(Span::Share(v / 100.0));
        }
        parse_duration(t).map(Span::Fixed).map_err(|e| {
            format!("{t:?} is neither a duration (\"30s\"), a share (\"25%\") nor \"rest\": {e}")
        })
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Span::Fixed(d) => f.write_str(&rotary_judge::duration::format_duration(*d)),
            Span::Share(v) => write!(f, "{}%", v * 100.0),
            Span::Rest => f.write_str("rest"),
        }
    }
}

impl std::str::FromStr for Amount {
    type Err = String;
    fn from_str(s: &str) -> Result<Amount, String> {
        let t = s.trim();
        if let Some(k) = t.strip_suffix('x') {
            return Ok(Amount::Lifetimes(parse_share(k, "multiple of the lifetime")?));
        }
        parse_duration(t).map(Amount::Fixed).map_err(|e| {
            format!("{t:?} is neither a duration (\"90s\") nor a multiple of the lifetime (\"2x\"): {e}")
        })
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Fixed(d) => f.write_str(&rotary_judge::duration::format_duration(*d)),
            Amount::Lifetimes(k) => write!(f, "{k}x"),
        }
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Span);
serde_via_str!(Amount);

/// A schedule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not TOML, an unknown field, a bad value (the message names the line and column).
    #[error("invalid schedule: {0}")]
    Toml(String),
    /// A phase that cannot happen as written.
    #[error("impossible phase {phase:?}: {message}")]
    Phase {
        /// The phase's name (or its number, when it has none).
        phase: String,
        /// What is wrong.
        message: String,
    },
    /// Something about the schedule as a whole.
    #[error("invalid schedule: {0}")]
    Invalid(String),
}

impl Schedule {
    /// The default schedule.
    pub fn default_schedule() -> Schedule {
        // The shipped file is checked by a unit test; this fallback is never taken.
        Schedule::from_toml(DEFAULT_SCHEDULE).unwrap_or_else(|_| Schedule {
            workload: AppProfile::default(),
            phases: vec![Phase::steady("steady", Span::Rest)],
        })
    }

    /// Reads a schedule and checks what can be checked without the soak's duration.
    pub fn from_toml(text: &str) -> Result<Schedule, ScheduleError> {
        let s: Schedule = toml::from_str(text).map_err(|e| ScheduleError::Toml(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    /// Checks names, shares, the ramp-up, the fault rules and the app profile.
    pub fn check(&self) -> Result<(), ScheduleError> {
        self.workload
            .validate()
            .map_err(|m| ScheduleError::Invalid(format!("[workload]: {m}")))?;
        if self.phases.is_empty() {
            return Err(ScheduleError::Invalid(
                "a schedule needs at least one [[phase]]".into(),
            ));
        }
        let endpoints = rotary_server::endpoint_names();
        let mut rests = 0;
        for (i, p) in self.phases.iter().enumerate() {
            let bad = |message: String| ScheduleError::Phase {
                phase: if p.name.is_empty() {
                    format!("#{}", i + 1)
                } else {
                    p.name.clone()
                },
                message,
            };
            if p.name.trim().is_empty() {
                return Err(bad("it has no name".into()));
            }
            if self.phases[..i].iter().any(|q| q.name == p.name) {
                return Err(bad("two phases have this name".into()));
            }
            match p.duration {
                Span::Fixed(d) if d.is_zero() => return Err(bad("it lasts 0 s".into())),
                Span::Rest => rests += 1,
                _ => {}
            }
            if p.ramp_up && i > 0 {
                return Err(bad("only the first phase can be the ramp-up".into()));
            }
            for f in &p.faults {
                f.validate(&endpoints)
                    .map_err(|e| bad(format!("fault {}: {e}", f.name.as_deref().unwrap_or("(unnamed)"))))?;
            }
            if let Some(Amount::Fixed(d)) = p.clock_jump
                && d.is_zero()
            {
                return Err(bad("a clock jump of 0 s".into()));
            }
            if let Some(s) = &p.suspend
                && !(s.share > 0.0 && s.share <= 1.0)
            {
                return Err(bad(format!(
                    "suspend.share = {} is not above 0 and at most 1",
                    s.share
                )));
            }
            if let Some(r) = &p.revoke
                && !(r.share > 0.0 && r.share <= 1.0)
            {
                return Err(bad(format!(
                    "revoke.share = {} is not above 0 and at most 1",
                    r.share
                )));
            }
        }
        if rests > 1 {
            return Err(ScheduleError::Invalid(
                "at most one phase can last the \"rest\"".into(),
            ));
        }
        Ok(())
    }
}

impl Phase {
    /// A phase with nothing in it.
    pub fn steady(name: &str, duration: Span) -> Phase {
        Phase {
            name: name.to_owned(),
            duration,
            ramp_up: false,
            faults: Vec::new(),
            clock_jump: None,
            suspend: None,
            revoke: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_parses() {
        let s = Schedule::from_toml(DEFAULT_SCHEDULE).expect("the default schedule");
        assert_eq!(s, Schedule::default_schedule());
        let names: Vec<&str> = s.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ramp-up",
                "steady",
                "clock-jump",
                "chaos",
                "outage",
                "suspend",
                "revoke",
                "recovery"
            ]
        );
        assert!(s.phases[0].ramp_up);
        assert_eq!(s.phases[2].clock_jump, Some(Amount::Lifetimes(2.0)));
    }

    #[test]
    fn spans_and_amounts() {
        assert_eq!("25%".parse::<Span>(), Ok(Span::Share(0.25)));
        assert_eq!("30s".parse::<Span>(), Ok(Span::Fixed(Duration::from_secs(30))));
        assert_eq!("rest".parse::<Span>(), Ok(Span::Rest));
        assert!("0%".parse::<Span>().is_err());
        assert!("150%".parse::<Span>().is_err());
        assert!("soon".parse::<Span>().is_err());
        assert_eq!("2x".parse::<Amount>(), Ok(Amount::Lifetimes(2.0)));
        assert_eq!(
            Amount::Lifetimes(1.5).resolve(Duration::from_secs(2)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let unknown = Schedule::from_toml("[[phase]]\nname = \"a\"\nduration = \"rest\"\nfaults = []\n");
        assert!(matches!(unknown, Err(ScheduleError::Toml(m)) if m.contains("unknown field")));
        let two_rests =
            "[[phase]]\nname = \"a\"\nduration = \"rest\"\n[[phase]]\nname = \"b\"\nduration = \"rest\"\n";
        assert!(matches!(
            Schedule::from_toml(two_rests),
            Err(ScheduleError::Invalid(_))
        ));
        let late_ramp = "[[phase]]\nname = \"a\"\nduration = \"1s\"\n[[phase]]\nname = \"b\"\nduration = \"rest\"\nramp_up = true\n";
        assert!(
            matches!(Schedule::from_toml(late_ramp), Err(ScheduleError::Phase { phase, .. }) if phase == "b")
        );
        let bad_fault = "[[phase]]\nname = \"a\"\nduration = \"rest\"\n[[phase.fault]]\nendpoint = \"nope\"\naction = { kind = \"reset\" }\n";
        assert!(
            matches!(Schedule::from_toml(bad_fault), Err(ScheduleError::Phase { message, .. }) if message.contains("unknown endpoint"))
        );
        let share =
            "[[phase]]\nname = \"a\"\nduration = \"rest\"\nsuspend = { share = 2, duration = \"1s\" }\n";
        assert!(Schedule::from_toml(share).is_err());
        assert!(Schedule::from_toml("").is_err());
    }
}
