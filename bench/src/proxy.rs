//! `proxy`: `rotary proxy` (in-process, a `RunningProxy` on the servers' runtime) in front of the
//! mock homeserver, against the same mock reached directly — whoami throughput, latency at one
//! request in flight, `/refresh` chains, memory per session and per trace entry, the session
//! limit, and the servers' CPU per request; a bare forwarding hop (`hop.rs`) as the baseline of
//! what a second HTTP hop alone costs.

use crate::Args;
use crate::load::{self, Load};
use crate::memory::trace_memory;
use crate::runs::{ThroughputRun, merge, print_run, print_run_header, rates_of, rss_kib, throughput_run};
use crate::runtime::ServerRuntime;
use crate::stats::{Latencies, median};
use anyhow::{Context, Result, bail};
use rotary_rollout::proxy::graph::{GraphLimits, Issue, TokenGraph};
use rotary_rollout::proxy::{Proxy, RunningProxy};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Proxied whoami req/s over direct, at `--connections` in flight.
pub const THROUGHPUT_GOAL: f64 = 0.7;
/// Latency the proxy may add at one request in flight (p50), µs.
pub const ADDED_LATENCY_GOAL_US: f64 = 150.0;
/// The proxy's default trace window, whose entries are measured.
const TRACE_WINDOW: usize = 10_000;
/// Connections the logins of the memory measurement are spread over.
const LOGIN_CONNECTIONS: usize = 8;

/// One load, direct against proxied, over the rounds.
#[derive(Debug, Serialize)]
pub struct Pair {
    /// Requests in flight (one connection each).
    pub in_flight: usize,
    pub runs: Vec<ThroughputRun>,
    pub direct_rps: f64,
    pub proxied_rps: f64,
    /// proxied/direct median req/s.
    pub ratio: f64,
    /// proxied/direct req/s per round.
    pub round_ratios: Vec<f64>,
    pub direct_p50_ms: f64,
    pub direct_p99_ms: f64,
    pub proxied_p50_ms: f64,
    pub proxied_p99_ms: f64,
    /// The servers' CPU time (process minus the generator's thread) per request, µs: the mock's
    /// alone direct, the mock's and the proxy's together proxied.
    pub direct_cpu_us_per_req: f64,
    pub proxied_cpu_us_per_req: f64,
    /// The same through the bare forwarding hop (`hop.rs`): what a second HTTP hop alone costs.
    pub hop_rps: f64,
    /// hop/direct median req/s.
    pub hop_ratio: f64,
    pub hop_p50_ms: f64,
    pub hop_p99_ms: f64,
    pub hop_cpu_us_per_req: f64,
}

impl Pair {
    /// The proxy's own CPU per request (proxied minus direct), µs.
    pub fn proxy_cpu_us_per_req(&self) -> f64 {
        self.proxied_cpu_us_per_req - self.direct_cpu_us_per_req
    }
    /// The bare hop's CPU per request beyond the mock's, µs.
    pub fn hop_cpu_us_per_req(&self) -> f64 {
        self.hop_cpu_us_per_req - self.direct_cpu_us_per_req
    }
    /// The p50 latency the bare hop adds, µs.
    pub fn hop_added_p50_us(&self) -> f64 {
        1000.0 * (self.hop_p50_ms - self.direct_p50_ms)
    }
    /// The p50 latency the proxy adds, µs.
    pub fn added_p50_us(&self) -> f64 {
        1000.0 * (self.proxied_p50_ms - self.direct_p50_ms)
    }
    /// The p99 latency the proxy adds, µs.
    pub fn added_p99_us(&self) -> f64 {
        1000.0 * (self.proxied_p99_ms - self.direct_p99_ms)
    }
}

/// Memory: RSS growth per login direct and proxied, the token graph and the trace per entry, and
/// the session limit.
#[derive(Debug, Serialize)]
pub struct ProxyMemory {
    pub logins: usize,
    /// RSS growth per login against the mock alone (its session, its trace entry).
    pub direct_bytes_per_login: f64,
    /// RSS growth per login through the proxy (the mock's share and the proxy's).
    pub proxied_bytes_per_login: f64,
    /// proxied − direct: what the proxy keeps per session (graph, trace entry, live watch).
    pub proxy_bytes_per_session: f64,
    /// A token graph alone, `logins` sessions issued in-process: bytes per session.
    pub graph_bytes_per_session: f64,
    /// A trace of the proxy's default window filled with whoami entries: bytes per kept entry.
    pub trace_window: usize,
    pub trace_bytes_per_entry: f64,
    /// The session limit of the limited proxy and the sessions it kept after `logins` logins.
    pub session_limit: usize,
    pub limited_sessions_kept: usize,
    pub limit_ok: bool,
}

/// Everything `proxy` measured.
#[derive(Debug, Serialize)]
pub struct ProxyReport {
    pub memory: ProxyMemory,
    pub whoami: Pair,
    pub latency: Pair,
    pub refresh: Pair,
    pub throughput_goal: f64,
    pub throughput_ok: bool,
    pub added_latency_goal_us: f64,
    pub latency_ok: bool,
}

/// Starts a proxy in front of `upstream` on the servers' runtime, on a free loopback port.
async fn start_proxy(
    servers: &ServerRuntime,
    upstream: String,
    max_sessions: Option<usize>,
) -> Result<RunningProxy> {
    let proxy = servers
        .run(async move {
            let mut b = Proxy::builder(&upstream)?.listen(SocketAddr::from(([127, 0, 0, 1], 0)));
            if let Some(max) = max_sessions {
                b = b.configure(|c| c.graph.max_sessions = max);
            }
            b.start().await
        })
        .await?
        .context("starting the proxy")?;
    Ok(proxy)
}

/// RSS growth in bytes per item between two readings (KiB).
fn per_item(before_kib: u64, after_kib: u64, items: usize) -> f64 {
    (after_kib.saturating_sub(before_kib) * 1024) as f64 / items.max(1) as f64
}

/// A token graph alone: RSS growth per session issued (tokens of a realistic length).
fn graph_memory(sessions: usize) -> Result<(TokenGraph, f64)> {
    let mut g = TokenGraph::new(GraphLimits {
        max_sessions: sessions + 1,
    });
    let before = rss_kib()?;
    for i in 0..sessions {
        let device = format!("BENCH{i:07}");
        let access = format!("syt_YWxpY2U_{i:020}_aBcDeF");
        let refresh = format!("syr_YWxpY2U_{i:020}_gHiJkL");
        g.issue(
            Issue::login(
                "@alice:localhost",
                &device,
                &access,
                Some(&refresh),
                Some(300_000),
            ),
            i64::try_from(i).unwrap_or(i64::MAX),
        );
    }
    let after = rss_kib()?;
    Ok((g, per_item(before, after, sessions)))
}

async fn bench_memory(args: &Args, servers: &ServerRuntime) -> Result<ProxyMemory> {
    let n = args.proxy_logins.max(1);
    // Every part stays alive until the end, so that each measurement gets fresh memory.
    let (graph, graph_bytes_per_session) = graph_memory(n)?;
    let (trace, trace_window, trace_bytes_per_entry) = trace_memory(TRACE_WINDOW)?;

    let direct = servers.start_rotary().await?;
    load::logins(direct.addr(), LOGIN_CONNECTIONS, LOGIN_CONNECTIONS, 0).await?;
    let before = rss_kib()?;
    load::logins(direct.addr(), n, LOGIN_CONNECTIONS, 0).await?;
    let direct_bytes_per_login = per_item(before, rss_kib()?, n);

    let upstream = servers.start_rotary().await?;
    let proxy = start_proxy(servers, upstream.url(), None).await?;
    load::logins(proxy.addr(), LOGIN_CONNECTIONS, LOGIN_CONNECTIONS, 0).await?;
    proxy.settle().await;
    let before = rss_kib()?;
    load::logins(proxy.addr(), n, LOGIN_CONNECTIONS, 0).await?;
    proxy.settle().await;
    let proxied_bytes_per_login = per_item(before, rss_kib()?, n);

    let limit = args.proxy_session_limit.max(1);
    let limited_upstream = servers.start_rotary().await?;
    let limited = start_proxy(servers, limited_upstream.url(), Some(limit)).await?;
    load::logins(limited.addr(), n, LOGIN_CONNECTIONS, 0).await?;
    limited.settle().await;
    let kept = limited.sessions().len();

    drop((limited, limited_upstream, proxy, upstream, direct, trace, graph));
    Ok(ProxyMemory {
        logins: n,
        direct_bytes_per_login,
        proxied_bytes_per_login,
        proxy_bytes_per_session: proxied_bytes_per_login - direct_bytes_per_login,
        graph_bytes_per_session,
        trace_window,
        trace_bytes_per_entry,
        session_limit: limit,
        limited_sessions_kept: kept,
        limit_ok: kept == limit.min(n),
    })
}

/// The arms of every comparison: the mock direct, through `rotary proxy`, through the bare hop.
const NAMES: [&str; 3] = ["direct", "proxied", "hop"];

/// Runs `loads` (direct, proxied, bare hop) against `addrs` over `in_flight` connections each,
/// rounds rotating which goes first; the loads continue from round to round.
async fn pair(
    args: &Args,
    what: &str,
    addrs: [SocketAddr; 3],
    mut loads: [Load; 3],
    in_flight: usize,
) -> Result<Pair> {
    println!(
        "proxy, {what}: {in_flight} in flight, {:?} per run, {:?} warm-up, {} rounds rotating which goes first",
        args.duration(),
        args.warmup(),
        args.rounds()
    );
    for i in 0..3 {
        load::run(addrs[i], &mut loads[i], in_flight, Duration::from_millis(1))
            .await
            .with_context(|| format!("{what}: the {} server does not answer", NAMES[i]))?;
        if !args.warmup().is_zero() {
            load::run(addrs[i], &mut loads[i], in_flight, args.warmup()).await?;
        }
    }
    print_run_header();
    let mut runs = Vec::new();
    let mut lat = [Latencies::default(), Latencies::default(), Latencies::default()];
    let mut round_ratios = Vec::new();
    for round in 1..=args.rounds() {
        let mut rates = [0.0; 3];
        for k in 0..3 {
            let i = (k + round - 1) % 3;
            let mut r = load::run(addrs[i], &mut loads[i], in_flight, args.duration()).await?;
            let run = throughput_run(round, NAMES[i], &mut r);
            print_run(&run, "");
            rates[i] = run.requests_per_s;
            runs.push(run);
            merge(&mut lat[i], std::mem::take(&mut r.latencies));
        }
        round_ratios.push(rates[1] / rates[0].max(1e-9));
    }
    let rps = |i: usize| median(&rates_of(&runs, NAMES[i]));
    let cpu = |i: usize| {
        median(
            &runs
                .iter()
                .filter(|r| r.server == NAMES[i])
                .map(|r| r.server_cpu_us_per_req)
                .collect::<Vec<_>>(),
        )
    };
    let [mut ld, mut lp, mut lh] = lat;
    let (direct_rps, proxied_rps, hop_rps) = (rps(0), rps(1), rps(2));
    Ok(Pair {
        in_flight,
        direct_rps,
        proxied_rps,
        ratio: proxied_rps / direct_rps.max(1e-9),
        round_ratios,
        direct_p50_ms: ld.percentile_ms(50.0),
        direct_p99_ms: ld.percentile_ms(99.0),
        proxied_p50_ms: lp.percentile_ms(50.0),
        proxied_p99_ms: lp.percentile_ms(99.0),
        direct_cpu_us_per_req: cpu(0),
        proxied_cpu_us_per_req: cpu(1),
        hop_rps,
        hop_ratio: hop_rps / direct_rps.max(1e-9),
        hop_p50_ms: lh.percentile_ms(50.0),
        hop_p99_ms: lh.percentile_ms(99.0),
        hop_cpu_us_per_req: cpu(2),
        runs,
    })
}

/// The `proxy` benchmark: memory first (a fresh heap), then the throughput and latency pairs
/// against one mock, reached directly and through one proxy.
pub async fn bench_proxy(args: &Args, servers: &ServerRuntime) -> Result<ProxyReport> {
    println!(
        "proxy: the mock homeserver direct vs through `rotary proxy` (in-process, same servers' runtime); memory: {} logins",
        crate::report::thousands(args.proxy_logins as f64)
    );
    let memory = bench_memory(args, servers).await?;
    println!(
        "  RSS per login: {:.0} B direct, {:.0} B proxied (the proxy's share {:.0} B); graph {:.0} B/session; trace {:.0} B/entry ({} entries); limit {}: {} sessions kept",
        memory.direct_bytes_per_login,
        memory.proxied_bytes_per_login,
        memory.proxy_bytes_per_session,
        memory.graph_bytes_per_session,
        memory.trace_bytes_per_entry,
        memory.trace_window,
        memory.session_limit,
        memory.limited_sessions_kept
    );

    let upstream = servers.start_rotary().await?;
    let proxy = start_proxy(servers, upstream.url(), None).await?;
    let hop = servers.run(crate::hop::start(upstream.addr())).await??;
    let addrs = [upstream.addr(), proxy.addr(), hop.addr];
    let c = args.connections;
    // Sessions logged in through the proxy, so that it knows them (the mock does too).
    let whoami_token = load::logins(proxy.addr(), 1, 1, 1)
        .await?
        .pop()
        .context("no whoami session")?
        .access;
    let whoami = |token: &str| Load::Whoami {
        token: token.to_owned(),
    };
    let whoami_pair = pair(
        args,
        "GET /account/whoami",
        addrs,
        [
            whoami(&whoami_token),
            whoami(&whoami_token),
            whoami(&whoami_token),
        ],
        c,
    )
    .await?;
    let latency = pair(
        args,
        "GET /account/whoami, latency",
        addrs,
        [
            whoami(&whoami_token),
            whoami(&whoami_token),
            whoami(&whoami_token),
        ],
        1,
    )
    .await?;
    let mut chains = Vec::with_capacity(3);
    for addr in addrs {
        let tokens = load::logins(addr, c, c.min(LOGIN_CONNECTIONS), c).await?;
        if tokens.len() < c {
            bail!("{} sessions logged in for {c} chains", tokens.len());
        }
        chains.push(Load::Refresh {
            refresh_tokens: tokens.into_iter().map(|t| t.refresh).collect(),
        });
    }
    let hop_chains = chains.pop().context("chains")?;
    let proxied_chains = chains.pop().context("chains")?;
    let direct_chains = chains.pop().context("chains")?;
    let refresh = pair(
        args,
        "POST /refresh chains (rotation)",
        addrs,
        [direct_chains, proxied_chains, hop_chains],
        c,
    )
    .await?;
    let totals = proxy.totals();
    println!(
        "  proxy counters after the runs: {} requests, {} refreshes, {} 401s, {} upstream errors, violations {:?}",
        totals.requests, totals.refreshes, totals.unauthorized, totals.upstream_errors, totals.violations
    );
    let mut invariants: Vec<String> = proxy.violations().into_iter().map(|v| v.invariant).collect();
    invariants.sort();
    invariants.dedup();
    if !invariants.is_empty() {
        println!("  the live judge's violations are of: {}", invariants.join(", "));
    }
    drop(hop);
    drop(proxy);
    drop(upstream);
    Ok(ProxyReport {
        throughput_ok: whoami_pair.ratio >= THROUGHPUT_GOAL,
        latency_ok: latency.added_p50_us() <= ADDED_LATENCY_GOAL_US,
        memory,
        whoami: whoami_pair,
        latency,
        refresh,
        throughput_goal: THROUGHPUT_GOAL,
        added_latency_goal_us: ADDED_LATENCY_GOAL_US,
    })
}
