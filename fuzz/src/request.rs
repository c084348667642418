//! Raw HTTP/1.1 from fuzz input against in-process Rotary servers (`synapse` and `mas`, started
//! once per process on their own runtime). Shared by the `request_parsing` fuzz target and the
//! proptest suite in `tests/tests/robustness_fuzz.rs`.
//!
//! The first input byte picks the server and the mode: the rest is written to the socket as it
//! is, or framed into a well-formed request (`method 0xFF path 0xFF header-lines 0xFF body`, with a
//! `Content-Length`, `Connection: close`, optionally a live access token and a content type) so
//! that the fuzzer reaches the handlers. In a framed path or body, `{at}`, `{rt}`, `{dev}`,
//! `{room}`, `{oat}`, `{ort}` and `{client}` become a live legacy access token, refresh token,
//! device id and room, and a live OAuth access token, refresh token and client id.
//!
//! After each exchange: every trace entry is finished (no `pending` left behind unless a fault
//! the input installed holds it), no entry has a 5xx that no fault injected, and the server is
//! reset. Server panics abort the process under libFuzzer (its panic hook); the test suite
//! watches for them with its own hook.

use rotary_server::{Delivery, MockHomeserver, Profile};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Servers {
    _runtime: tokio::runtime::Runtime,
    servers: Vec<MockHomeserver>,
}

/// Names of the threads the servers run on (a panic there is a server panic).
pub const SERVER_THREAD: &str = "rotary-fuzz-server";

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot build a runtime: {e}"),
        };
        let servers = runtime.block_on(async {
            let mut out = Vec::new();
            for profile in [Profile::Synapse, Profile::Mas] {
                match MockHomeserver::builder().profile(profile).start().await {
                    Ok(s) => out.push(s),
                    Err(e) => panic!("cannot start a server: {e}"),
                }
            }
            out
        });
        Servers {
            _runtime: runtime,
            servers,
        }
    })
}

const PREFIXES: [&[u8]; 8] = [
    b"/_matrix/client/v3/",
    b"/_matrix/client/r0/",
    b"/_rotary/",
    b"/oauth2/",
    b"/_matrix/client/v1/",
    b"/_matrix/client/unstable/",
    b"/",
    b"",
];

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Replaces the placeholders with live values minted on `server` (only those that occur).
fn fill(server: &MockHomeserver, bytes: &[u8]) -> Vec<u8> {
    let has = |p: &[u8]| bytes.windows(p.len()).any(|w| w == p);
    let mut out = bytes.to_vec();
    if (has(b"{at}") || has(b"{rt}") || has(b"{dev}"))
        && let Ok(s) = server.mint_session("alice")
    {
        out = replace_all(&out, b"{at}", s.access_token.as_bytes());
        out = replace_all(&out, b"{rt}", s.refresh_token.unwrap_or_default().as_bytes());
        out = replace_all(&out, b"{dev}", s.device_id.as_bytes());
    }
    if has(b"{room}")
        && let Ok(room) = server.create_room("alice", None)
    {
        out = replace_all(&out, b"{room}", room.as_bytes());
    }
    if (has(b"{oat}") || has(b"{ort}") || has(b"{client}"))
        && let Ok(s) = server.mint_oauth_session("alice")
    {
        out = replace_all(&out, b"{oat}", s.issued.access_token.as_bytes());
        out = replace_all(
            &out,
            b"{ort}",
            s.issued.refresh_token.unwrap_or_default().as_bytes(),
        );
        out = replace_all(&out, b"{client}", s.client_id.as_bytes());
    }
    out
}

/// Builds a well-formed request around the fuzzer's method, path, header lines and body.
fn frame(server: &MockHomeserver, mode: u8, rest: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = {
        let mut p: Vec<&[u8]> = rest.splitn(4, |b| *b == 0xFF).collect();
        p.resize(4, &[]);
        p
    };
    let method: &[u8] = if parts[0].is_empty() { b"POST" } else { parts[0] };
    let prefix = PREFIXES[usize::from(mode >> 5)];
    let body = fill(server, parts[3]);
    let mut req = Vec::with_capacity(body.len() + 256);
    req.extend_from_slice(method);
    req.push(b' ');
    req.extend_from_slice(prefix);
    req.extend_from_slice(&fill(server, parts[1]));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if mode & 0x04 != 0
        && let Ok(s) = server.mint_session("alice")
    {
        req.extend_from_slice(format!("Authorization: Bearer {}\r\n", s.access_token).as_bytes());
    }
    match (mode >> 3) & 0x03 {
        1 => req.extend_from_slice(b"Content-Type: application/json\r\n"),
        2 => req.extend_from_slice(b"Content-Type: application/x-www-form-urlencoded\r\n"),
        _ => {}
    }
    if !parts[2].is_empty() {
        req.extend_from_slice(&fill(server, parts[2]));
        if !parts[2].ends_with(b"\r\n") {
            req.extend_from_slice(b"\r\n");
        }
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(&body);
    req
}

/// Writes the request, half-closes, and reads whatever comes back (at most 2 s).
fn talk(server: &MockHomeserver, request: &[u8]) -> Vec<u8> {
    let mut reply = Vec::new();
    let Ok(mut stream) = TcpStream::connect(server.addr()) else {
        panic!("the server stopped accepting connections");
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = Read::by_ref(&mut stream).take(4 << 20).read_to_end(&mut reply);
    reply
}

/// One fuzz input: see the module documentation.
pub fn exchange(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let all = servers();
    let server = &all.servers[usize::from(mode & 1)];
    let request = if mode & 2 == 0 {
        rest.to_vec()
    } else {
        frame(server, mode, rest)
    };
    let reply = talk(server, &request);
    check_trace(server, &reply);
    if let Err(e) = server.reset() {
        panic!("the server cannot reset: {e}");
    }
}

fn check_trace(server: &MockHomeserver, reply: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let trace = loop {
        let trace = server.trace();
        let stuck = trace
            .iter()
            .any(|e| e.delivery == Delivery::Pending && e.fault.is_none());
        if !stuck {
            break trace;
        }
        if Instant::now() > deadline {
            panic!("a trace entry is still pending after its connection closed: {trace:#?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    for e in &trace {
        if e.status.is_some_and(|s| s >= 500) && e.fault.is_none() {
            panic!("a 5xx that no fault injected: {e:#?}");
        }
    }
    // A 5xx status line on the wire must come from a fault too (hyper's own answers are 4xx).
    if reply.starts_with(b"HTTP/1.1 5") && !trace.iter().any(|e| e.fault.is_some()) {
        panic!(
            "a 5xx answer without a fault: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(400)])
        );
    }
}
