//! `rotary audit` and `rotary run --server-config` as a user runs them: exit 0 with the table, the
//! JSON and the config written; exit 2 with one line naming the step; the written config run.

use std::process::{Command, Output};
use std::time::Duration;

fn rotary(args: Vec<String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args(args)
        .env_remove("ROTARY_SCENARIOS")
        .env_remove("ROTARY_AUDIT_PASSWORD")
        .output()
        .expect("rotary runs")
}

async fn rotary_async(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || rotary(args))
        .await
        .expect("join")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rotary-audit-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_writes_the_table_json_and_config_and_run_uses_it() {
    let server = rotary_server::MockHomeserver::builder()
        .refreshable_access_token_lifetime(Duration::from_secs(3))
        .configure(|c| c.rotate_refresh_tokens = false)
        .start()
        .await
        .expect("mock");
    let dir = tmp("ok");
    let json = dir.join("audit.json");
    let toml = dir.join("server.toml");
    let url = server.url();
    let o = rotary_async(&[
        "audit",
        "--homeserver",
        &url,
        "--user",
        "alice",
        "--password",
        "wonderland",
        "--json",
        json.to_str().expect("path"),
        "--profile-out",
        toml.to_str().expect("path"),
    ])
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("closest: synapse, differs in"), "{out}");
    assert!(
        out.contains("reproduced by profile synapse with rotate_refresh_tokens = false"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("JSON");
    assert_eq!(report["closest_profile"], "synapse");
    assert_eq!(report["reproduction"]["knobs"]["rotate_refresh_tokens"], false);
    let written = std::fs::read_to_string(&toml).expect("config written");
    assert!(written.contains("rotate_refresh_tokens = false"), "{written}");
    assert!(
        server.sessions(None).is_empty(),
        "the audit logged its device out"
    );

    let o = rotary_async(&[
        "run",
        "--server-config",
        toml.to_str().expect("path"),
        "rotation.*",
        "--no-progress",
    ])
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        format!("{written}\n[[user]]\nname = \"bob\"\npassword = \"x\"\n"),
    )
    .expect("write");
    let o = rotary_async(&[
        "run",
        "--server-config",
        bad.to_str().expect("path"),
        "rotation.*",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not allowed in --server-config"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_errors_exit_2_with_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}");
    let o = rotary_async(&["audit", "--homeserver", &url, "--register"]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("step versions: cannot reach"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let server = rotary_server::MockHomeserver::builder()
        .start()
        .await
        .expect("mock");
    let url = server.url();
    let o = rotary_async(&[
        "audit",
        "--homeserver",
        &url,
        "--user",
        "alice",
        "--password",
        "nope",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("step login: wrong user or password"), "{err}");

    let o = rotary_async(&["audit", "--homeserver", &url]).await;
    assert_eq!(
        o.status.code(),
        Some(2),
        "neither --user nor --register is a usage error"
    );
}
