//! `rotary serve`: the mock homeserver on a fixed port, configured from a profile, a TOML file and flags.

use anyhow::{Context, bail};
use clap::Args;
use rotary_server::{
    ControlAccess, FaultRule, MockHomeserver, MockHomeserverBuilder, Profile, ServerConfig, faults_from_toml,
    format_duration, parse_optional_duration,
};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `rotary serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8008)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Server personality: synapse, spec, mas, oauth-spec or no-refresh.
    #[arg(long, value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// A TOML file of knobs (snake_case names), plus optional `[[fault]]` and `[[user]]` tables.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Lifetime of access tokens issued with a refresh token (`none` turns refresh off).
    #[arg(long, value_name = "DURATION", value_parser = lifetime)]
    pub refreshable_access_token_lifetime: Option<Lifetime>,
    /// Lifetime of refresh tokens (`none` = never expire).
    #[arg(long, value_name = "DURATION", value_parser = lifetime)]
    pub refresh_token_lifetime: Option<Lifetime>,
    /// Lifetime of access tokens issued without a refresh token (`none` = never expire).
    #[arg(long, value_name = "DURATION", value_parser = lifetime)]
    pub nonrefreshable_access_token_lifetime: Option<Lifetime>,
    /// Cap on a whole login session (`none` = unlimited).
    #[arg(long, value_name = "DURATION", value_parser = lifetime)]
    pub session_lifetime: Option<Lifetime>,
    /// Any other knob, as KNOB=VALUE with a TOML value (e.g. rotate_refresh_tokens=false,
    /// reuse_policy="single-use"). Repeatable. `rotary serve --list-knobs` shows them all.
    #[arg(long = "set", value_name = "KNOB=VALUE")]
    pub set: Vec<String>,
    /// A fault rule as inline TOML, e.g. 'endpoint = "refresh", nth = 1, action = { kind = "reset" }'.
    /// Repeatable.
    #[arg(long = "fault", value_name = "RULE")]
    pub faults: Vec<String>,
    /// A TOML file of `[[fault]]` rules.
    #[arg(long = "faults", value_name = "FILE")]
    pub fault_file: Option<PathBuf>,
    /// An extra user as NAME:PASSWORD. Repeatable.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    pub users: Vec<String>,
    /// Do not create the default user alice / wonderland.
    #[arg(long)]
    pub no_default_user: bool,
    /// Let non-loopback clients use the control API when they send `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", env = "ROTARY_CONTROL_TOKEN")]
    pub control_token: Option<String>,
    /// Requests the trace keeps in memory (the newest; `GET /_rotary/trace` pages through them).
    #[arg(long, value_name = "N", default_value_t = rotary_server::trace::DEFAULT_WINDOW)]
    pub trace_window: usize,
    /// Also write every completed request to NDJSON files in DIR (`trace-000001.ndjson`, …,
    /// rotated by size, never deleted): the whole trace of a long run.
    #[arg(long, value_name = "DIR")]
    pub trace_spill: Option<PathBuf>,
    /// Size at which a spill file is closed and the next one started, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64, requires = "trace_spill")]
    pub trace_spill_file_mib: u64,
    /// Print every knob with its value under the chosen profile, then exit.
    #[arg(long)]
    pub list_knobs: bool,
}

/// A lifetime flag's value: a duration, or `none` for "never expires" / "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Option<Duration>);

fn lifetime(s: &str) -> Result<Lifetime, String> {
    parse_optional_duration(s)
        .map(Lifetime)
        .map_err(|e| e.to_string())
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    s.parse()
        .map_err(|e: rotary_server::UnknownProfile| e.to_string())
}

/// Splits `KNOB=VALUE` and reads the value as TOML (bare words are taken as strings).
pub fn parse_kv(kv: &str) -> anyhow::Result<(String, Value)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("--set {kv:?}: expected KNOB=VALUE"))?;
    let k = k.trim().replace('-', "_");
    let parsed: Value = match toml::from_str::<toml::Table>(&format!("v = {v}")) {
        Ok(t) => serde_json::to_value(&t["v"])?,
        Err(_) => Value::String(v.trim().to_owned()),
    };
    Ok((k, parsed))
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Builds the server from the flags: profile, then the config file, then the flags.
pub fn build_server(args: &ServeArgs) -> anyhow::Result<MockHomeserverBuilder> {
    let mut cfg = ServerConfig::for_profile(args.profile.unwrap_or_default());
    let mut faults: Vec<FaultRule> = Vec::new();
    let mut users: Vec<(String, String)> = Vec::new();
    if let Some(path) = &args.config {
        let text = read(path)?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
        if let Some(f) = table.remove("fault") {
            let wrapped = toml::Table::from_iter([("fault".to_owned(), f)]);
            faults.extend(
                faults_from_toml(&toml::to_string(&wrapped)?)
                    .with_context(|| format!("{}: [[fault]]", path.display()))?,
            );
        }
        if let Some(u) = table.remove("user") {
            let list = u
                .as_array()
                .with_context(|| format!("{}: `user` must be [[user]] tables", path.display()))?;
            for entry in list {
                let name = entry.get("name").and_then(|v| v.as_str());
                let password = entry.get("password").and_then(|v| v.as_str());
                match (name, password) {
                    (Some(n), Some(p)) => users.push((n.to_owned(), p.to_owned())),
                    _ => bail!(
                        "{}: each [[user]] needs `name` and `password` strings",
                        path.display()
                    ),
                }
            }
        }
        if args.profile.is_some() {
            table.remove("profile");
        }
        let patch = serde_json::to_value(&table)?;
        cfg = cfg
            .patched(&patch)
            .with_context(|| format!("{}", path.display()))?;
    }
    let mut patch = serde_json::Map::new();
    let lifetimes = [
        (
            "refreshable_access_token_lifetime",
            args.refreshable_access_token_lifetime,
        ),
        ("refresh_token_lifetime", args.refresh_token_lifetime),
        (
            "nonrefreshable_access_token_lifetime",
            args.nonrefreshable_access_token_lifetime,
        ),
        ("session_lifetime", args.session_lifetime),
    ];
    for (name, value) in lifetimes {
        if let Some(Lifetime(v)) = value {
            patch.insert(
                name.to_owned(),
                v.map_or(Value::Null, |d| Value::String(format_duration(d))),
            );
        }
    }
    for kv in &args.set {
        let (k, v) = parse_kv(kv)?;
        if k == "profile" {
            bail!("--set profile=…: use --profile, which resets the other knobs");
        }
        patch.insert(k, v);
    }
    cfg = cfg.patched(&Value::Object(patch)).context("invalid knob")?;

    if let Some(path) = &args.fault_file {
        faults.extend(faults_from_toml(&read(path)?).with_context(|| format!("{}", path.display()))?);
    }
    for f in &args.faults {
        faults.push(FaultRule::from_toml(f).with_context(|| format!("--fault {f:?}"))?);
    }
    for u in &args.users {
        let (name, password) = u
            .split_once(':')
            .with_context(|| format!("--user {u:?}: expected NAME:PASSWORD"))?;
        users.push((name.to_owned(), password.to_owned()));
    }

    let mut builder = MockHomeserver::builder()
        .config(cfg)
        .bind(SocketAddr::new(args.bind, args.port))
        .trace_window(args.trace_window);
    if let Some(dir) = &args.trace_spill {
        builder = builder.trace_spill(dir, args.trace_spill_file_mib.saturating_mul(1 << 20));
    }
    if args.no_default_user {
        builder = builder.no_default_user();
    }
    for (n, p) in users {
        builder = builder.user(&n, &p);
    }
    for f in faults {
        builder = builder.fault(f);
    }
    if let Some(t) = &args.control_token {
        builder = builder.control_access(ControlAccess::Token(t.clone()));
    }
    Ok(builder)
}

/// Every knob as a TOML line that `--config` reads back; unset knobs are shown as comments.
pub fn knobs_toml(cfg: &ServerConfig) -> anyhow::Result<String> {
    let Value::Object(fields) = serde_json::to_value(cfg)? else {
        bail!("the config did not serialise to an object");
    };
    let mut out = String::new();
    for (key, value) in fields {
        let line = match value {
            Value::Null if key.ends_with("lifetime") => format!("{key} = \"none\""),
            Value::Null => format!("# {key} is unset"),
            other => format!("{key} = {}", toml::Value::try_from(other)?),
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(|| "none".to_owned(), format_duration)
}

/// Runs `rotary serve` until Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let builder = build_server(&args)?;
    if args.list_knobs {
        print!("{}", knobs_toml(&builder.start_config())?);
        return Ok(());
    }
    let server = builder
        .start()
        .await
        .context("cannot start the mock homeserver")?;
    let cfg = server.config();
    let url = server.url();
    println!("Rotary mock homeserver listening on {url}");
    println!("  profile:  {} — {}", cfg.profile, cfg.profile.summary());
    println!(
        "  lifetimes: refreshable access {}, refresh {}, non-refreshable access {}, session {}",
        show(cfg.refreshable_access_token_lifetime),
        show(cfg.refresh_token_lifetime),
        show(cfg.nonrefreshable_access_token_lifetime),
        show(cfg.session_lifetime),
    );
    let mut users: Vec<String> = Vec::new();
    if !args.no_default_user {
        users.push("alice / wonderland".to_owned());
    }
    users.extend(args.users.iter().map(|u| u.replacen(':', " / ", 1)));
    println!(
        "  users:    {}",
        if users.is_empty() {
            "none (add some with POST /_rotary/users)".to_owned()
        } else {
            users.join(", ")
        }
    );
    let faults = server.faults();
    if !faults.is_empty() {
        println!("  faults:   {} rule(s); see {url}/_rotary/faults", faults.len());
    }
    let control = if args.control_token.is_some() {
        "loopback, or others with the control token"
    } else {
        "loopback clients only"
    };
    println!("  control:  {url}/_rotary ({control})");
    println!("Try:");
    println!(
        "  curl -s -X POST {url}/_matrix/client/v3/login -d '{{\"type\":\"m.login.password\",\"identifier\":{{\"type\":\"m.id.user\",\"user\":\"alice\"}},\"password\":\"wonderland\",\"refresh_token\":true}}'"
    );
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    println!("stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["rotary", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_profile_and_file() {
        let dir = std::env::temp_dir().join(format!("rotary-serve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rotary.toml");
        std::fs::write(
            &file,
            "profile = \"mas\"\nrefresh_token_lifetime = \"1h\"\n[[fault]]\nendpoint = \"refresh\"\naction = { kind = \"hang\" }\n[[user]]\nname = \"bob\"\npassword = \"pw\"\n",
        )
        .unwrap();
        let args = serve_args(&[
            "--config",
            file.to_str().unwrap(),
            "--refreshable-access-token-lifetime",
            "3s",
            "--session-lifetime",
            "none",
            "--set",
            "rotate_refresh_tokens=false",
            "--fault",
            "endpoint = \"whoami\", first = 2, action = { kind = \"reset\" }",
        ]);
        let cfg = build_server(&args).unwrap().start_config();
        assert_eq!(cfg.profile, Profile::Mas);
        assert_eq!(
            cfg.refreshable_access_token_lifetime,
            Some(Duration::from_secs(3))
        );
        assert_eq!(cfg.refresh_token_lifetime, Some(Duration::from_secs(3600)));
        assert!(!cfg.rotate_refresh_tokens);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Cli::try_parse_from(["rotary", "serve", "--refresh-token-lifetime", "soon"]).is_err());
        assert!(Cli::try_parse_from(["rotary", "serve", "--profile", "dendrite"]).is_err());
        let err = build_server(&serve_args(&["--set", "no_such_knob=1"])).unwrap_err();
        assert!(format!("{err:#}").contains("no_such_knob"), "{err:#}");
        let err = build_server(&serve_args(&["--fault", "action = { kind = \"explode\" }"])).unwrap_err();
        assert!(format!("{err:#}").contains("explode"), "{err:#}");
        assert!(build_server(&serve_args(&["--user", "nocolon"])).is_err());
        assert!(build_server(&serve_args(&["--config", "/nonexistent/rotary.toml"])).is_err());
    }

    #[test]
    fn set_values_are_toml_with_bare_words_as_strings() {
        assert_eq!(
            parse_kv("reuse_policy=single-use").unwrap().1,
            Value::String("single-use".into())
        );
        assert_eq!(
            parse_kv("rotate-refresh-tokens=false").unwrap(),
            ("rotate_refresh_tokens".into(), Value::Bool(false))
        );
        assert!(parse_kv("nokey").is_err());
    }

    #[test]
    fn listed_knobs_read_back_as_the_same_config() {
        for profile in Profile::ALL {
            let cfg = ServerConfig::for_profile(profile);
            let text = knobs_toml(&cfg).unwrap();
            assert_eq!(ServerConfig::from_toml(&text).unwrap(), cfg, "{text}");
        }
    }
}
