//! One throughput run as a row: req/s, latency, the CPU of each side, RSS and the trace; printing rows.

use crate::load::RunResult;
use crate::stats::Latencies;
use anyhow::{Context, Result};
use rotary_server::MockHomeserver;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct ThroughputRun {
    pub round: usize,
    pub server: &'static str,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_pct: f64,
    pub generator_cpu_pct: f64,
    /// Server CPU time (user + system, all server threads) per request, in microseconds.
    pub server_cpu_us_per_req: f64,
    /// The whole process's resident memory after the run (servers, their traces and the
    /// generator), KiB.
    pub rss_kib: u64,
    /// Requests the server's trace had recorded after the run (Rotary only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_len: Option<u64>,
    /// Trace entries held in memory after the run (Rotary only; bounded by the window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_in_window: Option<usize>,
}

/// The process's resident memory, KiB.
pub fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// `cpu` as a percentage of `wall`.
pub fn pct(cpu: Duration, wall: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

pub fn throughput_run(round: usize, server: &'static str, r: &mut RunResult) -> ThroughputRun {
    ThroughputRun {
        rss_kib: rss_kib().unwrap_or(0),
        trace_len: None,
        trace_in_window: None,
        round,
        server,
        requests_per_s: r.rate(),
        p50_ms: r.latencies.percentile_ms(50.0),
        p99_ms: r.latencies.percentile_ms(99.0),
        server_cpu_pct: pct(r.process_cpu.saturating_sub(r.generator_cpu), r.elapsed),
        generator_cpu_pct: pct(r.generator_cpu, r.elapsed),
        server_cpu_us_per_req: r.process_cpu.saturating_sub(r.generator_cpu).as_secs_f64() * 1e6
            / (r.requests.max(1)) as f64,
    }
}

pub fn print_run(run: &ThroughputRun, extra: &str) {
    let trace = match (run.trace_len, run.trace_in_window) {
        (Some(len), Some(window)) => format!("{len:>10} {window:>9}"),
        _ => format!("{:>10} {:>9}", "-", "-"),
    };
    println!(
        "  {:>5}  {:<7} {:>12.0} {:>9.3} {:>9.3} {:>9.0}% {:>9.0}% {:>13.2} {:>8.1} {trace}{extra}",
        run.round,
        run.server,
        run.requests_per_s,
        run.p50_ms,
        run.p99_ms,
        run.server_cpu_pct,
        run.generator_cpu_pct,
        run.server_cpu_us_per_req,
        run.rss_kib as f64 / 1024.0,
    );
}

pub fn print_run_header() {
    println!(
        "  {:>5}  {:<7} {:>12} {:>9} {:>9} {:>10} {:>10} {:>13} {:>8} {:>10} {:>9}",
        "round",
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "gen. CPU",
        "server µs/req",
        "RSS MiB",
        "trace len",
        "in memory"
    );
}

/// Notes the Rotary server's trace in a run's row.
pub fn with_trace(mut run: ThroughputRun, server: &MockHomeserver) -> ThroughputRun {
    let stats = server.trace_stats();
    run.trace_len = Some(stats.last_seq);
    run.trace_in_window = Some(stats.in_window);
    run
}

pub fn merge(into: &mut Latencies, from: Latencies) {
    into.merge(&from);
}

pub fn rates_of(runs: &[ThroughputRun], server: &str) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.server == server)
        .map(|r| r.requests_per_s)
        .collect()
}
