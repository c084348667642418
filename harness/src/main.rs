//! The `rotary` binary: parses the command line and runs the chosen command.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use rotary_harness::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.verbose {
        0 if matches!(cli.command, Command::ReferenceDriver(_)) => "warn,rotary_reference=info",
        0 => "warn,rotary_harness=info",
        1 => "info,rotary_server=debug",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rotary: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(rotary_harness::serve::run(args))?,
        Command::Run(args) => {
            let code = runtime.block_on(rotary_harness::commands::run(args))?;
            return Ok(std::process::ExitCode::from(code));
        }
        Command::List(args) => rotary_harness::commands::list(&args)?,
        Command::Explain(args) => rotary_harness::commands::explain(&args)?,
        Command::ReferenceDriver(opts) => {
            if opts.list_bugs {
                print!("{}", rotary_reference::bug_list());
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let result = runtime.block_on(rotary_reference::run_stdio(opts));
            // Do not wait for tokio's blocking stdin reader: the protocol is over.
            runtime.shutdown_background();
            result?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
