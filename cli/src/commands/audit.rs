//! `rotary audit`: probes how a deployed homeserver refreshes, prints the table (observed values,
//! each profile's prediction, spec verdicts), and writes the JSON and the reproducing config.

use anyhow::Context;
use clap::Args;
use rotary_rollout::audit::{AuditOptions, Credentials, DEFAULT_MAX_WAIT, run_audit};
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `rotary audit`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["user", "register"])))]
pub struct AuditArgs {
    /// The homeserver's base URL (https://matrix.example.org).
    #[arg(long, value_name = "URL")]
    pub homeserver: String,
    /// An existing account to log in as (`logout/all` is then not probed).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The account's password.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "ROTARY_AUDIT_PASSWORD",
        requires = "user"
    )]
    pub password: Option<String>,
    /// Register a fresh account with m.login.dummy instead (also probes `logout/all`).
    #[arg(long, conflicts_with = "user")]
    pub register: bool,
    /// The longest wait for an access token to expire; longer lifetimes are not waited out.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2m")]
    pub max_wait: Duration,
    /// Write the JSON report (raw observations, tokens as labels) here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the server config that reproduces the observation (TOML for `rotary serve --config`
    /// and `rotary run --server-config`) here.
    #[arg(long, value_name = "FILE")]
    pub profile_out: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    rotary_server::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs `rotary audit`; exit 0 when the audit ran (an error is exit 2 through `main`).
pub async fn run(args: AuditArgs) -> anyhow::Result<u8> {
    let credentials = match (&args.user, &args.password, args.register) {
        (Some(user), Some(password), _) => Credentials::Login {
            user: user.clone(),
            password: password.clone(),
        },
        (Some(_), None, _) => anyhow::bail!("--user needs --password (or ROTARY_AUDIT_PASSWORD)"),
        (None, _, _) => Credentials::Register,
    };
    let mut opts = AuditOptions::new(args.homeserver.clone(), credentials);
    opts.probe.max_wait = args.max_wait;
    if args.max_wait != DEFAULT_MAX_WAIT {
        tracing::debug!(max_wait = ?args.max_wait, "custom --max-wait");
    }
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = run_audit(&opts, ctrl_c).await?;
    print!("{}", report.table());
    std::io::Write::flush(&mut std::io::stdout())?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.profile_out {
        std::fs::write(path, report.profile_toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "wrote {}: rotary run --server-config {} runs the catalogue against a mock that behaves like this server",
            path.display(),
            path.display()
        );
    }
    Ok(0)
}
