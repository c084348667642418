//! Security: the control API refuses non-loopback peers unless the control token is presented
//! (checked over real TCP from this machine's own non-loopback address, and on `control_allowed`
//! directly); tokens are ≥ 128 random bits from a CSPRNG (100,000 of them: unique, uniform); and no
//! raw token ever reaches a trace, a report or a log — neither in a harness run of the OAuth
//! scenarios with the reference client (JSON, JUnit, HTML, terminal, tracing logs) nor in a
//! server's trace and control API after logins, refreshes and OAuth flows done over HTTP.

use rotary_harness::{Catalogue, RunConfig, RunReport, Selection, default_dir, report, run_scenarios};
use rotary_server::{
    ControlAccess, Dialect, MockHomeserver, Profile, TokenKind, control_allowed, generate_oauth_token,
    generate_token, s256_challenge,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};

const DRIVER: &str = env!("CARGO_BIN_EXE_rotary-test-driver");

// ---------------------------------------------------------------------------------------------
// (a) The control API.

#[test]
fn control_allowed_admits_loopback_or_the_token_only() {
    let lo = ControlAccess::LoopbackOnly;
    let tok = ControlAccess::Token("s3cret".into());
    let empty = ControlAccess::Token(String::new());
    let ip = |s: &str| Some(s.parse::<IpAddr>().expect("an address"));
    for peer in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
        for access in [&lo, &tok, &empty] {
            assert!(control_allowed(ip(peer), None, access), "{peer} under {access:?}");
        }
    }
    // In-process calls (no peer) are the embedding program's own.
    assert!(control_allowed(None, None, &lo));
    for peer in [
        "192.0.2.7",
        "10.0.0.1",
        "0.0.0.0",
        "::",
        "2001:db8::1",
        "::ffff:192.0.2.7",
        "fe80::1",
    ] {
        assert!(!control_allowed(ip(peer), None, &lo), "{peer}");
        assert!(
            !control_allowed(ip(peer), Some("Bearer s3cret"), &lo),
            "{peer}: a token without --control-token"
        );
        assert!(!control_allowed(ip(peer), None, &tok), "{peer}: no token");
        assert!(
            control_allowed(ip(peer), Some("Bearer s3cret"), &tok),
            "{peer}: the token"
        );
        for wrong in [
            "Bearer wrong",
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer  s3cret",
            "Bearer s3cret ",
            "bearer s3cret",
            "Basic s3cret",
            "s3cret",
            "Bearer",
            "Bearer ",
            "",
        ] {
            assert!(
                !control_allowed(ip(peer), Some(wrong), &tok),
                "{peer}: {wrong:?} let in"
            );
        }
        // An empty configured token lets nobody in (not even `Bearer `).
        assert!(!control_allowed(ip(peer), Some("Bearer "), &empty), "{peer}");
    }
}

/// This machine's own non-loopback IPv4 address, if it has one (the source address of a route to
/// the outside; a UDP "connect" sends nothing).
fn own_non_loopback_ip() -> Option<IpAddr> {
    for target in ["192.0.2.1:9", "8.8.8.8:53", "10.255.255.254:9", "172.16.0.1:9"] {
        let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        if sock.connect(target).is_ok()
            && let Ok(addr) = sock.local_addr()
            && !addr.ip().is_loopback()
            && !addr.ip().is_unspecified()
        {
            return Some(addr.ip());
        }
    }
    None
}

struct Reply {
    status: u16,
    body: Value,
    cors: bool,
}

async fn get(http: &reqwest::Client, url: String, bearer: Option<&str>) -> Reply {
    let mut req = http.get(url);
    if let Some(t) = bearer {
        req = req.header("Authorization", t);
    }
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    let cors = resp.headers().contains_key("access-control-allow-origin");
    let body = resp.json().await.unwrap_or(Value::Null);
    Reply { status, body, cors }
}

fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, 403, "{what}: {:?}", r.body);
    assert_eq!(r.body["errcode"], "M_FORBIDDEN", "{what}");
    assert!(
        r.body["error"].as_str().is_some_and(|e| e.contains("loopback")),
        "{what}"
    );
}

#[tokio::test]
async fn the_control_api_refuses_other_hosts_without_the_token() {
    let Some(own) = own_non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: only control_allowed is checked");
        return;
    };
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    for (access, token_works) in [
        (ControlAccess::LoopbackOnly, false),
        (ControlAccess::Token("s3cret".into()), true),
    ] {
        let server = MockHomeserver::builder()
            .bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            .control_access(access.clone())
            .start()
            .await
            .expect("server starts");
        let port = server.addr().port();
        let remote = format!("http://{}", SocketAddr::new(own, port));
        let local = format!("http://127.0.0.1:{port}");
        let session = server.mint_session("alice").expect("mint");
        // Loopback clients always pass (the documented rule), token or not.
        for path in ["/_rotary/config", "/_rotary/trace", "/_rotary/sessions"] {
            let r = get(&http, format!("{local}{path}"), None).await;
            assert_eq!(r.status, 200, "{access:?} loopback {path}: {:?}", r.body);
        }
        // Another host: every control route refused, whatever it tries, unless the token.
        for path in [
            "/_rotary",
            "/_rotary/config",
            "/_rotary/trace",
            "/_rotary/sessions?user=alice",
            "/_rotary/faults",
            "/_rotary/nope",
        ] {
            for bearer in [
                None,
                Some("Bearer wrong"),
                Some("bearer s3cret"),
                Some("Basic s3cret"),
                Some("Bearer s3cre"),
            ] {
                assert_refused(
                    &get(&http, format!("{remote}{path}"), bearer).await,
                    &format!("{access:?} {path} {bearer:?}"),
                );
            }
            let with_token = get(&http, format!("{remote}{path}"), Some("Bearer s3cret")).await;
            if token_works && path != "/_rotary/nope" {
                assert_eq!(
                    with_token.status, 200,
                    "{path} with the token: {:?}",
                    with_token.body
                );
            } else if !token_works {
                assert_refused(&with_token, &format!("{path}: a token the server was not given"));
            }
        }
        // Writes are refused too, and change nothing.
        let refused = http
            .post(format!("{remote}/_rotary/reset"))
            .send()
            .await
            .expect("answered");
        assert_eq!(refused.status(), 403);
        let refused = http
            .post(format!(
                "{remote}/_rotary/sessions/alice/{}/revoke",
                session.device_id
            ))
            .send()
            .await
            .expect("answered");
        assert_eq!(refused.status(), 403);
        assert_eq!(
            server.sessions(Some("alice")).len(),
            1,
            "a refused request changed something"
        );
        // Paths that merely look like the control API are refused or land in the client-server
        // API (whose answers carry CORS headers); none reaches a control handler.
        for path in [
            "/_rotary/",
            "//_rotary/config",
            "/_rotary/../_rotary/config",
            "/%5Frotary/config",
            "/_ROTARY/config",
            "/_rotary%2Fconfig",
            "/_rotary/./config",
            "/_rotary//config",
        ] {
            let r = get(&http, format!("{remote}{path}"), None).await;
            assert!(
                (r.status == 403 && r.body["errcode"] == "M_FORBIDDEN") || (r.status == 404 && r.cors),
                "{path} from another host: {} {:?}",
                r.status,
                r.body
            );
        }
        // The client-server API itself serves everyone.
        let r = get(
            &http,
            format!("{remote}/_matrix/client/v3/account/whoami"),
            Some(&format!("Bearer {}", session.access_token)),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

#[tokio::test]
async fn ipv4_mapped_peers_are_judged_by_their_ipv4_address() {
    let Ok(server) = MockHomeserver::builder()
        .bind("[::]:0".parse().expect("an address"))
        .start()
        .await
    else {
        eprintln!("no IPv6 on this machine");
        return;
    };
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let port = server.addr().port();
    if http
        .get(format!("http://127.0.0.1:{port}/_matrix/client/versions"))
        .send()
        .await
        .is_err()
    {
        eprintln!("the IPv6 socket is not dual-stack here");
        return;
    }
    // A dual-stack socket sees 127.0.0.1 as ::ffff:127.0.0.1: still loopback.
    let r = get(&http, format!("http://127.0.0.1:{port}/_rotary/config"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = get(&http, format!("http://[::1]:{port}/_rotary/config"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    if let Some(own) = own_non_loopback_ip() {
        // ...and this host's own address as ::ffff:a.b.c.d: not loopback.
        assert_refused(
            &get(&http, format!("http://{own}:{port}/_rotary/config"), None).await,
            "mapped IPv4",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Token randomness.

/// The random part of a token: the segment of random letters.
fn random_part(token: &str) -> &str {
    let parts: Vec<&str> = token.split('_').collect();
    // syt_<base64 localpart>_<random>_<crc>, mct_<random>_<crc>, mat_<random>_<crc>
    parts[parts.len() - 2]
}

/// Pearson's chi-square statistic of `counts` against a uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn tokens_carry_at_least_128_random_bits_from_a_csprng() {
    const N: usize = 100_000;
    let mut tokens: Vec<String> = Vec::with_capacity(2 * N + 20_000);
    for i in 0..N {
        let kind = if i % 2 == 0 {
            TokenKind::Access
        } else {
            TokenKind::Refresh
        };
        tokens.push(generate_token(Dialect::Synapse, kind, "alice"));
        tokens.push(generate_oauth_token(kind));
        if i % 10 == 0 {
            tokens.push(generate_token(Dialect::Mas, kind, "alice"));
        }
    }
    let randoms: Vec<&str> = tokens.iter().map(|t| random_part(t)).collect();
    let unique: HashSet<&str> = randoms.iter().copied().collect();
    assert_eq!(
        unique.len(),
        randoms.len(),
        "a random part repeated among {} tokens",
        randoms.len()
    );
    let full: HashSet<&String> = tokens.iter().collect();
    assert_eq!(full.len(), tokens.len());

    let len = randoms[0].len();
    assert!(
        randoms.iter().all(|r| r.len() == len),
        "random parts of different lengths"
    );
    let mut alphabet: BTreeMap<char, usize> = BTreeMap::new();
    for r in &randoms {
        for c in r.chars() {
            *alphabet.entry(c).or_default() += 1;
        }
    }
    assert!(
        alphabet.len() <= 62 && alphabet.keys().all(char::is_ascii_alphanumeric),
        "{alphabet:?}"
    );
    let bits = len as f64 * (alphabet.len() as f64).log2();
    eprintln!(
        "random part: {len} characters of {} = {bits:.1} bits",
        alphabet.len()
    );
    assert!(bits >= 128.0, "only {bits:.1} random bits per token");

    // Uniform over the alphabet, overall and at every position. With df = |alphabet| - 1 (51 for
    // 52 letters), the statistic averages df with a standard deviation of √(2·df) ≈ 10; df + 12 √(2·df)
    // is beyond any chance (p < 1e-20) yet far below what a modulo bias or a stuck position gives.
    let index: BTreeMap<char, usize> = alphabet.keys().enumerate().map(|(i, c)| (*c, i)).collect();
    let df = (alphabet.len() - 1) as f64;
    let bound = df + 12.0 * (2.0 * df).sqrt();
    let mut overall = vec![0u64; alphabet.len()];
    let mut per_position = vec![vec![0u64; alphabet.len()]; len];
    for r in &randoms {
        for (pos, c) in r.chars().enumerate() {
            overall[index[&c]] += 1;
            per_position[pos][index[&c]] += 1;
        }
    }
    let chi = chi_square(&overall);
    eprintln!(
        "chi-square over {} characters: {chi:.1} (df {df}, bound {bound:.1})",
        randoms.len() * len
    );
    assert!(
        chi < bound,
        "character frequencies are not uniform: chi-square {chi:.1}"
    );
    for (pos, counts) in per_position.iter().enumerate() {
        let chi = chi_square(counts);
        assert!(chi < bound, "position {pos} is not uniform: chi-square {chi:.1}");
    }
    // Neighbouring characters are independent: pairs of the first two positions are uniform over
    // all |alphabet|² pairs (df ≈ 2,700 here).
    let k = alphabet.len();
    let mut pairs = vec![0u64; k * k];
    for r in &randoms {
        let mut cs = r.chars();
        if let (Some(a), Some(b)) = (cs.next(), cs.next()) {
            pairs[index[&a] * k + index[&b]] += 1;
        }
    }
    let df_pairs = (k * k - 1) as f64;
    let chi = chi_square(&pairs);
    assert!(
        chi < df_pairs + 12.0 * (2.0 * df_pairs).sqrt(),
        "pairs are not uniform: {chi:.1}"
    );
}

/// A statistical test cannot tell a CSPRNG from a merely good generator, so the source is
/// checked too: token generation draws from `rand::rng()` (ChaCha12, seeded and reseeded by the
/// OS) and never from a seeded or non-cryptographic generator. Changing that must change this test.
#[test]
fn tokens_are_drawn_from_the_thread_csprng() {
    let source = include_str!("../../server/src/token.rs");
    assert!(
        source.contains("rand::rng()"),
        "token.rs no longer uses rand::rng()"
    );
    for weak in [
        "seed_from_u64",
        "SmallRng",
        "StdRng",
        "from_seed",
        "thread_rng",
        "fastrand",
        "SystemTime",
    ] {
        assert!(
            !source.contains(weak),
            "token.rs mentions {weak}: is the generator still a CSPRNG?"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (c) No raw token in traces, reports or logs.

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
