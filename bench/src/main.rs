//! `rotary-bench`: Rotary's performance figures in one run on one machine — whoami throughput
//! against a bare axum baseline, `/refresh` throughput with rotation, start-to-first-response
//! time, memory per live session, and the catalogue's wall time with its share of real waiting.

mod bare;
mod load;
mod stats;

use anyhow::{Context, Result, bail};
use clap::Parser;
use load::{Load, RunResult};
use nix::sys::resource::UsageWho;
use rotary_server::{MintRequest, MockHomeserver};
use serde::Serialize;
use stats::{Latencies, median};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ABOUT: &str = "Rotary's benchmark: whoami and /refresh throughput, start-up time, memory per session and the catalogue's wall time, in one run";

const LONG_ABOUT: &str =
    "Rotary's benchmark: every performance figure of docs/performance.md in one run on one machine.

Run it in release mode (a debug build measures the optimiser's absence):

  cargo run --release -p rotary-bench                      # everything, about 1.5 minutes
  cargo run --release -p rotary-bench -- --quick           # a smoke run, short durations
  cargo run --release -p rotary-bench -- --only whoami --only refresh --duration 10s
  cargo run --release -p rotary-bench -- --json bench.json # also write the figures as JSON

Benchmarks (names for --only):
  memory     mint 100,000 sessions in-process; RSS growth (/proc/self/status) per session.
             Goal: at most 1.5 KiB each.
  startup    MockHomeserver::builder().start(), mint a session, one whoami over a fresh
             connection; the median of 200 starts (wiremock-rs starts in about 0.5 ms).
  whoami     GET /account/whoami throughput of the mock homeserver against a bare axum server
             that answers the same route from an in-memory token map, same load generator, same
             connections, alternating which goes first, median of the rounds. The ratio
             rotary/bare is the figure of interest. Goal: at least 0.9 in every round, with
             no decay from round to round (the trace is bounded: RSS is shown per round).
  refresh    POST /refresh throughput under the synapse profile with rotation: one session per
             connection, each connection exchanging its session's newest refresh token in a
             chain (a fresh server per round). Goal: at least 0.6 x the bare server's whoami
             req/s of the same run (at least 35,000/s on 2 cores when whoami did not run).
  catalogue  `rotary run --no-progress --json FILE` as a child process (the reference client):
             wall time, summed scenario durations and sleep-step waits, the child's CPU time
             (getrusage RUSAGE_CHILDREN) and the share of real waiting, 1 - CPU/wall. Needs
             the `rotary` binary next to this one: `cargo build --release -p rotary`
             (or --rotary PATH).

Threads: the servers (Rotary and the baseline) run on a 1-thread tokio runtime on one OS thread
(--server-threads changes that), the load generator on another 1-thread runtime on its own OS
thread, so on a 2-core machine each has a core. Requests are sent over keep-alive HTTP/1.1
connections (hyper's client), one at a time per connection: the next one as soon as the previous
response is read. The table shows the CPU each side used, to tell which side was the bottleneck
(a generator near 100 % means the servers were not saturated).";

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "rotary-bench", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// Short durations and fewer rounds and starts: a smoke run (still every benchmark).
    #[arg(long)]
    quick: bool,
    /// Run only this benchmark (repeatable): memory, startup, whoami, refresh, catalogue.
    #[arg(long = "only", value_name = "NAME", value_parser = ["memory", "startup", "whoami", "refresh", "catalogue"])]
    only: Vec<String>,
    /// Timed duration of each throughput run (default 5s; 1s with --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Untimed warm-up before the first run of each server (default 1s; 300ms with --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Rounds of the throughput benchmarks; whoami runs both servers per round, alternating
    /// which goes first (default 3; 2 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Starts to take the median of, for `startup` (default 200; 30 with --quick).
    #[arg(long)]
    starts: Option<usize>,
    /// Sessions to mint for `memory`.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Worker threads of the servers' tokio runtime (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// The `rotary` binary for `catalogue` (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    rotary: Option<PathBuf>,
    /// Load only this server in `whoami` (rotary or bare), e.g. to profile one of them with perf.
    #[arg(long, value_name = "SERVER", value_parser = ["rotary", "bare"])]
    whoami_server: Option<String>,
    /// Rotary's servers write every trace entry to NDJSON files in DIR (256 MiB each), to measure
    /// the spill's cost and whether its writer keeps up (lines written and dropped are printed).
    #[arg(long, value_name = "DIR")]
    trace_spill: Option<PathBuf>,
    /// Also write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl Args {
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
    fn duration(&self) -> Duration {
        self.duration.unwrap_or(if self.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        })
    }
    fn warmup(&self) -> Duration {
        self.warmup.unwrap_or(if self.quick {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(1)
        })
    }
    fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick { 2 } else { 3 }).max(1)
    }
    fn starts(&self) -> usize {
        self.starts.unwrap_or(if self.quick { 30 } else { 200 }).max(1)
    }
}

/// A tokio runtime for the servers, on its own OS thread; stops when dropped.
struct ServerRuntime {
    handle: tokio::runtime::Handle,
    /// Where Rotary's servers spill their traces, if anywhere (`--trace-spill`).
    spill: Option<PathBuf>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerRuntime {
    fn new(threads: usize, spill: Option<PathBuf>) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-servers".into())
            .spawn(move || {
                let rt = if threads <= 1 {
                    tokio::runtime::Builder::new_current_thread().enable_all().build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(threads)
                        .thread_name("bench-server-worker")
                        .enable_all()
                        .build()
                };
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let handle = rx.recv().context("server runtime thread")??;
        Ok(Self {
            handle,
            spill,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs a future on the server runtime and waits for its output.
    async fn run<F>(&self, f: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(self.handle.spawn(f).await?)
    }

    async fn start_rotary(&self) -> Result<MockHomeserver> {
        let mut builder = MockHomeserver::builder();
        if let Some(dir) = &self.spill {
            builder = builder.trace_spill(dir, 256 << 20);
        }
        Ok(self.run(builder.start()).await??)
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn no_refresh(user: &str) -> MintRequest {
    MintRequest {
        refresh_token: false,
        ..MintRequest::for_user(user)
    }
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Debug, Default, Serialize)]
struct Report {
    cpus: usize,
    server_runtime: String,
    generator_runtime: String,
    connections: usize,
    duration_ms: u64,
    warmup_ms: u64,
    rounds: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<MemoryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    startup: Option<StartupReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    whoami: Option<WhoamiReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh: Option<RefreshReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalogue: Option<CatalogueReport>,
}

#[derive(Debug, Serialize)]
struct MemoryReport {
    sessions: usize,
    rss_before_kib: u64,
    rss_after_kib: u64,
    bytes_per_session: f64,
    goal_bytes_per_session: f64,
    ok: bool,
    /// Finished whoami entries put into a trace of the default window.
    trace_entries: usize,
    /// RSS growth per trace entry (the entry, its strings and its slot in the window).
    trace_bytes_per_entry: f64,
}

#[derive(Debug, Serialize)]
struct StartupReport {
    starts: usize,
    start_median_ms: f64,
    first_response_median_ms: f64,
    first_response_p90_ms: f64,
    first_response_min_ms: f64,
}

#[derive(Debug, Serialize)]
struct ThroughputRun {
    round: usize,
    server: &'static str,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_pct: f64,
    generator_cpu_pct: f64,
    /// Server CPU time (user + system, all server threads) per request, in microseconds.
    server_cpu_us_per_req: f64,
    /// The whole process's resident memory after the run (servers, their traces and the
    /// generator), KiB.
    rss_kib: u64,
    /// Requests the server's trace had recorded after the run (Rotary only).
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_len: Option<u64>,
    /// Trace entries held in memory after the run (Rotary only; bounded by the window).
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_in_window: Option<usize>,
}

#[derive(Debug, Serialize)]
struct WhoamiReport {
    runs: Vec<ThroughputRun>,
    rotary_median_rps: f64,
    bare_median_rps: f64,
    ratio: f64,
    pair_ratios: Vec<f64>,
    rotary_p50_ms: f64,
    rotary_p99_ms: f64,
    bare_p50_ms: f64,
    bare_p99_ms: f64,
    rotary_cpu_us_per_req: f64,
    bare_cpu_us_per_req: f64,
    /// bare/rotary server CPU per request: the throughput ratio a CPU-bound server would reach,
    /// less sensitive than req/s to other load on the machine.
    cpu_ratio: f64,
    /// bare/rotary server CPU per request, per round.
    pair_cpu_ratios: Vec<f64>,
    /// The smallest per-round ratio (the goal holds in every round).
    min_pair_ratio: f64,
    /// Process RSS after each round, KiB (flat when the trace is bounded).
    rss_kib_per_round: Vec<u64>,
    /// A full paged read of Rotary's trace after the rounds, with `/versions` probed meanwhile.
    dump: DumpReport,
    goal_ratio: f64,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct DumpReport {
    page_limit: usize,
    pages: usize,
    entries: usize,
    mib: f64,
    elapsed_ms: f64,
    versions_probes: usize,
    versions_p50_ms: f64,
    versions_p99_ms: f64,
    versions_max_ms: f64,
    /// `/versions` answered within 50 ms throughout.
    ok: bool,
}

#[derive(Debug, Serialize)]
struct RefreshReport {
    runs: Vec<ThroughputRun>,
    sessions: usize,
    median_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
    /// Refresh req/s over the bare server's median whoami req/s in the same run (when whoami ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_bare_whoami: Option<f64>,
    goal_rps: f64,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct CatalogueReport {
    command: String,
    exit_code: Option<i32>,
    scenarios: usize,
    passed: usize,
    info: usize,
    wall_ms: u64,
    run_duration_ms: u64,
    scenario_sum_ms: u64,
    waited_sum_ms: u64,
    child_cpu_ms: u64,
    waiting_share: f64,
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// Fills a trace of the default window with finished whoami entries as the server records them;
/// returns it (kept alive, so that later measurements get fresh memory) and the RSS growth per
/// entry.
fn trace_memory() -> Result<(rotary_server::trace::Trace, usize, f64)> {
    use rotary_server::trace::{Completion, DEFAULT_WINDOW, Trace, TraceEntry};
    let trace = Trace::default();
    let before = rss_kib()?;
    for i in 0..DEFAULT_WINDOW {
        let mut e = TraceEntry::new("whoami", "GET", load::WHOAMI_PATH);
        e.access_token.label = format!("at#{}", 1000 + i);
        e.access_token.state = rotary_server::AccessState::Valid;
        e.user_id = Some("@alice:localhost".to_owned());
        e.device_id = Some("BENCHDEVIC".to_owned());
        let ticket = trace.begin(e);
        trace.finish(
            ticket,
            Completion {
                status: Some(200),
                duration_ms: 0,
                ..Completion::default()
            },
        );
    }
    let after = rss_kib()?;
    let per = (after.saturating_sub(before) * 1024) as f64 / DEFAULT_WINDOW as f64;
    Ok((trace, DEFAULT_WINDOW, per))
}

async fn bench_memory(args: &Args, servers: &ServerRuntime) -> Result<MemoryReport> {
    let (trace, trace_entries, trace_bytes_per_entry) = trace_memory()?;
    let server = servers.start_rotary().await?;
    // One session first, so that lazily allocated parts of the store exist before measuring.
    server.mint_session("alice")?;
    let before = rss_kib()?;
    for _ in 0..args.sessions {
        server.mint_session("alice")?;
    }
    let after = rss_kib()?;
    let bytes = (after.saturating_sub(before) * 1024) as f64 / args.sessions.max(1) as f64;
    drop(server);
    drop(trace);
    let goal = 1.5 * 1024.0;
    Ok(MemoryReport {
        sessions: args.sessions,
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_session: bytes,
        goal_bytes_per_session: goal,
        ok: bytes <= goal,
        trace_entries,
        trace_bytes_per_entry,
    })
}

/// Start-up on the generator's own runtime: a test starts its server where it runs.
async fn bench_startup(args: &Args) -> Result<StartupReport> {
    let mut starts = Vec::with_capacity(args.starts());
    let mut firsts = Vec::with_capacity(args.starts());
    for i in 0..args.starts() + 10 {
        let t0 = Instant::now();
        let server = MockHomeserver::builder().start().await?;
        let started = t0.elapsed();
        let session = server.mint_session_with(&no_refresh("alice"))?;
        load::whoami_once(server.addr(), &session.access_token).await?;
        let first = t0.elapsed();
        drop(server);
        // The first ten warm up the allocator and the code paths.
        if i >= 10 {
            starts.push(started.as_secs_f64() * 1000.0);
            firsts.push(first.as_secs_f64() * 1000.0);
        }
    }
    let mut lat = Latencies::default();
    lat.extend(firsts.iter().map(|ms| (ms * 1000.0).round() as u32).collect());
    Ok(StartupReport {
        starts: firsts.len(),
        start_median_ms: median(&starts),
        first_response_median_ms: median(&firsts),
        first_response_p90_ms: lat.percentile_ms(90.0),
        first_response_min_ms: firsts.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

fn pct(cpu: Duration, wall: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

fn throughput_run(round: usize, server: &'static str, r: &mut RunResult) -> ThroughputRun {
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

fn print_run(run: &ThroughputRun, extra: &str) {
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

fn print_run_header() {
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
fn with_trace(mut run: ThroughputRun, server: &MockHomeserver) -> ThroughputRun {
    let stats = server.trace_stats();
    run.trace_len = Some(stats.last_seq);
    run.trace_in_window = Some(stats.in_window);
    run
}

async fn bench_whoami(args: &Args, servers: &ServerRuntime) -> Result<WhoamiReport> {
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
const WHOAMI_GOAL: f64 = 0.9;
/// `/refresh` req/s over bare axum's whoami req/s of the same run.
const REFRESH_GOAL: f64 = 0.6;

/// Fills in the refresh goal: relative to the bare whoami of the same run when there is one.
fn judge_refresh(refresh: &mut RefreshReport, whoami: Option<&WhoamiReport>) {
    if let Some(w) = whoami.filter(|w| w.bare_median_rps > 0.0) {
        let vs = refresh.median_rps / w.bare_median_rps;
        refresh.vs_bare_whoami = Some(vs);
        refresh.goal_rps = REFRESH_GOAL * w.bare_median_rps;
        refresh.ok = vs >= REFRESH_GOAL;
    }
}

fn merge(into: &mut Latencies, from: Latencies) {
    into.merge(&from);
}

fn rates_of(runs: &[ThroughputRun], server: &str) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.server == server)
        .map(|r| r.requests_per_s)
        .collect()
}

async fn bench_refresh(args: &Args, servers: &ServerRuntime) -> Result<RefreshReport> {
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

fn find_rotary(args: &Args) -> Option<PathBuf> {
    if let Some(p) = &args.rotary {
        return Some(p.clone());
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("rotary");
    candidate.is_file().then_some(candidate)
}

fn u64_at(v: &serde_json::Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

fn bench_catalogue(rotary: &Path) -> Result<CatalogueReport> {
    let json = std::env::temp_dir().join(format!("rotary-bench-catalogue-{}.json", std::process::id()));
    let mut cmd = std::process::Command::new(rotary);
    cmd.args(["run", "--no-progress", "--json"])
        .arg(&json)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let command = format!("{} run --no-progress --json {}", rotary.display(), json.display());
    println!("catalogue: {command}");
    let cpu0 = load::cpu_of(UsageWho::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", rotary.display()))?;
    let wall = t0.elapsed();
    let cpu = load::cpu_of(UsageWho::RUSAGE_CHILDREN).saturating_sub(cpu0);
    let text = std::fs::read_to_string(&json).with_context(|| {
        format!(
            "{} wrote no report; its stderr:\n{}",
            rotary.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let _ = std::fs::remove_file(&json);
    let report: serde_json::Value = serde_json::from_str(&text).context("parsing the run report")?;
    let scenarios = report
        .get("scenarios")
        .and_then(serde_json::Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let wall_ms = u64::try_from(wall.as_millis()).unwrap_or(u64::MAX);
    let cpu_ms = u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX);
    Ok(CatalogueReport {
        command,
        exit_code: out.status.code(),
        scenarios: scenarios.len(),
        passed: usize::try_from(u64_at(&report, "/summary/pass")).unwrap_or(0),
        info: usize::try_from(u64_at(&report, "/summary/info")).unwrap_or(0),
        wall_ms,
        run_duration_ms: u64_at(&report, "/summary/duration_ms"),
        scenario_sum_ms: scenarios.iter().map(|s| u64_at(s, "/duration_ms")).sum(),
        waited_sum_ms: scenarios.iter().map(|s| u64_at(s, "/waited_ms")).sum(),
        child_cpu_ms: cpu_ms,
        waiting_share: 1.0 - cpu_ms as f64 / (wall_ms.max(1)) as f64,
    })
}

// ---------------------------------------------------------------------------------------------
// Output

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn print_summary(r: &Report) {
    println!();
    println!(
        "summary ({} CPUs; servers: {}; load generator: {})",
        r.cpus, r.server_runtime, r.generator_runtime
    );
    println!("  {:<44} {:>22}  {:<16}", "metric", "value", "goal");
    let row = |m: &str, v: String, goal: &str, ok: Option<bool>| {
        println!("  {:<44} {:>22}  {:<16} {}", m, v, goal, ok.map_or("", verdict));
    };
    if let Some(w) = &r.whoami {
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
        row(
            "whoami ratio rotary/bare (median req/s)",
            format!("{:.3}", w.ratio),
            "",
            None,
        );
        row(
            "  per-round ratios",
            list(&w.pair_ratios),
            ">= 0.9 each",
            Some(w.ok),
        );
        row(
            "  per-round CPU ratios bare/rotary",
            list(&w.pair_cpu_ratios),
            "",
            None,
        );
        row(
            "  RSS after each round, MiB",
            w.rss_kib_per_round
                .iter()
                .map(|k| format!("{:.0}", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" "),
            "flat",
            None,
        );
        row(
            "  trace dump: /versions max ms (p99)",
            format!("{:.1} ({:.1})", w.dump.versions_max_ms, w.dump.versions_p99_ms),
            "<= 50",
            Some(w.dump.ok),
        );
        row(
            "  trace dump: entries / ms",
            format!("{} / {:.0}", w.dump.entries, w.dump.elapsed_ms),
            "",
            None,
        );
        row(
            "whoami CPU ratio bare/rotary (server µs/req)",
            format!(
                "{:.3} ({:.1} / {:.1})",
                w.cpu_ratio, w.bare_cpu_us_per_req, w.rotary_cpu_us_per_req
            ),
            "",
            None,
        );
        row("whoami rotary req/s", thousands(w.rotary_median_rps), "", None);
        row("whoami bare req/s", thousands(w.bare_median_rps), "", None);
        row(
            "whoami rotary p50 / p99 ms",
            format!("{:.3} / {:.3}", w.rotary_p50_ms, w.rotary_p99_ms),
            "",
            None,
        );
        row(
            "whoami bare p50 / p99 ms",
            format!("{:.3} / {:.3}", w.bare_p50_ms, w.bare_p99_ms),
            "",
            None,
        );
    }
    if let Some(f) = &r.refresh {
        row(
            "refresh req/s (synapse, rotation)",
            thousands(f.median_rps),
            &format!(">= {}", thousands(f.goal_rps)),
            Some(f.ok),
        );
        if let Some(vs) = f.vs_bare_whoami {
            row(
                "  refresh / bare whoami req/s",
                format!("{vs:.3}"),
                ">= 0.6",
                Some(f.ok),
            );
        }
        row(
            "refresh server CPU µs/req",
            format!("{:.1}", f.cpu_us_per_req),
            "",
            None,
        );
        row(
            "refresh p50 / p99 ms",
            format!("{:.3} / {:.3}", f.p50_ms, f.p99_ms),
            "",
            None,
        );
    }
    if let Some(s) = &r.startup {
        row(
            "start to first response, median ms",
            format!("{:.3}", s.first_response_median_ms),
            "(wiremock ~0.5)",
            None,
        );
        row(
            "  p90 / min ms",
            format!("{:.3} / {:.3}", s.first_response_p90_ms, s.first_response_min_ms),
            "",
            None,
        );
        row(
            "  start() alone, median ms",
            format!("{:.3}", s.start_median_ms),
            "",
            None,
        );
    }
    if let Some(m) = &r.memory {
        row(
            &format!(
                "memory per live session ({} sessions)",
                thousands(m.sessions as f64)
            ),
            format!(
                "{:.0} B ({:.2} KiB)",
                m.bytes_per_session,
                m.bytes_per_session / 1024.0
            ),
            "<= 1.5 KiB",
            Some(m.ok),
        );
        row(
            "memory per trace entry (whoami)",
            format!("{:.0} B", m.trace_bytes_per_entry),
            "",
            None,
        );
    }
    if let Some(c) = &r.catalogue {
        row(
            "catalogue wall time",
            format!("{:.1} s", c.wall_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  scenarios",
            format!("{} pass, {} info of {}", c.passed, c.info, c.scenarios),
            "",
            None,
        );
        row(
            "  sum of scenario durations",
            format!("{:.1} s", c.scenario_sum_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  sum of sleep-step waits",
            format!("{:.1} s", c.waited_sum_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  CPU time of rotary + drivers",
            format!("{:.2} s", c.child_cpu_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  waiting share (1 - CPU/wall)",
            format!("{:.1} %", 100.0 * c.waiting_share),
            "",
            None,
        );
    }
}

async fn run(args: Args) -> Result<Report> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let servers = ServerRuntime::new(args.server_threads, args.trace_spill.clone())?;
    let mut report = Report {
        cpus,
        server_runtime: if args.server_threads <= 1 {
            "tokio current_thread on 1 OS thread".to_owned()
        } else {
            format!("tokio multi_thread, {} workers", args.server_threads)
        },
        generator_runtime: "tokio current_thread on 1 OS thread".to_owned(),
        connections: args.connections,
        duration_ms: u64::try_from(args.duration().as_millis()).unwrap_or(u64::MAX),
        warmup_ms: u64::try_from(args.warmup().as_millis()).unwrap_or(u64::MAX),
        rounds: args.rounds(),
        ..Report::default()
    };
    println!(
        "rotary-bench: {cpus} CPUs; servers on {}, load generator on {}",
        report.server_runtime, report.generator_runtime
    );
    if cfg!(debug_assertions) {
        println!("warning: this is a debug build; use `cargo run --release -p rotary-bench`");
    }
    // Memory first: a fresh process heap gives the cleanest RSS growth.
    if args.wants("memory") {
        let m = bench_memory(&args, &servers).await?;
        println!(
            "memory: {} sessions minted; RSS {} KiB -> {} KiB: {:.0} bytes per session; trace: {:.0} bytes per entry ({} whoami entries)",
            thousands(m.sessions as f64),
            m.rss_before_kib,
            m.rss_after_kib,
            m.bytes_per_session,
            m.trace_bytes_per_entry,
            thousands(m.trace_entries as f64)
        );
        report.memory = Some(m);
    }
    if args.wants("startup") {
        let s = bench_startup(&args).await?;
        println!(
            "startup: {} starts; start() median {:.3} ms; start + mint + first whoami median {:.3} ms (p90 {:.3})",
            s.starts, s.start_median_ms, s.first_response_median_ms, s.first_response_p90_ms
        );
        report.startup = Some(s);
    }
    if args.wants("whoami") {
        report.whoami = Some(bench_whoami(&args, &servers).await?);
    }
    if args.wants("refresh") {
        let mut refresh = bench_refresh(&args, &servers).await?;
        judge_refresh(&mut refresh, report.whoami.as_ref());
        report.refresh = Some(refresh);
    }
    drop(servers);
    if args.wants("catalogue") {
        match find_rotary(&args) {
            Some(rotary) => report.catalogue = Some(bench_catalogue(&rotary)?),
            None => println!(
                "catalogue: skipped, no `rotary` next to this executable; build it with \
                 `cargo build --release -p rotary` (same target directory) or pass --rotary PATH"
            ),
        }
    }
    Ok(report)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let json = args.json.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run(args))?;
    print_summary(&report);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}
