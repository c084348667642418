//! The timeline's geometry and colours.

pub(super) const WIDTH: f64 = 1200.0;
pub(super) const GUTTER: f64 = 180.0;
pub(super) const RIGHT: f64 = 100.0;
pub(super) const PLOT_W: f64 = WIDTH - GUTTER - RIGHT;
pub(super) const TOP: f64 = 8.0;
pub(super) const STEP_ROW: f64 = 14.0;
pub(super) const MAX_STEP_ROWS: usize = 3;
pub(super) const NOTE_ROW: f64 = 26.0;
pub(super) const AXIS_H: f64 = 38.0;
pub(super) const GAP_W: f64 = 44.0;
pub(super) const GAP_SHARE: f64 = 0.12;
pub(super) const GAP_MIN_MS: f64 = 50.0;
pub(super) const LEGEND_ROW: f64 = 20.0;
pub(super) const CLOCK_TOLERANCE_MS: i64 = 25;

pub(super) const C_OK: &str = "#2b8a3e";
pub(super) const C_401: &str = "#f59f00";
pub(super) const C_ERR: &str = "#e03131";
pub(super) const C_LOST: &str = "#7048e8";
pub(super) const C_PENDING: &str = "#adb5bd";
pub(super) const C_FAULT: &str = "#c92a2a";
pub(super) const C_SESSION: &str = "#1c7ed6";
pub(super) const C_TEXT: &str = "#212529";
pub(super) const C_MUTED: &str = "#495057";
pub(super) const C_LINE: &str = "#adb5bd";
pub(super) const BANDS: [&str; 2] = ["#e9eef5", "#f5f7fa"];
pub(super) const MONO: &str = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
