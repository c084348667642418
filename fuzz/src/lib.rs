//! Shared code of Rotary's cargo-fuzz targets: the properties each target checks (`checks`, also
//! run by proptest in `tests/tests/robustness_fuzz.rs`) and the raw-HTTP exchange with in-process servers
//! (`request`).

pub mod checks;
pub mod request;
