//! End-to-end tests live in `tests/`; this library only compiles the README's Rust examples as
//! doctests, so that they stay true.

#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;
