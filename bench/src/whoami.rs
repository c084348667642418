//! `whoami`: the mock homeserver's whoami throughput against the bare axum baseline, rounds
//! alternating which goes first, and a full paged trace dump with `/versions` probed meanwhile.

use crate::load::Load;
use crate::runs::{
    ThroughputRun, merge, print_run, print_run_header, rates_of, rss_kib, throughput_run, with_trace,
};
use crate::runtime::{ServerRuntime, no_refresh};
use crate::stats::{Latencies, median};
use crate::{Args, bare, load};
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct WhoamiReport {
    pub runs: Vec<ThroughputRun>,
    pub rotary_median_rps: f64,
    pub bare_median_rps: f64,
    pub ratio: f64,
    pub pair_ratios: Vec<f64>,
    pub rotary_p50_ms: f64,
    pub rotary_p99_ms: f64,
    pub bare_p50_ms: f64,
    pub bare_p99_ms: f64,
    pub rotary_cpu_us_per_req: f64,
    pub bare_cpu_us_per_req: f64,
    /// bare/rotary server CPU per request: the throughput ratio a CPU-bound server would reach,
    /// less sensitive than req/s to other load on the machine.
    pub cpu_ratio: f64,
    /// bare/rotary server CPU per request, per round.
    pub pair_cpu_ratios: Vec<f64>,
    /// The smallest per-round ratio (the goal holds in every round).
    pub min_pair_ratio: f64,
    /// Process RSS after each round, KiB (flat when the trace is bounded).
    pub rss_kib_per_round: Vec<u64>,
    /// A full paged read of Rotary's trace after the rounds, with `/versions` probed meanwhile.
    pub dump: DumpReport,
    pub goal_ratio: f64,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct DumpReport {
    pub page_limit: usize,
    pub pages: usize,
    pub entries: usize,
    pub mib: f64,
    pub elapsed_ms: f64,
    pub versions_probes: usize,
    pub versions_p50_ms: f64,
    pub versions_p99_ms: f64,
    pub versions_max_ms: f64,
    /// `/versions` answered within 50 ms throughout.
    pub ok: bool,
}

pub async fn bench_whoami(args: &Args, servers: &ServerRuntime) -> Result<WhoamiReport> {
    let rotary = servers.start_rotary().await?;
    let session = rotary.mint_session_with(&no_refresh("alice"))?;
    let bare = servers.run(bare::start()).await??;
    let mut loads = [
        (
            "rotary",
            rotary.addr(),
            Load::Whoami {
                token: session.access_token.clone(),
            },
        ),
        (
            "bare",
            bare.addr,
            Load::Whoami {
                token: bare::TOKEN.to_owned(),
            },
        ),
    ];
    println!(
        "whoami: GET {} — {} connections, {:?} per run, {:?} warm-up, {} rounds alternating which goes first",
        load::WHOAMI_PATH,
        args.connections,
        args.duration(),
        args.warmup(),
        args.rounds()
    );
    for (name, addr, load) in &mut loads {
        load::run(*addr, load, args.connections, Duration::from_millis(1))
            .await
            .with_context(|| format!("{name} does not answer whoami"))?;
        if !args.warmup().is_zero() {
            load::run(*addr, load, args.connections, args.warmup()).await?;
        }
    }
    print_run_header();
    let mut runs = Vec::new();
    let mut lat_rotary = Latencies::default();
    let mut lat_bare = Latencies::default();
    let mut pair_ratios = Vec::new();
    let mut pair_cpu_ratios = Vec::new();
    let mut rss_per_round = Vec::new();
    for round in 1..=args.rounds() {
        let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        let mut rates = [0.0; 2];
        let mut cpus = [0.0; 2];
        for i in order {
            let (name, addr, load) = &mut loads[i];
            if args.whoami_server.as_deref().is_some_and(|s| s != *name) {
                continue;
            }
            let mut r = load::run(*addr, load, args.connections, args.duration()).await?;
            let mut run = throughput_run(round, name, &mut r);
            if i == 0 {
                run = with_trace(run, &rotary);
            }
            print_run(&run, "");
            rates[i] = run.requests_per_s;
            cpus[i] = run.server_cpu_us_per_req;
            runs.push(run);
            let samples = std::mem::take(&mut r.latencies);
            if i == 0 {
                merge(&mut lat_rotary, samples);
            } else {
                merge(&mut lat_bare, samples);
            }
        }
        pair_ratios.push(rates[0] / rates[1].max(1e-9));
        pair_cpu_ratios.push(cpus[1] / cpus[0].max(1e-9));
        rss_per_round.push(rss_kib().unwrap_or(0));
    }
    let rotary_median = median(&rates_of(&runs, "rotary"));
    let bare_median = median(&rates_of(&runs, "bare"));
    let ratio = rotary_median / bare_median.max(1e-9);
    let cpu_of_runs = |server: &str| {
        median(
            &runs
                .iter()
                .filter(|r| r.server == server)
                .map(|r| r.server_cpu_us_per_req)
                .collect::<Vec<_>>(),
        )
    };
    let (rotary_cpu, bare_cpu) = (cpu_of_runs("rotary"), cpu_of_runs("bare"));
    let stats = rotary.trace_stats();
    println!(
        "  trace after the runs: {} requests recorded by Rotary, {} in memory, {} evicted",
        stats.last_seq, stats.in_window, stats.evicted
    );
    if servers.spill.is_some() {
        rotary.trace_flush();
        let stats = rotary.trace_stats();
        println!(
            "  trace spill: {} lines written in {} files, {} dropped (writer behind), {} failed",
            stats.spilled, stats.spill_files, stats.spill_dropped, stats.spill_errors
        );
    }
    let min_pair_ratio = pair_ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let limit = rotary_server::control::TRACE_PAGE_DEFAULT;
    let mut d = load::dump_while_probing(rotary.addr(), limit).await?;
    let dump = DumpReport {
        page_limit: limit,
        pages: d.pages,
        entries: d.entries,
        mib: d.bytes as f64 / (1024.0 * 1024.0),
        elapsed_ms: d.elapsed.as_secs_f64() * 1000.0,
        versions_probes: d.probes,
        versions_p50_ms: d.versions.percentile_ms(50.0),
        versions_p99_ms: d.versions.percentile_ms(99.0),
        versions_max_ms: d.versions_max.as_secs_f64() * 1000.0,
        ok: d.versions_max < Duration::from_millis(50),
    };
    println!(
        "  trace dump: {} entries ({:.1} MiB) in {} pages of {limit} in {:.0} ms; /versions meanwhile: {} answers, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        dump.entries,
        dump.mib,
        dump.pages,
        dump.elapsed_ms,
        dump.versions_probes,
        dump.versions_p50_ms,
        dump.versions_p99_ms,
        dump.versions_max_ms
    );
    drop(rotary);
    drop(bare);
    Ok(WhoamiReport {
        runs,
        rotary_median_rps: rotary_median,
        bare_median_rps: bare_median,
        ratio,
        pair_ratios,
        rotary_p50_ms: lat_rotary.percentile_ms(50.0),
        rotary_p99_ms: lat_rotary.percentile_ms(99.0),
        bare_p50_ms: lat_bare.percentile_ms(50.0),
        bare_p99_ms: lat_bare.percentile_ms(99.0),
        rotary_cpu_us_per_req: rotary_cpu,
        bare_cpu_us_per_req: bare_cpu,
        cpu_ratio: bare_cpu / rotary_cpu.max(1e-9),
        pair_cpu_ratios,
        min_pair_ratio,
        rss_kib_per_round: rss_per_round,
        dump,
        goal_ratio: WHOAMI_GOAL,
        ok: min_pair_ratio >= WHOAMI_GOAL,
    })
}

/// Rotary's whoami req/s over bare axum's, in every round.
pub const WHOAMI_GOAL: f64 = 0.9;
