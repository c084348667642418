//! The terminal report: a progress bar during the run, then the failures with their evidence and
//! one summary line.

use super::text::{clean, human_ms, plural, serde_name, tail_lines};
use crate::record::{RunReport, ScenarioReport, Verdict};
use crate::repeat::rate_text;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rotary_server::{AccessState, Delivery, TraceEntry};
use std::collections::HashMap;
use std::io::IsTerminal;

/// Trace lines shown per failed check before `…and N more`.
const MAX_EVIDENCE_LINES: usize = 12;
/// Lines of the driver's stderr shown for an error or a timeout.
const STDERR_TAIL: usize = 10;
/// Requests shown for an error or a timeout that no check points at.
const LAST_REQUESTS: usize = 5;
/// Skipped scenario ids listed by name.
const MAX_SKIPPED_IDS: usize = 10;

/// A progress bar on stderr, one tick per finished scenario.
///
/// Hidden when disabled or when stderr is not a terminal, so logs and CI output stay clean.
/// It can be shared between threads (`Arc<Progress>`).
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` scenarios; `enabled = false` (e.g. `--no-progress`) hides it.
    pub fn new(total: usize, enabled: bool) -> Progress {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// Counts one finished scenario and shows `<id> <verdict>`.
    pub fn scenario_done(&self, r: &ScenarioReport) {
        self.bar.inc(1);
        self.bar.set_message(format!("{} {}", r.id, r.verdict));
    }

    /// Prints a line above the bar (or to stderr when the bar is hidden).
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// One compact line for a trace entry, shared by every report:
///
/// `#7 +1203ms refresh POST rt#1(consumed) → 401 M_UNKNOWN_TOKEN [fault commit_then_drop]
/// delivery=dropped issued at#3/rt#3 (12ms)`
///
/// `+1203ms` is real time since the server started; when the server clock was advanced the
/// offset follows as `[clock +6 min]`. Tokens appear as labels with their state on arrival; a
/// request without a response reads `→ no response`; `delivery=` appears only when the response
/// was not simply sent.
pub fn trace_line(e: &TraceEntry) -> String {
    let mut s = format!(
        "#{} +{}ms {} {}",
        e.seq,
        e.real_ms,
        clean(&e.endpoint),
        clean(&e.method)
    );
    let offset = e.t_ms - e.real_ms;
    if offset.abs() >= 1_000 {
        let sign = if offset > 0 { "+" } else { "" };
        s.push_str(&format!(" [clock {sign}{}]", human_ms(offset)));
    }
    if e.access_token.state != AccessState::Missing {
        s.push_str(&format!(
            " {}({})",
            clean(&e.access_token.label),
            serde_name(&e.access_token.state)
        ));
    }
    if let Some(rt) = &e.refresh_token {
        s.push_str(&format!(" {}({})", clean(&rt.label), serde_name(&rt.state)));
    }
    match e.status {
        Some(st) => s.push_str(&format!(" → {st}")),
        None => s.push_str(" → no response"),
    }
    if let Some(code) = &e.errcode {
        s.push_str(&format!(" {}", clean(code)));
    }
    if let Some(soft) = e.soft_logout {
        s.push_str(&format!(" soft_logout={soft}"));
    }
    if let Some(f) = &e.fault {
        match &f.name {
            Some(n) => s.push_str(&format!(" [fault {}: {}]", clean(n), clean(&f.action))),
            None => s.push_str(&format!(" [fault {}]", clean(&f.action))),
        }
    }
    if e.delivery != Delivery::Sent {
        s.push_str(&format!(" delivery={}", serde_name(&e.delivery)));
    }
    if let Some(i) = &e.issued {
        match (&i.access_token, &i.refresh_token) {
            (Some(a), Some(r)) => s.push_str(&format!(" issued {}/{}", clean(a), clean(r))),
            (Some(a), None) => s.push_str(&format!(" issued {}", clean(a))),
            (None, Some(r)) => s.push_str(&format!(" issued {}", clean(r))),
            (None, None) => {}
        }
    }
    if let Some(d) = e.duration_ms {
        s.push_str(&format!(" ({d}ms)"));
    }
    s
}

/// ANSI styling, or none.
struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\u{1b}[{code}m{s}\u{1b}[0m")
        } else {
            s.to_owned()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn verdict(&self, v: Verdict, s: &str) -> String {
        match v {
            Verdict::Fail => self.paint("1;31", s),
            Verdict::NonStrict => self.paint("1;33", s),
            Verdict::Error | Verdict::Timeout => self.paint("1;35", s),
            Verdict::Flaky => self.paint("1;33", s),
            Verdict::Pass => self.paint("1;32", s),
            Verdict::Info => self.paint("1;34", s),
            Verdict::Skipped => self.dim(s),
        }
    }
}

/// The failures of a run, for people: per failed scenario a header `✗ <id> — <verdict>
/// (<level>)`, its title, its message, each failed check with what was expected and what
/// happened and the trace lines that prove it (at most 12 per check), and for an error or a
/// timeout the last requests and the tail of the driver's stderr. Then one line per expected
/// failure and per unexpected pass, and the skipped ids. Empty when there is nothing to say.
///
/// With `--repeat N` (N > 1) a header adds the runs that passed and which run's evidence is
/// shown (`✗ <id> — flaky (must): passed 7 of 10 runs; evidence from run 2`), an expected
/// failure its rate, and an `--expect` entry that the runs contradict gets a `!` line: a flaky
/// entry that never failed, a plain entry that passed in some runs.
///
/// `color` adds ANSI colours.
pub fn render_failures(run: &RunReport, color: bool) -> String {
    let st = Style { on: color };
    let mut out = String::new();
    let mut expected = Vec::new();
    let mut unexpected_passes = Vec::new();
    let mut skipped = Vec::new();
    for r in &run.scenarios {
        let failed = r.verdict.is_failure();
        if r.expected_failure && failed {
            expected.push(r);
        } else if r.expected_failure && r.verdict == Verdict::Pass {
            unexpected_passes.push(r);
        } else if failed {
            render_scenario(&mut out, r, &st);
        } else if r.verdict == Verdict::Skipped {
            skipped.push(r);
        }
    }
    let one_liners = !expected.is_empty() || !unexpected_passes.is_empty() || !skipped.is_empty();
    for r in expected {
        let rate = rate_text(r).map(|t| format!(" {t}")).unwrap_or_default();
        let how = if r.expected_flaky { " as flaky" } else { "" };
        out.push_str(&format!(
            "{} {} — expected failure ({}{rate}, listed in --expect{how})\n",
            st.dim("•"),
            r.id,
            r.verdict
        ));
        if r.verdict == Verdict::Flaky
            && !r.expected_flaky
            && let Some(p) = &r.repeat
        {
            out.push_str(&format!(
                "{} {} — listed in --expect as a known failure, but it passed in {} of {} runs; mark it flaky (`# flaky: why`)\n",
                st.yellow("!"),
                r.id,
                p.passes,
                p.runs
            ));
        }
    }
    for r in unexpected_passes {
        let line = match (&r.repeat, r.expected_flaky) {
            (Some(p), true) => format!(
                "unexpected pass: listed as flaky in --expect, but it never failed in {} runs; remove it from the list",
                p.runs
            ),
            (None, true) => "unexpected pass: listed as flaky in --expect, and it passed; `--repeat N` shows whether it still fails sometimes".to_owned(),
            (Some(p), false) => format!(
                "unexpected pass: listed in --expect as a known failure, but it passed all {} runs; remove it from the list",
                p.runs
            ),
            (None, false) => "unexpected pass: listed in --expect as a known failure, but it passed; remove it from the list".to_owned(),
        };
        out.push_str(&format!("{} {} — {line}\n", st.yellow("!"), r.id));
    }
    if !skipped.is_empty() {
        let ids: Vec<&str> = skipped
            .iter()
            .take(MAX_SKIPPED_IDS)
            .map(|r| r.id.as_str())
            .collect();
        let more = skipped.len().saturating_sub(MAX_SKIPPED_IDS);
        let more = if more > 0 {
            format!(" …and {more} more")
        } else {
            String::new()
        };
        out.push_str(&st.dim(&format!(
            "○ {} (the driver lacks a capability they need): {}{more}\n",
            plural(skipped.len(), "scenario skipped", "scenarios skipped"),
            ids.join(", ")
        )));
        out.push('\n');
    }
    if one_liners {
        out.push('\n');
    }
    out
}

fn render_scenario(out: &mut String, r: &ScenarioReport, st: &Style) {
    let mut header = format!("✗ {} — {} ({})", r.id, r.verdict, r.level.name());
    if let Some(p) = &r.repeat {
        header.push_str(&format!(
            ": passed {} of {} runs; evidence from run {}",
            p.passes, p.runs, p.evidence_run
        ));
    }
    out.push_str(&st.verdict(r.verdict, &header));
    out.push('\n');
    out.push_str(&format!("  {}\n", clean(&r.title)));
    if let Some(m) = &r.message {
        for line in clean(m).lines() {
            out.push_str(&format!("  {}\n", st.bold(line)));
        }
    }
    let by_seq: HashMap<u64, &TraceEntry> = r.trace.iter().map(|e| (e.seq, e)).collect();
    let mut any_evidence = false;
    for c in r.failed_checks() {
        out.push_str(&format!(
            "  {}: {}\n",
            st.bold(&clean(&c.check)),
            clean(&c.description)
        ));
        out.push_str(&format!("    expected: {}\n", st.green(&clean(&c.expected))));
        out.push_str(&format!("    actual:   {}\n", st.red(&clean(&c.actual))));
        if !c.evidence.is_empty() {
            any_evidence = true;
            out.push_str("    trace:\n");
            for seq in c.evidence.iter().take(MAX_EVIDENCE_LINES) {
                let line = match by_seq.get(seq) {
                    Some(e) => trace_line(e),
                    None => format!("#{seq} (not in the trace)"),
                };
                out.push_str(&format!("      {}\n", st.dim(&line)));
            }
            if c.evidence.len() > MAX_EVIDENCE_LINES {
                out.push_str(&format!(
                    "      …and {} more\n",
                    c.evidence.len() - MAX_EVIDENCE_LINES
                ));
            }
        }
    }
    if matches!(r.verdict, Verdict::Error | Verdict::Timeout) {
        for (k, v) in &r.facts {
            out.push_str(&format!("  {}: {}\n", clean(k), clean(v)));
        }
        if !any_evidence && !r.trace.is_empty() {
            let skip = r.trace.len().saturating_sub(LAST_REQUESTS);
            let title = if skip > 0 {
                format!("last {} of {} requests:", LAST_REQUESTS, r.trace.len())
            } else {
                "requests:".to_owned()
            };
            out.push_str(&format!("  {title}\n"));
            for e in &r.trace[skip..] {
                out.push_str(&format!("    {}\n", st.dim(&trace_line(e))));
            }
        }
        let (tail, before) = tail_lines(&r.stderr, STDERR_TAIL);
        if !tail.is_empty() {
            if before > 0 {
                out.push_str(&format!("  driver stderr (last {} lines):\n", tail.len()));
            } else {
                out.push_str("  driver stderr:\n");
            }
            for line in tail {
                out.push_str(&format!("    {} {}\n", st.dim("|"), line));
            }
        }
    }
    out.push('\n');
}

/// One line for the end of a run:
///
/// `42 scenarios: 38 pass, 1 fail, 1 non-strict, 2 info, 0 skipped, 0 error, 0 timeout
/// (2 expected failures, 1 unexpected pass) in 12.3 s — OK`
///
/// The parenthesis appears only when `--expect` mattered; the verdict at the end is `OK` or
/// `FAILED`, the exit code's rule ([`Summary::ok`](crate::Summary)). With `--repeat N` (N > 1)
/// the count reads `42 scenarios × 10 runs` and `, 3 flaky` follows the timeouts.
pub fn summary_line(run: &RunReport) -> String {
    let s = &run.summary;
    let runs = s.repeat.map(|n| format!(" × {n} runs")).unwrap_or_default();
    let mut line = format!(
        "{}{runs}: {} pass, {} fail, {} non-strict, {} info, {} skipped, {} error, {} timeout",
        plural(s.total, "scenario", "scenarios"),
        s.pass,
        s.fail,
        s.non_strict,
        s.info,
        s.skipped,
        s.error,
        s.timeout
    );
    if let Some(f) = s.flaky {
        line.push_str(&format!(", {f} flaky"));
    }
    let mut extra = Vec::new();
    if s.expected_failures > 0 {
        extra.push(plural(
            s.expected_failures,
            "expected failure",
            "expected failures",
        ));
    }
    if s.unexpected_passes > 0 {
        extra.push(plural(
            s.unexpected_passes,
            "unexpected pass",
            "unexpected passes",
        ));
    }
    if let Some(n) = s.unmarked_flaky.filter(|n| *n > 0) {
        extra.push(format!("{n} not marked flaky in --expect"));
    }
    if !extra.is_empty() {
        line.push_str(&format!(" ({})", extra.join(", ")));
    }
    let tenths = (s.duration_ms + 50) / 100;
    line.push_str(&format!(" in {}.{} s", tenths / 10, tenths % 10));
    line.push_str(if s.ok { " — OK" } else { " — FAILED" });
    line
}
