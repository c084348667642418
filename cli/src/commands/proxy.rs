//! `rotary proxy`: flags, start, the live terminal line, and the report and exit code at the end.

use anyhow::Context;
use clap::Args;
use rotary_rollout::proxy::{Proxy, ProxyReport, RunningProxy};
use rotary_server::control::ControlAccess;
use rotary_server::trace::SpillConfig;
use rotary_server::{FaultRule, faults_from_toml};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `rotary proxy` flags.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// The homeserver to forward to: its base URL (`https://matrix.example.org`, `http://127.0.0.1:8008`).
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// Where to listen (use 0.0.0.0:PORT for phones on the LAN; port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8009")]
    pub listen: String,
    /// A fault rule as inline TOML, e.g. 'endpoint = "refresh", probability = 0.1, seed = 7, action = { kind = "commit_then_drop" }'.
    /// Repeatable; the same language as `rotary serve --fault`.
    #[arg(long = "fault", value_name = "RULE")]
    pub faults: Vec<String>,
    /// A TOML file of `[[fault]]` rules.
    #[arg(long = "faults", value_name = "FILE")]
    pub fault_file: Option<PathBuf>,
    /// Write the report here at the end (report.json, index.html), and stream the whole trace to
    /// DIR/trace/*.ndjson while running.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Stop by itself after this long (e.g. 10m, 1h); default: until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// TLS on the listening side: a PEM certificate chain (mobile apps refuse plain http).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Let non-loopback clients use the control API with `Authorization: Bearer T`.
    #[arg(long, value_name = "T")]
    pub control_token: Option<String>,
    /// The base URL clients reach the proxy at, for the rewritten discovery answers (default:
    /// from each request's Host header).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Largest request body forwarded, MiB (Synapse's default max_upload_size is 50).
    #[arg(long, value_name = "MIB", default_value_t = 50)]
    pub max_body_mib: usize,
    /// Trace entries kept in memory (the report's timelines come from these).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub trace_window: usize,
    /// No live status line on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

/// The fault rules from the flags and the file, each error naming where it came from.
fn faults(args: &ProxyArgs) -> anyhow::Result<Vec<FaultRule>> {
    let mut out = Vec::new();
    if let Some(path) = &args.fault_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("--faults {}", path.display()))?;
        out.extend(faults_from_toml(&text).with_context(|| format!("--faults {}", path.display()))?);
    }
    for f in &args.faults {
        out.push(FaultRule::from_toml(f).with_context(|| format!("--fault {f:?}"))?);
    }
    Ok(out)
}

async fn start(args: &ProxyArgs) -> anyhow::Result<RunningProxy> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {:?}: give an address and port, e.g. 127.0.0.1:8009",
            args.listen
        )
    })?;
    let mut b = Proxy::builder(&args.upstream)?.listen(listen);
    for f in faults(args)? {
        b = b.fault(f);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        b = b.tls(cert, key);
    }
    if let Some(t) = &args.control_token {
        anyhow::ensure!(!t.is_empty(), "--control-token: the token must not be empty");
        b = b.control_access(ControlAccess::Token(t.clone()));
    }
    if let Some(u) = &args.public_url {
        rotary_rollout::proxy::upstream::Origin::parse(u)
            .map_err(|e| anyhow::anyhow!("--public-url: {e}"))?;
        b = b.public_url(u);
    }
    if let Some(dir) = &args.report {
        b = b.trace_spill(SpillConfig::new(dir.join("trace"), 256 << 20));
    }
    let max_body = args.max_body_mib.saturating_mul(1 << 20);
    let window = args.trace_window;
    b = b.configure(|c| {
        c.max_body_bytes = max_body;
        c.trace_window = window;
    });
    Ok(b.start().await?)
}

fn status_line(proxy: &RunningProxy, started: Instant) -> String {
    let t = proxy.totals();
    let v = |l: &str| t.violations.get(l).copied().unwrap_or(0);
    format!(
        "{:>6.0}s  {} requests  {} sessions  {} refreshes  {} × 401  {} faults  {} upstream errors  violations: {} must, {} should, {} info",
        started.elapsed().as_secs_f64(),
        t.requests,
        t.sessions,
        t.refreshes,
        t.unauthorized,
        t.faults_fired,
        t.upstream_errors,
        v("must"),
        v("should"),
        v("info")
    )
}

async fn wait_for_stop(duration: Option<Duration>) -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => "Ctrl-C",
        _ = term => "SIGTERM",
        _ = timer => "--duration",
    }
}

fn summary(report: &ProxyReport) -> String {
    let mut out = String::new();
    for (id, n) in &report.counts {
        out.push_str(&format!("  {id}: {n}\n"));
    }
    for v in report.violations.iter().take(10) {
        out.push_str(&format!(
            "  [{}] {} session {} at {:.1}s (request #{}): {}\n",
            v.level,
            v.id,
            v.session,
            v.t_ms as f64 / 1000.0,
            v.seq,
            v.message
        ));
    }
    out
}

/// Runs `rotary proxy` until stopped; returns the exit code (0 no must violation, 1 one or more).
pub async fn run(args: ProxyArgs) -> anyhow::Result<u8> {
    let proxy = start(&args).await?;
    let started = Instant::now();
    println!("rotary proxy listening on {} → {}", proxy.url(), proxy.upstream());
    println!(
        "  control API and metrics: {}/_rotary (loopback only unless --control-token)",
        proxy.url()
    );
    if let Some(dir) = &args.report {
        println!(
            "  report: {} (trace streamed to {}/trace/)",
            dir.display(),
            dir.display()
        );
    }
    let tty = std::io::stderr().is_terminal() && !args.no_progress;
    let ticker = {
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        };
        let quiet = args.no_progress;
        let stop = wait_for_stop(args.duration);
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                why = &mut stop => break why,
                _ = tick.tick() => {
                    if quiet { continue; }
                    if tty {
                        eprint!("\r\x1b[2K{}", status_line(&proxy, started));
                    } else {
                        eprintln!("{}", status_line(&proxy, started));
                    }
                }
            }
        }
    };
    if tty {
        eprintln!();
    }
    eprintln!("rotary proxy: stopping ({ticker})");
    let line = status_line(&proxy, started);
    let report = proxy.finish().await;
    println!("{line}");
    print!("{}", summary(&report));
    if let Some(dir) = &args.report {
        report
            .write(dir)
            .with_context(|| format!("cannot write the report into {}", dir.display()))?;
        println!("report written to {}/report.json and index.html", dir.display());
    }
    Ok(u8::from(report.must_violations() > 0))
}
