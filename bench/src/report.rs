//! The whole run's figures (also written as JSON) and the summary table printed at the end.

use crate::catalogue::CatalogueReport;
use crate::memory::MemoryReport;
use crate::proxy::ProxyReport;
use crate::refresh::RefreshReport;
use crate::startup::StartupReport;
use crate::whoami::WhoamiReport;
use serde::Serialize;

/// Every figure of a run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub cpus: usize,
    pub server_runtime: String,
    pub generator_runtime: String,
    pub connections: usize,
    pub duration_ms: u64,
    pub warmup_ms: u64,
    pub rounds: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup: Option<StartupReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whoami: Option<WhoamiReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<CatalogueReport>,
}

/// `ok` or `MISSED`.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// A number rounded, with thousands separators.
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Prints the summary table.
pub fn print_summary(r: &Report) {
    println!();
    println!(
        "summary ({} CPUs; servers: {}; load generator: {})",
        r.cpus, r.server_runtime, r.generator_runtime
    );
    let general = r.whoami.is_some()
        || r.refresh.is_some()
        || r.startup.is_some()
        || r.memory.is_some()
        || r.catalogue.is_some();
    if general {
        println!("  {:<44} {:>22}  {:<16}", "metric", "value", "goal");
    }
    let row = |m: &str, v: String, goal: &str, ok: Option<bool>| {
        println!("  {:<44} {:>22}  {:<16} {}", m, v, goal, ok.map_or("", verdict));
    };
    if let Some(w) = &r.whoami {
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
        row(
            "whoami ratio rotary/bare (median req/s)",
            format!("{:.3}", w.ratio),
            "",
            None,
        );
        row(
            "  per-round ratios",
            list(&w.pair_ratios),
            ">= 0.9 each",
            Some(w.ok),
        );
        row(
            "  per-round CPU ratios bare/rotary",
            list(&w.pair_cpu_ratios),
            "",
            None,
        );
        row(
            "  RSS after each round, MiB",
            w.rss_kib_per_round
                .iter()
                .map(|k| format!("{:.0}", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" "),
            "flat",
            None,
        );
        row(
            "  trace dump: /versions max ms (p99)",
            format!("{:.1} ({:.1})", w.dump.versions_max_ms, w.dump.versions_p99_ms),
            "<= 50",
            Some(w.dump.ok),
        );
        row(
            "  trace dump: entries / ms",
            format!("{} / {:.0}", w.dump.entries, w.dump.elapsed_ms),
            "",
            None,
        );
        row(
            "whoami CPU ratio bare/rotary (server µs/req)",
            format!(
                "{:.3} ({:.1} / {:.1})",
                w.cpu_ratio, w.bare_cpu_us_per_req, w.rotary_cpu_us_per_req
            ),
            "",
            None,
        );
        row("whoami rotary req/s", thousands(w.rotary_median_rps), "", None);
        row("whoami bare req/s", thousands(w.bare_median_rps), "", None);
        row(
            "whoami rotary p50 / p99 ms",
            format!("{:.3} / {:.3}", w.rotary_p50_ms, w.rotary_p99_ms),
            "",
            None,
        );
        row(
            "whoami bare p50 / p99 ms",
            format!("{:.3} / {:.3}", w.bare_p50_ms, w.bare_p99_ms),
            "",
            None,
        );
    }
    if let Some(f) = &r.refresh {
        row(
            "refresh req/s (synapse, rotation)",
            thousands(f.median_rps),
            &format!(">= {}", thousands(f.goal_rps)),
            Some(f.ok),
        );
        if let Some(vs) = f.vs_bare_whoami {
            row(
                "  refresh / bare whoami req/s",
                format!("{vs:.3}"),
                ">= 0.6",
                Some(f.ok),
            );
        }
        row(
            "refresh server CPU µs/req",
            format!("{:.1}", f.cpu_us_per_req),
            "",
            None,
        );
        row(
            "refresh p50 / p99 ms",
            format!("{:.3} / {:.3}", f.p50_ms, f.p99_ms),
            "",
            None,
        );
    }
    if let Some(s) = &r.startup {
        row(
            "start to first response, median ms",
            format!("{:.3}", s.first_response_median_ms),
            "(wiremock ~0.5)",
            None,
        );
        row(
            "  p90 / min ms",
            format!("{:.3} / {:.3}", s.first_response_p90_ms, s.first_response_min_ms),
            "",
            None,
        );
        row(
            "  start() alone, median ms",
            format!("{:.3}", s.start_median_ms),
            "",
            None,
        );
    }
    if let Some(m) = &r.memory {
        row(
            &format!(
                "memory per live session ({} sessions)",
                thousands(m.sessions as f64)
            ),
            format!(
                "{:.0} B ({:.2} KiB)",
                m.bytes_per_session,
                m.bytes_per_session / 1024.0
            ),
            "<= 1.5 KiB",
            Some(m.ok),
        );
        row(
            "memory per trace entry (whoami)",
            format!("{:.0} B", m.trace_bytes_per_entry),
            "",
            None,
        );
    }
    if let Some(p) = &r.proxy {
        print_proxy(p);
    }
    if let Some(c) = &r.catalogue {
        row(
            "catalogue wall time",
            format!("{:.1} s", c.wall_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  scenarios",
            format!("{} pass, {} info of {}", c.passed, c.info, c.scenarios),
            "",
            None,
        );
        row(
            "  sum of scenario durations",
            format!("{:.1} s", c.scenario_sum_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  sum of sleep-step waits",
            format!("{:.1} s", c.waited_sum_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  CPU time of rotary + drivers",
            format!("{:.2} s", c.child_cpu_ms as f64 / 1000.0),
            "",
            None,
        );
        row(
            "  waiting share (1 - CPU/wall)",
            format!("{:.1} %", 100.0 * c.waiting_share),
            "",
            None,
        );
    }
}

/// The proxy's table: direct vs proxied, side by side.
fn print_proxy(p: &ProxyReport) {
    println!();
    println!("proxy: the mock homeserver direct vs through `rotary proxy`");
    println!(
        "  {:<44} {:>14} {:>14} {:>16}  {:<16}",
        "metric", "direct", "proxied", "proxied/direct", "goal"
    );
    let row = |m: &str, d: String, x: String, vs: String, goal: &str, ok: Option<bool>| {
        println!(
            "  {:<44} {:>14} {:>14} {:>16}  {:<16} {}",
            m,
            d,
            x,
            vs,
            goal,
            ok.map_or("", verdict)
        );
    };
    let (w, l, f, m) = (&p.whoami, &p.latency, &p.refresh, &p.memory);
    let rounds = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
    row(
        &format!("whoami req/s, {} in flight", w.in_flight),
        thousands(w.direct_rps),
        thousands(w.proxied_rps),
        format!("{:.2}x", w.ratio),
        &format!(">= {:.1}x", p.throughput_goal),
        Some(p.throughput_ok),
    );
    row(
        "  per round",
        String::new(),
        String::new(),
        rounds(&w.round_ratios),
        "",
        None,
    );
    row(
        "  through a bare hop instead, req/s",
        String::new(),
        thousands(w.hop_rps),
        format!("{:.2}x", w.hop_ratio),
        "",
        None,
    );
    row(
        &format!("whoami p50 / p99 ms, {} in flight", w.in_flight),
        format!("{:.3} / {:.3}", w.direct_p50_ms, w.direct_p99_ms),
        format!("{:.3} / {:.3}", w.proxied_p50_ms, w.proxied_p99_ms),
        String::new(),
        "",
        None,
    );
    row(
        "whoami servers' CPU µs/req (proxy's own)",
        format!("{:.1}", w.direct_cpu_us_per_req),
        format!("{:.1}", w.proxied_cpu_us_per_req),
        format!("{:+.1} µs", w.proxy_cpu_us_per_req()),
        "",
        None,
    );
    row(
        "  bare hop's CPU µs/req",
        String::new(),
        format!("{:.1}", w.hop_cpu_us_per_req),
        format!("{:+.1} µs", w.hop_cpu_us_per_req()),
        "",
        None,
    );
    row(
        "whoami p50 / p99 ms, 1 in flight",
        format!("{:.3} / {:.3}", l.direct_p50_ms, l.direct_p99_ms),
        format!("{:.3} / {:.3}", l.proxied_p50_ms, l.proxied_p99_ms),
        format!("{:+.0} / {:+.0} µs", l.added_p50_us(), l.added_p99_us()),
        &format!("p50 <= +{:.0} µs", p.added_latency_goal_us),
        Some(p.latency_ok),
    );
    row(
        "  bare hop p50 / p99 ms, 1 in flight",
        String::new(),
        format!("{:.3} / {:.3}", l.hop_p50_ms, l.hop_p99_ms),
        format!("{:+.0} µs", l.hop_added_p50_us()),
        "",
        None,
    );
    row(
        "whoami req/s, 1 in flight",
        thousands(l.direct_rps),
        thousands(l.proxied_rps),
        format!("{:.2}x", l.ratio),
        "",
        None,
    );
    row(
        &format!("/refresh chains req/s, {} in flight", f.in_flight),
        thousands(f.direct_rps),
        thousands(f.proxied_rps),
        format!("{:.2}x", f.ratio),
        "",
        None,
    );
    row(
        "  per round",
        String::new(),
        String::new(),
        rounds(&f.round_ratios),
        "",
        None,
    );
    row(
        "  through a bare hop instead, req/s",
        String::new(),
        thousands(f.hop_rps),
        format!("{:.2}x", f.hop_ratio),
        "",
        None,
    );
    row(
        "/refresh p50 / p99 ms",
        format!("{:.3} / {:.3}", f.direct_p50_ms, f.direct_p99_ms),
        format!("{:.3} / {:.3}", f.proxied_p50_ms, f.proxied_p99_ms),
        String::new(),
        "",
        None,
    );
    row(
        "/refresh servers' CPU µs/req (proxy's own)",
        format!("{:.1}", f.direct_cpu_us_per_req),
        format!("{:.1}", f.proxied_cpu_us_per_req),
        format!("{:+.1} µs", f.proxy_cpu_us_per_req()),
        "",
        None,
    );
    row(
        "  bare hop's CPU µs/req",
        String::new(),
        format!("{:.1}", f.hop_cpu_us_per_req),
        format!("{:+.1} µs", f.hop_cpu_us_per_req()),
        "",
        None,
    );
    row(
        &format!("RSS per login ({} logins), B", thousands(m.logins as f64)),
        thousands(m.direct_bytes_per_login),
        thousands(m.proxied_bytes_per_login),
        format!("+{} B", thousands(m.proxy_bytes_per_session)),
        "",
        None,
    );
    row(
        "token graph, B per session",
        String::new(),
        thousands(m.graph_bytes_per_session),
        String::new(),
        "",
        None,
    );
    row(
        &format!(
            "trace, B per kept entry ({} window)",
            thousands(m.trace_window as f64)
        ),
        String::new(),
        thousands(m.trace_bytes_per_entry),
        String::new(),
        "",
        None,
    );
    row(
        &format!(
            "sessions kept, limit {}, {} logins",
            thousands(m.session_limit as f64),
            thousands(m.logins as f64)
        ),
        String::new(),
        thousands(m.limited_sessions_kept as f64),
        String::new(),
        &format!("= {}", m.session_limit.min(m.logins)),
        Some(m.limit_ok),
    );
}
