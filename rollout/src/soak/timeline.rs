//! A schedule made concrete for one soak: when each phase starts and ends, and every event (faults
//! on and off, clock jumps, suspensions of chosen sessions) at its time — all decided by the seed,
//! so that the same seed gives the same faults in the same order.
//!
//! ```
//! use rotary_rollout::soak::schedule::Schedule;
//! use rotary_rollout::soak::timeline::Timeline;
//! use std::time::Duration;
//! let s = Schedule::default_schedule();
//! let a = Timeline::build(&s, Duration::from_secs(60), Duration::from_secs(5), 20, 7).unwrap();
//! let b = Timeline::build(&s, Duration::from_secs(60), Duration::from_secs(5), 20, 7).unwrap();
//! assert_eq!(a, b);
//! assert_eq!(a.phases.last().unwrap().end, Duration::from_secs(60));
//! ```

use super::rng::SeededRng;
use super::schedule::{Schedule, ScheduleError, Span};
use rotary_server::FaultRule;
use serde::Serialize;
use std::time::Duration;

/// One phase, placed in time (from the soak's start).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseWindow {
    /// Its name.
    pub name: String,
    /// When it starts, ms after the soak's start.
    #[serde(serialize_with = "ms")]
    pub start: Duration,
    /// When it ends.
    #[serde(serialize_with = "ms")]
    pub end: Duration,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Something the soak does to the server or the fleet at a given time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A phase starts.
    PhaseStart {
        /// Its index in the schedule.
        index: usize,
        /// Its name.
        name: String,
    },
    /// These fault rules go on (each with its seed set).
    FaultsOn {
        /// The rules.
        rules: Vec<FaultRule>,
    },
    /// Every fault rule goes off.
    FaultsOff,
    /// The server's clock jumps forward.
    ClockJump {
        /// By how much, ms.
        #[serde(serialize_with = "ms")]
        by: Duration,
    },
    /// The server revokes these sessions' devices.
    Revoke {
        /// Their indices in the fleet.
        sessions: Vec<usize>,
    },
    /// These sessions are suspended.
    Suspend {
        /// Their indices in the fleet.
        sessions: Vec<usize>,
        /// For how long, ms.
        #[serde(serialize_with = "ms")]
        duration: Duration,
    },
}

/// One event at its time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimedEvent {
    /// When, ms after the soak's start.
    #[serde(serialize_with = "ms")]
    pub at: Duration,
    /// What.
    #[serde(flatten)]
    pub event: Event,
}

/// The concrete plan of one soak.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    /// The phases in order; the last ends at the soak's end.
    pub phases: Vec<PhaseWindow>,
    /// How long the sessions take to start (the first phase, when it is the ramp-up).
    #[serde(serialize_with = "ms")]
    pub ramp_up: Duration,
    /// Every event, in time order.
    pub events: Vec<TimedEvent>,
}

impl Timeline {
    /// Places the schedule's phases in `total` and decides every random choice with `seed`.
    /// `sessions` is the size of the simulated fleet (suspensions choose among them), `lifetime`
    /// the access-token lifetime (`"2x"` amounts).
    pub fn build(
        schedule: &Schedule,
        total: Duration,
        lifetime: Duration,
        sessions: usize,
        seed: u64,
    ) -> Result<Timeline, ScheduleError> {
        schedule.check()?;
        let sized: Vec<Option<Duration>> = schedule
            .phases
            .iter()
            .map(|p| match p.duration {
                Span::Fixed(d) => Some(d),
                Span::Share(s) => Some(total.mul_f64(s)),
                Span::Rest => None,
            })
            .collect();
        let fixed: Duration = sized.iter().flatten().sum();
        // 1 ms of slack for the rounding of shares.
        if fixed > total + Duration::from_millis(1) {
            return Err(ScheduleError::Invalid(format!(
                "the phases take {} ms, more than the soak's {} ms",
                fixed.as_millis(),
                total.as_millis()
            )));
        }
        let rest = total.saturating_sub(fixed);
        let last = schedule.phases.len() - 1;
        let has_rest = sized.iter().any(Option::is_none);
        let mut phases = Vec::with_capacity(schedule.phases.len());
        let mut events = Vec::new();
        let mut at = Duration::ZERO;
        for (i, (p, size)) in schedule.phases.iter().zip(&sized).enumerate() {
            let mut len = size.unwrap_or(rest);
            // Without a "rest" phase, the last phase lasts to the end.
            if i == last && !has_rest {
                len = total.saturating_sub(at);
            }
            let end = if i == last { total } else { (at + len).min(total) };
            if end <= at && !len.is_zero() {
                return Err(ScheduleError::Phase {
                    phase: p.name.clone(),
                    message: "it starts after the soak's end".into(),
                });
            }
            events.push(TimedEvent {
                at,
                event: Event::PhaseStart {
                    index: i,
                    name: p.name.clone(),
                },
            });
            if let Some(jump) = p.clock_jump {
                events.push(TimedEvent {
                    at,
                    event: Event::ClockJump {
                        by: jump.resolve(lifetime),
                    },
                });
            }
            if let Some(s) = &p.suspend {
                let k = ((sessions as f64) * s.share).round() as usize;
                let chosen = SeededRng::derive(seed, 0x5_0000 + i as u64).pick(sessions, k.max(1));
                if !chosen.is_empty() {
                    events.push(TimedEvent {
                        at,
                        event: Event::Suspend {
                            sessions: chosen,
                            duration: s.duration.resolve(lifetime),
                        },
                    });
                }
            }
            if let Some(r) = &p.revoke {
                let k = ((sessions as f64) * r.share).round() as usize;
                let chosen = SeededRng::derive(seed, 0x7_0000 + i as u64).pick(sessions, k.max(1));
                if !chosen.is_empty() {
                    events.push(TimedEvent {
                        at,
                        event: Event::Revoke { sessions: chosen },
                    });
                }
            }
            if !p.faults.is_empty() {
                let mut rng = SeededRng::derive(seed, 0xF_0000 + i as u64);
                let rules = p
                    .faults
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        let s = rng.next_u64();
                        r.seed.get_or_insert(s);
                        r.name
                            .get_or_insert_with(|| format!("{}:{}", p.name, r.action.kind()));
                        r
                    })
                    .collect();
                events.push(TimedEvent {
                    at,
                    event: Event::FaultsOn { rules },
                });
                events.push(TimedEvent {
                    at: end,
                    event: Event::FaultsOff,
                });
            }
            phases.push(PhaseWindow {
                name: p.name.clone(),
                start: at,
                end,
            });
            at = end;
        }
        events.sort_by_key(|e| {
            (
                e.at,
                matches!(e.event, Event::FaultsOff).then_some(0).unwrap_or(1),
            )
        });
        let ramp_up = match (schedule.phases.first(), phases.first()) {
            (Some(p), Some(w)) if p.ramp_up => w.end - w.start,
            _ => Duration::ZERO,
        };
        Ok(Timeline {
            phases,
            ramp_up,
            events,
        })
    }

    /// The phase running at `t`.
    pub fn phase_at(&self, t: Duration) -> Option<&PhaseWindow> {
        self.phases
            .iter()
            .find(|p| p.start <= t && t < p.end)
            .or(self.phases.last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::schedule::Schedule;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_default_schedule_in_a_minute() {
        let t = Timeline::build(&Schedule::default_schedule(), 60 * S, 5 * S, 10, 1).expect("timeline");
        let spans: Vec<(u64, u64)> = t
            .phases
            .iter()
            .map(|p| (p.start.as_secs(), p.end.as_secs()))
            .collect();
        assert_eq!(
            spans,
            [
                (0, 6),
                (6, 12),
                (12, 18),
                (18, 30),
                (30, 36),
                (36, 45),
                (45, 51),
                (51, 60)
            ]
        );
        assert_eq!(t.ramp_up, 6 * S);
        let jump = t.events.iter().find_map(|e| match e.event {
            Event::ClockJump { by } => Some((e.at, by)),
            _ => None,
        });
        assert_eq!(jump, Some((12 * S, 10 * S)));
        let revoked = t.events.iter().find_map(|e| match &e.event {
            Event::Revoke { sessions } => Some((e.at, sessions.len())),
            _ => None,
        });
        assert_eq!(revoked, Some((45 * S, 2)));
        let suspended = t.events.iter().find_map(|e| match &e.event {
            Event::Suspend { sessions, .. } => Some(sessions.len()),
            _ => None,
        });
        assert_eq!(suspended, Some(3));
        // Every rule got a seed, and another seed gives other seeds.
        let seeds = |t: &Timeline| -> Vec<Option<u64>> {
            t.events
                .iter()
                .filter_map(|e| match &e.event {
                    Event::FaultsOn { rules } => Some(rules.iter().map(|r| r.seed).collect::<Vec<_>>()),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        assert!(seeds(&t).iter().all(Option::is_some));
        let other = Timeline::build(&Schedule::default_schedule(), 60 * S, 5 * S, 10, 2).expect("timeline");
        assert_ne!(seeds(&t), seeds(&other));
    }

    #[test]
    fn phases_that_do_not_fit_are_refused() {
        let s = Schedule::from_toml(
            "[[phase]]\nname = \"a\"\nduration = \"40s\"\n[[phase]]\nname = \"b\"\nduration = \"rest\"\n",
        )
        .expect("schedule");
        assert!(Timeline::build(&s, 30 * S, 5 * S, 1, 0).is_err());
        let t = Timeline::build(&s, 60 * S, 5 * S, 1, 0).expect("fits");
        assert_eq!(t.phases[1].end - t.phases[1].start, 20 * S);
    }
}
