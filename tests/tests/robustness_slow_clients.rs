//! Slow clients over raw TCP: clients that trickle their headers or body block nobody else, and the
//! server cuts off those that never finish (its header and body timeouts, watched on tokio's paused
//! clock).

mod common;

use common::robustness::panics::{assert_no_server_panics, watch_panics};
use common::robustness::probing::{answers_whoami, probe_server};
use common::robustness::wire::{Answer, exchange, http_request, parse_answer};
use futures_util::stream::{self, StreamExt};
use rotary_server::{Delivery, MockHomeserver, Profile};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slowloris: clients that trickle their headers or their body one byte a second hold only their
/// own connection; everyone else is served meanwhile, and the server survives their departure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_block_others() {
    watch_panics();
    let (server, _rooms) = probe_server(Profile::Synapse).await;
    let addr = server.addr();
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..20 {
        slow.spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let request: &[u8] = if i % 2 == 0 {
                b"GET /_matrix/client/versions HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n"
            } else {
                b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: slow\r\nContent-Length: 1000\r\n\r\n{\"type\":\"m.login.password\"}"
            };
            let start = if i % 2 == 0 { 0 } else { request.len() - 10 };
            if start > 0 {
                s.write_all(&request[..start]).await.expect("write the headers");
            }
            for byte in &request[start..] {
                if s.write_all(&[*byte]).await.is_err() {
                    return "cut off";
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            "finished"
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Meanwhile: 200 ordinary requests on fresh connections, all answered.
    let ordinary: Vec<Answer> = stream::iter(0..200)
        .map(|_| exchange(addr, http_request("GET", "/_matrix/client/versions", &[], b"")))
        .buffer_unordered(10)
        .collect()
        .await;
    assert!(
        ordinary.iter().all(|a| a.status == Some(200)),
        "an ordinary request failed while slow clients were connected"
    );
    assert_eq!(slow.len(), 20);
    assert!(
        slow.try_join_next().is_none(),
        "a slow client finished before the ordinary ones were served"
    );
    slow.abort_all();
    while slow.join_next().await.is_some() {}
    // The aborted bodies leave no pending entry behind.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Judge one snapshot with nothing pending (a late-parsed request may still be appended after it).
    let trace = loop {
        let trace = server.trace();
        let pending = trace.iter().filter(|e| e.delivery == Delivery::Pending).count();
        if pending == 0 {
            break trace;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} trace entries stay pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        trace.iter().all(|e| e.status.is_some_and(|s| s < 500)),
        "{trace:#?}"
    );
    answers_whoami(&server).await.expect("alive");
    assert_no_server_panics();
}

/// With tokio's clock paused (it jumps ahead whenever everything waits), the server's timeouts can
/// be watched without waiting: a client that never finishes its headers is dropped after 30 s, and
/// one that never finishes its body gets a 408 after 30 s, which is traced.
#[tokio::test(start_paused = true)]
async fn slow_headers_and_bodies_are_cut_off() {
    watch_panics();
    let server = MockHomeserver::builder().start().await.expect("server starts");
    let addr = server.addr();
    // Read in steps of one (virtual) second, so that the clock never jumps past the server's
    // timers while it still has bytes to read.
    let wait_for_close = |mut s: TcpStream| async move {
        let t0 = tokio::time::Instant::now();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) if t0.elapsed() > Duration::from_secs(600) => break false,
                Err(_) => {}
            }
        };
        (closed, t0.elapsed(), parse_answer(buf))
    };
    let mut headers = TcpStream::connect(addr).await.expect("connect");
    headers
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Unfinished: ")
        .await
        .expect("write");
    let (closed, waited, answer) = wait_for_close(headers).await;
    assert!(
        closed,
        "a client that never finished its headers was still connected after 10 minutes"
    );
    assert!(waited <= Duration::from_secs(31), "cut off only after {waited:?}");
    assert!(answer.status.is_none_or(|s| s < 500));

    let mut body = TcpStream::connect(addr).await.expect("connect");
    body.write_all(
        b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"type\"",
    )
    .await
    .expect("write");
    let (closed, waited, answer) = wait_for_close(body).await;
    assert!(
        closed,
        "a client that never finished its body was still connected after 10 minutes"
    );
    assert!(waited <= Duration::from_secs(31), "cut off only after {waited:?}");
    assert_eq!(answer.status, Some(408), "{}", answer.short_body());
    assert!(
        answer
            .json()
            .is_some_and(|b| b["errcode"].is_string() && b["error"].is_string())
    );
    let trace = server.trace();
    assert_eq!(trace.len(), 1, "{trace:#?}");
    assert_eq!(
        (trace[0].endpoint.as_ref(), trace[0].status),
        ("login", Some(408))
    );
    assert_eq!(trace[0].delivery, Delivery::Sent);
    assert_no_server_panics();
}
