//! Token generations as lanes: which lane each request sits in, and when each generation was born
//! and expires.

use super::style::*;
use crate::record::{ScenarioReport, StepRecord};
use rotary_judge::{AccessState, Delivery, RefreshState, TraceEntry};
use std::collections::HashMap;

/// How a request turned out, for its colour.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Ok,
    Unauthorized,
    Error,
    Lost,
    Pending,
}

impl Outcome {
    pub(super) fn of(e: &TraceEntry) -> Outcome {
        match e.delivery {
            Delivery::Dropped
            | Delivery::Reset
            | Delivery::Empty
            | Delivery::Garbage
            | Delivery::Truncated => Outcome::Lost,
            Delivery::Pending | Delivery::Abandoned => Outcome::Pending,
            Delivery::Sent => match e.status {
                Some(200..=299) => Outcome::Ok,
                Some(401) => Outcome::Unauthorized,
                Some(_) => Outcome::Error,
                None => Outcome::Pending,
            },
        }
    }

    pub(super) fn color(self) -> &'static str {
        match self {
            Outcome::Ok => C_OK,
            Outcome::Unauthorized => C_401,
            Outcome::Error => C_ERR,
            Outcome::Lost => C_LOST,
            Outcome::Pending => C_PENDING,
        }
    }
}

/// One lane: a token generation, or the `no token / unknown` lane.
pub(super) struct Lane {
    pub(super) label: String,
    pub(super) note: String,
    /// When the generation came to exist (real ms), if known.
    pub(super) birth: Option<f64>,
    /// The lane, time and delivery of the request that issued it.
    pub(super) parent: Option<Parent>,
    /// Expiry on the server clock (trace `t_ms` scale).
    pub(super) expires_at: Option<i64>,
    pub(super) access: Option<String>,
    pub(super) refresh: Option<String>,
}

pub(super) struct Parent {
    pub(super) lane: LaneRef,
    pub(super) at: f64,
    pub(super) delivered: bool,
    pub(super) seq: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LaneRef {
    Unknown,
    Gen(usize),
}

/// Lanes and the lane of every trace entry.
pub(super) struct Lanes {
    pub(super) gens: Vec<Lane>,
    pub(super) by_access: HashMap<String, usize>,
    pub(super) by_refresh: HashMap<String, usize>,
    /// Pairs the driver reported in `session_changed`: access → refresh and refresh → access.
    pub(super) pair_at: HashMap<String, String>,
    pub(super) pair_rt: HashMap<String, String>,
    pub(super) unknown_used: bool,
}

impl Lanes {
    pub(super) fn build(r: &ScenarioReport) -> (Lanes, Vec<LaneRef>) {
        let mut pair_at = HashMap::new();
        let mut pair_rt = HashMap::new();
        for n in r.notifications.iter().filter(|n| n.method == "session_changed") {
            let at = n.params.get("access_token").and_then(|v| v.as_str());
            let rt = n.params.get("refresh_token").and_then(|v| v.as_str());
            if let (Some(at), Some(rt)) = (at, rt) {
                pair_at.entry(at.to_owned()).or_insert_with(|| rt.to_owned());
                pair_rt.entry(rt.to_owned()).or_insert_with(|| at.to_owned());
            }
        }
        let mut lanes = Lanes {
            gens: Vec::new(),
            by_access: HashMap::new(),
            by_refresh: HashMap::new(),
            pair_at,
            pair_rt,
            unknown_used: false,
        };
        let mut placed = Vec::with_capacity(r.trace.len());
        for e in &r.trace {
            let lane = lanes.place(e);
            if lane == LaneRef::Unknown {
                lanes.unknown_used = true;
            }
            placed.push(lane);
            if let Some(i) = &e.issued {
                let known = i
                    .access_token
                    .as_ref()
                    .is_some_and(|a| lanes.by_access.contains_key(a))
                    || i.refresh_token
                        .as_ref()
                        .is_some_and(|t| lanes.by_refresh.contains_key(t));
                if (i.access_token.is_some() || i.refresh_token.is_some()) && !known {
                    let at = (e.real_ms + e.duration_ms.unwrap_or(0)) as f64;
                    lanes.add(Lane {
                        label: String::new(),
                        note: format!("issued by #{} {}", e.seq, e.endpoint),
                        birth: Some(at),
                        parent: Some(Parent {
                            lane,
                            at,
                            delivered: e.delivery == Delivery::Sent,
                            seq: e.seq,
                        }),
                        expires_at: i.expires_at_ms,
                        access: i.access_token.clone(),
                        refresh: i.refresh_token.clone(),
                    });
                }
            }
        }
        (lanes, placed)
    }

    pub(super) fn add(&mut self, mut lane: Lane) -> usize {
        let g = self.gens.len();
        if let Some(a) = &lane.access {
            self.by_access.insert(a.clone(), g);
        }
        if let Some(t) = &lane.refresh {
            self.by_refresh.insert(t.clone(), g);
        }
        lane.label = lane_label(lane.access.as_deref(), lane.refresh.as_deref());
        self.gens.push(lane);
        g
    }

    pub(super) fn place(&mut self, e: &TraceEntry) -> LaneRef {
        if let Some(rt) = &e.refresh_token {
            if let Some(&g) = self.by_refresh.get(&rt.label) {
                return LaneRef::Gen(g);
            }
            if rt.state == RefreshState::Unknown || rt.label.ends_with("#?") || rt.label == "-" {
                return LaneRef::Unknown;
            }
            // A refresh token minted outside the trace: join its access token's lane if known.
            let at = self.pair_rt.get(&rt.label).cloned();
            if let Some(g) = at.as_ref().and_then(|a| self.by_access.get(a)).copied() {
                if let Some(lane) = self.gens.get_mut(g) {
                    lane.refresh = Some(rt.label.clone());
                    lane.label = lane_label(lane.access.as_deref(), lane.refresh.as_deref());
                }
                self.by_refresh.insert(rt.label.clone(), g);
                return LaneRef::Gen(g);
            }
            return LaneRef::Gen(self.add(minted(e, at, Some(rt.label.clone()))));
        }
        let at = &e.access_token;
        if matches!(at.state, AccessState::Missing | AccessState::Unknown)
            || at.label.ends_with("#?")
            || at.label == "-"
        {
            return LaneRef::Unknown;
        }
        if let Some(&g) = self.by_access.get(&at.label) {
            return LaneRef::Gen(g);
        }
        let rt = self
            .pair_at
            .get(&at.label)
            .filter(|t| !self.by_refresh.contains_key(*t))
            .cloned();
        LaneRef::Gen(self.add(minted(e, Some(at.label.clone()), rt)))
    }

    pub(super) fn index(&self, l: LaneRef) -> usize {
        let shift = usize::from(self.unknown_used);
        match l {
            LaneRef::Unknown => 0,
            LaneRef::Gen(g) => g + shift,
        }
    }

    pub(super) fn count(&self) -> usize {
        self.gens.len() + usize::from(self.unknown_used)
    }
}

pub(super) fn minted(e: &TraceEntry, access: Option<String>, refresh: Option<String>) -> Lane {
    Lane {
        label: String::new(),
        note: "minted outside the trace".to_owned(),
        birth: Some(e.real_ms as f64),
        parent: None,
        expires_at: None,
        access,
        refresh,
    }
}

pub(super) fn lane_label(access: Option<&str>, refresh: Option<&str>) -> String {
    match (access, refresh) {
        (Some(a), Some(r)) => format!("{a} / {r}"),
        (Some(a), None) => a.to_owned(),
        (None, Some(r)) => format!("? / {r}"),
        (None, None) => "?".to_owned(),
    }
}

/// Where on the real axis the server clock reached `exp` (a `t_ms`), when that can be known.
pub(super) fn expiry_real(exp: i64, trace: &[TraceEntry], steps: &[StepRecord]) -> Option<i64> {
    let jumps: Vec<(i64, i64)> = steps
        .iter()
        .filter(|s| s.action == "advance_clock")
        .map(|s| (s.started_ms, s.ended_ms))
        .collect();
    let offset = |e: &TraceEntry| e.t_ms - e.real_ms;
    match trace.iter().position(|e| e.t_ms >= exp) {
        None => {
            let last = trace.last()?;
            let linear = exp - offset(last);
            // A clock advance after the last request, before the linear expiry: unknowable.
            if jumps.iter().any(|&(s, _)| s >= last.real_ms && s <= linear) {
                return None;
            }
            Some(linear)
        }
        Some(j) => {
            let after = &trace[j];
            let (lo, before) = match j.checked_sub(1).and_then(|i| trace.get(i)) {
                Some(p) => (p.real_ms, offset(p)),
                None => (
                    0,
                    if jumps.iter().any(|&(s, _)| s <= after.real_ms) {
                        0
                    } else {
                        offset(after)
                    },
                ),
            };
            let hi = after.real_ms.max(lo);
            if (offset(after) - before).abs() <= CLOCK_TOLERANCE_MS {
                return Some((exp - before).clamp(lo, hi));
            }
            // The clock jumped between the two requests: only an advance_clock step says when.
            let &(_, jump_end) = jumps.iter().find(|&&(s, e)| e >= lo && s <= hi)?;
            let linear = exp - before;
            Some(linear.min(jump_end).clamp(lo, hi))
        }
    }
}
