//! The reference client's driver, built inside the test crate so end-to-end tests can start it by path.
#![forbid(unsafe_code)]

use clap::Parser;

/// The reference driver's flags.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    opts: rotary_reference::DriverOptions,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.opts.list_bugs {
        print!("{}", rotary_reference::bug_list());
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(rotary_reference::run_stdio(args.opts));
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rotary-test-driver: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
