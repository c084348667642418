//! Raw HTTP/1.1 over TCP: requests built byte by byte, sent on a connection of their own, and the
//! answer parsed as it came off the wire.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as it came off the wire.
#[derive(Debug, Default)]
pub struct Answer {
    /// `None` when the connection closed without a status line.
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Everything received, for connections with several responses.
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn short_body(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }

    /// How many responses on this connection went through the client-server API (which adds
    /// CORS headers to every answer, and traces every request it answers).
    pub fn traced_responses(&self) -> usize {
        // CORS preflights (204) are answered by the API but not traced.
        count(&self.raw, b"\r\naccess-control-allow-origin: *\r\n")
            .saturating_sub(count(&self.raw, b"HTTP/1.1 204 "))
    }
}

pub fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(body, b"\r\n") {
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let start = eol + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = &body[(end + 2).min(body.len())..];
    }
    out
}

pub fn parse_answer(raw: Vec<u8>) -> Answer {
    // Skip interim answers (`100 Continue`).
    let mut start = 0;
    while raw[start..].starts_with(b"HTTP/1.1 1")
        && let Some(end) = find(&raw[start..], b"\r\n\r\n")
    {
        start += end + 4;
    }
    let Some(head_end) = find(&raw[start..], b"\r\n\r\n").map(|e| e + start) else {
        return Answer {
            raw,
            ..Answer::default()
        };
    };
    let head = String::from_utf8_lossy(&raw[start..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = if chunked {
        dechunk(rest)
    } else {
        rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

/// Sends `request` on a new connection and reads until the server closes it (every request built
/// here says `Connection: close`). Writing and reading run side by side, so an early answer (413,
/// 431) is read even while the rest of a big request is still being written.
pub async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Answer {
    exchange_with(addr, request, false).await
}

/// [`exchange`], optionally half-closing after the request: malformed input that leaves the
/// server waiting for more (an unfinished head or body) then ends at once.
pub async fn exchange_with(addr: SocketAddr, request: Vec<u8>, half_close: bool) -> Answer {
    let stream = TcpStream::connect(addr)
        .await
        .expect("the server accepts connections");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        if half_close {
            let _ = wr.shutdown().await;
        }
        // Otherwise keep the write half open until the answer is read, as clients do.
        wr
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "no end of the answer within 60 s; got {raw:?}");
    drop(writer.await);
    parse_answer(raw)
}

pub fn http_request(method: &str, path: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n").into_bytes();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.extend_from_slice(b"Host: 127.0.0.1\r\n");
    }
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    req
}
