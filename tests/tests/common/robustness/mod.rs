//! Shared by the `robustness_*` tests: raw HTTP/1.1 over TCP ([`wire`]), a representative request
//! for every endpoint ([`targets`]), bad inputs ([`inputs`]), running probes and judging their
//! answers ([`probing`]), and the watch for panics on server threads ([`panics`]).

pub mod inputs;
pub mod panics;
pub mod probing;
pub mod targets;
pub mod wire;
