//! A trace that cannot sink the server: a million whoami requests through one in-process server
//! keep its memory flat (the trace's own accounting and the process's RSS), the server stays
//! responsive while the whole trace is read page by page, and a spill keeps every request.
//!
//! The request count is `ROTARY_LOAD_REQUESTS` (default 1,000,000, in debug builds too: the
//! clients pipeline requests over a few raw keep-alive connections, so that they cost little next
//! to the server, and a debug build serves about 50,000 whoami/s on the 2-core machine: some 20 s).

use rotary_server::{MockHomeserver, TraceEntry};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Entries the server keeps in memory in this test.
const WINDOW: usize = 20_000;
const CONNECTIONS: usize = 4;
/// Requests written at once on a connection before its answers are read.
const PIPELINE: usize = 64;
/// Generous bounds: this is a load test, not a timing test (a loaded 2-core machine, debug
/// builds). Without a window, a million entries would take about 500 MiB.
const MAX_RSS_GROWTH_MIB: u64 = 64;
const MAX_VERSIONS_LATENCY: Duration = Duration::from_secs(2);

fn requests() -> usize {
    std::env::var("ROTARY_LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// Where the next response ends in `buf` (headers and a `Content-Length` body), and its status.
fn next_response(buf: &[u8]) -> Option<(usize, u16)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some((head_end + length, status))
}

/// Sends `n` pipelined whoami requests on one connection; returns how many answered 200.
async fn blast(addr: std::net::SocketAddr, token: &str, n: usize) -> usize {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let one = format!(
        "GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: rotary\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let batch = one.repeat(PIPELINE);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let (mut done, mut ok) = (0, 0);
    while done < n {
        let count = PIPELINE.min(n - done);
        stream
            .write_all(&batch.as_bytes()[..one.len() * count])
            .await
            .expect("write");
        let mut answered = 0;
        while answered < count {
            while let Some((end, status)) = next_response(&buf) {
                buf.drain(..end);
                answered += 1;
                ok += usize::from(status == 200);
            }
            if answered == count {
                break;
            }
            let read = stream.read(&mut chunk).await.expect("read");
            assert!(
                read > 0,
                "the server closed a connection after {} answers",
                done + answered
            );
            buf.extend_from_slice(&chunk[..read]);
        }
        done += count;
    }
    ok
}

/// `/versions` answered again and again until `stop`; returns the slowest answer and how many.
async fn probe_versions(http: reqwest::Client, url: String, stop: Arc<AtomicBool>) -> (Duration, usize) {
    let mut slowest = Duration::ZERO;
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let r = http
            .get(format!("{url}/_matrix/client/versions"))
            .send()
            .await
            .expect("versions answered");
        assert_eq!(r.status(), 200);
        slowest = slowest.max(t0.elapsed());
        count += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (slowest, count)
}

/// Reads the whole trace through `GET /_rotary/trace`, page after page.
async fn dump(http: &reqwest::Client, url: &str, limit: usize) -> (Vec<TraceEntry>, Value) {
    let mut after = 0;
    let mut entries = Vec::new();
    loop {
        let page: Value = http
            .get(format!("{url}/_rotary/trace?after={after}&limit={limit}"))
            .send()
            .await
            .expect("trace answered")
            .json()
            .await
            .expect("a JSON page");
        let trace: Vec<TraceEntry> = serde_json::from_value(page["trace"].clone()).expect("entries");
        entries.extend(trace);
        after = page["next_after"].as_u64().expect("next_after");
        if page["more"] != Value::Bool(true) {
            return (entries, page);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_requests_keep_memory_flat_and_the_server_responsive() {
    let n = requests();
    let server = MockHomeserver::builder()
        .trace_window(WINDOW)
        .start()
        .await
        .expect("server starts");
    let session = server
        .mint_session_with(&rotary_server::MintRequest {
            refresh_token: false,
            ..rotary_server::MintRequest::for_user("alice")
        })
        .expect("mint");
    let addr = server.addr();
    let http = reqwest::Client::new();

    // Warm up: the window fills, buffers and the allocator settle.
    let warm = (2 * WINDOW).min(n);
    blast(addr, &session.access_token, warm).await;
    let rss_warm = rss_mib();

    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe_versions(http.clone(), server.url(), stop.clone()));
    let started = Instant::now();
    let per = (n - warm) / CONNECTIONS;
    let mut blasts = tokio::task::JoinSet::new();
    for i in 0..CONNECTIONS {
        let token = session.access_token.clone();
        let count = if i == 0 {
            n - warm - per * (CONNECTIONS - 1)
        } else {
            per
        };
        blasts.spawn(async move { blast(addr, &token, count).await });
    }
    let mut ok = warm;
    while let Some(r) = blasts.join_next().await {
        ok += r.expect("a client panicked");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (slowest_under_load, probes) = probe.await.expect("probe");
    let rss_loaded = rss_mib();
    assert_eq!(ok, n, "every whoami answered 200");

    // The trace's own accounting: every request counted, only the window kept.
    let stats = server.trace_stats();
    let recorded = n as u64 + probes as u64;
    assert_eq!(stats.last_seq, recorded, "{stats:?}");
    assert_eq!(stats.in_window, WINDOW, "{stats:?}");
    assert_eq!(stats.evicted, recorded - WINDOW as u64, "{stats:?}");
    assert_eq!(stats.evicted_pending, 0, "{stats:?}");
    assert_eq!(server.trace_evicted(), stats.evicted);

    // A full paged dump while /versions is probed: the dump sees exactly the window, in order,
    // and the probe keeps being answered.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe_versions(http.clone(), server.url(), stop.clone()));
    let t0 = Instant::now();
    let (entries, last_page) = dump(&http, &server.url(), 5_000).await;
    let dump_time = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (slowest_during_dump, dump_probes) = probe.await.expect("probe");
    assert!(entries.len() >= WINDOW, "{} entries dumped", entries.len());
    assert!(
        entries.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "seqs of the dump are contiguous"
    );
    // Probes during the dump push the window on: it starts at or after where it stood.
    assert!(entries[0].seq >= stats.first_seq);
    assert!(
        entries
            .iter()
            .all(|e| e.endpoint == "whoami" || e.endpoint == "versions")
    );
    assert_eq!(last_page["last_seq"].as_u64(), entries.last().map(|e| e.seq));
    assert!(last_page["evicted"].as_u64() >= Some(stats.evicted));
    let rss_end = rss_mib();

    eprintln!(
        "{n} requests in {:.1} s ({:.0}/s); RSS {rss_warm} MiB after warm-up, {rss_loaded} MiB after the load, \
         {rss_end} MiB after the dump; trace {stats:?}; /versions slowest {slowest_under_load:?} under load \
         ({probes} probes), {slowest_during_dump:?} during a {dump_time:?} dump of {} entries ({dump_probes} probes)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        entries.len()
    );
    // The load's growth is the server's; the dump's is mostly this test's own copy of the pages.
    assert!(
        rss_loaded.saturating_sub(rss_warm) < MAX_RSS_GROWTH_MIB,
        "RSS grew from {rss_warm} MiB to {rss_loaded} MiB under load"
    );
    assert!(
        rss_end.saturating_sub(rss_warm) < 3 * MAX_RSS_GROWTH_MIB,
        "RSS grew from {rss_warm} MiB to {rss_end} MiB by the end"
    );
    assert!(
        slowest_during_dump < MAX_VERSIONS_LATENCY && slowest_under_load < MAX_VERSIONS_LATENCY,
        "/versions took {slowest_during_dump:?} during the dump, {slowest_under_load:?} under load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spill_keeps_every_request_beyond_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 5_000;
    let server = MockHomeserver::builder()
        .trace_window(500)
        .trace_spill(dir.path(), 256 * 1024)
        .start()
        .await
        .expect("server starts");
    let session = server.mint_session("alice").expect("mint");
    let mut live = server.subscribe_trace();
    assert_eq!(blast(server.addr(), &session.access_token, n).await, n);
    server.trace_flush();
    let stats = server.trace_stats();
    assert_eq!(
        (
            stats.last_seq,
            stats.in_window,
            stats.spilled,
            stats.spill_dropped
        ),
        (n as u64, 500, n as u64, 0),
        "{stats:?}"
    );
    assert!(stats.spill_files > 1, "rotated: {stats:?}");
    let mut spilled = rotary_server::trace::read_spill(dir.path()).expect("spill readable");
    assert_eq!(spilled.len(), n);
    spilled.sort_by_key(|e| e.seq);
    assert!(spilled.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1
        && e.status == Some(200)
        && e.access_token.label == session.access_label));
    // The window's entries are the spill's last ones, identical.
    let window = server.trace();
    assert_eq!(window.as_slice(), &spilled[n - 500..]);
    // The subscriber saw every completion, in done_seq order (its capacity is larger than n).
    let mut done = Vec::new();
    while let Ok(Some(e)) = live.try_recv() {
        done.push(e.done_seq.expect("finished"));
    }
    assert_eq!(done.len(), n);
    assert!(done.windows(2).all(|w| w[0] <= w[1]));
}
