//! `index.html`: one self-contained page (no script, no external file) with SVG charts of the
//! series, the phases, the thresholds and their outcome, and each violation with its trace window.

use super::{SoakReport, fmt_num};
use crate::soak::metrics::SecondRow;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 900.0;
const H: f64 = 120.0;

/// One chart: a series of the rows, with the phases shaded behind it.
fn chart(r: &SoakReport, title: &str, value: impl Fn(&SecondRow) -> f64) -> String {
    let rows = &r.series;
    let end = rows.last().map_or(1, |x| x.t).max(1) as f64;
    let max = rows.iter().map(&value).fold(0.0, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let x = |t: f64| t / end * W;
    let y = |v: f64| H - v / top * H;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{} <small>(max {})</small></figcaption><svg viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{}">"#,
        esc(title),
        fmt_num((max * 100.0).round() / 100.0),
        esc(title),
        h = H + 14.0,
    );
    for (i, p) in r.timeline.phases.iter().enumerate() {
        let (a, b) = (p.start.as_secs_f64(), p.end.as_secs_f64());
        let fill = if i % 2 == 0 { "#f2f4f8" } else { "#e6eaf2" };
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="0" width="{:.1}" height="{H}" fill="{fill}"/><text x="{:.1}" y="{}" font-size="10" fill="#667">{}</text>"##,
            x(a),
            (x(b) - x(a)).max(0.0),
            x(a) + 2.0,
            H + 12.0,
            esc(&p.name)
        );
    }
    let points: Vec<String> = rows
        .iter()
        .map(|row| format!("{:.1},{:.1}", x(row.t as f64), y(value(row))))
        .collect();
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#2456c8\" stroke-width=\"1.5\" points=\"{}\"/></svg></figure>",
        points.join(" ")
    );
    svg
}

/// The whole page.
pub fn render(r: &SoakReport) -> String {
    let mut h = String::new();
    let verdict = if r.summary.interrupted {
        "interrupted"
    } else if r.summary.passed {
        "passed"
    } else {
        "failed"
    };
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rotary soak — {verdict}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccd;padding:2px 8px;text-align:left}}.ok{{color:#17803d}}.bad{{color:#b3261e;font-weight:bold}}\
         figure{{margin:1em 0}}figcaption{{font-weight:600}}pre{{background:#f6f6f6;padding:.5em}}</style></head><body>"
    );
    let class = if r.summary.passed { "ok" } else { "bad" };
    let _ = write!(
        h,
        "<h1>rotary soak: <span class=\"{class}\">{verdict}</span></h1><p>{} simulated sessions{}, {} s, access tokens of {} ms, seed {}{}; against {}.</p>",
        r.config.sessions,
        r.config
            .drivers
            .as_ref()
            .map(|(c, n)| format!(" and {n} driver processes (<code>{}</code>)", esc(c)))
            .unwrap_or_default(),
        fmt_num((r.metric("duration") / 100.0).round() / 10.0),
        r.config.access_token_lifetime_ms,
        r.config.seed,
        if r.config.bugs.is_empty() {
            String::new()
        } else {
            format!(
                "; bugs <code>{}</code> on {}% of the sessions",
                esc(&r.config.bugs.join(", ")),
                r.config.bug_share * 100.0
            )
        },
        esc(&r.config.target)
    );
    h.push_str("<h2>Thresholds</h2><table><tr><th></th><th>threshold</th><th>actual</th></tr>");
    for t in &r.thresholds {
        let (mark, class) = if t.ok { ("✓", "ok") } else { ("✗", "bad") };
        let _ = write!(
            h,
            "<tr><td class=\"{class}\">{mark}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&t.threshold),
            fmt_num(t.actual)
        );
    }
    h.push_str("</table><h2>Over time</h2>");
    h.push_str(&chart(r, "sessions alive", |x| x.alive as f64));
    h.push_str(&chart(r, "refreshes / s", |x| {
        x.refreshes as f64 / r.series_step as f64
    }));
    h.push_str(&chart(r, "401 answers / s", |x| {
        x.unauthorized as f64 / r.series_step as f64
    }));
    h.push_str(&chart(r, "faults injected / s", |x| {
        x.faults as f64 / r.series_step as f64
    }));
    h.push_str(&chart(r, "violations", |x| x.violations as f64));
    h.push_str(&chart(r, "harness resident memory, MiB", |x| {
        x.rss as f64 / (1024.0 * 1024.0)
    }));
    h.push_str("<h2>Metrics</h2><table>");
    for (k, v) in &r.summary.metrics {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            esc(k),
            fmt_num(*v)
        );
    }
    h.push_str("</table>");
    let _ = write!(h, "<h2>Violations ({} kept)</h2>", r.violations.len());
    if r.violations.is_empty() {
        h.push_str("<p class=\"ok\">None.</p>");
    }
    for v in &r.violations {
        let _ = write!(
            h,
            "<h3><code>{}</code> ({}) — session <code>{}</code> at {} ms</h3><p>{}</p>",
            esc(&v.id),
            v.level,
            esc(&v.session),
            v.t_ms,
            esc(&v.message)
        );
        if v.window.is_empty() {
            continue;
        }
        h.push_str("<table><tr><th>seq</th><th>ms</th><th>endpoint</th><th>status</th><th>access token</th><th>refresh token</th><th>issued</th><th>fault</th></tr>");
        for e in &v.window {
            let rt = e
                .refresh_token
                .as_ref()
                .map(|t| format!("{} ({:?})", t.label, t.state))
                .unwrap_or_default();
            let issued = e
                .issued
                .as_ref()
                .map(|i| {
                    [i.access_token.as_deref(), i.refresh_token.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let fault = e.fault.as_ref().map(|f| f.action.clone()).unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({:?})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.seq,
                e.real_ms,
                esc(&e.endpoint),
                e.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("{:?}", e.delivery)),
                esc(&e.access_token.label),
                e.access_token.state,
                esc(&rt),
                esc(&issued),
                esc(&fault)
            );
        }
        h.push_str("</table>");
    }
    if !r.driver_errors.is_empty() {
        h.push_str("<h2>Driver errors</h2><ul>");
        for e in &r.driver_errors {
            let _ = write!(h, "<li>{}</li>", esc(e));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Timeline</h2><table><tr><th>at ms</th><th>event</th></tr>");
    for e in &r.timeline.events {
        let what = serde_json::to_string(&e.event).unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            e.at.as_millis(),
            esc(&what)
        );
    }
    h.push_str("</table></body></html>\n");
    h
}
