//! The proxy's counters and latency histograms, and their Prometheus text exposition
//! (`GET /_rotary/metrics`).

use rotary_judge::TraceEntry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram (Prometheus buckets, cumulative on output).
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, seconds: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The smallest bucket bound below which `q` (0..1) of the observations fall, seconds.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= want {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", self.count());
    }
}

/// Every counter the proxy keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    faults: Mutex<BTreeMap<String, u64>>,
    violations: Mutex<BTreeMap<(String, String), u64>>,
    /// Refresh requests (legacy `/refresh` and the OAuth refresh grant) answered.
    pub refreshes: AtomicU64,
    /// Refreshes answered with a 2xx.
    pub refreshes_ok: AtomicU64,
    /// 401 answers.
    pub unauthorized: AtomicU64,
    /// Requests the upstream could not answer (502 from the proxy).
    pub upstream_errors: AtomicU64,
    /// Sessions known to the token graph (a gauge).
    pub sessions: AtomicU64,
    /// Refresh latency, arrival to answer.
    pub refresh_latency: Histogram,
    /// Upstream latency, request sent to response head.
    pub upstream_latency: Histogram,
}

/// A snapshot for the live line and the report.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Requests completed.
    pub requests: u64,
    /// Refreshes completed.
    pub refreshes: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// Faults fired.
    pub faults_fired: u64,
    /// Upstream failures.
    pub upstream_errors: u64,
    /// Violations by level (`must`, `should`, `info`).
    pub violations: BTreeMap<String, u64>,
    /// Sessions known.
    pub sessions: u64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert(0) += 1;
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Counts a completed request.
    pub fn completed(&self, e: &TraceEntry) {
        let status = e.status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        bump(&self.requests, (e.endpoint.to_string(), status));
        if let Some(f) = &e.fault {
            bump(&self.faults, f.action.clone());
        }
        if e.status == Some(401) {
            self.unauthorized.fetch_add(1, Ordering::Relaxed);
        }
        if e.is_refresh() {
            self.refreshes.fetch_add(1, Ordering::Relaxed);
            if e.status.is_some_and(|s| (200..300).contains(&s)) {
                self.refreshes_ok.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(ms) = e.duration_ms {
                self.refresh_latency.observe(ms as f64 / 1000.0);
            }
        }
    }

    /// Counts a violation.
    pub fn violation(&self, id: &str, level: &str) {
        bump(&self.violations, (id.to_owned(), level.to_owned()));
    }

    /// The totals now.
    pub fn totals(&self) -> Totals {
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum();
        let faults_fired = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum();
        let mut violations = BTreeMap::new();
        for ((_, level), n) in self.violations.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            *violations.entry(level.clone()).or_insert(0) += n;
        }
        Totals {
            requests,
            refreshes: self.refreshes.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            faults_fired,
            upstream_errors: self.upstream_errors.load(Ordering::Relaxed),
            violations,
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP rotary_proxy_requests_total Requests completed, by endpoint and status (none: no answer was delivered).\n# TYPE rotary_proxy_requests_total counter\n");
        for ((endpoint, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "rotary_proxy_requests_total{{endpoint=\"{}\",status=\"{}\"}} {n}",
                escape(endpoint),
                escape(status)
            );
        }
        let _ = writeln!(
            out,
            "# HELP rotary_proxy_refreshes_total Refreshes completed (legacy /refresh and the OAuth refresh grant).\n# TYPE rotary_proxy_refreshes_total counter\nrotary_proxy_refreshes_total {}\n# HELP rotary_proxy_refreshes_ok_total Refreshes answered with a 2xx.\n# TYPE rotary_proxy_refreshes_ok_total counter\nrotary_proxy_refreshes_ok_total {}",
            self.refreshes.load(Ordering::Relaxed),
            self.refreshes_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rotary_proxy_unauthorized_total 401 answers.\n# TYPE rotary_proxy_unauthorized_total counter\nrotary_proxy_unauthorized_total {}",
            self.unauthorized.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rotary_proxy_upstream_errors_total Requests the upstream did not answer (the client got a 502).\n# TYPE rotary_proxy_upstream_errors_total counter\nrotary_proxy_upstream_errors_total {}",
            self.upstream_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rotary_proxy_sessions Sessions the token graph knows.\n# TYPE rotary_proxy_sessions gauge\nrotary_proxy_sessions {}",
            self.sessions.load(Ordering::Relaxed)
        );
        out.push_str("# HELP rotary_proxy_faults_fired_total Fault rules fired, by action.\n# TYPE rotary_proxy_faults_fired_total counter\n");
        for (action, n) in self.faults.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "rotary_proxy_faults_fired_total{{action=\"{}\"}} {n}",
                escape(action)
            );
        }
        out.push_str("# HELP rotary_proxy_violations_total Live invariant violations, by invariant id and level.\n# TYPE rotary_proxy_violations_total counter\n");
        for ((id, level), n) in self.violations.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "rotary_proxy_violations_total{{id=\"{}\",level=\"{}\"}} {n}",
                escape(id),
                escape(level)
            );
        }
        self.refresh_latency.render(
            &mut out,
            "rotary_proxy_refresh_duration_seconds",
            "Refresh latency seen by the client, arrival to answer.",
        );
        self.upstream_latency.render(
            &mut out,
            "rotary_proxy_upstream_duration_seconds",
            "Upstream latency, request sent to response head.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_types_and_cumulative_buckets() {
        let m = Metrics::default();
        let mut e = TraceEntry::new("refresh", "POST", "/_matrix/client/v3/refresh");
        e.status = Some(200);
        e.duration_ms = Some(3);
        m.completed(&e);
        m.violation("live.single-flight", "must");
        m.upstream_latency.observe(0.002);
        m.upstream_latency.observe(20.0);
        let text = m.render();
        assert!(
            text.contains("rotary_proxy_requests_total{endpoint=\"refresh\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("rotary_proxy_violations_total{id=\"live.single-flight\",level=\"must\"} 1"));
        assert!(text.contains("rotary_proxy_upstream_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("rotary_proxy_upstream_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("rotary_proxy_refresh_duration_seconds_count 1"));
        assert_eq!(m.totals().violations.get("must"), Some(&1));
        assert_eq!(m.refresh_latency.quantile(0.99), Some(0.005));
    }
}
