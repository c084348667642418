//! The `rotary` command line: subcommands and their help.

use crate::commands::audit::AuditArgs;
use crate::commands::explain::ExplainArgs;
use crate::commands::list::ListArgs;
use crate::commands::proxy::ProxyArgs;
use crate::commands::run::RunArgs;
use crate::commands::serve::ServeArgs;
use crate::commands::soak::SoakArgs;
use clap::{Parser, Subcommand};

/// Rotary: a mock Matrix homeserver and conformance harness for access-token refresh.
#[derive(Debug, Parser)]
#[command(
    name = "rotary",
    version,
    about = "Rotary: a mock Matrix homeserver and conformance harness for access-token refresh",
    long_about = "Rotary: a mock Matrix homeserver and conformance harness for access-token refresh.\n\n\
        `rotary run` runs the scenario catalogue against a client (the bundled reference client by\n\
        default, or yours through `--driver`) and reports pass/fail with the evidence.\n\
        `rotary list` and `rotary explain ID` show the catalogue.\n\
        `rotary serve` runs the homeserver alone: Synapse (or the spec, or MAS) with short token\n\
        lifetimes, fault injection, a control API at /_rotary and a trace of every request.\n\
        `rotary proxy --upstream URL` puts the same faults and live judgement in front of a real\n\
        homeserver, for rollout testing with real apps.\n\
        `rotary audit --homeserver URL` probes how a real server refreshes and writes a config that\n\
        makes the mock behave the same.\n\
        See `rotary <command> --help`, the README and docs/.",
    propagate_version = true
)]
pub struct Cli {
    /// More logging (-v: each request, -vv: everything). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scenario catalogue against a client and report (default: the reference client).
    #[command(long_about = RUN_HELP)]
    Run(RunArgs),
    /// List the catalogue (`--json` for tools), or the scenario language (`--checks`, `--steps`).
    List(ListArgs),
    /// Show one scenario: requirement, references, server, faults, steps and checks.
    Explain(ExplainArgs),
    /// Run the mock homeserver (default: 127.0.0.1:8008, Synapse profile, user alice/wonderland).
    #[command(long_about = SERVE_HELP)]
    Serve(ServeArgs),
    /// A fault-injecting, watching reverse proxy in front of a real homeserver (rollout testing).
    #[command(long_about = PROXY_HELP)]
    Proxy(ProxyArgs),
    /// Audit how a deployed homeserver refreshes: which profile it matches, a config that mimics it.
    #[command(long_about = AUDIT_HELP)]
    Audit(AuditArgs),
    /// Soak: many sessions for a long time, faults on a seeded schedule, thresholds as the gate.
    #[command(long_about = SOAK_HELP)]
    Soak(SoakArgs),
    /// The bundled reference client's driver on stdin/stdout (what `rotary run` starts by default).
    #[command(hide = true)]
    ReferenceDriver(rotary_reference::DriverOptions),
}

const RUN_HELP: &str = "Run the scenario catalogue against a client and report.

Each scenario gets a fresh mock homeserver on an ephemeral port and a fresh driver process; the
driver speaks Rotary's driver protocol (JSON-RPC on stdin/stdout, see docs/protocol.md). Without
`--driver` the bundled reference client is used, so this works on a fresh clone.

Verdicts: pass, fail (a `must` check failed), non-strict (a `should` check failed), info,
skipped (the driver lacks a capability), error (the driver crashed or broke the protocol),
timeout; with `--repeat N`, flaky (some runs failed, some did not). Exit code: 0 when every
non-skipped `must` scenario passed (or failed as `--expect` said), 1 otherwise, 2 on a usage or
catalogue error.

Examples:
  rotary run                                   # everything, reference client
  rotary run 'concurrency.*' 'faults.refresh-5*' # a selection (ids and tags narrow each other)
  rotary run --bug refresh-per-401             # the reference client with one of its bugs
  rotary run --driver 'node my-driver.js' --expect known-failures.txt --json out.json --html report/
  rotary run --partition 2/4 --junit junit.xml # shard 2 of 4 for a CI matrix
  rotary run --repeat 10 --json out.json       # each scenario 10 times: pass rates, flaky ones";

const PROXY_HELP: &str = "A reverse proxy in front of a real homeserver, for rollout testing.

Point your real app build (or a driver, or a soak) at the proxy instead of the homeserver. It
forwards every request to --upstream (streaming both ways: sync long-polls, media), learns each
session's tokens from the login, register, refresh and OAuth token answers (labels at#N / rt#N,
never the raw tokens), injects the catalogue's faults (the `rotary serve --fault` language, the
same actions: commit_then_drop lets the upstream rotate and then drops the client's connection),
and judges every session live with the invariants `rotary run` reports (`rotary list --checks`
shows the catalogue's checks; docs/rollout.md the invariants): no single flight, a stale refresh
or access token, a logout after a transient failure, a refresh loop, a new transaction id on a
retried send, an expired token used.

Discovery is rewritten so clients stay behind the proxy: /.well-known/matrix/client answers the
proxy's URL, OAuth metadata endpoints point through it. It forwards only to the upstream (and to
origins the upstream's own metadata names): never an open proxy.

Control API on the same port, loopback only unless --control-token: /_rotary/faults (add and
remove rules live), /_rotary/trace, /_rotary/sessions, /_rotary/violations, /_rotary/reset, and
Prometheus text at /_rotary/metrics.

Stops on Ctrl-C, SIGTERM or --duration, prints the counts, and writes --report DIR (report.json,
index.html with violations first and a timeline per session; the trace is streamed to
DIR/trace/*.ndjson while it runs). Exit code: 0 no `must` invariant violated, 1 one was, 2 usage
error (bad --upstream, fault rule, certificate).

Examples:
  rotary proxy --upstream http://127.0.0.1:8008
  rotary proxy --upstream https://staging.example.org --listen 0.0.0.0:8443 \\
      --tls-cert cert.pem --tls-key key.pem --report proxy-report/
  rotary proxy --upstream http://127.0.0.1:8008 --duration 10m \\
      --fault 'endpoint = \"refresh\", probability = 0.2, seed = 1, action = { kind = \"commit_then_drop\" }'
  curl -s 127.0.0.1:8009/_rotary/metrics";

const SERVE_HELP: &str = "Run the mock homeserver until Ctrl-C.

It behaves like Synapse 1.163 by default (profile `synapse`): refresh tokens on request, 5 minute
access tokens, the old refresh token valid until the new pair is used. Every knob of a profile can be
changed with a flag, `--set KNOB=VALUE`, or a TOML file (`--config`). Faults are injected with
`--fault` (inline TOML) or `--faults FILE`, and at run time through the control API at /_rotary.

Examples:
  rotary serve
  rotary serve --profile mas --refreshable-access-token-lifetime 3s
  rotary serve --set rotate_refresh_tokens=false --set refresh_failure_soft_logout=true
  rotary serve --fault 'endpoint = \"refresh\", nth = 1, action = { kind = \"commit_then_drop\" }'
  rotary serve --config rotary.toml --port 0";

const AUDIT_HELP: &str = "Audit how a deployed homeserver really refreshes access tokens.

Runs a fixed probe of about 17 steps (25 requests against Synapse; docs/audit.md lists them):
/versions and auth_metadata, login (or --register) with refresh_token: true, /refresh at each path
version, rotation, the old access token before and after the new one is used, the old refresh
token again before and after its successor is used, an expired token (only when the announced
lifetime is within --max-wait; otherwise the row says skipped), refresh after expiry, the tokens
after logout and (with --register) after logout/all. It honours 429 retry_after_ms (bounded),
creates at most two devices and logs every one out at the end, also on an error or Ctrl-C. With
--user it never calls logout/all: the user's other sessions survive.

The same probe then runs against Rotary's mock once per profile (synapse, spec, mas, no-refresh,
oauth-spec), so each prediction column is what the mock really answers. The table shows the
observed value per behaviour, `=` where a profile predicts the same, and the spec's verdict (a
broken `must` is flagged); then `matches profile X`, or the closest profile, the differences
and the knobs (at most 4) that make the mock reproduce the server.

--json FILE writes the raw observations (tokens as labels at0, rt0, never the tokens), the
predictions, `profile` (or `closest_profile` and `differences`) and every request.
--profile-out FILE writes the server config (the TOML `rotary serve --config` reads) that
reproduces the observation: `rotary run --server-config FILE` then runs the whole catalogue
against a mock that behaves like your server.

Exit code: 0 when the audit ran (whatever it found), 2 when it could not (unreachable, TLS error,
wrong password, registration closed, not a Matrix server, still rate-limited): a one-line error
naming the step.

Examples:
  rotary audit --homeserver https://staging.example.org --register --json audit.json \\
      --profile-out staging.toml
  rotary audit --homeserver https://staging.example.org --user qa-bot --password \"$PW\" --max-wait 5m
  rotary run --server-config staging.toml      # the catalogue against a mock like staging
  rotary serve --config staging.toml           # the mock alone, behaving like staging";

const SOAK_HELP: &str =
    "Soak: many sessions against the embedded mock homeserver (or a real one) for a long time.

Simulated sessions (the reference client doing what an app does: a sync loop, sends, whoamis,
bursts, preemptive refresh) and, with --driver, real driver processes run through a seeded
schedule of phases: ramp-up, steady, chaos (refresh 500/429, lost responses), a server clock jump
past every expiry, a suspension of a share of the sessions, recovery. The trace is judged live
with the same invariants as `rotary run`, plus end-to-end ones: every message seen exactly once
by sync, no session lost without a definitive refusal, a bounded refresh rate, flat memory.

With --upstream URL the fleet goes through Rotary's proxy (as `rotary proxy`) in front of a real
homeserver: the schedule's faults are injected by the proxy, the trace is the proxy's, users are
registered with dummy auth (rotary-soak-<tag>-N; or taken from --accounts FILE) and every device
they left is logged out at the end. The server's clock cannot be moved: clock jumps are skipped
and the report says so. Set --access-token-lifetime to the server's lifetime (Synapse:
refreshable_access_token_lifetime) so that the schedule and the refresh-loop bound scale to it.

Exit code: 0 when every threshold held, 1 when one failed, 2 on a usage error.

Examples:
  rotary soak --sessions 20 --duration 30s
  rotary soak --bug refresh-per-401 --bug-share 0.2
  rotary soak --sessions 0 --driver 'node driver.mjs' --drivers 10 --duration 5m
  rotary soak --threshold 'refresh.p99 < 50ms' --report soak-report/
  rotary soak --print-schedule > my-schedule.toml
  rotary soak --upstream http://127.0.0.1:8008 --access-token-lifetime 5m --duration 2h";
