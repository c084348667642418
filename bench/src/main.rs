//! `rotary-bench`: Rotary's performance figures in one run on one machine — whoami throughput
//! against a bare axum baseline, `/refresh` throughput with rotation, start-to-first-response
//! time, memory per live session, `rotary proxy` in front of the mock against the mock direct,
//! and the catalogue's wall time with its share of real waiting.

mod bare;
mod catalogue;
mod hop;
mod load;
mod memory;
mod proxy;
mod refresh;
mod report;
mod runs;
mod runtime;
mod startup;
mod stats;
mod whoami;

use anyhow::{Context, Result, bail};
use clap::Parser;
use report::{Report, print_summary, thousands};
use runtime::ServerRuntime;
use std::path::PathBuf;
use std::time::Duration;

const ABOUT: &str = "Rotary's benchmark: whoami and /refresh throughput, start-up time, memory per session, the proxy against the mock direct and the catalogue's wall time, in one run";

const LONG_ABOUT: &str =
    "Rotary's benchmark: every performance figure of docs/performance.md in one run on one machine.

Run it in release mode (a debug build measures the optimiser's absence):

  cargo run --release -p rotary-bench                      # everything, about 4 minutes
  cargo run --release -p rotary-bench -- --quick           # a smoke run, short durations
  cargo run --release -p rotary-bench -- --only whoami --only refresh --duration 10s
  cargo run --release -p rotary-bench -- --only proxy --duration 3s   # the proxy vs the mock direct
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
  proxy      `rotary proxy` (in-process, on the servers' runtime) in front of the mock, against
             the same mock reached directly: whoami at --connections in flight (goal: proxied
             at least 0.7 x direct), whoami at 1 in flight (goal: at most 150 µs added to the
             p50), /refresh chains at --connections in flight, the servers' CPU per request
             (the proxy's own = proxied - direct); memory: RSS growth per login (--proxy-logins)
             direct vs proxied, a token graph's bytes per session, a 10,000-entry trace's bytes
             per entry, and a proxy limited to --proxy-session-limit sessions keeps exactly that
             many after the logins. Each throughput figure is also taken through a bare
             forwarding hop (hyper server + one hyper client connection per connection, no
             bookkeeping): what a second HTTP hop alone costs on the same core.
             Run it alone (--only proxy) for clean memory figures.
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
    /// Run only this benchmark (repeatable): memory, startup, whoami, refresh, proxy, catalogue.
    #[arg(long = "only", value_name = "NAME", value_parser = ["memory", "startup", "whoami", "refresh", "proxy", "catalogue"])]
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
    /// Logins for `proxy`'s memory figures (direct, proxied, and against the limited proxy).
    #[arg(long, default_value_t = 5_000)]
    proxy_logins: usize,
    /// The session limit of `proxy`'s limited proxy.
    #[arg(long, default_value_t = 1_000)]
    proxy_session_limit: usize,
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
        let m = memory::bench_memory(&args, &servers).await?;
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
        let s = startup::bench_startup(&args).await?;
        println!(
            "startup: {} starts; start() median {:.3} ms; start + mint + first whoami median {:.3} ms (p90 {:.3})",
            s.starts, s.start_median_ms, s.first_response_median_ms, s.first_response_p90_ms
        );
        report.startup = Some(s);
    }
    if args.wants("whoami") {
        report.whoami = Some(whoami::bench_whoami(&args, &servers).await?);
    }
    if args.wants("refresh") {
        let mut refresh = refresh::bench_refresh(&args, &servers).await?;
        refresh::judge_refresh(&mut refresh, report.whoami.as_ref());
        report.refresh = Some(refresh);
    }
    if args.wants("proxy") {
        report.proxy = Some(proxy::bench_proxy(&args, &servers).await?);
    }
    drop(servers);
    if args.wants("catalogue") {
        match catalogue::find_rotary(&args) {
            Some(rotary) => report.catalogue = Some(catalogue::bench_catalogue(&rotary)?),
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
