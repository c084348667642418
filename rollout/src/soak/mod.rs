//! `rotary soak`: many sessions for a long time, faults on a seeded schedule, live invariants and
//! end-to-end checks, and thresholds that gate the exit code.
//!
//! One concept per module:
//!
//! | module | what it holds |
//! |---|---|
//! | [`fleet`] | the simulated app sessions (the reference client doing what an app does) |
//! | [`drivers`] | real driver processes in the fleet, through the driver protocol |
//! | [`schedule`] | the schedule file: phases, fault rules, clock jumps, suspensions; the default |
//! | [`timeline`] | a schedule made concrete for one duration and seed: what happens when |
//! | [`threshold`] | threshold expressions (`'refresh.p99 < 50ms'`) and their parser |
//! | [`metrics`] | histograms, counters and the per-second series |
//! | [`judge`] | the live invariants over the streamed trace, and the end-to-end ones |
//! | [`target`] | what the fleet talks to: the embedded mock, or (later) a proxy to an upstream |
//! | [`report`] | the report directory: JSON summary, CSV/JSON series, HTML with SVG charts |
//! | [`progress`] | the live progress line |
//! | [`run`] | the soak itself: wires the above together |
//! | [`rng`] | the seeded random generator every choice uses |

pub mod drivers;
pub mod fleet;
pub mod judge;
pub mod memory;
pub mod metrics;
pub mod progress;
pub mod report;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod target;
pub mod threshold;
pub mod timeline;

pub use rng::SeededRng;

pub use run::{Soak, SoakConfig, SoakError, SoakOutcome};
