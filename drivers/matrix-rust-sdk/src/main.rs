//! `rotary-matrix-rust-sdk-driver`: matrix-rust-sdk (the `matrix-sdk` crate) speaking Rotary's
//! driver protocol (JSON-RPC 2.0, one object per line) on stdin/stdout. Logs go to stderr.
#![forbid(unsafe_code)]

mod calls;
mod errors;
mod persist;
mod sdk;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // stdout carries the protocol: logs go to stderr, which the harness keeps for the report.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("warn,rotary_matrix_rust_sdk_driver=info,matrix_sdk::http_client=debug")
        }))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(calls::run_stdio());
    // Do not wait for a blocked read of stdin (tokio reads it on a blocking thread).
    runtime.shutdown_background();
    result
}
