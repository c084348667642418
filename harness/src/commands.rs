//! `rotary run`, `rotary list` and `rotary explain`: the catalogue commands.

use crate::catalogue::{Catalogue, Partition, Selection, default_dir};
use crate::expect::Expectations;
use crate::record::{RunReport, Verdict};
use crate::report;
use crate::runner::{RunConfig, default_jobs, run_scenarios};
use crate::scenario::server_lines;
use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the catalogue is: `--scenarios`, else `ROTARY_SCENARIOS`, else the shipped folder.
#[derive(Debug, Clone, Args)]
pub struct CatalogueArgs {
    /// The folder of scenario files (default: the catalogue shipped in the repository's `scenarios/`).
    #[arg(long, value_name = "DIR", env = "ROTARY_SCENARIOS")]
    pub scenarios: Option<PathBuf>,
}

impl CatalogueArgs {
    fn load(&self) -> anyhow::Result<Catalogue> {
        let dir = self.scenarios.clone().unwrap_or_else(default_dir);
        Ok(Catalogue::load(&dir)?)
    }
}

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

fn parse_duration(s: &str) -> Result<Duration, String> {
    rotary_server::parse_duration(s).map_err(|e| e.to_string())
}

/// Quotes a word for `sh`.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '=' | ':' | ','))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The command line that runs the bundled reference client through this very binary.
pub fn reference_driver_command(bugs: &[rotary_reference::Bug]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the rotary binary to run the reference client")?;
    let mut cmd = format!("{} reference-driver", shell_quote(&exe.to_string_lossy()));
    for b in bugs {
        cmd.push_str(" --bug ");
        cmd.push_str(&shell_quote(b.name()));
    }
    Ok(cmd)
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
        .expect(expect);
    let progress = Arc::new(report::Progress::new(
        picked.len(),
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
            println!("{:<11} {:<6} {}", s.verdict.name(), s.level.name(), s.id);
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

/// Flags of `rotary list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print `{"scenarios": [{"id", "title", "level", "tags", "needs"}, …]}`.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print a Markdown table (id, level, title, requirement) for documentation.
    #[arg(long)]
    pub markdown: bool,
    /// Only ids matching these globs.
    #[arg(value_name = "ID_GLOB")]
    pub ids: Vec<String>,
    /// Only scenarios with this tag. Repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The catalogue.
    #[command(flatten)]
    pub catalogue: CatalogueArgs,
}

/// Runs `rotary list`.
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let catalogue = args.catalogue.load()?;
    let picked = catalogue
        .select(&Selection {
            globs: args.ids.clone(),
            tags: args.tags.clone(),
            partition: None,
        })
        .map_err(anyhow::Error::msg)?;
    if args.json {
        let items: Vec<_> = picked
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "title": s.title,
                    "level": s.level,
                    "tags": s.tags,
                    "needs": s.needs,
                    "requirement": s.requirement,
                    "references": s.references,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"scenarios": items}))?);
        return Ok(());
    }
    if args.markdown {
        println!("| id | level | title |");
        println!("|---|---|---|");
        for s in &picked {
            println!(
                "| `{}` | {} | {} |",
                s.id,
                s.level.name(),
                s.title.replace('|', "\\|")
            );
        }
        return Ok(());
    }
    let width = picked.iter().map(|s| s.id.len()).max().unwrap_or(10);
    for s in &picked {
        println!("{:<width$}  {:<6}  {}", s.id, s.level.name(), s.title);
    }
    let count = |l| picked.iter().filter(|s| s.level == l).count();
    println!(
        "\n{} scenarios ({} must, {} should, {} info). `rotary explain <id>` shows one.",
        picked.len(),
        count(crate::record::Level::Must),
        count(crate::record::Level::Should),
        count(crate::record::Level::Info)
    );
    Ok(())
}

/// Flags of `rotary explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The scenario's id.
    pub id: String,
    /// The catalogue.
    #[command(flatten)]
    pub catalogue: CatalogueArgs,
}

/// Runs `rotary explain`.
pub fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    let catalogue = args.catalogue.load()?;
    let Some(s) = catalogue.get(&args.id) else {
        let close: Vec<&str> = catalogue
            .scenarios
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| {
                let prefix = args.id.split('.').next().unwrap_or("");
                id.starts_with(prefix) || id.contains(&args.id)
            })
            .take(8)
            .collect();
        anyhow::bail!(
            "no scenario {:?}{}",
            args.id,
            if close.is_empty() {
                " (see `rotary list`)".to_owned()
            } else {
                format!("; did you mean: {}", close.join(", "))
            }
        );
    };
    println!("{} — {}", s.id, s.title);
    println!(
        "level: {}   tags: {}   needs: {}",
        s.level.name(),
        s.tags.join(", "),
        s.needs.join(", ")
    );
    println!("file: {}\n", s.file.display());
    println!("Requirement:\n  {}\n", s.requirement.replace('\n', "\n  "));
    if !s.references.is_empty() {
        println!("References:");
        for r in &s.references {
            println!("  - {r}");
        }
        println!();
    }
    let server = server_lines(&s.server_table);
    println!(
        "Server: {}",
        if server.is_empty() {
            "synapse profile defaults".to_owned()
        } else {
            server.join(", ")
        }
    );
    for f in &s.faults {
        println!(
            "Fault: {} on {}{}",
            f.action.kind(),
            f.endpoint.as_deref().unwrap_or("any endpoint"),
            f.nth.map(|n| format!(", request #{n}")).unwrap_or_default()
        );
    }
    println!("\nSteps:");
    for st in &s.steps {
        let name = st
            .action
            .step_name()
            .map(|n| format!(" [{n}]"))
            .unwrap_or_default();
        println!(
            "  {:>2}. {}{} {}",
            st.index,
            st.action.name(),
            name,
            st.action.summary()
        );
    }
    println!("\nChecks:");
    for c in &s.checks {
        println!(
            "  - {}",
            serde_json::to_string(c).unwrap_or_else(|_| c.name().to_owned())
        );
    }
    println!(
        "\nVerdicts: pass when every check holds; otherwise {}.",
        match s.level {
            crate::record::Level::Must => Verdict::Fail.name(),
            crate::record::Level::Should => Verdict::NonStrict.name(),
            crate::record::Level::Info => "info (never judged)",
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/usr/bin/rotary"), "/usr/bin/rotary");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
