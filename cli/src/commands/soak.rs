//! `rotary soak`: many sessions for a long time against the embedded mock (or a real homeserver
//! through the proxy), faults on a seeded schedule, live and end-to-end invariants, thresholds as
//! the exit code.

use anyhow::{Context, bail};
use clap::Args;
use rotary_reference::{Bug, Bugs};
use rotary_rollout::soak::metrics::catalogue;
use rotary_rollout::soak::schedule::{DEFAULT_SCHEDULE, Schedule};
use rotary_rollout::soak::target::{SoakTarget, UpstreamOptions, UpstreamTarget};
use rotary_rollout::soak::threshold::{DEFAULT_THRESHOLDS, Threshold};
use rotary_rollout::soak::{Soak, SoakConfig};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `rotary soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Simulated sessions (the reference client doing what an app does), sharing one connection
    /// pool. 0 with --driver runs driver processes only.
    #[arg(long, default_value_t = 50)]
    pub sessions: usize,
    /// How long the soak runs (`30s`, `2h`).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The embedded mock's access-token lifetime.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub access_token_lifetime: Duration,
    /// A schedule file (TOML: [workload] and [[phase]]s); default: the shipped one
    /// (`--print-schedule` shows it).
    #[arg(long, value_name = "FILE")]
    pub schedule: Option<PathBuf>,
    /// A threshold, e.g. 'refresh.p99 < 50ms' (repeatable; added to the defaults unless
    /// --no-default-thresholds). `--list-metrics` lists the metrics.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Drop the default thresholds (only the --threshold ones apply).
    #[arg(long)]
    pub no_default_thresholds: bool,
    /// A driver command line: real client processes join the fleet, one session each.
    #[arg(long, value_name = "CMD")]
    pub driver: Option<String>,
    /// How many driver processes (with --driver).
    #[arg(long, value_name = "M", default_value_t = 1, requires = "driver")]
    pub drivers: usize,
    /// A reference-client bug switch for a share of the simulated sessions (repeatable;
    /// `rotary reference-driver --list-bugs` lists them).
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<Bug>,
    /// The share of the simulated sessions the --bug switches apply to (0..=1).
    #[arg(long, value_name = "SHARE", default_value_t = 0.5)]
    pub bug_share: f64,
    /// A real homeserver: the fleet goes through Rotary's proxy in front of it (faults injected
    /// by the proxy, users registered with dummy auth unless --accounts). Clock jumps are skipped;
    /// give --access-token-lifetime the server's lifetime so the schedule scales to it.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// With --upstream: use these accounts (lines of `user password`) instead of registering.
    #[arg(long, value_name = "FILE", requires = "upstream")]
    pub accounts: Option<PathBuf>,
    /// The seed of every random choice: the same seed gives the same faults in the same order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write soak.json, series.csv, series.json and index.html here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Stop at the first `must` violation.
    #[arg(long)]
    pub fail_fast: bool,
    /// No live progress line.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the default schedule and exit.
    #[arg(long)]
    pub print_schedule: bool,
    /// List the metrics thresholds can name, and exit.
    #[arg(long)]
    pub list_metrics: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    rotary_server::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs `rotary soak`; answers the exit code (0 every threshold held, 1 one failed).
pub async fn run(args: SoakArgs) -> anyhow::Result<u8> {
    if args.print_schedule {
        print!("{DEFAULT_SCHEDULE}");
        return Ok(0);
    }
    if args.list_metrics {
        for m in catalogue() {
            println!(
                "{:<34} {:<7} {}",
                m.name,
                format!("{:?}", m.unit).to_lowercase(),
                m.description
            );
        }
        return Ok(0);
    }
    if !(0.0..=1.0).contains(&args.bug_share) {
        bail!("--bug-share {} is not between 0 and 1", args.bug_share);
    }
    if args.duration.is_zero() || args.access_token_lifetime.is_zero() {
        bail!("--duration and --access-token-lifetime must be longer than 0");
    }
    let schedule = match &args.schedule {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Schedule::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Schedule::default_schedule(),
    };
    let mut thresholds = if args.no_default_thresholds {
        Vec::new()
    } else {
        Threshold::defaults()
    };
    for t in &args.thresholds {
        thresholds.push(
            t.parse::<Threshold>()
                .map_err(|e| anyhow::anyhow!("--threshold: {e}"))?,
        );
    }
    if thresholds.is_empty() {
        bail!("no threshold: give --threshold or keep the defaults");
    }
    let mut bugs = Bugs::NONE;
    for b in &args.bugs {
        bugs.insert(*b);
    }
    let mut cfg = SoakConfig::new(args.sessions, args.duration);
    cfg.access_token_lifetime = args.access_token_lifetime;
    cfg.schedule = schedule;
    cfg.thresholds = thresholds;
    cfg.bugs = bugs;
    cfg.bug_share = args.bug_share;
    cfg.drivers = args.driver.clone().map(|d| (d, args.drivers));
    cfg.seed = args.seed;
    cfg.report_dir = args.report.clone();
    cfg.fail_fast = args.fail_fast;
    cfg.progress = !args.no_progress && std::io::stderr().is_terminal();
    let defaults_used = !args.no_default_thresholds;
    eprintln!(
        "rotary soak: {} sessions{} for {}, {} access tokens, seed {}{}",
        cfg.sessions,
        cfg.drivers
            .as_ref()
            .map(|(_, m)| format!(" + {m} driver processes"))
            .unwrap_or_default(),
        rotary_server::format_duration(cfg.duration),
        rotary_server::format_duration(cfg.access_token_lifetime),
        cfg.seed,
        if bugs.is_empty() {
            String::new()
        } else {
            format!(
                ", bugs {} on {:.0}% of the sessions",
                bugs.names().join(", "),
                cfg.bug_share * 100.0
            )
        }
    );
    eprintln!(
        "thresholds: {}{}",
        cfg.thresholds
            .iter()
            .map(|t| t.expr.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if defaults_used && args.thresholds.is_empty() {
            format!(" (the {} defaults)", DEFAULT_THRESHOLDS.len())
        } else {
            String::new()
        }
    );
    let outcome = match &args.upstream {
        Some(url) => {
            let mut opts = UpstreamOptions::new(url.clone());
            opts.accounts_file = args.accounts.clone();
            let target = UpstreamTarget::start(opts)
                .await
                .with_context(|| format!("--upstream {url}"))?;
            eprintln!("{}", target.describe());
            Soak::new(cfg).run(Arc::new(target)).await?
        }
        None => Soak::new(cfg).run_embedded().await?,
    };
    print!("{}", outcome.report.text());
    if let Some(dir) = &args.report {
        eprintln!("report: {}", dir.join("index.html").display());
    }
    Ok(if outcome.passed() { 0 } else { 1 })
}
