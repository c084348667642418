//! `catalogue`: `rotary run` as a child process — wall time, CPU time and the share of real waiting.

use crate::{Args, load};
use anyhow::{Context, Result};
use nix::sys::resource::UsageWho;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct CatalogueReport {
    pub command: String,
    pub exit_code: Option<i32>,
    pub scenarios: usize,
    pub passed: usize,
    pub info: usize,
    pub wall_ms: u64,
    pub run_duration_ms: u64,
    pub scenario_sum_ms: u64,
    pub waited_sum_ms: u64,
    pub child_cpu_ms: u64,
    pub waiting_share: f64,
}

pub fn find_rotary(args: &Args) -> Option<PathBuf> {
    if let Some(p) = &args.rotary {
        return Some(p.clone());
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("rotary");
    candidate.is_file().then_some(candidate)
}

pub fn u64_at(v: &serde_json::Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

pub fn bench_catalogue(rotary: &Path) -> Result<CatalogueReport> {
    let json = std::env::temp_dir().join(format!("rotary-bench-catalogue-{}.json", std::process::id()));
    let mut cmd = std::process::Command::new(rotary);
    cmd.args(["run", "--no-progress", "--json"])
        .arg(&json)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let command = format!("{} run --no-progress --json {}", rotary.display(), json.display());
    println!("catalogue: {command}");
    let cpu0 = load::cpu_of(UsageWho::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", rotary.display()))?;
    let wall = t0.elapsed();
    let cpu = load::cpu_of(UsageWho::RUSAGE_CHILDREN).saturating_sub(cpu0);
    let text = std::fs::read_to_string(&json).with_context(|| {
        format!(
            "{} wrote no report; its stderr:\n{}",
            rotary.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let _ = std::fs::remove_file(&json);
    let report: serde_json::Value = serde_json::from_str(&text).context("parsing the run report")?;
    let scenarios = report
        .get("scenarios")
        .and_then(serde_json::Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let wall_ms = u64::try_from(wall.as_millis()).unwrap_or(u64::MAX);
    let cpu_ms = u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX);
    Ok(CatalogueReport {
        command,
        exit_code: out.status.code(),
        scenarios: scenarios.len(),
        passed: usize::try_from(u64_at(&report, "/summary/pass")).unwrap_or(0),
        info: usize::try_from(u64_at(&report, "/summary/info")).unwrap_or(0),
        wall_ms,
        run_duration_ms: u64_at(&report, "/summary/duration_ms"),
        scenario_sum_ms: scenarios.iter().map(|s| u64_at(s, "/duration_ms")).sum(),
        waited_sum_ms: scenarios.iter().map(|s| u64_at(s, "/waited_ms")).sum(),
        child_cpu_ms: cpu_ms,
        waiting_share: 1.0 - cpu_ms as f64 / (wall_ms.max(1)) as f64,
    })
}
