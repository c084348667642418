//! `rotary run`: the catalogue against a client, with reports.

use super::{CatalogueArgs, reference_driver_command};
use anyhow::Context;
use clap::Args;
use rotary_harness::{
    Expectations, Partition, RunConfig, RunReport, Selection, default_jobs, report, run_scenarios,
};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `rotary run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Scenario ids or globs (`concurrency.*`); all when none is given.
    #[arg(value_name = "ID_GLOB")]
    pub ids: Vec<String>,
    /// Only scenarios with this tag (or id prefix, e.g. `faults`). Repeatable: any of them.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The client's driver, a shell command line (default: the bundled reference client).
    #[arg(long, value_name = "COMMAND")]
    pub driver: Option<String>,
    /// With the bundled reference client: switch on one of its bugs (see
    /// `rotary-reference-driver --list-bugs`). Repeatable.
    #[arg(long = "bug", value_name = "NAME", conflicts_with = "driver", value_parser = parse_bug)]
    pub bugs: Vec<rotary_reference::Bug>,
    /// Scenarios run at once (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Run only shard M of N (1-based; deterministic, for CI matrices).
    #[arg(long, value_name = "M/N")]
    pub partition: Option<Partition>,
    /// Known failures: one scenario id or glob per line, `#` comments.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the HTML report (index + a page per scenario with its timeline) into this folder.
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// Override every scenario's per-call timeout (e.g. `60s` for a slow client).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub call_timeout: Option<Duration>,
    /// Run each scenario N times (1 to 1000) and report each one's pass rate; a scenario whose
    /// runs disagree is `flaky`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_repeat)]
    pub repeat: u32,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print every scenario's verdict, not only the failures.
    #[arg(long)]
    pub all: bool,
    /// The catalogue.
    #[command(flatten)]
    pub catalogue: CatalogueArgs,
}

fn parse_bug(s: &str) -> Result<rotary_reference::Bug, String> {
    s.parse::<rotary_reference::Bug>().map_err(|e| e.to_string())
}

fn parse_repeat(s: &str) -> Result<u32, String> {
    let n: u64 = s.parse().map_err(|_| format!("{s:?} is not a whole number"))?;
    rotary_harness::repeat::check_repeat(n).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    rotary_server::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs `rotary run`; returns the exit code (0 ok, 1 failures, 130 interrupted).
pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let catalogue = args.catalogue.load()?;
    let selection = Selection {
        globs: args.ids.clone(),
        tags: args.tags.clone(),
        partition: args.partition,
    };
    let picked: Vec<_> = catalogue
        .select(&selection)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .cloned()
        .collect();
    let expect = match &args.expect {
        Some(p) => {
            let e = Expectations::load(p)?;
            let stale = e.unmatched(catalogue.scenarios.iter().map(|s| s.id.as_str()));
            for line in stale {
                eprintln!("rotary: warning: {}: {line} matches no scenario", p.display());
            }
            e
        }
        None => Expectations::default(),
    };
    let driver = match &args.driver {
        Some(d) => d.clone(),
        None => reference_driver_command(&args.bugs)?,
    };
    let cfg = RunConfig::new(driver)
        .jobs(args.jobs.unwrap_or_else(default_jobs))
        .call_timeout(args.call_timeout)
        .expectations(expect)
        .repeat(args.repeat);
    let progress = Arc::new(report::Progress::new(
        picked.len() * args.repeat as usize,
        !args.no_progress && std::io::stderr().is_terminal(),
    ));
    let p = Arc::clone(&progress);
    let run = tokio::select! {
        run = run_scenarios(&picked, &cfg, move |r| p.scenario_done(r)) => run,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run drops every driver, which kills each one's process group.
            progress.finish();
            eprintln!("rotary: interrupted; every driver process was killed");
            return Ok(130);
        }
    };
    progress.finish();
    write_reports(&run, &args)?;
    let color = std::io::stdout().is_terminal();
    if args.all {
        for s in &run.scenarios {
            match rotary_harness::repeat::rate_text(s) {
                Some(rate) => println!(
                    "{:<11} {:<6} {:>9} {}",
                    s.verdict.name(),
                    s.level.name(),
                    rate,
                    s.id
                ),
                None => println!("{:<11} {:<6} {}", s.verdict.name(), s.level.name(), s.id),
            }
        }
    }
    print!("{}", report::render_failures(&run, color));
    println!("{}", report::summary_line(&run));
    Ok(if run.summary.ok { 0 } else { 1 })
}

fn write_reports(run: &RunReport, args: &RunArgs) -> anyhow::Result<()> {
    if let Some(p) = &args.json {
        report::write_json(run, p).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &args.junit {
        report::write_junit(run, p).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(d) = &args.html {
        report::write_html(run, d)
            .with_context(|| format!("cannot write the HTML report into {}", d.display()))?;
    }
    Ok(())
}
