//! The `--json` report: the whole [`RunReport`] as one JSON document.
//!
//! # Schema (version 1)
//!
//! The schema only grows: fields are added, never renamed or removed, and `schema` changes only if
//! a field ever had to change meaning. Tools should ignore fields they do not know. Times are
//! integers in milliseconds. Tokens never appear: only their labels (`at#3` is the third access
//! token the server issued, `rt#2` the second refresh token; `at#?`/`rt#?` a token it never
//! issued; `-` none).
//!
//! ## Top level
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | integer | `1` |
//! | `rotary_version` | string | version of the `rotary` that ran |
//! | `started_at` | string | start of the run, RFC 3339 (UTC) |
//! | `driver` | object | the client under test, see below |
//! | `summary` | object | verdict counts, see below |
//! | `scenarios` | array | one object per selected scenario, in catalogue order |
//!
//! ## `driver`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `name`, `version` | string | as the driver's `initialize` answer gave them |
//! | `capabilities` | array of strings | what it declared (`login`, `parallel`, `legacy-refresh`, …) |
//! | `command` | string | the command line that started it |
//!
//! ## `summary`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `total` | integer | scenarios run, skipped ones included |
//! | `pass`, `fail`, `non_strict`, `info`, `skipped`, `error`, `timeout` | integer | scenarios per verdict |
//! | `expected_failures` | integer | scenarios listed in `--expect` that failed, as expected |
//! | `unexpected_passes` | integer | scenarios listed in `--expect` that passed |
//! | `ok` | boolean | the exit code's rule: every non-skipped `must` scenario passed or failed as expected |
//! | `duration_ms` | integer | wall time of the run |
//! | `repeat` | integer, optional | with `--repeat N` (N > 1): N, the runs per scenario |
//! | `flaky` | integer, optional | with `--repeat N` (N > 1): scenarios whose runs were mixed (verdict `flaky`) |
//! | `unmarked_flaky` | integer, optional | with `--repeat N` (N > 1): scenarios listed in `--expect` without `flaky` that passed in some runs |
//!
//! `warnings` (top level, array of strings, left out when empty): with `--repeat N`, what the
//! runs say the `--expect` file got wrong — a flaky entry that never failed, a plain entry that
//! sometimes passed.
//!
//! ## `scenarios[]`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `id` | string | stable id (`concurrency.single-refresh`); the prefix before the first `.` is its group |
//! | `title` | string | one line |
//! | `level` | string | `must`, `should` or `info` |
//! | `tags` | array of strings | |
//! | `requirement` | string | the spec sentence or behaviour being checked |
//! | `references` | array of strings | spec sections, MSCs, SDK issues (some are URLs) |
//! | `verdict` | string | `pass`, `fail` (a `must` check failed), `non-strict` (a `should` check failed), `info`, `skipped` (a capability is missing), `error` (the driver crashed or broke the protocol), `timeout`; with `--repeat N`, `flaky` (some runs failed, some did not) |
//! | `expected_failure` | boolean | listed in `--expect` |
//! | `expected_flaky` | boolean, optional | listed in `--expect` as flaky (`# flaky: why`); left out when false |
//! | `message` | string, optional | for `error`, `timeout`, `skipped`: what happened, naming the step |
//! | `duration_ms` | integer | wall time of the scenario |
//! | `waited_ms` | integer | of which spent in `sleep` steps |
//! | `server` | object | the server's profile and every knob it ran with |
//! | `checks` | array | the `[[expect]]` results in file order, see below (empty when the scenario did not get that far) |
//! | `steps` | array | the steps as they ran, see below |
//! | `trace` | array | every request the server saw, see below |
//! | `notifications` | array | what the driver notified, see below |
//! | `stderr` | string | the driver's stderr (last 64 KiB per process, tokens replaced by labels) |
//! | `facts` | object of strings, optional | extra facts, e.g. `"driver_exit": "signal 9"` |
//! | `runs`, `passes` | integer, optional | with `--repeat N` (N > 1): runs, and runs that did not fail (`pass`, or `info`/`skipped` for such scenarios) |
//! | `pass_rate` | number, optional | `passes / runs`, rounded to 3 decimals |
//! | `verdicts` | object of integers, optional | runs per verdict name, e.g. `{"fail": 1, "pass": 2}` |
//! | `evidence_run` | integer, optional | the 1-based run whose checks, steps, trace, … the entry holds: the first failing run, else run 1 |
//!
//! ### `checks[]`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `check` | string | the check's name in the scenario file (`refresh_count`, `no_logout`, …) |
//! | `description` | string | what it demands, in words |
//! | `passed` | boolean | whether it held (for `info` scenarios: shown, not judged) |
//! | `expected`, `actual` | string | what was expected and what happened |
//! | `evidence` | array of integers | `seq` of the trace entries that prove the result |
//!
//! ### `steps[]`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `index` | integer | 1-based position in the scenario |
//! | `name` | string, optional | the step's name, if it has one |
//! | `action` | string | `login`, `whoami`, `parallel`, `advance_clock`, `expire_access_tokens`, … |
//! | `summary` | string | its parameters in short (`count=5 op=whoami`) |
//! | `started_ms`, `ended_ms` | integer | real ms since the scenario's server started (the trace's `real_ms` scale) |
//! | `trace_from`, `trace_to` | integer | the requests with `trace_from < seq <= trace_to` arrived while the step ran |
//! | `outcome` | object | tagged by `status`: `{"status": "ok", "result": …}`, `{"status": "failed", "error": {"kind", "message", "status"?, "errcode"?}}`, `{"status": "parallel", "results": [outcome, …]}` or `{"status": "aborted", "reason"}` |
//!
//! ### `trace[]`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `seq` | integer | arrival order, from 1 |
//! | `t_ms` | integer | arrival on the server clock, ms since the server started (includes clock advances) |
//! | `real_ms` | integer | arrival in real ms since the server started |
//! | `endpoint` | string | `login`, `refresh`, `whoami`, `sync`, … (`unknown` for paths the server does not know) |
//! | `method`, `path` | string | the request (an `access_token` query parameter is hidden) |
//! | `status` | integer or null | the HTTP status produced; null when none was (hang, reset, garbage) |
//! | `errcode` | string or null | the Matrix `errcode` of an error response |
//! | `soft_logout` | boolean or null | the `soft_logout` flag of an error response |
//! | `access_token` | object | `{"label", "state"}`, state one of `valid`, `expired`, `revoked`, `unknown`, `missing` |
//! | `refresh_token` | object or null | on a refresh: `{"label", "state"}`, state one of `current`, `previous-unused`, `consumed`, `expired`, `revoked`, `unknown` |
//! | `user_id`, `device_id` | string or null | whose token it was |
//! | `issued` | object or null | `{"access_token", "refresh_token", "expires_in_ms", "expires_at_ms"}`: labels the response issued; `expires_at_ms` is on the `t_ms` scale |
//! | `fault` | object or null | the fault rule that fired: `{"id", "name", "action"}` (`commit_then_drop`, `status`, `reset`, …) |
//! | `delivery` | string | `sent`, `dropped` (performed, then the connection closed), `reset`, `empty`, `garbage`, `truncated`, `pending` (still running at the end), `abandoned` (the client hung up first) |
//! | `flags` | object | relevant request fields, e.g. `{"refresh_token": true}` on a login |
//! | `duration_ms` | integer or null | real time from arrival to the end of handling |
//! | `done_seq` | integer or null | how many requests had arrived when this one finished: a request with a greater `seq` was sent after this response existed |
//!
//! ### `notifications[]`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `at_ms` | integer | arrival, real ms since the server started (same scale as `real_ms`) |
//! | `step` | integer | the step running then (0: start-up) |
//! | `trace_len` | integer | how many requests the trace held then |
//! | `method` | string | `session_changed`, `logged_out`, `log`, or whatever the driver sent |
//! | `params` | object | its params, tokens replaced by labels (`{"access_token": "at#2", "refresh_token": "rt#2"}`, `{"soft_logout": true}`) |

use crate::record::RunReport;
use std::io::Write;
use std::path::Path;

/// The report as a JSON value (see the module documentation for the schema).
pub fn to_json(run: &RunReport) -> serde_json::Value {
    serde_json::to_value(run)
        .unwrap_or_else(|e| serde_json::json!({ "schema": run.schema, "error": e.to_string() }))
}

/// Writes the report, pretty-printed, to `path`, creating its parent directories.
pub fn write_json(run: &RunReport, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut w, run).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}
