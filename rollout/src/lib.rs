//! Rotary's rollout testing: what a team needs between "the catalogue passes" and "refresh tokens
//! are on for everyone" — Rotary in front of their real staging server and their real app build.
//!
//! - `proxy`: a reverse proxy in front of a real homeserver that learns the token graph from
//!   traffic, injects the catalogue's faults and judges the clients live (`rotary proxy`);
//! - `audit`: a probe of how a deployment really refreshes, and a mock config that behaves the
//!   same (`rotary audit`);
//! - `soak`: many sessions for hours, faults on a schedule, thresholds as the gate (`rotary soak`).
//!
//! All three judge with `rotary_judge::live`, the same invariants `rotary run` reports.
#![forbid(unsafe_code)]

pub mod audit;
pub mod proxy;
pub mod soak;

pub use proxy::{Proxy, ProxyBuilder, ProxyConfig, ProxyError, ProxyReport, RunningProxy};
