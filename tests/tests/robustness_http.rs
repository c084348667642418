//! Robustness against malformed HTTP over raw TCP: requests that are not (quite) HTTP/1.1 are refused
//! cleanly (hyper's 400/414/431 or a close, never a 5xx), what reaches the client-server API is
//! traced, and the server keeps answering.

mod common;

use common::robustness::inputs::XorShift;
use common::robustness::panics::watch_panics;
use common::robustness::probing::{answers_whoami, assert_clean, probe_server};
use common::robustness::wire::{count, exchange_with};
use rotary_server::{Delivery, Profile};
use std::collections::BTreeMap;

/// Requests that are not (quite) HTTP: hyper answers 400/414/431 or closes; what reaches the
/// client-server API is traced; nothing is a 5xx; the server answers afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_is_refused_cleanly() {
    watch_panics();
    let (server, _rooms) = probe_server(Profile::Synapse).await;
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    let mut inputs: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("random {i}"), rng.bytes(64 << i)))
        .collect();
    let simple = |first_line: &str, rest: &str| {
        format!("{first_line}\r\nHost: x\r\nConnection: close\r\n{rest}\r\n").into_bytes()
    };
    let mut pipelined = Vec::new();
    for _ in 0..9 {
        pipelined.extend_from_slice(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    pipelined
        .extend_from_slice(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    inputs.extend([
        ("blank lines".into(), b"\r\n\r\n\r\n".to_vec()),
        ("no Host".into(), b"GET /_matrix/client/versions HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec()),
        ("HTTP/2 preface".into(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("HTTP/0.9".into(), b"GET /\r\n".to_vec()),
        ("HTTP/1.0".into(), b"GET /_matrix/client/versions HTTP/1.0\r\n\r\n".to_vec()),
        ("HTTP/9.9".into(), simple("GET /_matrix/client/versions HTTP/9.9", "")),
        ("negative length".into(), simple("POST /_matrix/client/v3/login HTTP/1.1", "Content-Length: -1\r\n")),
        ("2^64 length".into(), simple("POST /_matrix/client/v3/login HTTP/1.1", "Content-Length: 18446744073709551616\r\n")),
        ("two lengths".into(), simple("POST /_matrix/client/v3/login HTTP/1.1", "Content-Length: 2\r\nContent-Length: 3\r\n")),
        ("length and chunked".into(), simple("POST /_matrix/client/v3/login HTTP/1.1", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")),
        ("gzip encoding".into(), simple("POST /_matrix/client/v3/login HTTP/1.1", "Transfer-Encoding: gzip\r\n")),
        ("bad chunk size".into(), simple("POST /_matrix/client/v3/login HTTP/1.1", "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n")),
        ("huge chunk size".into(), simple("POST /_matrix/client/v3/login HTTP/1.1", "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabc\r\n")),
        ("NUL in a header".into(), b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n".to_vec()),
        ("header without colon".into(), simple("GET /_matrix/client/versions HTTP/1.1", "NoColonHere\r\n")),
        ("space in a header name".into(), simple("GET /_matrix/client/versions HTTP/1.1", "Bad Name: x\r\n")),
        ("150 headers".into(), simple("GET /_matrix/client/versions HTTP/1.1", &many_headers)),
        ("1 MiB Authorization".into(), simple("GET /_matrix/client/v3/account/whoami HTTP/1.1", &format!("Authorization: Bearer {}\r\n", "t".repeat(1 << 20)))),
        ("70 KB URI".into(), simple(&format!("GET /_matrix/client/v3/{} HTTP/1.1", "u".repeat(70_000)), "")),
        ("absolute form".into(), simple("GET http://example.org/_matrix/client/versions HTTP/1.1", "")),
        ("authority form".into(), simple("CONNECT 127.0.0.1:1 HTTP/1.1", "")),
        ("asterisk form".into(), simple("OPTIONS * HTTP/1.1", "")),
        ("control characters in the path".into(), simple("GET /_matrix/\x01\x7f HTTP/1.1", "")),
        ("bare LF".into(), b"GET /_matrix/client/versions HTTP/1.1\nHost: x\nConnection: close\n\n".to_vec()),
        ("ten pipelined requests".into(), pipelined),
        ("expect 100-continue".into(), b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
        ("GET with a stray body".into(), b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n{\"stray\": true}\r\n\r\n".to_vec()),
    ]);
    let before = server.trace_len();
    let mut traced = 0;
    let mut problems = Vec::new();
    let mut statuses = BTreeMap::new();
    for (label, bytes) in inputs {
        let a = exchange_with(server.addr(), bytes, true).await;
        traced += a.traced_responses();
        if count(&a.raw, b"HTTP/1.1 5") + count(&a.raw, b"HTTP/1.0 5") > 0 {
            problems.push(format!(
                "[{label}] a 5xx: {}",
                String::from_utf8_lossy(&a.raw[..a.raw.len().min(300)])
            ));
        }
        if let (Some(s), false) = (a.status, a.header("access-control-allow-origin").is_some())
            && !matches!(s, 400 | 414 | 431)
        {
            problems.push(format!(
                "[{label}] {s} neither from the API nor one of hyper's refusals"
            ));
        }
        statuses.insert(label, a.status);
    }
    assert_eq!(statuses["ten pipelined requests"], Some(200));
    assert!(
        matches!(statuses["1 MiB Authorization"], None | Some(431)),
        "{statuses:?}"
    );
    assert!(matches!(statuses["70 KB URI"], None | Some(414)), "{statuses:?}");
    let trace = server.trace_after(before);
    if trace.len() != traced {
        problems.push(format!(
            "{} API answers but {} trace entries: {trace:#?}",
            traced,
            trace.len()
        ));
    }
    for e in &trace {
        if e.delivery != Delivery::Sent || e.status.is_none_or(|s| s >= 500) {
            problems.push(format!("trace entry {e:?}"));
        }
    }
    answers_whoami(&server).await.expect("alive");
    assert_clean("malformed HTTP", &problems);
}
