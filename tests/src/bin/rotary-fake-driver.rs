//! A misbehaving driver for the harness's own tests: `rotary-fake-driver MODE` answers `initialize`
//! and then crashes, hangs, prints garbage, exits early, answers out of order, floods, or forks.
#![forbid(unsafe_code)]

use serde_json::{Value, json};
use std::io::{BufRead, Write};

fn answer(out: &mut impl Write, id: &Value, result: Value) {
    let _ = writeln!(out, "{}", json!({"jsonrpc": "2.0", "id": id, "result": result}));
    let _ = out.flush();
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "ok".to_owned());
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!("fake driver starting in mode {mode}");
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let Ok(req) = serde_json::from_str::<Value>(&line) else {
            return;
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let method = req.get("method").and_then(Value::as_str).unwrap_or("").to_owned();
        if method == "initialize" {
            match mode.as_str() {
                "hang-init" => loop {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                },
                "garbage-init" => {
                    let _ = writeln!(out, "Starting SDK v1.2.3...");
                    let _ = out.flush();
                    continue;
                }
                "no-caps" => {
                    answer(&mut out, &id, json!({"name": "fake"}));
                    continue;
                }
                "exit-init" => std::process::exit(0),
                "fork" => {
                    // A child that would outlive the driver: it must be killed with the group.
                    let _ = std::process::Command::new("sleep").arg("300").spawn();
                }
                "daemon" => {
                    // A child that leaves the process group (a new session), as daemons do.
                    let _ = std::process::Command::new("setsid")
                        .args(["sleep", "301"])
                        .spawn();
                }
                _ => {}
            }
            let caps = if mode == "few-caps" {
                json!(["whoami"])
            } else {
                json!([
                    "login",
                    "whoami",
                    "sync",
                    "send",
                    "parallel",
                    "logout",
                    "restore",
                    "resume",
                    "register",
                    "legacy-refresh"
                ])
            };
            answer(
                &mut out,
                &id,
                json!({"name": "fake", "version": mode, "capabilities": caps}),
            );
            continue;
        }
        if method == "shutdown" {
            answer(&mut out, &id, json!({}));
            return;
        }
        match mode.as_str() {
            "crash" => {
                eprintln!("fake driver: panicking on {method}");
                std::process::exit(101);
            }
            "hang" | "fork" | "daemon" => loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            },
            "flood" => loop {
                // Valid JSON-RPC, as fast as it can, and never an answer.
                let line = json!({"jsonrpc": "2.0", "method": "log", "params": {"message": "still working"}});
                if writeln!(out, "{line}").is_err() {
                    return;
                }
            },
            "stderr-flood" => loop {
                if writeln!(std::io::stderr(), "debug: {}", "x".repeat(200)).is_err() {
                    return;
                }
            },
            "garbage" => {
                let _ = writeln!(out, "\u{1b}[31mERROR\u{1b}[0m something happened");
                let _ = out.flush();
            }
            "wrong-id" => {
                let bad = id.as_u64().map_or(json!(999), |n| json!(n + 100));
                answer(&mut out, &bad, json!({}));
            }
            "huge" => {
                let big = "x".repeat(5 * 1024 * 1024);
                let _ = writeln!(
                    out,
                    "{}",
                    json!({"jsonrpc": "2.0", "method": "log", "params": {"message": big}})
                );
                let _ = out.flush();
            }
            "exit-early" => std::process::exit(0),
            _ => {
                // "ok": every call fails politely as unsupported.
                let _ = writeln!(
                    out,
                    "{}",
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "not supported", "data": {"kind": "unsupported"}}})
                );
                let _ = out.flush();
            }
        }
    }
}
