//! Memory under bad requests: 2,000 of them (garbage, deep nesting, bodies over the limit, huge
//! headers) grow the process by far less than 50 MiB beyond their trace entries. The only test of
//! its binary, so that nothing else allocates in the process meanwhile.

mod common;

use common::robustness::inputs::garbage_bodies;
use common::robustness::panics::{assert_no_server_panics, watch_panics};
use common::robustness::probing::{answers_whoami, probe_server};
use common::robustness::wire::{exchange, http_request};
use futures_util::stream::{self, StreamExt};
use rotary_server::Profile;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 2,000 bad requests (garbage, deep nesting, bodies over the limit, huge headers) grow the
/// process by far less than 50 MiB beyond what their trace entries take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_bad_requests() {
    watch_panics();
    if rss_kib() == 0 {
        eprintln!("no /proc/self/status: skipping the memory check");
        return;
    }
    let (server, _rooms) = probe_server(Profile::Synapse).await;
    let addr = server.addr();
    let limit = server.config().max_body_bytes;
    let bodies = garbage_bodies();
    let bad = move |i: usize| -> Vec<u8> {
        match i % 5 {
            0 => http_request("POST", "/_matrix/client/v3/login", &[], &vec![b'x'; limit + 1]),
            1 => {
                let auth = vec![(
                    "Authorization".to_owned(),
                    format!("Bearer {}", "k".repeat(100_000)).into_bytes(),
                )];
                http_request("GET", "/_matrix/client/v3/account/whoami", &auth, b"")
            }
            2 => http_request("POST", "/_matrix/client/v3/refresh", &[], &vec![b'['; 100_000]),
            3 => http_request(
                "PUT",
                "/_matrix/client/v3/rooms/x/send/m/t",
                &[],
                &bodies[i % bodies.len()].2,
            ),
            _ => http_request("POST", "/oauth2/token", &[], &bodies[(i / 5) % bodies.len()].2),
        }
    };
    let run = |from: usize, to: usize| {
        let bad = bad.clone();
        async move {
            stream::iter(from..to)
                .map(|i| exchange(addr, bad(i)))
                .buffer_unordered(8)
                .for_each(|a| async move { assert!(a.status.is_some_and(|s| s < 500), "{:?}", a.status) })
                .await;
        }
    };
    run(0, 300).await;
    let before_kib = rss_kib();
    let traced_before = server.trace_len();
    run(300, 2_300).await;
    let after_kib = rss_kib();
    let traced = server.trace_len() - traced_before;
    assert_eq!(traced, 2_000, "every bad request that reached the API is traced");
    // About 0.5 KiB per trace entry; allow 2 KiB each, plus 50 MiB of slack for the allocator.
    let allowed_kib = 50 * 1024 + traced * 2;
    let grown_kib = after_kib.saturating_sub(before_kib);
    eprintln!("RSS {before_kib} KiB -> {after_kib} KiB (+{grown_kib} KiB) over 2,000 bad requests");
    assert!(
        grown_kib < allowed_kib,
        "RSS grew by {grown_kib} KiB (allowed {allowed_kib} KiB)"
    );
    answers_whoami(&server).await.expect("alive");
    assert_no_server_panics();
}
