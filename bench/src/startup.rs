//! `startup`: `MockHomeserver::builder().start()`, a mint and the first whoami over a fresh connection.

use crate::runtime::no_refresh;
use crate::stats::{Latencies, median};
use crate::{Args, load};
use anyhow::Result;
use rotary_server::MockHomeserver;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct StartupReport {
    pub starts: usize,
    pub start_median_ms: f64,
    pub first_response_median_ms: f64,
    pub first_response_p90_ms: f64,
    pub first_response_min_ms: f64,
}

/// Start-up on the generator's own runtime: a test starts its server where it runs.
pub async fn bench_startup(args: &Args) -> Result<StartupReport> {
    let mut starts = Vec::with_capacity(args.starts());
    let mut firsts = Vec::with_capacity(args.starts());
    for i in 0..args.starts() + 10 {
        let t0 = Instant::now();
        let server = MockHomeserver::builder().start().await?;
        let started = t0.elapsed();
        let session = server.mint_session_with(&no_refresh("alice"))?;
        load::whoami_once(server.addr(), &session.access_token).await?;
        let first = t0.elapsed();
        drop(server);
        // The first ten warm up the allocator and the code paths.
        if i >= 10 {
            starts.push(started.as_secs_f64() * 1000.0);
            firsts.push(first.as_secs_f64() * 1000.0);
        }
    }
    let mut lat = Latencies::default();
    lat.extend(firsts.iter().map(|ms| (ms * 1000.0).round() as u32).collect());
    Ok(StartupReport {
        starts: firsts.len(),
        start_median_ms: median(&starts),
        first_response_median_ms: median(&firsts),
        first_response_p90_ms: lat.percentile_ms(90.0),
        first_response_min_ms: firsts.iter().copied().fold(f64::INFINITY, f64::min),
    })
}
