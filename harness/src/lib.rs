//! Rotary's harness crate: the `rotary` command line (for now its `serve` command).
#![forbid(unsafe_code)]

mod cli;
pub mod serve;

pub use cli::{Cli, Command};
pub use serve::{ServeArgs, build_server, parse_kv};
