//! `memory`: RSS growth per live session minted in-process, and per whoami trace entry.

use crate::runs::rss_kib;
use crate::runtime::ServerRuntime;
use crate::{Args, load};
use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub sessions: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_session: f64,
    pub goal_bytes_per_session: f64,
    pub ok: bool,
    /// Finished whoami entries put into a trace of the default window.
    pub trace_entries: usize,
    /// RSS growth per trace entry (the entry, its strings and its slot in the window).
    pub trace_bytes_per_entry: f64,
}

/// Fills a trace of `window` entries with finished whoami entries as the server records them;
/// returns it (kept alive, so that later measurements get fresh memory) and the RSS growth per
/// entry.
pub fn trace_memory(window: usize) -> Result<(rotary_server::trace::Trace, usize, f64)> {
    use rotary_server::trace::{Completion, Trace, TraceConfig, TraceEntry};
    let trace = Trace::new(TraceConfig::default().window(window))?;
    let before = rss_kib()?;
    for i in 0..window {
        let mut e = TraceEntry::new("whoami", "GET", load::WHOAMI_PATH);
        e.access_token.label = format!("at#{}", 1000 + i);
        e.access_token.state = rotary_server::AccessState::Valid;
        e.user_id = Some("@alice:localhost".to_owned());
        e.device_id = Some("BENCHDEVIC".to_owned());
        let ticket = trace.begin(e);
        trace.finish(
            ticket,
            Completion {
                status: Some(200),
                duration_ms: 0,
                ..Completion::default()
            },
        );
    }
    let after = rss_kib()?;
    let per = (after.saturating_sub(before) * 1024) as f64 / window.max(1) as f64;
    Ok((trace, window, per))
}

pub async fn bench_memory(args: &Args, servers: &ServerRuntime) -> Result<MemoryReport> {
    let (trace, trace_entries, trace_bytes_per_entry) = trace_memory(rotary_server::trace::DEFAULT_WINDOW)?;
    let server = servers.start_rotary().await?;
    // One session first, so that lazily allocated parts of the store exist before measuring.
    server.mint_session("alice")?;
    let before = rss_kib()?;
    for _ in 0..args.sessions {
        server.mint_session("alice")?;
    }
    let after = rss_kib()?;
    let bytes = (after.saturating_sub(before) * 1024) as f64 / args.sessions.max(1) as f64;
    drop(server);
    drop(trace);
    let goal = 1.5 * 1024.0;
    Ok(MemoryReport {
        sessions: args.sessions,
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_session: bytes,
        goal_bytes_per_session: goal,
        ok: bytes <= goal,
        trace_entries,
        trace_bytes_per_entry,
    })
}
