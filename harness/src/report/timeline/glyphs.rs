//! Marks, labels that must not overlap, and the legend.

use super::scale::text_w;
use super::style::*;
use crate::record::StepRecord;

/// A text next to one or more marks of a lane.
pub(super) struct Label {
    pub(super) x: f64,
    pub(super) text: String,
    /// x of the last mark the label covers.
    pub(super) last: f64,
}

pub(super) const LABEL_CHAR_W: f64 = 9.0 * 0.62;

/// Adds a label for the mark at `x` to a row: marks close together share one label, and a later
/// label cuts an earlier one short rather than overlap it (the tooltips have everything).
pub(super) fn add_label(row: &mut Vec<Label>, x: f64, text: &str) {
    let lx = x - 3.0;
    match row.last_mut() {
        Some(g) if x - g.last < 12.0 => {
            if g.text.chars().count() < 40 {
                if !g.text.split(' ').any(|w| w == text) {
                    g.text.push(' ');
                    g.text.push_str(text);
                }
            } else if !g.text.ends_with('…') {
                g.text.push_str(" …");
            }
            g.last = x;
        }
        Some(g) if lx <= g.x + g.text.chars().count() as f64 * LABEL_CHAR_W + 4.0 => {
            let room = ((lx - 4.0 - g.x) / LABEL_CHAR_W).floor().max(0.0) as usize;
            if room < 3 {
                g.text.clear();
            } else if g.text.chars().count() > room {
                g.text = g
                    .text
                    .chars()
                    .take(room - 1)
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
                    + "…";
            }
            row.push(Label {
                x: lx,
                text: text.to_owned(),
                last: x,
            });
        }
        _ => row.push(Label {
            x: lx,
            text: text.to_owned(),
            last: x,
        }),
    }
}

pub(super) fn step_text(s: &StepRecord) -> String {
    format!("{} {}", s.index, s.action)
}

#[derive(Clone, Copy)]
pub(super) enum Glyph {
    Dot(&'static str),
    Lost,
    Diamond,
    Fault,
    Expiry,
    Connector,
    Flag,
    Tick,
    Band,
}

impl Glyph {
    pub(super) fn draw(self, x: f64, y: f64) -> String {
        match self {
            Glyph::Dot(c) => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{c}"/>"#),
            Glyph::Lost => format!(
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{C_LOST}"/><path d="M{a:.1},{b:.1}L{c:.1},{d:.1}M{a:.1},{d:.1}L{c:.1},{b:.1}" stroke="#fff" stroke-width="1.6"/>"##,
                a = x - 2.5,
                b = y - 2.5,
                c = x + 2.5,
                d = y + 2.5
            ),
            Glyph::Diamond => format!(
                r#"<path d="M{x:.1},{a:.1}L{b:.1},{y:.1}L{x:.1},{c:.1}L{d:.1},{y:.1}Z" fill="{C_MUTED}"/>"#,
                a = y - 7.0,
                b = x + 7.0,
                c = y + 7.0,
                d = x - 7.0
            ),
            Glyph::Fault => format!(
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{C_PENDING}"/><circle cx="{x:.1}" cy="{y:.1}" r="7" fill="none" stroke="{C_FAULT}" stroke-width="2.5"/>"#
            ),
            Glyph::Expiry => format!(
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{a:.1}" y2="{b:.1}" stroke="{C_TEXT}" stroke-width="1.5" stroke-dasharray="4,2"/>"#,
                a = y - 8.0,
                b = y + 8.0
            ),
            Glyph::Connector => format!(
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{a:.1}" y2="{b:.1}" stroke="#868e96" stroke-width="1.2"/><circle cx="{x:.1}" cy="{b:.1}" r="2.6" fill="#fff" stroke="#868e96" stroke-width="1.2"/>"##,
                a = y - 8.0,
                b = y + 5.0
            ),
            Glyph::Flag => format!(
                r#"<line x1="{a:.1}" x2="{a:.1}" y1="{b:.1}" y2="{c:.1}" stroke="{C_ERR}" stroke-width="1.6"/><path d="M{a:.1},{b:.1}L{d:.1},{e:.1}L{a:.1},{f:.1}Z" fill="{C_ERR}"/>"#,
                a = x - 4.0,
                b = y - 8.0,
                c = y + 8.0,
                d = x + 7.0,
                e = y - 4.5,
                f = y - 1.0
            ),
            Glyph::Tick => format!(
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{a:.1}" y2="{b:.1}" stroke="{C_SESSION}" stroke-width="2"/>"#,
                a = y - 6.0,
                b = y + 6.0
            ),
            Glyph::Band => format!(
                r##"<rect x="{a:.1}" y="{b:.1}" width="14" height="14" fill="{f}" stroke="#ced4da" stroke-width="0.6"/>"##,
                a = x - 7.0,
                b = y - 7.0,
                f = BANDS[0]
            ),
        }
    }
}

pub(super) fn legend_items() -> Vec<(Glyph, &'static str)> {
    vec![
        (Glyph::Dot(C_OK), "2xx"),
        (Glyph::Dot(C_401), "401"),
        (Glyph::Dot(C_ERR), "other status"),
        (Glyph::Lost, "response lost (dropped, reset, garbage…)"),
        (Glyph::Dot(C_PENDING), "pending / abandoned"),
        (Glyph::Diamond, "refresh call"),
        (Glyph::Fault, "fault fired"),
        (Glyph::Connector, "tokens issued → new lane"),
        (Glyph::Expiry, "access token expires"),
        (Glyph::Flag, "logged_out"),
        (Glyph::Tick, "session_changed"),
        (Glyph::Band, "step"),
    ]
}

/// (x, row) of each legend item, wrapping at the SVG's width.
pub(super) fn legend_layout(items: &[(Glyph, &'static str)]) -> Vec<(f64, usize)> {
    let mut out = Vec::with_capacity(items.len());
    let (mut x, mut row) = (8.0, 0);
    for (_, text) in items {
        let w = 20.0 + text_w(text, 10.5, false) + 16.0;
        if x + w > WIDTH - 8.0 && x > 8.0 {
            x = 8.0;
            row += 1;
        }
        out.push((x, row));
        x += w;
    }
    out
}
