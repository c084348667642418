//! The `rotary` binary: parses the command line and dispatches to the chosen command's module.
#![forbid(unsafe_code)]

mod cli;
mod commands;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.verbose {
        0 if matches!(cli.command, Command::ReferenceDriver(_)) => "warn,rotary_reference=info",
        0 if matches!(cli.command, Command::Audit(_)) => "warn",
        0 if matches!(cli.command, Command::Soak(_)) => "warn,rotary=info,rotary_reference=error",
        0 => "warn,rotary=info,rotary_harness=info",
        1 => "info,rotary_server=debug",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs redirected to a file (CI, a proxy left up) stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        Command::Serve(args) => runtime.block_on(commands::serve::run(args))?,
        Command::Run(args) => {
            let code = runtime.block_on(commands::run::run(args))?;
            return Ok(std::process::ExitCode::from(code));
        }
        Command::Proxy(args) => {
            let code = runtime.block_on(commands::proxy::run(args))?;
            return Ok(std::process::ExitCode::from(code));
        }
        Command::Audit(args) => {
            let code = runtime.block_on(commands::audit::run(args))?;
            return Ok(std::process::ExitCode::from(code));
        }
        Command::Soak(args) => {
            let code = runtime.block_on(commands::soak::run(args))?;
            return Ok(std::process::ExitCode::from(code));
        }
        Command::List(args) => commands::list::list(&args)?,
        Command::Explain(args) => commands::explain::explain(&args)?,
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
