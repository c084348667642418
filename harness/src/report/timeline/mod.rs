//! The timeline of one scenario as an inline SVG (no script): who presented which token when.
//!
//! - The x axis is real time since the scenario's server started (the trace's `real_ms`). Idle
//!   stretches longer than an eighth of the run (a `sleep` step, a hang) are collapsed to a hatched
//!   strip labelled with their length, so a burst after a wait keeps its width.
//! - One lane per **token generation**: the access token a login, registration or refresh
//!   issued, together with its refresh token (`at#2 / rt#2`). A request sits in the lane of the
//!   access token it presented; a refresh in the lane of the generation whose refresh token it
//!   presented. Requests without a token, or with one the server never issued, sit in the top lane
//!   `no token / unknown`; a token minted outside the trace (a restored session) gets its own lane
//!   the first time it appears, paired with its refresh token through the driver's
//!   `session_changed` notifications.
//! - A thin connector links the request that issued a generation to its lane, at the moment the
//!   response was produced (dashed purple when the response never reached the client).
//! - Each request is a mark (a circle; a refresh a larger diamond) coloured by outcome: 2xx green,
//!   401 amber, other statuses red, not delivered (dropped, reset, empty, garbage, truncated) purple
//!   with an ×, pending or abandoned grey; a bar shows how long the server took. A fired fault
//!   gets a thick red ring and its action's name. Requests a failed check points at are numbered.
//! - The moment an access token expires is a dashed line in its lane. The expiry is on the server
//!   clock, so it is placed on the real axis only where the clock offset is known (no clock
//!   advance, or an `advance_clock` step that explains it); an expiry after the end reads
//!   `exp. at …` on the right.
//! - Steps are alternating bands across all lanes, numbered at the top; driver notifications sit
//!   on their own row (`logged_out` a red flag, soft or hard; `session_changed` a blue tick).
//! - Every mark has a `<title>` tooltip with the full [`trace_line`].
//!
//! The output depends only on the report: no clock, no randomness.

mod glyphs;
mod lanes;
mod scale;
mod style;

use crate::record::ScenarioReport;
use crate::report::terminal::trace_line;
use crate::report::text::{esc, human_ms};
use glyphs::*;
use lanes::*;
use rotary_judge::TraceEntry;
use scale::*;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use style::*;

/// The timeline of one scenario as a standalone `<svg>` element (see the module documentation).
pub fn timeline_svg(r: &ScenarioReport) -> String {
    let (lanes, placed) = Lanes::build(r);
    let failed_evidence: HashSet<u64> = r
        .failed_checks()
        .flat_map(|c| c.evidence.iter().copied())
        .collect();

    // Time domain.
    let mut times: Vec<f64> = Vec::new();
    for e in &r.trace {
        times.push(e.real_ms as f64);
        if let Some(d) = e.duration_ms {
            times.push((e.real_ms + d) as f64);
        }
    }
    for s in &r.steps {
        times.push(s.started_ms as f64);
        times.push(s.ended_ms as f64);
    }
    times.extend(r.notifications.iter().map(|n| n.at_ms as f64));
    let sc = Scale::new(times);
    let (lo, hi) = (sc.lo, sc.hi);

    // Step label rows.
    let mut row_end = [f64::NEG_INFINITY; MAX_STEP_ROWS];
    let mut step_rows: Vec<Option<usize>> = Vec::new();
    for s in &r.steps {
        let x = sc.x(s.started_ms as f64);
        let w = text_w(&step_text(s), 10.0, false);
        let row = (0..MAX_STEP_ROWS).find(|&k| x >= row_end[k] + 6.0);
        if let Some(k) = row {
            row_end[k] = x + w;
        }
        step_rows.push(row);
    }
    let rows_used = step_rows.iter().flatten().max().map_or(1, |m| m + 1);
    let steps_top = TOP;
    let notes_top = steps_top + rows_used as f64 * STEP_ROW + 4.0;
    let lanes_top = notes_top + NOTE_ROW;
    let n_lanes = lanes.count().max(1);
    let lane_h: f64 = if n_lanes <= 12 {
        46.0
    } else if n_lanes <= 40 {
        22.0
    } else if n_lanes <= 80 {
        14.0
    } else {
        10.0
    };
    let lanes_bottom = lanes_top + n_lanes as f64 * lane_h;
    let legend_items = legend_items();
    let legend_rows = legend_layout(&legend_items).last().map_or(1, |&(_, row)| row + 1);
    let legend_top = lanes_bottom + AXIS_H + 6.0;
    let height = legend_top + legend_rows as f64 * LEGEND_ROW + 6.0;
    let mut radius: f64 = if lane_h >= 40.0 {
        4.5
    } else if lane_h >= 22.0 {
        3.6
    } else {
        2.6
    };
    if r.trace.len() > 200 {
        radius *= 0.8;
    }
    let lane_y = |i: usize| lanes_top + i as f64 * lane_h;
    let lane_mid = |i: usize| lane_y(i) + if lane_h >= 40.0 { 24.0 } else { lane_h / 2.0 };

    let mut o = String::with_capacity(4096 + r.trace.len() * 400);
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="rotary-timeline" width="{w}" height="{h:.0}" viewBox="0 0 {w} {h:.0}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" font-size="11" role="img" aria-label="{label}">"#,
        w = WIDTH,
        h = height,
        label = esc(&format!(
            "Timeline of {}: requests per token generation over time",
            r.id
        )),
    );
    let _ = write!(o, "<title>{}</title>", esc(&format!("Timeline of {}", r.id)));
    o.push_str("<style>.rt-m:hover>*:first-child{stroke:#000;stroke-width:2}.rt-n:hover{opacity:.7}</style>");
    let _ = write!(
        o,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height:.0}" fill="#fff"/>"##
    );

    // Step bands and labels.
    for (k, s) in r.steps.iter().enumerate() {
        let x0 = sc.x(s.started_ms as f64);
        let x1 = sc.x(s.ended_ms.max(s.started_ms) as f64);
        let title = esc(&format!(
            "step {}{}: {} {} — {} ms, {}",
            s.index,
            s.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
            s.action,
            s.summary,
            s.ended_ms - s.started_ms,
            if s.outcome.is_ok() { "ok" } else { "failed" }
        ));
        let _ = write!(
            o,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}"><title>{title}</title></rect>"#,
            y = steps_top,
            w = (x1 - x0).max(1.5),
            h = lanes_bottom - steps_top,
            fill = BANDS[k % 2],
        );
    }
    for (k, s) in r.steps.iter().enumerate() {
        if let Some(Some(row)) = step_rows.get(k) {
            let ty = steps_top + (*row as f64 + 1.0) * STEP_ROW - 3.5;
            let color = if s.outcome.is_ok() { C_MUTED } else { C_ERR };
            let _ = write!(
                o,
                r#"<text x="{x:.1}" y="{ty:.1}" font-size="10" fill="{color}">{t}</text>"#,
                x = sc.x(s.started_ms as f64) + 2.0,
                t = esc(&step_text(s)),
            );
        }
    }

    // Collapsed idle gaps: hatched, with their length under the axis.
    o.push_str(r##"<defs><pattern id="rt-gap" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff" opacity="0.6"/><line x1="0" y1="0" x2="0" y2="6" stroke="#ced4da" stroke-width="1.5"/></pattern></defs>"##);
    for g in sc.segs.iter().filter(|s| s.gap) {
        let _ = write!(
            o,
            r##"<g><title>{t}</title><rect x="{x:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" fill="url(#rt-gap)"/><line x1="{x:.1}" x2="{x:.1}" y1="{y0:.1}" y2="{y1:.1}" stroke="#adb5bd" stroke-dasharray="3,2"/><line x1="{x2:.1}" x2="{x2:.1}" y1="{y0:.1}" y2="{y1:.1}" stroke="#adb5bd" stroke-dasharray="3,2"/><text x="{xm:.1}" y="{ty:.1}" font-size="9.5" font-style="italic" text-anchor="middle" fill="{C_MUTED}">{l}</text></g>"##,
            t = esc(&format!(
                "{} without requests, drawn compressed",
                human_ms((g.t1 - g.t0).round() as i64)
            )),
            x = g.x0,
            x2 = g.x1,
            xm = (g.x0 + g.x1) / 2.0,
            y0 = notes_top,
            y1 = lanes_bottom + 20.0,
            w = g.x1 - g.x0,
            h = lanes_bottom - notes_top,
            ty = lanes_bottom + 29.0,
            l = esc(&format!("+{}", human_ms((g.t1 - g.t0).round() as i64))),
        );
    }

    // Gutter labels and lane separators.
    let _ = write!(
        o,
        r#"<text x="8" y="{y:.1}" font-size="10" fill="{C_MUTED}">steps</text><text x="8" y="{ny:.1}" font-size="10" fill="{C_MUTED}">driver notifications</text>"#,
        y = steps_top + STEP_ROW - 3.5,
        ny = notes_top + NOTE_ROW / 2.0 + 3.5,
    );
    let _ = write!(
        o,
        r#"<line x1="0" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}" stroke="{C_LINE}" stroke-width="0.8"/>"#,
        y = lanes_top
    );
    let label_size = if lane_h >= 22.0 { 11.0 } else { 9.0 };
    for i in 0..n_lanes {
        let (label, note) = if lanes.unknown_used && i == 0 {
            (
                "no token / unknown".to_owned(),
                "login, register, unknown tokens".to_owned(),
            )
        } else {
            match lanes.gens.get(i - usize::from(lanes.unknown_used)) {
                Some(l) => (l.label.clone(), l.note.clone()),
                None => ("(no requests)".to_owned(), String::new()),
            }
        };
        let y = lane_y(i);
        let _ = write!(
            o,
            r##"<line x1="0" x2="{WIDTH}" y1="{y1:.1}" y2="{y1:.1}" stroke="#dee2e6" stroke-width="0.8"/>"##,
            y1 = y + lane_h
        );
        if lane_h >= 40.0 && !note.is_empty() {
            let _ = write!(
                o,
                r#"<text x="8" y="{ty:.1}" font-family="{MONO}" font-size="{label_size}" font-weight="600" fill="{C_TEXT}">{l}</text><text x="8" y="{ny:.1}" font-size="9" fill="{C_MUTED}">{n}</text>"#,
                ty = y + 20.0,
                ny = y + 33.0,
                l = esc(&label),
                n = esc(&note),
            );
        } else {
            let _ = write!(
                o,
                r#"<text x="8" y="{ty:.1}" font-family="{MONO}" font-size="{label_size}" font-weight="600" fill="{C_TEXT}"><title>{n}</title>{l}</text>"#,
                ty = y + lane_h / 2.0 + label_size * 0.35,
                l = esc(&label),
                n = esc(&note),
            );
        }
    }

    // Grid and axis: nice ticks in each active stretch.
    let mut last_label = f64::NEG_INFINITY;
    for s in sc.segs.iter().filter(|s| !s.gap) {
        let step = tick_step(s.t1 - s.t0, ((s.x1 - s.x0) / 90.0).max(1.0));
        let mut k = (s.t0 / step).ceil();
        while k * step <= s.t1 {
            let t = k * step;
            k += 1.0;
            let x = sc.x(t);
            if x - last_label < 56.0 {
                continue;
            }
            last_label = x;
            let _ = write!(
                o,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y0:.1}" y2="{y1:.1}" stroke="#ced4da" stroke-width="0.6" stroke-dasharray="2,3"/><line x1="{x:.1}" x2="{x:.1}" y1="{y1:.1}" y2="{y2:.1}" stroke="{C_MUTED}"/><text x="{x:.1}" y="{ty:.1}" font-size="10" text-anchor="middle" fill="{C_MUTED}">{l}</text>"##,
                y0 = notes_top,
                y1 = lanes_bottom,
                y2 = lanes_bottom + 4.0,
                ty = lanes_bottom + 15.0,
                l = esc(&tick_label(t, step, hi)),
            );
        }
    }
    let _ = write!(
        o,
        r#"<line x1="{GUTTER}" x2="{x1:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{C_MUTED}"/><text x="8" y="{ty:.1}" font-size="10" fill="{C_MUTED}">real time since server start →</text>"#,
        x1 = GUTTER + PLOT_W,
        y = lanes_bottom,
        ty = lanes_bottom + 15.0,
    );

    // Lane lines, expiries and connectors.
    for (g, lane) in lanes.gens.iter().enumerate() {
        let i = lanes.index(LaneRef::Gen(g));
        let y = lane_mid(i);
        let birth = lane.birth.unwrap_or(lo).max(lo);
        let expiry = lane.expires_at.and_then(|e| expiry_real(e, &r.trace, &r.steps));
        let xb = sc.x(birth);
        let xe = sc.x(hi);
        match expiry.map(|e| e as f64) {
            Some(e) if e >= birth && e <= hi => {
                let xx = sc.x(e);
                let _ = write!(
                    o,
                    r#"<line x1="{xb:.1}" x2="{xx:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{C_LINE}" stroke-width="2"/><line x1="{xx:.1}" x2="{xe:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{C_LINE}" stroke-width="1" stroke-dasharray="1,3"/>"#
                );
                let _ = write!(
                    o,
                    r#"<g><title>{t}</title><line x1="{xx:.1}" x2="{xx:.1}" y1="{y0:.1}" y2="{y1:.1}" stroke="{C_TEXT}" stroke-width="1.5" stroke-dasharray="4,2"/><text x="{tx:.1}" y="{ty:.1}" font-size="9" fill="{C_TEXT}">expires</text></g>"#,
                    t = esc(&format!(
                        "{} expires at {} (server clock {} ms)",
                        lane.access.as_deref().unwrap_or("?"),
                        human_ms(e as i64),
                        lane.expires_at.unwrap_or_default()
                    )),
                    y0 = lane_y(i) + 2.0,
                    y1 = lane_y(i) + lane_h - 2.0,
                    tx = xx + 3.0,
                    ty = lane_y(i) + lane_h - 4.0,
                );
            }
            other => {
                let _ = write!(
                    o,
                    r#"<line x1="{xb:.1}" x2="{xe:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{C_LINE}" stroke-width="2"/>"#
                );
                if let Some(e) = other.filter(|&e| e > hi) {
                    let _ = write!(
                        o,
                        r#"<text x="{tx:.1}" y="{ty:.1}" font-size="9" fill="{C_MUTED}"><title>{t}</title>exp. at {l}</text>"#,
                        tx = GUTTER + PLOT_W + 6.0,
                        ty = y + 3.0,
                        l = esc(&human_ms(e as i64)),
                        t = esc(&format!(
                            "{} expires at {} on the real axis (server clock {} ms), after this timeline ends",
                            lane.access.as_deref().unwrap_or("?"),
                            human_ms(e as i64),
                            lane.expires_at.unwrap_or_default()
                        )),
                    );
                }
            }
        }
        if let Some(p) = &lane.parent {
            let py = lane_mid(lanes.index(p.lane));
            let x = sc.x(p.at);
            let (color, dash, what) = if p.delivered {
                ("#868e96", "", "issued")
            } else {
                (
                    C_LOST,
                    r#" stroke-dasharray="3,2""#,
                    "issued, but the response never reached the client",
                )
            };
            let _ = write!(
                o,
                r##"<g><title>{t}</title><line x1="{x:.1}" x2="{x:.1}" y1="{py:.1}" y2="{y:.1}" stroke="{color}" stroke-width="1.2"{dash}/><circle cx="{x:.1}" cy="{y:.1}" r="2.6" fill="#fff" stroke="{color}" stroke-width="1.2"/></g>"##,
                t = esc(&format!("{} {what} by #{}", lane.label, p.seq)),
            );
        }
    }

    // Duration bars, then marks.
    let entries: Vec<(usize, &TraceEntry)> = placed
        .iter()
        .zip(&r.trace)
        .map(|(l, e)| (lanes.index(*l), e))
        .collect();
    for &(i, e) in &entries {
        let x0 = sc.x(e.real_ms as f64);
        let y = lane_mid(i);
        let color = Outcome::of(e).color();
        match e.duration_ms {
            Some(d) => {
                let x1 = sc.x((e.real_ms + d) as f64);
                if x1 - x0 >= 1.5 {
                    let _ = write!(
                        o,
                        r#"<rect x="{x0:.1}" y="{yy:.1}" width="{w:.1}" height="3" fill="{color}" opacity="0.45"/>"#,
                        yy = y - 1.5,
                        w = x1 - x0,
                    );
                }
            }
            None => {
                let _ = write!(
                    o,
                    r#"<line x1="{x0:.1}" x2="{x1:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{C_PENDING}" stroke-width="2" stroke-dasharray="4,3"/>"#,
                    x1 = sc.x(hi),
                );
            }
        }
    }
    let unit = ((lane_h / 2.0 - radius - 1.0) / 2.0).clamp(0.5, 4.5);
    let mut cluster: HashMap<usize, (f64, usize)> = HashMap::new();
    let mut evidence_labels: HashMap<usize, Vec<Label>> = HashMap::new();
    let mut fault_labels: HashMap<usize, Vec<Label>> = HashMap::new();
    for &(i, e) in &entries {
        let x = sc.x(e.real_ms as f64);
        let slot = cluster.entry(i).or_insert((f64::NEG_INFINITY, 0));
        if (x - slot.0).abs() < radius * 1.2 {
            slot.1 += 1;
        } else {
            *slot = (x, 0);
        }
        let k = slot.1 % 5;
        let shift = [0.0, -1.0, 1.0, -2.0, 2.0][k] * unit;
        let y = lane_mid(i) + shift;
        let outcome = Outcome::of(e);
        let color = outcome.color();
        let refresh = e.refresh_token.is_some() || e.endpoint == "refresh";
        let _ = write!(o, r#"<g class="rt-m"><title>{}</title>"#, esc(&trace_line(e)));
        let rr = if refresh { radius * 1.7 } else { radius };
        if refresh {
            let _ = write!(
                o,
                r##"<path d="M{x:.1},{a:.1}L{b:.1},{y:.1}L{x:.1},{c:.1}L{d:.1},{y:.1}Z" fill="{color}" stroke="#fff" stroke-width="1"/>"##,
                a = y - rr,
                b = x + rr,
                c = y + rr,
                d = x - rr,
            );
        } else {
            let _ = write!(
                o,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="{rr:.1}" fill="{color}" stroke="#fff" stroke-width="1"/>"##
            );
        }
        if outcome == Outcome::Lost {
            let q = rr * 0.55;
            let _ = write!(
                o,
                r##"<path d="M{a:.1},{b:.1}L{c:.1},{d:.1}M{a:.1},{d:.1}L{c:.1},{b:.1}" stroke="#fff" stroke-width="1.6"/>"##,
                a = x - q,
                b = y - q,
                c = x + q,
                d = y + q,
            );
        }
        if e.fault.is_some() {
            let _ = write!(
                o,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="{rf:.1}" fill="none" stroke="{C_FAULT}" stroke-width="2.5"/>"#,
                rf = rr + 3.0
            );
        }
        o.push_str("</g>");
        // Labels: above the mark the seq of a failed check's evidence, below it the fault's action.
        if lane_h >= 40.0 {
            if failed_evidence.contains(&e.seq) {
                add_label(evidence_labels.entry(i).or_default(), x, &format!("#{}", e.seq));
            }
            if let Some(f) = &e.fault {
                add_label(fault_labels.entry(i).or_default(), x, &f.action);
            }
        }
    }
    for i in 0..n_lanes {
        for (row, dy, color) in [
            (&evidence_labels, 9.5, C_TEXT),
            (&fault_labels, lane_h - 2.5, C_FAULT),
        ] {
            for g in row.get(&i).into_iter().flatten().filter(|g| !g.text.is_empty()) {
                let _ = write!(
                    o,
                    r#"<text x="{lx:.1}" y="{ty:.1}" font-size="9" font-weight="600" fill="{color}">{t}</text>"#,
                    lx = g.x,
                    ty = lane_y(i) + dy,
                    t = esc(&g.text),
                );
            }
        }
    }

    // Notifications.
    let ny = notes_top + NOTE_ROW / 2.0;
    for n in &r.notifications {
        let x = sc.x(n.at_ms as f64);
        let params = serde_json::to_string(&n.params).unwrap_or_default();
        let title = esc(&format!(
            "{} {} at +{}ms (step {})",
            n.method, params, n.at_ms, n.step
        ));
        match n.method.as_str() {
            "logged_out" => {
                let soft = n.params.get("soft_logout").and_then(serde_json::Value::as_bool);
                let kind = match soft {
                    Some(true) => "soft",
                    Some(false) => "hard",
                    None => "?",
                };
                let _ = write!(
                    o,
                    r#"<g class="rt-n"><title>{title}</title><line x1="{x:.1}" x2="{x:.1}" y1="{a:.1}" y2="{b:.1}" stroke="{C_ERR}" stroke-width="1" stroke-dasharray="2,2" opacity="0.7"/><line x1="{x:.1}" x2="{x:.1}" y1="{c:.1}" y2="{d:.1}" stroke="{C_ERR}" stroke-width="1.6"/><path d="M{x:.1},{c:.1}L{fx:.1},{fm:.1}L{x:.1},{fb:.1}Z" fill="{C_ERR}"/>"#,
                    a = ny,
                    b = lanes_bottom,
                    c = ny - 10.0,
                    d = ny + 10.0,
                    fx = x + 11.0,
                    fm = ny - 6.5,
                    fb = ny - 3.0,
                );
                let _ = write!(
                    o,
                    r#"<text x="{tx:.1}" y="{ty:.1}" font-size="10" font-weight="700" fill="{C_ERR}">logged_out ({kind})</text></g>"#,
                    tx = x + 13.0,
                    ty = ny + 7.0,
                );
            }
            "session_changed" => {
                let _ = write!(
                    o,
                    r#"<g class="rt-n"><title>{title}</title><rect x="{rx:.1}" y="{ry:.1}" width="6" height="14" fill="transparent"/><line x1="{x:.1}" x2="{x:.1}" y1="{a:.1}" y2="{b:.1}" stroke="{C_SESSION}" stroke-width="2"/></g>"#,
                    rx = x - 3.0,
                    ry = ny - 7.0,
                    a = ny - 6.0,
                    b = ny + 6.0,
                );
            }
            _ => {
                let _ = write!(
                    o,
                    r#"<g class="rt-n"><title>{title}</title><circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{C_MUTED}"/></g>"#,
                    y = ny + 7.0,
                );
            }
        }
    }

    if r.trace.is_empty() {
        let _ = write!(
            o,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="12" text-anchor="middle" fill="{C_MUTED}">no request reached the server</text>"#,
            x = GUTTER + PLOT_W / 2.0,
            y = lanes_top + lane_h / 2.0 + 4.0,
        );
    }

    // Legend.
    for (k, &(x, row)) in legend_layout(&legend_items).iter().enumerate() {
        let Some((glyph, text)) = legend_items.get(k) else {
            continue;
        };
        let y = legend_top + row as f64 * LEGEND_ROW + LEGEND_ROW / 2.0;
        o.push_str(&glyph.draw(x + 8.0, y));
        let _ = write!(
            o,
            r#"<text x="{tx:.1}" y="{ty:.1}" font-size="10.5" fill="{C_TEXT}">{t}</text>"#,
            tx = x + 20.0,
            ty = y + 3.5,
            t = esc(text),
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_nice() {
        assert_eq!(tick_step(1_000.0, 10.0), 100.0);
        assert_eq!(tick_step(60_000.0, 10.0), 10_000.0);
        assert_eq!(tick_step(12.0, 10.0), 2.0);
        assert_eq!(tick_step(3.0, 10.0), 1.0);
        assert_eq!(tick_label(1_500.0, 500.0, 3_000.0), "1.5 s");
        assert_eq!(tick_label(250.0, 50.0, 900.0), "250 ms");
        assert_eq!(tick_label(150_000.0, 30_000.0, 300_000.0), "2m30s");
    }
}
