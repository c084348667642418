//! `refresh`: `POST /refresh` with rotation, one chain per connection, a fresh server per round.

use crate::load::Load;
use crate::runs::{ThroughputRun, merge, print_run, print_run_header, rates_of, throughput_run, with_trace};
use crate::runtime::ServerRuntime;
use crate::stats::{Latencies, median};
use crate::whoami::WhoamiReport;
use crate::{Args, load};
use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct RefreshReport {
    pub runs: Vec<ThroughputRun>,
    pub sessions: usize,
    pub median_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us_per_req: f64,
    /// Refresh req/s over the bare server's median whoami req/s in the same run (when whoami ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_bare_whoami: Option<f64>,
    pub goal_rps: f64,
    pub ok: bool,
}

/// `/refresh` req/s over bare axum's whoami req/s of the same run.
pub const REFRESH_GOAL: f64 = 0.6;

/// Fills in the refresh goal: relative to the bare whoami of the same run when there is one.
pub fn judge_refresh(refresh: &mut RefreshReport, whoami: Option<&WhoamiReport>) {
    if let Some(w) = whoami.filter(|w| w.bare_median_rps > 0.0) {
        let vs = refresh.median_rps / w.bare_median_rps;
        refresh.vs_bare_whoami = Some(vs);
        refresh.goal_rps = REFRESH_GOAL * w.bare_median_rps;
        refresh.ok = vs >= REFRESH_GOAL;
    }
}

pub async fn bench_refresh(args: &Args, servers: &ServerRuntime) -> Result<RefreshReport> {
    println!(
        "refresh: POST {} (synapse profile, rotation on) — {} connections, one session each, {:?} per run, {:?} warm-up, {} rounds on a fresh server each",
        load::REFRESH_PATH,
        args.connections,
        args.duration(),
        args.warmup(),
        args.rounds()
    );
    print_run_header();
    let mut runs = Vec::new();
    let mut lat = Latencies::default();
    for round in 1..=args.rounds() {
        let server = servers.start_rotary().await?;
        let mut refresh_tokens = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let s = server.mint_session("alice")?;
            refresh_tokens.push(s.refresh_token.context("minted session has no refresh token")?);
        }
        let mut load = Load::Refresh { refresh_tokens };
        if !args.warmup().is_zero() {
            load::run(server.addr(), &mut load, args.connections, args.warmup())
                .await
                .context("refresh warm-up")?;
        }
        let mut r = load::run(server.addr(), &mut load, args.connections, args.duration()).await?;
        let run = with_trace(throughput_run(round, "rotary", &mut r), &server);
        print_run(&run, "");
        if servers.spill.is_some() {
            server.trace_flush();
            let stats = server.trace_stats();
            println!(
                "         trace spill: {} lines written, {} dropped (writer behind)",
                stats.spilled, stats.spill_dropped
            );
        }
        runs.push(run);
        merge(&mut lat, std::mem::take(&mut r.latencies));
        drop(server);
    }
    let median_rps = median(&rates_of(&runs, "rotary"));
    let cpu_us_per_req = median(&runs.iter().map(|r| r.server_cpu_us_per_req).collect::<Vec<_>>());
    Ok(RefreshReport {
        runs,
        sessions: args.connections,
        median_rps,
        p50_ms: lat.percentile_ms(50.0),
        p99_ms: lat.percentile_ms(99.0),
        cpu_us_per_req,
        vs_bare_whoami: None,
        goal_rps: 35_000.0,
        ok: median_rps >= 35_000.0,
    })
}
