//! The `rotary` command line: subcommands and their help.

use crate::serve::ServeArgs;
use clap::{Parser, Subcommand};

/// Rotary: a mock Matrix homeserver and conformance harness for access-token refresh.
#[derive(Debug, Parser)]
#[command(
    name = "rotary",
    version,
    about = "Rotary: a mock Matrix homeserver and conformance harness for access-token refresh",
    long_about = "Rotary: a mock Matrix homeserver and conformance harness for access-token refresh.\n\n\
        `rotary serve` runs a homeserver that behaves like Synapse (or the spec, or MAS) with short\n\
        token lifetimes, fault injection, a control API at /_rotary and a trace of every request.\n\
        See `rotary serve --help` and the README.",
    propagate_version = true
)]
pub struct Cli {
    /// More logging (-v: each request, -vv: everything). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mock homeserver (default: 127.0.0.1:8008, Synapse profile, user alice/wonderland).
    #[command(long_about = SERVE_HELP)]
    Serve(ServeArgs),
}

const SERVE_HELP: &str = "Run the mock homeserver until Ctrl-C.

It behaves like Synapse 1.163 by default (profile `synapse`): refresh tokens on request, 5 minute
access tokens, the old refresh token valid until the new pair is used. Every knob of a profile can be
changed with a flag, `--set KNOB=VALUE`, or a TOML file (`--config`). Faults are injected with
`--fault` (inline TOML) or `--faults FILE`, and at run time through the control API at /_rotary.

Examples:
  rotary serve
  rotary serve --profile mas --refreshable-access-token-lifetime 3s
  rotary serve --set rotate_refresh_tokens=false --set refresh_failure_soft_logout=true
  rotary serve --fault 'endpoint = \"refresh\", nth = 1, action = { kind = \"commit_then_drop\" }'
  rotary serve --config rotary.toml --port 0";
