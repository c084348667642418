//! Robustness of request heads over raw HTTP: odd `Authorization` and `Host` headers, odd queries,
//! paths and methods, CORS preflights and odd content types answer no 5xx, are traced, and no raw
//! token reaches the trace.

mod common;

use common::robustness::panics::watch_panics;
use common::robustness::probing::{assert_clean, probe_server, run_probes};
use common::robustness::targets::{Auth, Base, Expect, Probe, t};
use rotary_server::Profile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_headers_queries_paths_and_methods() {
    watch_panics();
    let (server, rooms) = probe_server(Profile::Mas).await;
    let whoami = t(
        "whoami",
        "GET",
        "/_matrix/client/v3/account/whoami",
        Auth::None,
        Base::None,
    );
    let mut probes = Vec::new();
    let big = format!("Bearer {}", "A".repeat(200 * 1024));
    for (label, value) in [
        ("200 KiB token", big.into_bytes()),
        ("Bearer alone", b"Bearer".to_vec()),
        ("Bearer and a space", b"Bearer ".to_vec()),
        ("two spaces", b"Bearer  {at}".to_vec()),
        ("Basic", b"Basic dXNlcjpwYXNz".to_vec()),
        ("lower-case scheme", b"bearer {at}".to_vec()),
        ("three words", b"Bearer {at} extra".to_vec()),
        ("obs-text bytes", b"Bearer \xff\xfe\xfd".to_vec()),
        (
            "token-shaped junk",
            b"Bearer syt_YWxpY2U_xxxxxxxxxxxxxxxxxxxxxxxx_000000".to_vec(),
        ),
    ] {
        probes.push(Probe::new(&whoami, label, None, vec![]).header("Authorization", value));
    }
    probes.push(
        Probe::new(&whoami, "two Authorization headers", None, vec![])
            .header("Authorization", b"Bearer {at}".to_vec())
            .header("Authorization", b"Bearer {at}".to_vec()),
    );
    let mut mixed = Probe::new(&whoami, "header and query", None, vec![])
        .header("Authorization", b"Bearer {at}".to_vec());
    mixed.path = "/_matrix/client/v3/account/whoami?access_token={at}".into();
    probes.push(mixed);
    // Just under the 64 KiB that hyper allows a URI.
    let mut long_query = Probe::new(&whoami, "60 KB access_token", None, vec![]);
    long_query.path = format!(
        "/_matrix/client/v3/account/whoami?access_token={}",
        "B".repeat(60_000)
    );
    probes.push(long_query);
    for host in [&b"\xff\xfe"[..], b"a b", b"", b"[::1]:99999", b"\"><script>"] {
        probes.push(
            Probe::new(
                &t(
                    "well_known",
                    "GET",
                    "/.well-known/matrix/client",
                    Auth::None,
                    Base::None,
                ),
                "odd Host",
                None,
                vec![],
            )
            .header("Host", host.to_vec()),
        );
        probes.push(
            Probe::new(
                &t(
                    "auth_metadata",
                    "GET",
                    "/_matrix/client/v1/auth_metadata",
                    Auth::None,
                    Base::None,
                ),
                "odd Host",
                None,
                vec![],
            )
            .header("Host", host.to_vec()),
        );
    }
    let queries: &[(&str, &str, &[&str])] = &[
        (
            "sync",
            "/_matrix/client/v3/sync",
            &[
                "timeout=abc",
                "timeout=-1",
                "timeout=99999999999999999999999",
                "since=garbage",
                "since=s18446744073709551615",
                "since=s99999999999999999999",
                "since=s-1",
                "filter=%7Bbad",
                "filter=999999999999999999999",
                "filter=12",
                "full_state=maybe&set_presence=x",
                "timeout=0&timeout=1&since=",
                "%FF%FE=%FF",
                "&&&===&",
            ],
        ),
        (
            "messages",
            "/_matrix/client/v3/rooms/{room}/messages",
            &[
                "dir=x",
                "dir=b&limit=-5",
                "dir=f&limit=1180591620717411303424",
                "from=sX",
                "from=s-1",
                "from=s99999999999999999999&dir=b",
            ],
        ),
        (
            "register",
            "/_matrix/client/v3/register",
            &["kind=guest", "kind=admin", "kind=%FF"],
        ),
        (
            "oauth_authorize",
            "/oauth2/authorize",
            &[
                "",
                "client_id=%FF",
                "client_id={client}",
                "client_id={client}&redirect_uri=javascript:alert(1)",
                "client_id={client}&response_type=token",
                "client_id={client}&response_type=code&code_challenge_method=plain&code_challenge=x",
                "client_id={client}&response_type=code&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&scope=%00",
                "client_id={client}&response_type=code&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&login_hint=%40nobody%3Alocalhost",
                "client_id={client}&response_type=code&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&response_mode=form_post",
                "client_id={client}&client_id={client}",
                "client_id={client}&response_type=code&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&state=%0D%0ALocation:%20x",
            ],
        ),
    ];
    for (name, path, qs) in queries {
        for q in *qs {
            let target = t(name, "GET", path, Auth::Alice, Base::None);
            let mut p = Probe::new(&target, format!("?{q}"), None, vec![]);
            if *name == "register" {
                p.method = "POST".into();
                p.auth = Auth::None;
                p.body = br#"{"username":"x{uniq}","password":"p","auth":{"type":"m.login.dummy"}}"#.to_vec();
            }
            if *name == "oauth_authorize" {
                p.auth = Auth::None;
            }
            p.path = format!("{path}?{q}");
            probes.push(p);
        }
    }
    let paths: &[(&str, &str, &str)] = &[
        ("messages", "GET", "/_matrix/client/v3/rooms/%FF%FE/messages"),
        ("messages", "GET", "/_matrix/client/v3/rooms/%ZZ/messages"),
        ("device", "GET", "/_matrix/client/v3/devices/%00"),
        (
            "filter",
            "GET",
            "/_matrix/client/v3/user/%40alice%3Alocalhost/filter/%FF",
        ),
        (
            "profile",
            "GET",
            "/_matrix/client/v3/profile/%40alice%3Alocalhost/%FF",
        ),
        ("send", "PUT", "/_matrix/client/v3/rooms/{droom}/send/%FF/%FE"),
        ("unknown", "GET", "//_matrix/client/v3/account/whoami"),
        ("unknown", "GET", "/_matrix/client/v3/account/whoami/"),
        ("unknown", "GET", "/_matrix/client/v3/../v3/account/whoami"),
        (
            "unknown",
            "GET",
            "/_matrix/client/v3/rooms/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t",
        ),
        (
            "pushrules",
            "GET",
            "/_matrix/client/v3/pushrules/global/../../../etc/passwd",
        ),
        ("login", "PROPFIND", "/_matrix/client/v3/login"),
        ("versions", "get", "/_matrix/client/versions"),
        (
            "whoami",
            "X-VERY-LONG-EXTENSION-METHOD-NAME-THAT-NOBODY-USES-AT-ALL",
            "/_matrix/client/v3/account/whoami",
        ),
        ("versions", "HEAD", "/_matrix/client/versions"),
        ("oauth_token", "GET", "/oauth2/token"),
        ("unknown", "GET", "/_rotary_not_control"),
    ];
    for (name, method, path) in paths {
        let target = t(name, "GET", "/", Auth::Alice, Base::None);
        let mut p = Probe::new(&target, format!("{method} {path}"), None, vec![]);
        p.method = (*method).to_owned();
        p.path = (*path).to_owned();
        probes.push(p);
    }
    let long_path = format!("/_matrix/client/v3/rooms/{}/messages", "r".repeat(60_000));
    let mut p = Probe::new(
        &t("messages", "GET", "/", Auth::Alice, Base::None),
        "60 KB path",
        None,
        vec![],
    );
    p.path = long_path;
    probes.push(p);
    let many = format!("/_matrix/client/v3/pushrules/{}", "a/".repeat(1000));
    let mut p = Probe::new(
        &t("unknown", "GET", "/", Auth::Alice, Base::None),
        "1000 segments",
        None,
        vec![],
    );
    p.path = many;
    probes.push(p);
    let mut preflight = Probe::new(&whoami, "CORS preflight", None, vec![]);
    preflight.method = "OPTIONS".into();
    preflight.expect = Expect::Preflight;
    probes.push(preflight);
    for (ct, label) in [
        (
            &b"application/x-www-form-urlencoded\xff"[..],
            "form type with obs-text",
        ),
        (b"APPLICATION/X-WWW-FORM-URLENCODED;;;", "shouting form type"),
        (b"", "empty content type"),
    ] {
        let token = t("oauth_token", "POST", "/oauth2/token", Auth::None, Base::None);
        probes.push(
            Probe::new(
                &token,
                label,
                None,
                b"grant_type=refresh_token&refresh_token={ort}&client_id={client}".to_vec(),
            )
            .header("Content-Type", ct.to_vec()),
        );
    }
    let problems = run_probes(&server, &rooms, probes).await;
    assert_clean("headers, queries, paths, methods", &problems);
    // The 200 KiB and 100 KiB tokens reached the server, which traced a label, not the token.
    let trace = server.trace();
    let unknown: Vec<_> = trace.iter().filter(|e| e.access_token.label == "at#?").collect();
    assert!(unknown.len() >= 2, "the huge tokens were not traced");
    for e in &trace {
        assert!(
            e.path.len() < 70_000 && !e.path.contains("BBBBBBBB"),
            "a raw token in a traced path"
        );
    }
}
