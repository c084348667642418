//! `rotary serve` as a user runs it: the binary, its output, a login over HTTP, and its errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rotary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rotary"))
}

/// Starts `rotary serve --port 0 ARGS` and returns it with the URL it printed.
fn serve(args: &[&str]) -> (Server, String, Vec<String>) {
    let mut child = rotary()
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rotary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read") == 0 {
            break;
        }
        let done = line.starts_with("Press Ctrl-C");
        lines.push(line.trim_end().to_owned());
        if done {
            break;
        }
    }
    let url = lines
        .first()
        .and_then(|l| l.rsplit(' ').next())
        .expect("a first line with the URL")
        .to_owned();
    (Server(child), url, lines)
}

fn http(url: &str, method: &str, path: &str, body: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serve_prints_a_usable_url_and_a_login_line() {
    let (_server, url, lines) = serve(&["--refreshable-access-token-lifetime", "3s", "--user", "bob:pw"]);
    let text = lines.join("\n");
    assert!(url.starts_with("http://127.0.0.1:"), "{text}");
    assert!(text.contains("profile:  synapse"), "{text}");
    assert!(text.contains("refreshable access 3s"), "{text}");
    assert!(text.contains("alice / wonderland, bob / pw"), "{text}");
    assert!(text.contains("curl -s -X POST"), "{text}");
    let body = r#"{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"password":"pw","refresh_token":true}"#;
    let resp = http(&url, "POST", "/_matrix/client/v3/login", body);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Like Synapse, login computes expires_in_ms at response time: at most the lifetime.
    let ms: i64 = resp
        .split("\"expires_in_ms\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .expect("expires_in_ms in the login response");
    assert!((2000..=3000).contains(&ms), "{resp}");
    let cfg = http(&url, "GET", "/_rotary/config", "");
    assert!(
        cfg.contains("\"refreshable_access_token_lifetime\":\"3s\""),
        "{cfg}"
    );
}

#[test]
fn serve_takes_faults_from_flags() {
    let fault = r#"endpoint = "versions", first = 1, action = { kind = "error", status = 503 }"#;
    let (_server, url, lines) = serve(&["--profile", "mas", "--fault", fault]);
    assert!(lines.join("\n").contains("1 rule(s)"));
    assert!(http(&url, "GET", "/_matrix/client/versions", "").starts_with("HTTP/1.1 503"));
    assert!(http(&url, "GET", "/_matrix/client/versions", "").starts_with("HTTP/1.1 200"));
}

#[test]
fn list_knobs_prints_every_knob() {
    let out = rotary()
        .args(["serve", "--profile", "spec", "--list-knobs"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for knob in [
        "profile = \"spec\"",
        "reuse_policy = \"grace-then-unknown\"",
        "refresh_rate_limit",
        "serve_v1_refresh",
    ] {
        assert!(text.contains(knob), "{knob} missing in:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let out = rotary()
        .args(["serve", "--profile", "dendrite"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one of: synapse, spec, mas, no-refresh"));
    let out = rotary()
        .args(["serve", "--set", "bogus=1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let out = rotary().args(["serve", "--port", &port]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_teaches() {
    let out = rotary().args(["serve", "--help"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Examples:",
        "--refreshable-access-token-lifetime",
        "--fault",
        "--control-token",
        "--config",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
}
