//! `rotary-reference-driver`: the reference client as a Rotary driver on stdin/stdout.
//!
//! `rotary run --driver "rotary-reference-driver --bug refresh-per-401"` runs the catalogue against
//! the client with one mistake switched on; `--list-bugs` lists the switches.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use rotary_reference::DriverOptions;
use tracing_subscriber::EnvFilter;

/// The reference Matrix client, speaking Rotary's driver protocol on stdin/stdout.
#[derive(Debug, Parser)]
#[command(name = "rotary-reference-driver", version)]
struct Cli {
    #[command(flatten)]
    opts: DriverOptions,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.opts.list_bugs {
        print!("{}", rotary_reference::bug_list());
        return Ok(());
    }
    // stdout carries the protocol: logs go to stderr, which the harness keeps for the report.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,rotary_reference=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(rotary_reference::run_stdio(cli.opts));
    // Do not wait for a blocked read of stdin (tokio reads it on a blocking thread).
    runtime.shutdown_background();
    result
}
