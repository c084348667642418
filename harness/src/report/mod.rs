//! Reports of a run: the terminal, `--json`, `--junit` and `--html` (with an SVG timeline per scenario).
//!
//! Every report renders the same data, a [`RunReport`](crate::RunReport) (see `record.rs`):
//!
//! - [`terminal`]: a progress bar while the run goes ([`Progress`]), then the failures with the
//!   trace lines that prove them ([`render_failures`]) and one summary line ([`summary_line`]).
//!   [`trace_line`] is the one-line rendering of a trace entry that every report shares.
//! - [`json`]: the `--json` report ([`to_json`], [`write_json`]); its module documentation
//!   describes the schema field by field.
//! - [`junit`]: the `--junit` report for CI systems ([`to_junit`], [`write_junit`]); its module
//!   documentation says how verdicts map to JUnit outcomes.
//! - [`timeline`]: an inline SVG per scenario, one lane per token generation ([`timeline_svg`]).
//! - [`html`]: the `--html` directory, an index and one page per scenario ([`write_html`]).
//!
//! Every renderer is deterministic: the same report gives the same bytes (no clock, no randomness).

pub mod html;
pub mod json;
pub mod junit;
pub mod terminal;
mod text;
pub mod timeline;

pub use html::{page_file_name, write_html};
pub use json::{to_json, write_json};
pub use junit::{to_junit, write_junit};
pub use terminal::{Progress, render_failures, summary_line, trace_line};
pub use timeline::timeline_svg;
