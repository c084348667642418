//! What the audit tells: the table a person reads in a minute, the JSON for tools (tokens as
//! labels), and the server config TOML that reproduces the observation.

use super::http::Exchange;
use super::observation::{Behaviour, Difference, Level, Observations, Verdict, verdict};
use super::search::Reproduction;
use rotary_server::Profile;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::time::Duration;

/// A prediction cell: `=` when it equals the observed value; a skipped or not-probed row by its
/// first word only (the observed column and the JSON keep the reason).
fn short_prediction(predicted: &str, observed: &str) -> String {
    if predicted == observed {
        "=".to_owned()
    } else if predicted.starts_with("skipped") {
        "skipped".to_owned()
    } else if predicted.starts_with("n/a") {
        "n/a".to_owned()
    } else {
        predicted.to_owned()
    }
}

/// Which profile the server matched, or the closest one.
#[derive(Clone, Debug)]
pub enum Matched {
    /// Every compared behaviour equals this profile's prediction.
    Profile(Profile),
    /// None matched: the profile with the fewest differences.
    Closest {
        /// The profile.
        profile: Profile,
        /// Where the server differs from it.
        differences: Vec<Difference>,
    },
}

/// A finished audit.
#[derive(Clone, Debug)]
pub struct AuditReport {
    /// The homeserver's base URL.
    pub homeserver: String,
    /// `login` or `register`.
    pub mode: &'static str,
    /// `--max-wait`.
    pub max_wait: Duration,
    /// Requests sent to the server (cleanup included).
    pub requests: usize,
    /// How long the probe of the server took.
    pub duration: Duration,
    /// What the server did.
    pub observed: Observations,
    /// What each profile's mock did.
    pub predictions: Vec<(Profile, Observations)>,
    /// The match.
    pub matched: Matched,
    /// The config that reproduces the server.
    pub reproduction: Reproduction,
    /// Devices the audit created.
    pub devices_created: usize,
    /// Devices that could not be logged out (should be empty).
    pub devices_left: Vec<String>,
    /// Every request of the probe.
    pub exchanges: Vec<Exchange>,
}

impl AuditReport {
    /// The name of the matched profile, if one matched.
    pub fn profile(&self) -> Option<Profile> {
        match &self.matched {
            Matched::Profile(p) => Some(*p),
            Matched::Closest { .. } => None,
        }
    }

    /// The spec verdicts on the observed values.
    pub fn verdicts(&self) -> Vec<Verdict> {
        Behaviour::ALL
            .into_iter()
            .filter_map(|b| verdict(b, self.observed.get(b)))
            .collect()
    }

    /// The `must` verdicts the server breaks.
    pub fn must_broken(&self) -> Vec<Verdict> {
        self.verdicts()
            .into_iter()
            .filter(|v| v.level == Level::Must && !v.ok)
            .collect()
    }

    /// The table and the conclusion, for people.
    pub fn table(&self) -> String {
        let verdicts = self.verdicts();
        let mut header = vec!["behaviour".to_owned(), "observed".to_owned()];
        header.extend(self.predictions.iter().map(|(p, _)| p.name().to_owned()));
        header.push("spec".to_owned());
        let mut rows = vec![header];
        for b in Behaviour::ALL {
            let observed = self.observed.get(b);
            let mut row = vec![b.title().to_owned(), observed.to_owned()];
            for (_, pred) in &self.predictions {
                let p = pred.get(b);
                row.push(short_prediction(p, observed));
            }
            row.push(
                verdicts
                    .iter()
                    .find(|v| v.behaviour == b)
                    .map_or_else(String::new, Verdict::cell),
            );
            rows.push(row);
        }
        let columns = rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rotary audit of {} ({}; {} requests in {:.2} s)\n",
            self.homeserver,
            self.mode,
            self.requests,
            self.duration.as_secs_f64()
        );
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "\n= the profile's mock answered the same; sl = soft_logout; n/a = not probed this run\n"
        );
        match &self.matched {
            Matched::Profile(p) => {
                let _ = writeln!(out, "matches profile {p}");
            }
            Matched::Closest { profile, differences } => {
                let list: Vec<String> = differences
                    .iter()
                    .map(|d| {
                        format!(
                            "{} (observed {}, {profile} {})",
                            d.behaviour.key(),
                            d.observed,
                            d.predicted
                        )
                    })
                    .collect();
                let _ = writeln!(out, "closest: {profile}, differs in {}", list.join("; "));
                let r = &self.reproduction;
                let knobs: Vec<String> = r.knobs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                if r.remaining.is_empty() {
                    let _ = writeln!(
                        out,
                        "reproduced by profile {} with {}",
                        r.profile,
                        knobs.join(", ")
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "no config of at most {} knobs reproduces it; best: profile {} with [{}], still differs in {}",
                        super::search::MAX_KNOBS,
                        r.profile,
                        knobs.join(", "),
                        r.remaining
                            .iter()
                            .map(|d| d.behaviour.key())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
        for v in self.must_broken() {
            let _ = writeln!(
                out,
                "MUST broken: {} — {} (observed {})",
                v.behaviour.key(),
                v.rule,
                self.observed.get(v.behaviour)
            );
        }
        if !self.devices_left.is_empty() {
            let _ = writeln!(
                out,
                "warning: could not log out device(s) {}",
                self.devices_left.join(", ")
            );
        }
        out
    }

    /// The JSON report: raw observations (tokens as labels), predictions, verdicts, the match.
    pub fn to_json(&self) -> Value {
        let mut predictions = Map::new();
        for (p, o) in &self.predictions {
            predictions.insert(p.name().to_owned(), json!(o));
        }
        let mut out = json!({
            "schema": 1,
            "homeserver": self.homeserver,
            "mode": self.mode,
            "max_wait_ms": u64::try_from(self.max_wait.as_millis()).unwrap_or(u64::MAX),
            "requests": self.requests,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            "observations": self.observed,
            "predictions": predictions,
            "verdicts": self.verdicts(),
            "must_broken": self.must_broken().iter().map(|v| v.behaviour).collect::<Vec<_>>(),
            "reproduction": self.reproduction,
            "devices": {"created": self.devices_created, "left": self.devices_left},
            "exchanges": self.exchanges,
        });
        if let Value::Object(m) = &mut out {
            match &self.matched {
                Matched::Profile(p) => {
                    m.insert("profile".into(), json!(p.name()));
                }
                Matched::Closest { profile, differences } => {
                    m.insert("closest_profile".into(), json!(profile.name()));
                    m.insert("differences".into(), json!(differences));
                }
            }
        }
        out
    }

    /// The server config (the TOML `rotary serve --config` and `rotary run --server-config`
    /// read) that reproduces the observation.
    pub fn profile_toml(&self) -> String {
        let r = &self.reproduction;
        let mut table = toml::Table::new();
        table.insert("profile".into(), toml::Value::String(r.profile.name().to_owned()));
        let cfg = serde_json::to_value(&r.config).unwrap_or(Value::Null);
        let mut keys: Vec<String> = vec!["refreshable_access_token_lifetime".to_owned()];
        keys.extend(r.knobs.keys().cloned());
        for k in keys {
            let v = cfg.get(&k).cloned().unwrap_or(Value::Null);
            let value = match v {
                Value::Null if k.ends_with("lifetime") => toml::Value::String("none".to_owned()),
                Value::Null => continue,
                Value::Bool(b) => toml::Value::Boolean(b),
                Value::String(s) => toml::Value::String(s),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => toml::Value::Integer(i),
                    None => continue,
                },
                _ => continue,
            };
            table.insert(k, value);
        }
        let mut body = toml::to_string(&table).unwrap_or_default();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        format!(
            "# Written by `rotary audit` of {}: a mock homeserver that answers the audit's probe as it did.\n\
             # rotary serve --config FILE    or    rotary run --server-config FILE\n{body}",
            self.homeserver
        )
    }
}
