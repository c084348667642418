//! `rotary run`: the catalogue against a client, with reports.

use super::{CatalogueArgs, reference_driver_command};
use anyhow::Context;
use clap::Args;
use rotary_harness::{
    Expectations, Partition, RunConfig, RunReport, Selection, default_jobs, report, run_scenarios,
};
use rotary_server::ServerConfig;
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
    /// A server config file (the TOML `rotary serve --config` and `rotary audit --profile-out`
    /// write): every scenario's mock starts from it, with the scenario's own `[server]` knobs applied
    /// on top (except its `profile`). `[[fault]]` and `[[user]]` tables are refused.
    #[arg(long, value_name = "FILE")]
    pub server_config: Option<PathBuf>,
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
    for w in catalogue.alias_warnings(args.ids.iter().map(String::as_str)) {
        eprintln!("rotary: warning: {w}");
    }
    let mut picked: Vec<_> = catalogue
        .select(&selection)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .cloned()
        .collect();
    if let Some(path) = &args.server_config {
        let base = load_server_config(path)?;
        // Scenarios that cannot hold against this server's config are left out, and said so:
        // those of the OAuth 2.0 API where it is not served, and those about one profile's own
        // behaviour (tagged with its name: `profiles.mas`, `lost-response.refresh-mas`) when the
        // config starts from another profile.
        let why = |s: &rotary_harness::Scenario| -> Option<&'static str> {
            if (s.id.starts_with("oauth.") || s.has_tag("oauth") || s.auth == rotary_harness::Auth::Oauth)
                && !base.oauth
            {
                Some("the config does not serve the OAuth 2.0 API")
            } else if s.server.profile != base.profile && s.has_tag(s.server.profile.name()) {
                Some("they are about another profile's behaviour")
            } else {
                None
            }
        };
        let mut left_out: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        let mut runnable = Vec::new();
        for s in picked {
            match why(&s) {
                Some(reason) => left_out.entry(reason).or_default().push(s.id.clone()),
                None => runnable.push(s),
            }
        }
        for (reason, ids) in &left_out {
            eprintln!(
                "rotary: --server-config {}: {} scenario(s) left out, {reason}: {}",
                path.display(),
                ids.len(),
                ids.join(", ")
            );
        }
        picked = runnable;
        for s in &mut picked {
            s.server = on_top(&base, &s.server_table)
                .with_context(|| format!("{}: [server] over {}", s.id, path.display()))?;
        }
    }
    let expect = match &args.expect {
        Some(p) => {
            let e = Expectations::load(p)?;
            let stale = e.unmatched(catalogue.names());
            for line in stale {
                eprintln!("rotary: warning: {}: {line} matches no scenario", p.display());
            }
            for w in catalogue.alias_warnings(e.patterns()) {
                eprintln!("rotary: warning: {}: {w}", p.display());
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

/// Reads a `--server-config` file: knobs only.
pub fn load_server_config(path: &std::path::Path) -> anyhow::Result<ServerConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    for (key, what) in [("fault", "[[fault]]"), ("user", "[[user]]")] {
        if table.contains_key(key) {
            anyhow::bail!(
                "{}: {what} tables are not allowed in --server-config (the scenarios bring their own faults and users); keep only the knobs",
                path.display()
            );
        }
    }
    ServerConfig::from_toml(&text).with_context(|| format!("{}", path.display()))
}

/// A scenario's `[server]` table applied over the `--server-config` knobs, without its `profile`.
pub fn on_top(base: &ServerConfig, server_table: &serde_json::Value) -> anyhow::Result<ServerConfig> {
    let mut patch = server_table.clone();
    if let serde_json::Value::Object(m) = &mut patch {
        m.remove("profile");
    } else {
        patch = serde_json::Value::Object(serde_json::Map::new());
    }
    Ok(base.patched(&patch)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_config_refuses_faults_and_users_and_scenarios_apply_on_top() {
        let dir = tempfile_dir();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "profile = \"mas\"\nrefreshable_access_token_lifetime = \"3s\"\n",
        )
        .unwrap();
        let base = load_server_config(&good).unwrap();
        assert_eq!(base.profile, rotary_server::Profile::Mas);
        let table = serde_json::json!({"profile": "synapse", "rotate_refresh_tokens": false});
        let cfg = on_top(&base, &table).unwrap();
        assert_eq!(
            cfg.profile,
            rotary_server::Profile::Mas,
            "the scenario's profile is not applied"
        );
        assert!(!cfg.rotate_refresh_tokens, "the scenario's knobs are");
        assert_eq!(
            cfg.refreshable_access_token_lifetime,
            Some(Duration::from_secs(3))
        );
        for (name, text) in [
            (
                "fault.toml",
                "[[fault]]\nendpoint = \"refresh\"\naction = { kind = \"reset\" }\n",
            ),
            ("user.toml", "[[user]]\nname = \"bob\"\npassword = \"x\"\n"),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            let err = load_server_config(&p).unwrap_err().to_string();
            assert!(err.contains("not allowed in --server-config"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rotary-run-server-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
