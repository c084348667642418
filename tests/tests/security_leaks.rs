//! No raw token ever reaches a trace, a report or a log: neither in a harness run of the OAuth
//! scenarios with the reference client (JSON, JUnit, HTML, terminal, tracing logs) nor in a server's
//! trace and control API after logins, refreshes and OAuth flows done over HTTP.

use rotary_harness::{Catalogue, RunConfig, RunReport, Selection, default_dir, report, run_scenarios};
use rotary_server::{MockHomeserver, Profile, s256_challenge};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

const DRIVER: &str = env!("CARGO_BIN_EXE_rotary-test-driver");

const TOKEN_PREFIXES: [&str; 6] = ["syt_", "syr_", "mct_", "mcr_", "mat_", "mar_"];

/// Every token-shaped word in `text`: a prefix followed by at least 10 of `[A-Za-z0-9_]`.
fn token_shaped(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in TOKEN_PREFIXES {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let tail = &rest[i + prefix.len()..];
            let n = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if n >= 10 {
                found.push(format!("{prefix}{}", &tail[..n]));
            }
            rest = &rest[i + prefix.len()..];
        }
    }
    found
}

/// Everything the process logs through `tracing`, at every level.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

async fn run(catalogue: &Catalogue, globs: &[&str], driver: String) -> RunReport {
    let selection = Selection {
        globs: globs.iter().map(|g| (*g).to_owned()).collect(),
        ..Selection::default()
    };
    let picked: Vec<_> = catalogue
        .select(&selection)
        .expect("the globs match")
        .into_iter()
        .cloned()
        .collect();
    run_scenarios(&picked, &RunConfig::new(driver).jobs(8), |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_token_in_reports_or_logs_of_a_harness_run() {
    let logs = captured_logs();
    let catalogue = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
    let clean = run(
        &catalogue,
        &[
            "oauth.*",
            "rotation.chain",
            "restore.kill-and-resume",
            "lost-response.refresh-synapse",
            "profiles.mas",
        ],
        DRIVER.to_owned(),
    )
    .await;
    assert!(clean.scenarios.len() >= 20, "{} scenarios", clean.scenarios.len());
    // A buggy client too, so that failure messages, evidence and stderr are in the reports.
    let buggy = run(
        &catalogue,
        &[
            "oauth.rotation-chain",
            "rotation.chain",
            "oauth.token-503",
            "faults.refresh-500",
        ],
        format!("{DRIVER} --bug stale-refresh-token --bug logout-on-transient"),
    )
    .await;
    assert!(
        !buggy.summary.ok,
        "the buggy client passed: the failure paths were not exercised"
    );

    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut outputs: Vec<(String, String)> = Vec::new();
    for (name, r) in [("clean", &clean), ("buggy", &buggy)] {
        let json_path = dir.path().join(format!("{name}.json"));
        let junit_path = dir.path().join(format!("{name}.xml"));
        let html_dir = dir.path().join(format!("{name}-html"));
        report::write_json(r, &json_path).expect("JSON report");
        report::write_junit(r, &junit_path).expect("JUnit report");
        report::write_html(r, &html_dir).expect("HTML report");
        outputs.push((format!("{name} terminal"), report::render_failures(r, false)));
        outputs.push((format!("{name} summary"), report::summary_line(r)));
        outputs.push((format!("{name} debug"), format!("{r:?}")));
    }
    let mut files = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for entry in std::fs::read_dir(&p).expect("read the folder") {
                stack.push(entry.expect("an entry").path());
            }
        } else {
            files += 1;
            let text = String::from_utf8_lossy(&std::fs::read(&p).expect("read a report")).into_owned();
            outputs.push((p.display().to_string(), text));
        }
    }
    assert!(files >= 6 + clean.scenarios.len(), "only {files} report files");
    outputs.push(("tracing logs".into(), logs_text()));
    assert!(
        !logs.lock().unwrap_or_else(|p| p.into_inner()).is_empty(),
        "nothing was logged"
    );

    // The reports do name tokens — by label.
    let json_report = &outputs
        .iter()
        .find(|(n, _)| n.ends_with("clean.json"))
        .expect("the JSON report")
        .1;
    assert!(json_report.contains("\"rt#2\"") && json_report.contains("\"at#1\""));
    // The scanner does recognise tokens.
    assert_eq!(
        token_shaped("a syt_YWxpY2U_abcdefghijklmnopqrstuvwx_0AbCdE, mar_short").len(),
        1
    );
    let logs = logs_text();
    assert!(
        logs.contains("request") && logs.contains("endpoint"),
        "the server's request logs were not captured"
    );
    let mut leaks = Vec::new();
    for (name, text) in &outputs {
        for t in token_shaped(text) {
            leaks.push(format!("{name}: {t}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "raw tokens in the outputs:\n{}",
        leaks.join("\n")
    );
}

/// Every secret the server handed out over HTTP, by collecting them from the responses.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn take(&mut self, body: &Value, keys: &[&str]) {
        for k in keys {
            if let Some(s) = body[*k].as_str() {
                self.0.push(s.to_owned());
            }
        }
    }
}

async fn post_json(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let resp = http.post(url).json(&body).send().await.expect("answered");
    resp.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_token_in_a_servers_trace_or_control_api() {
    let _logs = captured_logs();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut secrets = Secrets::default();
    let mut dumps: Vec<(String, String)> = Vec::new();
    for profile in [Profile::Synapse, Profile::Mas] {
        let server = MockHomeserver::builder()
            .profile(profile)
            .start()
            .await
            .expect("server starts");
        let base = server.url();
        // Legacy: login, a chain of refreshes, reuse of an old refresh token, tokens in every
        // place a client might put them (header, query, a refresh token as an access token).
        let login = post_json(
            &http,
            &format!("{base}/_matrix/client/v3/login"),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                   "password": "wonderland", "refresh_token": true}),
        )
        .await;
        secrets.take(&login, &["access_token", "refresh_token"]);
        let mut refresh = login["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned();
        let first_refresh = refresh.clone();
        let mut access = login["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned();
        for _ in 0..3 {
            let r = post_json(
                &http,
                &format!("{base}/_matrix/client/v3/refresh"),
                json!({"refresh_token": refresh}),
            )
            .await;
            secrets.take(&r, &["access_token", "refresh_token"]);
            access = r["access_token"].as_str().expect("refreshed").to_owned();
            if let Some(rt) = r["refresh_token"].as_str() {
                refresh = rt.to_owned();
            }
            let whoami = http
                .get(format!("{base}/_matrix/client/v3/account/whoami"))
                .bearer_auth(&access)
                .send()
                .await
                .expect("answered");
            assert_eq!(whoami.status(), 200);
        }
        let _ = post_json(
            &http,
            &format!("{base}/_matrix/client/v3/refresh"),
            json!({"refresh_token": first_refresh}),
        )
        .await;
        let _ = http
            .get(format!(
                "{base}/_matrix/client/v3/account/whoami?access_token={access}"
            ))
            .send()
            .await;
        let _ = http
            .get(format!(
                "{base}/_matrix/client/v3/sync?timeout=0&access_token={access}&since=s0"
            ))
            .send()
            .await;
        let _ = http
            .get(format!("{base}/_matrix/client/v3/account/whoami"))
            .bearer_auth(&refresh)
            .send()
            .await;
        let _ = post_json(
            &http,
            &format!("{base}/_matrix/client/v3/refresh"),
            json!({"refresh_token": access}),
        )
        .await;
        let register = post_json(
            &http,
            &format!("{base}/_matrix/client/v3/register"),
            json!({"username": "zed", "password": "pw", "auth": {"type": "m.login.dummy"}, "refresh_token": true}),
        )
        .await;
        secrets.take(&register, &["access_token", "refresh_token"]);

        if profile == Profile::Mas {
            // OAuth: register a client, authorize, exchange the code with PKCE, refresh, revoke.
            let client = post_json(
                &http,
                &format!("{base}/oauth2/registration"),
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["authorization_code", "refresh_token"],
                       "application_type": "native", "token_endpoint_auth_method": "none"}),
            )
            .await;
            let client_id = client["client_id"].as_str().expect("a client id").to_owned();
            let verifier = "v".repeat(20) + "erifier-0123456789-abcdefghijklmnop";
            let authorize = http
                .get(format!(
                    "{base}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&code_challenge={}&code_challenge_method=S256&state=xyz",
                    s256_challenge(&verifier)
                ))
                .send()
                .await
                .expect("answered");
            assert_eq!(authorize.status(), 302);
            let location = authorize.headers()["location"]
                .to_str()
                .expect("a location")
                .to_owned();
            let code = location
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("code="))
                .expect("a code")
                .to_owned();
            secrets.0.push(code.clone());
            secrets.0.push(verifier.clone());
            let form = url_encode;
            let token_url = format!("{base}/oauth2/token");
            let exchange: Value = http
                .post(&token_url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", "http://127.0.0.1/cb"),
                    ("client_id", &client_id),
                    ("code_verifier", &verifier),
                ]))
                .send()
                .await
                .expect("answered")
                .json()
                .await
                .expect("JSON");
            secrets.take(&exchange, &["access_token", "refresh_token"]);
            let mut ort = exchange["refresh_token"]
                .as_str()
                .expect("an OAuth refresh token")
                .to_owned();
            for _ in 0..2 {
                let r: Value = http
                    .post(&token_url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &ort),
                        ("client_id", &client_id),
                    ]))
                    .send()
                    .await
                    .expect("answered")
                    .json()
                    .await
                    .expect("JSON");
                secrets.take(&r, &["access_token", "refresh_token"]);
                ort = r["refresh_token"].as_str().expect("rotated").to_owned();
            }
            // A replayed code, and a revocation of the newest refresh token.
            let _ = http
                .post(&token_url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", &client_id),
                    ("code_verifier", &verifier),
                ]))
                .send()
                .await;
            let revoke = http
                .post(format!("{base}/oauth2/revoke"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("token", &ort),
                    ("token_type_hint", "refresh_token"),
                    ("client_id", &client_id),
                ]))
                .send()
                .await
                .expect("answered");
            assert_eq!(revoke.status(), 200);
        }

        let trace = server.trace();
        assert!(trace.len() >= 10);
        dumps.push((
            format!("{} trace", profile.name()),
            serde_json::to_string(&trace).expect("serialise"),
        ));
        dumps.push((format!("{} trace (debug)", profile.name()), format!("{trace:?}")));
        for route in [
            "/_rotary/trace",
            "/_rotary/sessions",
            "/_rotary/faults",
            "/_rotary/oauth/clients",
            "/_rotary/config",
            "/_rotary/users",
        ] {
            let text = http
                .get(format!("{base}{route}"))
                .send()
                .await
                .expect("answered")
                .text()
                .await
                .expect("text");
            dumps.push((format!("{} {route}", profile.name()), text));
        }
        dumps.push((
            format!("{} sessions (debug)", profile.name()),
            format!("{:?}", server.sessions(None)),
        ));
    }
    dumps.push(("tracing logs".into(), logs_text()));
    let secrets = secrets.0;
    assert!(secrets.len() >= 20, "only {} secrets collected", secrets.len());
    // The scanner does recognise them.
    for s in secrets
        .iter()
        .filter(|s| TOKEN_PREFIXES.iter().any(|p| s.starts_with(p)))
    {
        assert_eq!(token_shaped(&format!("[\"{s}\"]")), vec![s.clone()]);
    }
    assert!(secrets.iter().any(|s| s.starts_with("mat_")) && secrets.iter().any(|s| s.starts_with("syr_")));
    let mut leaks = Vec::new();
    for (name, text) in &dumps {
        for s in &secrets {
            if text.contains(s.as_str()) {
                leaks.push(format!("{name}: {s}"));
            }
        }
        for t in token_shaped(text) {
            leaks.push(format!("{name}: token-shaped {t}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "raw secrets in traces or the control API:\n{}",
        leaks.join("\n")
    );
}

/// `application/x-www-form-urlencoded`, by hand (the test crate has no URL encoder).
fn url_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}
