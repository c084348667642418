//! What a soak measures: the catalogue of metric names thresholds can name, a fixed-size latency
//! histogram, and the per-second series (one row a second, whatever the run's length).

use rotary_judge::live::INVARIANTS;
use serde::Serialize;
use std::collections::BTreeMap;

/// What a metric's number is, and so which units a threshold may write after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A count of things.
    Count,
    /// Milliseconds (thresholds may write `ms`, `s`, `m`).
    Millis,
    /// Bytes (thresholds may write `KiB`, `MiB`, `GiB`).
    Bytes,
    /// A plain number (a rate or a ratio).
    Number,
}

/// One metric a threshold can name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricInfo {
    /// Its name (`refresh.p99`).
    pub name: String,
    /// Its unit.
    pub unit: Unit,
    /// What it counts, in words.
    pub description: String,
}

const FIXED: &[(&str, Unit, &str)] = &[
    (
        "violations.must",
        Unit::Count,
        "violations of `must` live invariants",
    ),
    (
        "violations.should",
        Unit::Count,
        "violations of `should` live invariants",
    ),
    (
        "violations.total",
        Unit::Count,
        "violations of any live invariant",
    ),
    ("logouts", Unit::Count, "logouts the clients signalled"),
    ("logouts.soft", Unit::Count, "of which soft"),
    (
        "sessions.lost",
        Unit::Count,
        "logouts with no definitive refusal by the server before them",
    ),
    (
        "sessions.zombie",
        Unit::Count,
        "sessions refused definitively that did not log out (still going)",
    ),
    (
        "logins",
        Unit::Count,
        "logins that succeeded (re-logins included)",
    ),
    ("login.failures", Unit::Count, "logins that failed"),
    ("messages.sent", Unit::Count, "messages whose send succeeded"),
    ("messages.seen", Unit::Count, "messages sync showed"),
    (
        "messages.lost",
        Unit::Count,
        "messages sent and never shown by sync",
    ),
    (
        "messages.duplicated",
        Unit::Count,
        "messages sync showed more than once",
    ),
    (
        "messages.late",
        Unit::Count,
        "messages shown after their deadline",
    ),
    (
        "messages.unverified",
        Unit::Count,
        "messages neither seen nor lost (a timeline gap)",
    ),
    (
        "app.401",
        Unit::Count,
        "401s that reached the app (a correct client refreshes and retries)",
    ),
    (
        "actions",
        Unit::Count,
        "app requests finished (whoami, send, create_room)",
    ),
    ("actions.failed", Unit::Count, "of which failed"),
    ("syncs", Unit::Count, "syncs that answered"),
    ("sync.failures", Unit::Count, "syncs that failed"),
    ("requests", Unit::Count, "requests the server saw"),
    ("requests.401", Unit::Count, "requests the server answered 401"),
    ("faults", Unit::Count, "faults the server injected"),
    ("refresh.count", Unit::Count, "refresh requests"),
    ("refresh.failed", Unit::Count, "refresh requests not answered 200"),
    (
        "refresh.rate",
        Unit::Number,
        "refresh requests per second, over the run",
    ),
    (
        "refresh.per_lifetime",
        Unit::Number,
        "refreshes per live session per access-token lifetime",
    ),
    (
        "refresh.p50",
        Unit::Millis,
        "refresh latency at the server, median",
    ),
    ("refresh.p90", Unit::Millis, "refresh latency, 90th percentile"),
    ("refresh.p99", Unit::Millis, "refresh latency, 99th percentile"),
    ("refresh.max", Unit::Millis, "refresh latency, slowest"),
    (
        "action.p50",
        Unit::Millis,
        "app request latency as the app waited (refreshes included), median",
    ),
    ("action.p90", Unit::Millis, "app request latency, 90th percentile"),
    ("action.p99", Unit::Millis, "app request latency, 99th percentile"),
    ("action.max", Unit::Millis, "app request latency, slowest"),
    (
        "drivers.errors",
        Unit::Count,
        "driver processes that died or broke the protocol",
    ),
    ("drivers.calls", Unit::Count, "calls made to driver processes"),
    (
        "trace.lagged",
        Unit::Count,
        "trace entries the judge missed (it fell behind)",
    ),
    ("clock.jumps", Unit::Count, "server clock jumps"),
    ("suspensions", Unit::Count, "session suspensions"),
    ("revocations", Unit::Count, "sessions the server revoked"),
    (
        "memory.start",
        Unit::Bytes,
        "resident memory of the harness after the ramp-up",
    ),
    (
        "memory.end",
        Unit::Bytes,
        "resident memory of the harness at the end",
    ),
    ("memory.peak", Unit::Bytes, "highest resident memory seen"),
    (
        "memory.growth",
        Unit::Bytes,
        "memory.end - memory.start (0 when it shrank)",
    ),
    ("duration", Unit::Millis, "how long the soak ran"),
];

/// Every metric a threshold can name: the fixed ones, and one `violations.<id>` per live
/// invariant (`violations.single-flight`).
pub fn catalogue() -> Vec<MetricInfo> {
    let mut v: Vec<MetricInfo> = FIXED
        .iter()
        .map(|(n, u, d)| MetricInfo {
            name: (*n).to_owned(),
            unit: *u,
            description: (*d).to_owned(),
        })
        .collect();
    for i in INVARIANTS {
        v.push(MetricInfo {
            name: invariant_metric(i.id),
            unit: Unit::Count,
            description: format!("violations of {} ({})", i.id, i.level),
        });
    }
    v
}

/// The metric that counts an invariant's violations (`live.single-flight` →
/// `violations.single-flight`).
pub fn invariant_metric(id: &str) -> String {
    format!("violations.{}", id.strip_prefix("live.").unwrap_or(id))
}

/// The metric called `name`.
pub fn metric(name: &str) -> Option<MetricInfo> {
    catalogue().into_iter().find(|m| m.name == name)
}

/// A latency histogram of fixed size: log-spaced buckets 4 % apart from 0.1 ms to about an hour,
/// so quantiles are within 4 % whatever the count.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: f64,
}

const BUCKETS: usize = 450;
const GROWTH: f64 = 1.04;
const FLOOR_MS: f64 = 0.1;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            max: 0.0,
        }
    }
}

impl Histogram {
    /// Records one value, ms.
    pub fn record(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let i = if ms <= FLOOR_MS {
            0
        } else {
            ((ms / FLOOR_MS).ln() / GROWTH.ln()).ceil() as usize
        };
        if let Some(b) = self.buckets.get_mut(i.min(BUCKETS - 1)) {
            *b += 1;
        }
        self.count += 1;
        self.max = self.max.max(ms);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The slowest value recorded, ms.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// The `q` quantile (0..=1), ms: the upper bound of its bucket, never above the max; 0 when
    /// empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return (FLOOR_MS * GROWTH.powi(i as i32)).min(self.max);
            }
        }
        self.max
    }
}

/// One second of a soak: what happened in it, and the gauges at its end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SecondRow {
    /// Seconds since the start (this row covers `t-1..t`).
    pub t: u64,
    /// The phase running.
    pub phase: String,
    /// Sessions logged in.
    pub alive: u64,
    /// Sessions suspended.
    pub suspended: u64,
    /// Requests the server saw.
    pub requests: u64,
    /// Refresh requests.
    pub refreshes: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// Faults injected.
    pub faults: u64,
    /// Violations found.
    pub violations: u64,
    /// Logouts signalled.
    pub logouts: u64,
    /// Resident memory of the harness, bytes.
    pub rss: u64,
}

impl SecondRow {
    /// The CSV header line.
    pub const CSV_HEADER: &'static str =
        "t,phase,alive,suspended,requests,refreshes,unauthorized,faults,violations,logouts,rss";

    /// The row as a CSV line (no newline).
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{}",
            self.t,
            self.phase.replace(',', " "),
            self.alive,
            self.suspended,
            self.requests,
            self.refreshes,
            self.unauthorized,
            self.faults,
            self.violations,
            self.logouts,
            self.rss
        )
    }
}

/// The per-second series, kept in memory at a bounded size for the charts: beyond `cap` rows,
/// neighbouring rows are merged (sums added, gauges from the later one). The full series is
/// streamed to disk by the report as rows arrive.
#[derive(Clone, Debug)]
pub struct Series {
    rows: Vec<SecondRow>,
    cap: usize,
    /// Seconds each kept row covers.
    pub step: u64,
}

impl Series {
    /// A series keeping at most `cap` rows (at least 2).
    pub fn new(cap: usize) -> Series {
        Series {
            rows: Vec::new(),
            cap: cap.max(2),
            step: 1,
        }
    }

    /// Adds the row of one more second.
    pub fn push(&mut self, row: SecondRow) {
        if let Some(last) = self.rows.last_mut()
            && self.step > 1
            && last.t % self.step != 0
        {
            merge(last, row);
            return;
        }
        self.rows.push(row);
        if self.rows.len() > self.cap {
            let old = std::mem::take(&mut self.rows);
            let mut it = old.into_iter();
            while let Some(mut a) = it.next() {
                if let Some(b) = it.next() {
                    merge(&mut a, b);
                }
                self.rows.push(a);
            }
            self.step *= 2;
        }
    }

    /// The rows kept.
    pub fn rows(&self) -> &[SecondRow] {
        &self.rows
    }
}

fn merge(a: &mut SecondRow, b: SecondRow) {
    a.requests += b.requests;
    a.refreshes += b.refreshes;
    a.unauthorized += b.unauthorized;
    a.faults += b.faults;
    a.violations += b.violations;
    a.logouts += b.logouts;
    a.t = b.t;
    a.phase = b.phase;
    a.alive = b.alive;
    a.suspended = b.suspended;
    a.rss = b.rss;
}

/// The metrics of a finished soak, by name.
pub type Values = BTreeMap<String, f64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.99), 0.0);
        for v in 1..=1000 {
            h.record(v as f64);
        }
        let p50 = h.quantile(0.5);
        assert!((480.0..=525.0).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((980.0..=1000.0).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000.0);
        h.record(f64::NAN);
        h.record(1e12);
        assert_eq!(h.count(), 1002);
    }

    #[test]
    fn the_series_stays_bounded() {
        let mut s = Series::new(8);
        for t in 1..=100 {
            s.push(SecondRow {
                t,
                refreshes: 1,
                alive: t,
                ..SecondRow::default()
            });
        }
        assert!(s.rows().len() <= 8);
        assert_eq!(s.rows().iter().map(|r| r.refreshes).sum::<u64>(), 100);
        assert_eq!(s.rows().last().map(|r| r.alive), Some(100));
    }

    #[test]
    fn every_invariant_has_a_metric() {
        assert!(metric("violations.single-flight").is_some());
        assert!(metric("refresh.p99").is_some_and(|m| m.unit == Unit::Millis));
        assert!(metric("nope").is_none());
        let names: Vec<String> = catalogue().into_iter().map(|m| m.name).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
    }
}
