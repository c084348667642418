//! The knob search: from the closest profile, a greedy search over the server config's knobs
//! (at most [`MAX_KNOBS`] changed) for a config whose mock answers the probe as the server did.

use super::error::AuditError;
use super::observation::{Difference, Observations};
use super::predict::observe;
use super::probe::ProbeOptions;
use rotary_server::{Profile, ServerConfig};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// At most this many knobs are changed from the profile.
pub const MAX_KNOBS: usize = 4;

/// The knobs the search tries, with the values it tries for each (the probe can tell them apart).
pub fn knobs() -> Vec<(&'static str, Vec<Value>)> {
    let bools = || vec![json!(true), json!(false)];
    vec![
        (
            "reuse_policy",
            vec![
                json!("grace-then-forbidden"),
                json!("grace-then-unknown"),
                json!("single-use"),
            ],
        ),
        ("rotate_refresh_tokens", bools()),
        ("revoke_old_access_token", bools()),
        ("keep_used_access_token_of_dropped_generation", bools()),
        ("expired_token_soft_logout", bools()),
        (
            "refresh_failure_soft_logout",
            vec![Value::Null, json!(true), json!(false)],
        ),
        ("serve_v1_refresh", bools()),
        ("serve_unstable_refresh", bools()),
        ("dialect", vec![json!("synapse"), json!("spec"), json!("mas")]),
        ("oauth", bools()),
        ("send_expires_in_ms", bools()),
        ("refreshable_access_token_lifetime", vec![Value::Null]),
    ]
}

/// The config that reproduces the observation (or comes closest).
#[derive(Clone, Debug, Serialize)]
pub struct Reproduction {
    /// The profile it starts from.
    pub profile: Profile,
    /// The knobs changed from that profile, with their values.
    pub knobs: BTreeMap<String, Value>,
    /// Differences the config still leaves (empty: it reproduces the server).
    pub remaining: Vec<Difference>,
    /// The whole config.
    #[serde(skip)]
    pub config: ServerConfig,
}

fn knob_value(cfg: &ServerConfig, knob: &str) -> Value {
    serde_json::to_value(cfg)
        .ok()
        .and_then(|v| v.get(knob).cloned())
        .unwrap_or(Value::Null)
}

/// Searches from `start` (a profile's mock config and its prediction).
pub async fn search(
    observed: &Observations,
    profile: Profile,
    start: ServerConfig,
    start_prediction: &Observations,
    opts: &ProbeOptions,
) -> Result<Reproduction, AuditError> {
    let mut cfg = start;
    let mut remaining = observed.differences(start_prediction);
    let mut changed: BTreeMap<String, Value> = BTreeMap::new();
    while !remaining.is_empty() && changed.len() < MAX_KNOBS {
        let mut candidates = Vec::new();
        for (knob, values) in knobs() {
            if changed.contains_key(knob) {
                continue;
            }
            let current = knob_value(&cfg, knob);
            for v in values {
                if v == current {
                    continue;
                }
                if let Ok(c) = cfg.patched(&json!({ knob: v.clone() })) {
                    candidates.push((knob, v, c));
                }
            }
        }
        let runs = candidates.iter().map(|(_, _, c)| observe(c, opts));
        let results = futures_util::future::join_all(runs).await;
        let mut best: Option<(usize, Vec<Difference>)> = None;
        for (i, r) in results.into_iter().enumerate() {
            let diffs = observed.differences(&r?);
            if diffs.len() < remaining.len() && best.as_ref().is_none_or(|(_, b)| diffs.len() < b.len()) {
                best = Some((i, diffs));
            }
        }
        let Some((i, diffs)) = best else { break };
        let (knob, v, c) = candidates.swap_remove(i);
        tracing::info!(knob, value = %v, left = diffs.len(), "knob search step");
        changed.insert(knob.to_owned(), v);
        cfg = c;
        remaining = diffs;
    }
    Ok(Reproduction {
        profile,
        knobs: changed,
        remaining,
        config: cfg,
    })
}
