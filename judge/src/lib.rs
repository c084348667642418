//! Rotary's judgement: what a client did, and whether it was right.
//!
//! The front door is the trace model, [`TraceEntry`]: one entry per request, with the label and
//! state of every token it presented and was issued. Everything that judges a client reads these
//! entries and nothing else of the outside world — no HTTP, no processes — so that `rotary run`
//! (a scripted scenario against the mock), `rotary proxy` (live traffic in front of a real
//! homeserver) and `rotary soak` (a long run of many sessions) judge with one set of rules.
//!
//! ```
//! use rotary_judge::{Delivery, TraceEntry};
//! let mut e = TraceEntry::new("refresh", "POST", "/_matrix/client/v3/refresh");
//! e.status = Some(200);
//! e.delivery = Delivery::Sent;
//! assert!(e.is_refresh() && e.delivered());
//! ```
#![forbid(unsafe_code)]

pub mod check;
pub mod duration;
pub mod label;
pub mod level;
pub mod live;
pub mod observed;
pub mod refresh;
pub mod trace;

pub use check::{Check, CheckKind, CheckResult, Shape, StepShape};
pub use level::Level;
pub use observed::{
    CallError, MintedSession, NotificationRecord, Observed, SessionView, StepOutcome, StepRecord,
};
pub use trace::{AccessState, Delivery, FiredFault, IssuedLabels, RefreshState, TokenView, TraceEntry};
