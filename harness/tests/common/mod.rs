//! Shared by the `reports_*` tests: building blocks for hand-made trace entries and scenario reports
//! ([`blocks`]), the synthetic run built from them ([`sample`]), and a tiny well-formedness check of
//! XML, SVG and HTML ([`markup`]).
#![allow(dead_code)]

pub mod blocks;
pub mod markup;
pub mod sample;
