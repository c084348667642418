//! End-to-end tests live in `tests/`; this library only compiles the Rust examples of the
//! documentation (`docs/server.md`) as doctests, so that they stay true.

#[doc = include_str!("../../docs/server.md")]
pub struct ServerDocExamples;
