//! The `rotary` command line: subcommands and their help.

use crate::commands::{ExplainArgs, ListArgs, RunArgs};
use crate::serve::ServeArgs;
use clap::{Parser, Subcommand};

/// Rotary: a mock Matrix homeserver and conformance harness for access-token refresh.
#[derive(Debug, Parser)]
#[command(
    name = "rotary",
    version,
    about = "Rotary: a mock Matrix homeserver and conformance harness for access-token refresh",
    long_about = "Rotary: a mock Matrix homeserver and conformance harness for access-token refresh.\n\n\
        `rotary run` runs the scenario catalogue against a client (the bundled reference client by\n\
        default, or yours through `--driver`) and reports pass/fail with the evidence.\n\
        `rotary list` and `rotary explain ID` show the catalogue.\n\
        `rotary serve` runs the homeserver alone: Synapse (or the spec, or MAS) with short token\n\
        lifetimes, fault injection, a control API at /_rotary and a trace of every request.\n\
        See `rotary <command> --help` and the README.",
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
    /// Run the scenario catalogue against a client and report (default: the reference client).
    #[command(long_about = RUN_HELP)]
    Run(RunArgs),
    /// List the catalogue (`--json` for tools).
    List(ListArgs),
    /// Show one scenario: requirement, references, server, faults, steps and checks.
    Explain(ExplainArgs),
    /// Run the mock homeserver (default: 127.0.0.1:8008, Synapse profile, user alice/wonderland).
    #[command(long_about = SERVE_HELP)]
    Serve(ServeArgs),
    /// The bundled reference client's driver on stdin/stdout (what `rotary run` starts by default).
    #[command(hide = true)]
    ReferenceDriver(rotary_reference::DriverOptions),
}

const RUN_HELP: &str = "Run the scenario catalogue against a client and report.

Each scenario gets a fresh mock homeserver on an ephemeral port and a fresh driver process; the
driver speaks Rotary's driver protocol (JSON-RPC on stdin/stdout, see the README). Without
`--driver` the bundled reference client is used, so this works on a fresh clone.

Verdicts: pass, fail (a `must` check failed), non-strict (a `should` check failed), info,
skipped (the driver lacks a capability), error (the driver crashed or broke the protocol),
timeout. Exit code: 0 when every non-skipped `must` scenario passed (or failed as `--expect`
said), 1 otherwise, 2 on a usage or catalogue error.

Examples:
  rotary run                                   # everything, reference client
  rotary run 'concurrency.*' --tag faults      # a selection
  rotary run --bug refresh-per-401             # the reference client with one of its bugs
  rotary run --driver 'node my-driver.js' --expect known-failures.txt --json out.json --html report/
  rotary run --partition 2/4 --junit junit.xml # shard 2 of 4 for a CI matrix";

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
