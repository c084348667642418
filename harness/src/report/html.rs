//! The `--html` report: a directory with `index.html` (the run and the catalogue's verdicts) and
//! one page per scenario (its requirement, checks, timeline, steps, notifications, full trace
//! and the driver's stderr).
//!
//! Static HTML5 with one embedded style sheet: no script, no external resource, so the directory
//! can be archived as a CI artifact and opened anywhere. Every text is escaped.

use super::terminal::{summary_line, trace_line};
use super::text::{clean, esc, human_ms, plural, serde_name};
use super::timeline::timeline_svg;
use crate::record::{CheckResult, RunReport, ScenarioReport, StepOutcome, StepRecord, Verdict};
use rotary_server::{AccessState, TraceEntry};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

const CSS: &str = r#"
:root{--pass:#2b8a3e;--fail:#e03131;--ns:#e8590c;--info:#1c7ed6;--skip:#868e96;--err:#7048e8;--line:#dee2e6}
*{box-sizing:border-box}
body{margin:0;background:#f4f6f8;color:#212529;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1280px;margin:0 auto;padding:20px 24px 48px}
a{color:#1864ab}
h1{font-size:22px;margin:4px 0 2px}
h1.mono{font-size:22px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.sub{color:#495057;margin:0 0 10px}
.crumbs{font-size:13px;color:#495057}
.crumbs a{margin-right:10px}
code,pre,.mono,td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#212529;color:#f1f3f5;padding:12px 14px;border-radius:6px;overflow:auto;max-height:520px;white-space:pre-wrap;word-break:break-word}
pre.light{background:#fff;color:#212529;border:1px solid var(--line)}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5;font-weight:600;font-size:13px}
tr.group th{background:#e7ecf2;font-size:14px;padding-top:8px}
tr.evidence td{background:#fff0f0}
td.num{text-align:right;white-space:nowrap}
td.nowrap{white-space:nowrap}
table.trace td{font-size:12px;padding:2px 6px}
table.kv th{width:240px}
.v{display:inline-block;min-width:64px;text-align:center;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px;white-space:nowrap}
.v-pass{background:var(--pass)}.v-fail{background:var(--fail)}.v-non-strict{background:var(--ns)}
.v-info{background:var(--info)}.v-skipped{background:var(--skip)}.v-error,.v-timeout{background:var(--err)}
.v-expected{background:#adb5bd;color:#212529}.v-flaky{background:var(--ns)}
.rate{margin-left:.4em;font-variant-numeric:tabular-nums;color:#495057}
.ok{color:var(--pass);font-weight:700}.bad{color:var(--fail);font-weight:700}
.s2{color:var(--pass)}.s401{color:#e67700;font-weight:600}.sx{color:var(--fail);font-weight:600}.slost{color:var(--err);font-weight:600}
.cards{display:flex;gap:8px;flex-wrap:wrap;margin:12px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:6px 14px;min-width:92px}
.card b{display:block;font-size:22px;line-height:1.2}
.card.c-fail b{color:var(--fail)}.card.c-non-strict b{color:var(--ns)}.card.c-error b,.card.c-timeout b{color:var(--err)}
.card.c-flaky b{color:var(--ns)}.card.c-pass b{color:var(--pass)}.card.c-info b{color:var(--info)}.card.c-skipped b{color:var(--skip)}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;margin:10px 0}
.banner.ok{background:#ebfbee;border:1px solid #8ce99a}.banner.bad{background:#fff5f5;border:1px solid #ffa8a8}
.chip{display:inline-block;background:#e7f5ff;border:1px solid #a5d8ff;border-radius:10px;padding:0 8px;margin:1px 2px;font-size:12px}
.tag{display:inline-block;background:#f1f3f5;border-radius:8px;padding:0 6px;margin:1px;font-size:12px;color:#495057}
.msg{background:#fff9db;border:1px solid #ffe066;border-radius:6px;padding:8px 12px;white-space:pre-wrap}
.req{background:#fff;border-left:4px solid #74c0fc;padding:8px 12px;white-space:pre-wrap}
.timeline{background:#fff;border:1px solid var(--line);border-radius:6px;overflow-x:auto;padding:4px}
.timeline svg{display:block;width:100%;height:auto}
.scroll{overflow-x:auto}
small.path{color:#6c757d;word-break:break-all}
.note{color:#495057;font-size:13px}
nav.groups a{margin-right:12px}
"#;

/// The file name of a scenario's page: `<id>.html`, with any character outside `[A-Za-z0-9._-]`
/// replaced by `_` (ids never have one, but the name must stay inside the directory).
pub fn page_file_name(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') || s.eq_ignore_ascii_case("index") {
        s.insert_str(0, "s_");
    }
    s.push_str(".html");
    s
}

/// Unique page names for every scenario (a clash after sanitising gets a numeric suffix).
fn page_names(run: &RunReport) -> Vec<String> {
    let mut seen = HashSet::new();
    run.scenarios
        .iter()
        .map(|r| {
            let base = page_file_name(&r.id);
            let mut name = base.clone();
            let mut n = 2;
            while !seen.insert(name.to_ascii_lowercase()) {
                name = format!("{}-{n}.html", base.trim_end_matches(".html"));
                n += 1;
            }
            name
        })
        .collect()
}

/// Writes `index.html` and one page per scenario into `dir` (created if needed).
pub fn write_html(run: &RunReport, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let names = page_names(run);
    std::fs::write(dir.join("index.html"), index_page(run, &names))?;
    for (i, r) in run.scenarios.iter().enumerate() {
        let prev = i
            .checked_sub(1)
            .and_then(|p| run.scenarios.get(p).zip(names.get(p)));
        let next = run.scenarios.get(i + 1).zip(names.get(i + 1));
        let Some(name) = names.get(i) else { continue };
        std::fs::write(dir.join(name), scenario_page(run, r, prev, next))?;
    }
    Ok(())
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(title)
    )
}

const FOOT: &str = "</main>\n</body>\n</html>\n";

/// The verdict's badge, followed with `--repeat N` by the runs that passed (`7/10`).
fn verdict_badge(r: &ScenarioReport) -> String {
    let badge = verdict_badge_only(r);
    match &r.repeat {
        Some(p) => format!(
            r#"{badge}<span class="rate" title="passed {} of {} runs (pass rate {}); evidence from run {}">{}/{}</span>"#,
            p.passes, p.runs, p.pass_rate, p.evidence_run, p.passes, p.runs
        ),
        None => badge,
    }
}

fn verdict_badge_only(r: &ScenarioReport) -> String {
    let v = r.verdict;
    if r.expected_failure && v.is_failure() {
        format!(
            r#"<span class="v v-expected" title="listed in --expect">{} (expected)</span>"#,
            v.name()
        )
    } else if r.expected_failure && v == Verdict::Pass {
        r#"<span class="v v-pass" title="listed in --expect, but it passed">pass (unexpected)</span>"#
            .to_owned()
    } else {
        format!(r#"<span class="v v-{0}">{0}</span>"#, v.name())
    }
}

fn group_of(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

fn index_page(run: &RunReport, names: &[String]) -> String {
    let driver = if run.driver.name.is_empty() {
        "unknown driver"
    } else {
        run.driver.name.as_str()
    };
    let mut o = head(&format!("Rotary report — {driver}"));
    let _ = writeln!(
        o,
        "<h1>Rotary conformance report — {}</h1>\n<p class=\"sub\">{} {} · rotary {} · started {}</p>",
        esc(driver),
        esc(driver),
        esc(&run.driver.version),
        esc(&run.rotary_version),
        esc(&run.started_at),
    );
    let s = &run.summary;
    let _ = writeln!(
        o,
        "<div class=\"banner {}\">{}</div>",
        if s.ok { "ok" } else { "bad" },
        esc(&summary_line(run))
    );
    o.push_str("<div class=\"cards\">");
    let _ = write!(o, "<div class=\"card\"><b>{}</b>scenarios</div>", s.total);
    for (v, n) in [
        (Verdict::Pass, s.pass),
        (Verdict::Fail, s.fail),
        (Verdict::NonStrict, s.non_strict),
        (Verdict::Info, s.info),
        (Verdict::Skipped, s.skipped),
        (Verdict::Error, s.error),
        (Verdict::Timeout, s.timeout),
    ] {
        let _ = write!(o, "<div class=\"card c-{0}\"><b>{n}</b>{0}</div>", v.name());
    }
    if let (Some(n), Some(runs)) = (s.flaky, s.repeat) {
        let _ = write!(
            o,
            "<div class=\"card c-flaky\"><b>{n}</b>flaky (over {runs} runs each)</div>"
        );
    }
    if s.expected_failures > 0 {
        let _ = write!(
            o,
            "<div class=\"card\"><b>{}</b>expected failures</div>",
            s.expected_failures
        );
    }
    if s.unexpected_passes > 0 {
        let _ = write!(
            o,
            "<div class=\"card\"><b>{}</b>unexpected passes</div>",
            s.unexpected_passes
        );
    }
    let _ = write!(
        o,
        "<div class=\"card\"><b>{}</b>wall time</div>",
        esc(&human_ms(s.duration_ms as i64))
    );
    o.push_str("</div>\n");

    o.push_str("<h2>Driver</h2>\n<table class=\"kv\">\n");
    let _ = writeln!(o, "<tr><th>name</th><td>{}</td></tr>", esc(&run.driver.name));
    let _ = writeln!(
        o,
        "<tr><th>version</th><td>{}</td></tr>",
        esc(&run.driver.version)
    );
    let _ = writeln!(
        o,
        "<tr><th>command</th><td class=\"mono\">{}</td></tr>",
        esc(&run.driver.command)
    );
    o.push_str("<tr><th>capabilities</th><td>");
    for c in &run.driver.capabilities {
        let _ = write!(o, "<span class=\"chip\">{}</span>", esc(c));
    }
    o.push_str("</td></tr>\n</table>\n");

    // What needs attention first.
    let attention: Vec<(usize, &ScenarioReport)> = run
        .scenarios
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            (r.verdict.is_failure() && !r.expected_failure)
                || (r.expected_failure && r.verdict == Verdict::Pass)
                || (r.expected_failure && !r.expected_flaky && r.verdict == Verdict::Flaky)
        })
        .collect();
    if !attention.is_empty() {
        o.push_str(
            "<h2>Needs attention</h2>\n<table>\n<tr><th>scenario</th><th>verdict</th><th>why</th></tr>\n",
        );
        for (i, r) in attention {
            let unmarked = r.expected_failure && !r.expected_flaky && r.verdict == Verdict::Flaky;
            let why = if unmarked {
                "--expect lists it as a plain known failure, but it passed in some runs: mark it flaky (`# flaky: why`)".to_owned()
            } else {
                r.failed_checks()
                    .next()
                    .map(|c| format!("{}: expected {}, got {}", c.description, c.expected, c.actual))
                    .or_else(|| r.message.clone())
                    .unwrap_or_else(|| {
                        if r.verdict == Verdict::Pass {
                            "passed, but --expect lists it as a known failure: remove it from the list"
                                .to_owned()
                        } else {
                            String::new()
                        }
                    })
            };
            let _ = writeln!(
                o,
                "<tr><td class=\"mono\"><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                esc(names.get(i).map_or("", String::as_str)),
                esc(&r.id),
                verdict_badge(r),
                esc(&why)
            );
        }
        o.push_str("</table>\n");
    }

    // The catalogue, grouped by prefix in catalogue order.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, r) in run.scenarios.iter().enumerate() {
        let g = group_of(&r.id);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, v)) => v.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    o.push_str("<h2>Scenarios</h2>\n<nav class=\"groups\">");
    for (g, _) in &groups {
        let _ = write!(o, "<a href=\"#g-{0}\">{1}</a>", esc(&anchor(g)), esc(g));
    }
    o.push_str("</nav>\n<table>\n<thead><tr><th>id</th><th>title</th><th>level</th><th>tags</th><th>verdict</th><th>duration</th></tr></thead>\n");
    for (g, members) in &groups {
        let mut counts: Vec<(Verdict, usize)> = Vec::new();
        for &i in members {
            if let Some(r) = run.scenarios.get(i) {
                match counts.iter_mut().find(|(v, _)| *v == r.verdict) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((r.verdict, 1)),
                }
            }
        }
        counts.sort();
        let counts: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
        let _ = writeln!(
            o,
            "<tbody id=\"g-{}\">\n<tr class=\"group\"><th colspan=\"6\">{} <span class=\"note\">— {}: {}</span></th></tr>",
            esc(&anchor(g)),
            esc(g),
            plural(members.len(), "scenario", "scenarios"),
            esc(&counts.join(", "))
        );
        for &i in members {
            let Some(r) = run.scenarios.get(i) else { continue };
            let tags: String = r
                .tags
                .iter()
                .map(|t| format!("<span class=\"tag\">{}</span>", esc(t)))
                .collect();
            let _ = writeln!(
                o,
                "<tr><td class=\"mono\"><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(names.get(i).map_or("", String::as_str)),
                esc(&r.id),
                esc(&r.title),
                r.level.name(),
                tags,
                verdict_badge(r),
                esc(&human_ms(r.duration_ms as i64)),
            );
        }
        o.push_str("</tbody>\n");
    }
    o.push_str("</table>\n");
    o.push_str(FOOT);
    o
}

fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Escapes `s` and turns http(s) URLs into links.
fn linkify(s: &str) -> String {
    let s = clean(s);
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(pos) = ["https://", "http://"].iter().filter_map(|p| rest.find(p)).min() {
        out.push_str(&esc(&rest[..pos]));
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(tail.len());
        let mut url = &tail[..end];
        while let Some(stripped) = url.strip_suffix(['.', ',', ';', ':', ')', ']', '\'']) {
            url = stripped;
        }
        let _ = write!(out, "<a href=\"{0}\">{0}</a>", esc(url));
        rest = &tail[url.len()..];
    }
    out.push_str(&esc(rest));
    out
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn scenario_page(
    run: &RunReport,
    r: &ScenarioReport,
    prev: Option<(&ScenarioReport, &String)>,
    next: Option<(&ScenarioReport, &String)>,
) -> String {
    let mut o = head(&format!("{} — {} — Rotary", r.id, r.verdict));
    o.push_str("<p class=\"crumbs\"><a href=\"index.html\">← all scenarios</a>");
    if let Some((p, name)) = prev {
        let _ = write!(o, "<a href=\"{}\">‹ {}</a>", esc(name), esc(&p.id));
    }
    if let Some((n, name)) = next {
        let _ = write!(o, "<a href=\"{}\">{} ›</a>", esc(name), esc(&n.id));
    }
    o.push_str("</p>\n");
    let _ = writeln!(
        o,
        "<h1 class=\"mono\">{}</h1>\n<p class=\"sub\">{}</p>\n<p>{} · level <b>{}</b> · {} · driver {} {}{}</p>",
        esc(&r.id),
        esc(&r.title),
        verdict_badge(r),
        r.level.name(),
        esc(&format!(
            "{}{}",
            human_ms(r.duration_ms as i64),
            if r.waited_ms > 0 {
                format!(" (of which {} waiting)", human_ms(r.waited_ms as i64))
            } else {
                String::new()
            }
        )),
        esc(&run.driver.name),
        esc(&run.driver.version),
        r.tags
            .iter()
            .map(|t| format!(" <span class=\"tag\">{}</span>", esc(t)))
            .collect::<String>(),
    );
    if let Some(p) = &r.repeat {
        let counts: Vec<String> = p.verdicts.iter().map(|(v, n)| format!("{n} {v}")).collect();
        let _ = writeln!(
            o,
            "<p class=\"note\">Passed {} of {} runs (pass rate {}: {}). What follows is run {}: the first failing run, or the first run when none failed.</p>",
            p.passes,
            p.runs,
            p.pass_rate,
            esc(&counts.join(", ")),
            p.evidence_run
        );
    }
    if let Some(m) = &r.message {
        let _ = writeln!(o, "<div class=\"msg\">{}</div>", esc(m));
    }
    let _ = writeln!(
        o,
        "<h2>Requirement</h2>\n<div class=\"req\">{}</div>",
        linkify(r.requirement.trim())
    );
    if !r.references.is_empty() {
        o.push_str("<h3>References</h3>\n<ul>\n");
        for reference in &r.references {
            let _ = writeln!(o, "<li>{}</li>", linkify(reference));
        }
        o.push_str("</ul>\n");
    }

    let failed_evidence: HashSet<u64> = r
        .failed_checks()
        .flat_map(|c| c.evidence.iter().copied())
        .collect();
    o.push_str("<h2>Checks</h2>\n");
    if r.checks.is_empty() {
        o.push_str("<p class=\"note\">No check was evaluated (the scenario did not get that far).</p>\n");
    } else {
        o.push_str("<table>\n<tr><th></th><th>check</th><th>description</th><th>expected</th><th>actual</th><th>evidence</th></tr>\n");
        for c in &r.checks {
            check_row(&mut o, c);
        }
        o.push_str("</table>\n");
    }

    o.push_str("<h2>Timeline</h2>\n<div class=\"timeline\">\n");
    o.push_str(&timeline_svg(r));
    o.push_str("\n</div>\n<p class=\"note\">One lane per token generation (the access token a login or refresh issued, with its refresh token). Hover a mark for its trace line; numbered marks are the evidence of a failed check.</p>\n");

    o.push_str("<h2>Steps</h2>\n");
    if r.steps.is_empty() {
        o.push_str("<p class=\"note\">No step ran.</p>\n");
    } else {
        o.push_str("<table>\n<tr><th>#</th><th>name</th><th>action</th><th>parameters</th><th>time (ms)</th><th>requests</th><th>outcome</th></tr>\n");
        for s in &r.steps {
            step_row(&mut o, s);
        }
        o.push_str("</table>\n");
    }

    o.push_str("<h2>Driver notifications</h2>\n");
    if r.notifications.is_empty() {
        o.push_str("<p class=\"note\">None.</p>\n");
    } else {
        o.push_str("<table>\n<tr><th>at (ms)</th><th>step</th><th>after request</th><th>method</th><th>params</th></tr>\n");
        for n in &r.notifications {
            let _ = writeln!(
                o,
                "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
                n.at_ms,
                n.step,
                if n.trace_len == 0 {
                    "—".to_owned()
                } else {
                    format!("<a href=\"#t{0}\">#{0}</a>", n.trace_len)
                },
                esc(&n.method),
                esc(&compact(&n.params))
            );
        }
        o.push_str("</table>\n");
    }

    let _ = writeln!(
        o,
        "<h2>Trace ({})</h2>",
        plural(r.trace.len(), "request", "requests")
    );
    if r.trace.is_empty() {
        o.push_str("<p class=\"note\">No request reached the server.</p>\n");
    } else {
        trace_table(&mut o, &r.trace, &failed_evidence);
    }

    o.push_str("<h2>Server</h2>\n");
    match &r.server {
        serde_json::Value::Object(map) => {
            o.push_str("<table class=\"kv\">\n");
            for (k, v) in map {
                let _ = writeln!(
                    o,
                    "<tr><th class=\"mono\">{}</th><td class=\"mono\">{}</td></tr>",
                    esc(k),
                    esc(&compact(v))
                );
            }
            o.push_str("</table>\n");
        }
        other => {
            let _ = writeln!(o, "<pre class=\"light\">{}</pre>", esc(&compact(other)));
        }
    }
    if !r.facts.is_empty() {
        o.push_str("<h2>Facts</h2>\n<table class=\"kv\">\n");
        for (k, v) in &r.facts {
            let _ = writeln!(
                o,
                "<tr><th class=\"mono\">{}</th><td>{}</td></tr>",
                esc(k),
                esc(v)
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("<h2>Driver stderr</h2>\n");
    if r.stderr.trim().is_empty() {
        o.push_str("<p class=\"note\">Empty.</p>\n");
    } else {
        let _ = writeln!(o, "<pre>{}</pre>", esc(&r.stderr));
    }
    o.push_str(FOOT);
    o
}

fn check_row(o: &mut String, c: &CheckResult) {
    let evidence: Vec<String> = c
        .evidence
        .iter()
        .map(|s| format!("<a href=\"#t{s}\">#{s}</a>"))
        .collect();
    let _ = writeln!(
        o,
        "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
        if c.passed {
            "<span class=\"ok\">✓</span>"
        } else {
            "<span class=\"bad\">✗</span>"
        },
        esc(&c.check),
        esc(&c.description),
        esc(&c.expected),
        esc(&c.actual),
        evidence.join(" ")
    );
}

fn outcome_text(out: &StepOutcome) -> String {
    match out {
        StepOutcome::Ok { result } => {
            let mut s = compact(result);
            if s.chars().count() > 240 {
                s = s.chars().take(240).collect::<String>() + "…";
            }
            if s == "null" || s == "{}" {
                "ok".to_owned()
            } else {
                format!("ok {s}")
            }
        }
        StepOutcome::Failed { error } => {
            let mut s = format!("failed: {} — {}", error.kind, error.message);
            if let Some(st) = error.status {
                s.push_str(&format!(" (HTTP {st}"));
                if let Some(code) = &error.errcode {
                    s.push_str(&format!(" {code}"));
                }
                s.push(')');
            }
            s
        }
        StepOutcome::Parallel { results } => {
            let ok = results.iter().filter(|r| r.is_ok()).count();
            let mut s = format!("parallel: {ok} of {} ok", results.len());
            for (i, r) in results.iter().enumerate().filter(|(_, r)| !r.is_ok()) {
                s.push_str(&format!("; [{}] {}", i + 1, outcome_text(r)));
            }
            s
        }
        StepOutcome::Aborted { reason } => format!("aborted: {reason}"),
    }
}

fn step_row(o: &mut String, s: &StepRecord) {
    let requests = if s.trace_to > s.trace_from {
        format!("#{}–#{}", s.trace_from + 1, s.trace_to)
    } else {
        "—".to_owned()
    };
    let _ = writeln!(
        o,
        "<tr><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"nowrap\">{}–{}</td><td class=\"nowrap mono\">{}</td><td class=\"{}\">{}</td></tr>",
        s.index,
        esc(s.name.as_deref().unwrap_or("")),
        esc(&s.action),
        esc(&s.summary),
        s.started_ms,
        s.ended_ms,
        requests,
        if s.outcome.is_ok() { "s2" } else { "sx" },
        esc(&outcome_text(&s.outcome))
    );
}

fn status_class(e: &TraceEntry) -> &'static str {
    use rotary_server::Delivery;
    match e.delivery {
        Delivery::Sent => match e.status {
            Some(200..=299) => "s2",
            Some(401) => "s401",
            Some(_) => "sx",
            None => "",
        },
        Delivery::Pending | Delivery::Abandoned => "",
        _ => "slost",
    }
}

fn trace_table(o: &mut String, trace: &[TraceEntry], evidence: &HashSet<u64>) {
    let clocked = trace.iter().any(|e| (e.t_ms - e.real_ms).abs() >= 1_000);
    let _ = writeln!(
        o,
        "<div class=\"scroll\"><table class=\"trace\">\n<tr><th>#</th><th>real ms</th>{}<th>request</th><th>tokens presented</th><th>response</th><th>issued</th><th>fault</th><th>delivery</th><th>ms</th><th>flags</th></tr>",
        if clocked { "<th>server clock ms</th>" } else { "" }
    );
    for e in trace {
        let mut tokens = Vec::new();
        if e.access_token.state != AccessState::Missing {
            tokens.push(format!(
                "{} ({})",
                e.access_token.label,
                serde_name(&e.access_token.state)
            ));
        }
        if let Some(t) = &e.refresh_token {
            tokens.push(format!("{} ({})", t.label, serde_name(&t.state)));
        }
        let tokens: Vec<String> = tokens.iter().map(|t| esc(t)).collect();
        let mut response = e
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "no response".to_owned());
        if let Some(code) = &e.errcode {
            response.push(' ');
            response.push_str(code);
        }
        if let Some(soft) = e.soft_logout {
            response.push_str(&format!(" soft_logout={soft}"));
        }
        let issued = e
            .issued
            .as_ref()
            .map(|i| {
                let labels = [i.access_token.as_deref(), i.refresh_token.as_deref()]
                    .iter()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" / ");
                match i.expires_in_ms {
                    Some(ms) => format!(
                        "{}<br><small>expires in {}</small>",
                        esc(&labels),
                        esc(&human_ms(ms))
                    ),
                    None => esc(&labels),
                }
            })
            .unwrap_or_default();
        let fault = e
            .fault
            .as_ref()
            .map(|f| match &f.name {
                Some(n) => format!("{} ({n}, rule {})", f.action, f.id),
                None => format!("{} (rule {})", f.action, f.id),
            })
            .unwrap_or_default();
        let flags = if e.flags.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&e.flags).unwrap_or_default()
        };
        let _ = writeln!(
            o,
            "<tr id=\"t{seq}\"{cls} title=\"{title}\"><td class=\"num\">{seq}</td><td class=\"num\">{real}</td>{clock}<td><span class=\"mono\"><b>{ep}</b> {m}</span><br><small class=\"mono path\">{path}</small></td><td class=\"mono nowrap\">{tokens}</td><td class=\"mono {sc}\">{response}</td><td class=\"mono nowrap\">{issued}</td><td class=\"sx\">{fault}</td><td class=\"{sc}\">{dl}</td><td class=\"num\">{dur}</td><td class=\"mono\">{flags}</td></tr>",
            seq = e.seq,
            cls = if evidence.contains(&e.seq) {
                " class=\"evidence\""
            } else {
                ""
            },
            title = esc(&trace_line(e)),
            real = e.real_ms,
            clock = if clocked {
                format!("<td class=\"num\">{}</td>", e.t_ms)
            } else {
                String::new()
            },
            ep = esc(&e.endpoint),
            m = esc(&e.method),
            path = esc(&e.path),
            tokens = tokens.join("<br>"),
            sc = status_class(e),
            response = esc(&response),
            fault = esc(&fault),
            dl = esc(&serde_name(&e.delivery)),
            dur = e.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
            flags = esc(&flags),
        );
    }
    o.push_str("</table></div>\n");
}
