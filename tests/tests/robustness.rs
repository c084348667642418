//! Robustness over raw HTTP: every endpoint — legacy, OAuth 2.0, unknown paths and the `/_rotary`
//! control API — fed arbitrary bytes, invalid UTF-8, wrong content types, deep nesting, huge
//! numbers, wrong JSON types for every field, huge headers, oversized, empty and duplicate-key
//! bodies and malformed HTTP never answers a 5xx or an error body that is not Matrix (or RFC 6749 /
//! RFC 7591 on the OAuth endpoints), loses no trace entry and keeps answering; slow clients block
//! nobody and are cut off; memory stays bounded; and the parsers behind it all hold up under
//! proptest, with the same properties as the cargo-fuzz targets in `fuzz/`.

#[path = "../../fuzz/src/checks.rs"]
mod fuzz_checks;
#[path = "../../fuzz/src/request.rs"]
mod fuzz_request;

use futures_util::stream::{self, StreamExt};
use proptest::prelude::*;
use rotary_server::{Delivery, MintRequest, MockHomeserver, Profile, ServerConfig, classify, endpoint_names};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::RwLock;

/// The memory test takes this exclusively, so that no other test of this file allocates meanwhile.
static GATE: RwLock<()> = RwLock::const_new(());

/// Panics seen on server threads (tokio workers, the fuzz servers' runtime): tokio would swallow
/// them, so a hook records them and every test checks the list is empty.
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            if thread.starts_with("tokio-runtime-worker") || thread.starts_with(fuzz_request::SERVER_THREAD) {
                SERVER_PANICS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{thread}: {info}"));
            }
            previous(info);
        }));
    });
}

fn assert_no_server_panics() {
    let panics = SERVER_PANICS.lock().unwrap_or_else(|p| p.into_inner());
    assert!(panics.is_empty(), "server tasks panicked: {panics:#?}");
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP.

/// One response as it came off the wire.
#[derive(Debug, Default)]
struct Answer {
    /// `None` when the connection closed without a status line.
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Everything received, for connections with several responses.
    raw: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn short_body(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }

    /// How many responses on this connection went through the client-server API (which adds
    /// CORS headers to every answer, and traces every request it answers).
    fn traced_responses(&self) -> usize {
        // CORS preflights (204) are answered by the API but not traced.
        count(&self.raw, b"\r\naccess-control-allow-origin: *\r\n")
            .saturating_sub(count(&self.raw, b"HTTP/1.1 204 "))
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
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

fn parse_answer(raw: Vec<u8>) -> Answer {
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
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Answer {
    exchange_with(addr, request, false).await
}

/// [`exchange`], optionally half-closing after the request: malformed input that leaves the
/// server waiting for more (an unfinished head or body) then ends at once.
async fn exchange_with(addr: SocketAddr, request: Vec<u8>, half_close: bool) -> Answer {
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

fn http_request(method: &str, path: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------------
// What is sent where.

/// Who the request authenticates as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    None,
    /// A fresh session of alice, minted for this request.
    Alice,
    /// A fresh session of dave (for `send`, into dave's room).
    Dave,
    /// A fresh session of carol (for `logout/all`, which would end every alice session).
    Carol,
}

/// The error body an endpoint may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `{"errcode", "error"}` (or a user-interactive-auth 401 with `flows`).
    Matrix,
    /// Matrix, or RFC 6749 §5.2 `{"error", "error_description"}`.
    OAuth,
    /// Matrix, or RFC 7591 §3.2.2.
    Registration,
}

/// Where a request is expected to land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The client-server API: traced under this endpoint name.
    Traced(&'static str, Shape),
    /// The control API (never traced).
    Control,
    /// A CORS preflight: answered, not traced.
    Preflight,
}

#[derive(Clone, Debug)]
enum Base {
    None,
    Json(Value),
    Form(&'static str),
}

#[derive(Clone, Debug)]
struct Target {
    expect: Expect,
    method: &'static str,
    path: &'static str,
    auth: Auth,
    base: Base,
}

fn t(endpoint: &'static str, method: &'static str, path: &'static str, auth: Auth, base: Base) -> Target {
    let shape = match endpoint {
        "oauth_token" | "oauth_revoke" | "oauth_authorize" => Shape::OAuth,
        "oauth_registration" => Shape::Registration,
        _ => Shape::Matrix,
    };
    Target {
        expect: Expect::Traced(endpoint, shape),
        method,
        path,
        auth,
        base,
    }
}

fn login_body() -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "wonderland",
        "refresh_token": true,
        "device_id": "D{uniq}",
        "initial_device_display_name": "robust",
        "org.matrix.msc2918.refresh_token": true,
    })
}

/// A representative request for every client-server endpoint, and a few unknown paths.
fn client_targets() -> Vec<Target> {
    use Auth::{Alice, Carol, Dave, None as Anon};
    vec![
        t("versions", "GET", "/_matrix/client/versions", Anon, Base::None),
        t(
            "well_known",
            "GET",
            "/.well-known/matrix/client",
            Anon,
            Base::None,
        ),
        t("login", "GET", "/_matrix/client/v3/login", Anon, Base::None),
        t(
            "login",
            "POST",
            "/_matrix/client/r0/login",
            Anon,
            Base::Json(login_body()),
        ),
        t(
            "register",
            "POST",
            "/_matrix/client/v3/register",
            Anon,
            Base::Json(json!({
                "username": "u{uniq}", "password": "pw", "auth": {"type": "m.login.dummy"},
                "refresh_token": true, "inhibit_login": false, "device_id": "R{uniq}",
                "initial_device_display_name": "x",
            })),
        ),
        t(
            "refresh",
            "POST",
            "/_matrix/client/v3/refresh",
            Anon,
            Base::Json(json!({"refresh_token": "{rt}"})),
        ),
        t("logout", "POST", "/_matrix/client/v3/logout", Alice, Base::None),
        t(
            "logout_all",
            "POST",
            "/_matrix/client/v3/logout/all",
            Carol,
            Base::None,
        ),
        t(
            "whoami",
            "GET",
            "/_matrix/client/v3/account/whoami",
            Alice,
            Base::None,
        ),
        t(
            "sync",
            "GET",
            "/_matrix/client/v3/sync?timeout=0",
            Alice,
            Base::None,
        ),
        t(
            "create_room",
            "POST",
            "/_matrix/client/v3/createRoom",
            Alice,
            Base::Json(json!({"preset": "private_chat", "name": "x"})),
        ),
        t(
            "send",
            "PUT",
            "/_matrix/client/v3/rooms/{droom}/send/m.room.message/t{uniq}",
            Dave,
            Base::Json(json!({"msgtype": "m.text", "body": "hi"})),
        ),
        t(
            "send",
            "POST",
            "/_matrix/client/r0/rooms/{droom}/send/m.room.message",
            Dave,
            Base::Json(json!({"msgtype": "m.text", "body": "hi"})),
        ),
        t(
            "messages",
            "GET",
            "/_matrix/client/v3/rooms/{room}/messages?dir=b",
            Alice,
            Base::None,
        ),
        t(
            "joined_rooms",
            "GET",
            "/_matrix/client/v3/joined_rooms",
            Alice,
            Base::None,
        ),
        t("devices", "GET", "/_matrix/client/v3/devices", Alice, Base::None),
        t(
            "device",
            "GET",
            "/_matrix/client/v3/devices/{dev}",
            Alice,
            Base::None,
        ),
        t(
            "device",
            "PUT",
            "/_matrix/client/v3/devices/{dev}",
            Alice,
            Base::Json(json!({"display_name": "x"})),
        ),
        t(
            "device",
            "DELETE",
            "/_matrix/client/v3/devices/{dev}",
            Alice,
            Base::Json(json!({"auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "wonderland",
            }})),
        ),
        t(
            "capabilities",
            "GET",
            "/_matrix/client/v3/capabilities",
            Alice,
            Base::None,
        ),
        t(
            "pushrules",
            "GET",
            "/_matrix/client/v3/pushrules/",
            Alice,
            Base::None,
        ),
        t(
            "filter",
            "POST",
            "/_matrix/client/v3/user/@alice:localhost/filter",
            Alice,
            Base::Json(json!({"room": {"timeline": {"limit": 5}}})),
        ),
        t(
            "filter",
            "GET",
            "/_matrix/client/v3/user/@alice:localhost/filter/0",
            Alice,
            Base::None,
        ),
        t(
            "profile",
            "GET",
            "/_matrix/client/v3/profile/@alice:localhost",
            Anon,
            Base::None,
        ),
        t(
            "profile",
            "PUT",
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Alice,
            Base::Json(json!({"displayname": "A"})),
        ),
        t(
            "auth_metadata",
            "GET",
            "/_matrix/client/v1/auth_metadata",
            Anon,
            Base::None,
        ),
        t(
            "oauth_registration",
            "POST",
            "/oauth2/registration",
            Anon,
            Base::Json(json!({
                "redirect_uris": ["http://127.0.0.1/cb"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
                "client_name": "x",
                "client_uri": "https://example.org/",
                "logo_uri": "https://example.org/logo.png",
                "tos_uri": "https://example.org/tos",
                "policy_uri": "https://example.org/policy",
            })),
        ),
        t(
            "oauth_authorize",
            "GET",
            "/oauth2/authorize?response_type=code&client_id={client}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s",
            Anon,
            Base::None,
        ),
        t(
            "oauth_token",
            "POST",
            "/oauth2/token",
            Anon,
            Base::Form(
                "grant_type=refresh_token&refresh_token={ort}&client_id={client}&scope=urn%3Amatrix%3Aclient%3Aapi%3A%2A",
            ),
        ),
        t(
            "oauth_revoke",
            "POST",
            "/oauth2/revoke",
            Anon,
            Base::Form("token={oat}&token_type_hint=access_token&client_id={client}"),
        ),
        t("unknown", "GET", "/_matrix/client/v3/nope", Anon, Base::None),
        t("unknown", "POST", "/nothing/at/all", Alice, Base::None),
        t(
            "unknown",
            "PUT",
            "/_matrix/federation/v1/send/1",
            Anon,
            Base::None,
        ),
    ]
}

fn control(method: &'static str, path: &'static str, base: Base) -> Target {
    Target {
        expect: Expect::Control,
        method,
        path,
        auth: Auth::None,
        base,
    }
}

/// A fault rule that is valid but never fires, whatever single field a probe breaks.
fn inert_fault() -> Value {
    json!({
        "name": "never", "endpoint": "versions", "method": "TRACE", "path": "/never/*",
        "token": "at#999999", "user": "nobody", "nth": 1, "first": 1, "after": 0,
        "probability": 0.0, "seed": 1,
        "action": {"kind": "error", "status": 503, "errcode": "M_X", "error": "x",
                   "soft_logout": false, "retry_after_ms": 1},
    })
}

/// Every control route (except `reset`, which would clear the trace the checks compare).
fn control_targets() -> Vec<Target> {
    vec![
        control("GET", "/_rotary", Base::None),
        control("GET", "/_rotary/config", Base::None),
        control("PATCH", "/_rotary/config", Base::Json(json!({}))),
        control(
            "PUT",
            "/_rotary/config",
            Base::Json(json!({"rotate_refresh_tokens": true})),
        ),
        control("GET", "/_rotary/faults", Base::None),
        control("POST", "/_rotary/faults", Base::Json(inert_fault())),
        control("DELETE", "/_rotary/faults/abc", Base::None),
        control("DELETE", "/_rotary/faults/99999999999999999999999", Base::None),
        control("GET", "/_rotary/clock", Base::None),
        control("POST", "/_rotary/clock/advance", Base::Json(json!({"by": "1s"}))),
        control("GET", "/_rotary/users", Base::None),
        control(
            "POST",
            "/_rotary/users",
            Base::Json(json!({"user": "u{uniq}", "password": "pw"})),
        ),
        control("GET", "/_rotary/sessions?user=alice", Base::None),
        control(
            "POST",
            "/_rotary/sessions",
            Base::Json(
                json!({"user": "alice", "device_id": "M{uniq}", "refresh_token": true, "oauth": false}),
            ),
        ),
        control("POST", "/_rotary/sessions/alice/{dev}/expire", Base::None),
        control("POST", "/_rotary/sessions/nobody/NODEVICE/revoke", Base::None),
        control(
            "POST",
            "/_rotary/sessions/alice/{dev}/rotate",
            Base::Json(json!({"use": true})),
        ),
        control("GET", "/_rotary/oauth/clients", Base::None),
        control(
            "POST",
            "/_rotary/oauth/clients",
            Base::Json(json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "x"})),
        ),
        control(
            "POST",
            "/_rotary/rooms",
            Base::Json(json!({"user": "alice", "name": "r"})),
        ),
        control(
            "POST",
            "/_rotary/rooms/{room}/join",
            Base::Json(json!({"user": "alice"})),
        ),
        control("GET", "/_rotary/trace?after=0", Base::None),
        control(
            "POST",
            "/_rotary/labels",
            Base::Json(json!({"tokens": ["{at}", "nope"]})),
        ),
        control("GET", "/_rotary/nope", Base::None),
        control("DELETE", "/_rotary/clock", Base::None),
    ]
}

/// One request to make.
#[derive(Clone, Debug)]
struct Probe {
    label: String,
    expect: Expect,
    method: String,
    /// May hold placeholders: `{at}`, `{rt}`, `{dev}`, `{room}`, `{oat}`, `{ort}`, `{client}`,
    /// `{uniq}` (filled just before sending).
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    auth: Auth,
}

impl Probe {
    fn new(target: &Target, label: impl Into<String>, content_type: Option<&str>, body: Vec<u8>) -> Probe {
        Probe {
            label: label.into(),
            expect: target.expect,
            method: target.method.to_owned(),
            path: target.path.to_owned(),
            headers: content_type
                .map(|ct| vec![("Content-Type".to_owned(), ct.as_bytes().to_vec())])
                .unwrap_or_default(),
            body,
            auth: target.auth,
        }
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Probe {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs.

/// A small deterministic generator, so that "random" bodies are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0.to_le_bytes()[3]
            })
            .collect()
    }
}

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// Bodies that no endpoint should choke on.
fn garbage_bodies() -> Vec<(String, Option<&'static str>, Vec<u8>)> {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut v: Vec<(String, Option<&'static str>, Vec<u8>)> = vec![
        ("empty, no content type".into(), None, vec![]),
        ("empty JSON".into(), JSON, vec![]),
        ("random 1 byte".into(), Some("application/octet-stream"), rng.bytes(1)),
        ("random 100 bytes".into(), Some("application/octet-stream"), rng.bytes(100)),
        ("random 5000 bytes as JSON".into(), JSON, rng.bytes(5000)),
        ("invalid UTF-8".into(), JSON, b"\xff\xfe\xfd".to_vec()),
        ("invalid UTF-8 in a string".into(), JSON, b"{\"type\": \"\xff\xfe\", \"refresh_token\": \"\xc3\x28\"}".to_vec()),
        ("lone surrogate".into(), JSON, br#"{"refresh_token": "\ud800", "type": "\udfff"}"#.to_vec()),
        ("NUL bytes".into(), JSON, b"\x00\x00\x00".to_vec()),
        ("escaped NUL".into(), JSON, br#"{"password": "\u0000", "user": "al\u0000ice"}"#.to_vec()),
        ("BOM then JSON".into(), JSON, b"\xef\xbb\xbf{}".to_vec()),
        ("form body".into(), FORM, b"a=b&c=%ZZ&=&&type=m.login.password".to_vec()),
        ("text body".into(), Some("text/plain"), b"hello".to_vec()),
        ("JSON array".into(), JSON, b"[]".to_vec()),
        ("JSON null".into(), JSON, b"null".to_vec()),
        ("JSON string".into(), JSON, b"\"x\"".to_vec()),
        ("JSON number".into(), JSON, b"1".to_vec()),
        ("trailing garbage".into(), JSON, b"{} xyz".to_vec()),
        ("truncated JSON".into(), JSON, b"{\"type\": \"m.login.pass".to_vec()),
        ("100,000 [".into(), JSON, vec![b'['; 100_000]),
        ("50,000 nested objects".into(), JSON, "{\"a\":".repeat(50_000).into_bytes()),
        ("balanced nesting 200 deep".into(), JSON, format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes()),
        ("huge exponent".into(), JSON, br#"{"refresh_token": 1e999999, "timeout": -1e999999}"#.to_vec()),
        ("2^70".into(), JSON, br#"{"refresh_token": 1180591620717411303424, "by": 1180591620717411303424}"#.to_vec()),
        ("10,000 digits".into(), JSON, format!("{{\"x\": 1{}}}", "0".repeat(10_000)).into_bytes()),
        (
            "duplicate keys".into(),
            JSON,
            br#"{"refresh_token":"a","refresh_token":"b","type":"m.login.password","type":"x","user":"alice","user":"bob"}"#.to_vec(),
        ),
        ("500 KB string".into(), JSON, format!("{{\"a\": \"{}\"}}", "x".repeat(500_000)).into_bytes()),
        (
            "20,000 keys".into(),
            JSON,
            {
                let fields: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":{i}")).collect();
                format!("{{{}}}", fields.join(",")).into_bytes()
            },
        ),
        (
            "JSON on a form endpoint".into(),
            JSON,
            br#"{"grant_type":"refresh_token","refresh_token":"x","client_id":"y","token":"z"}"#.to_vec(),
        ),
        (
            "repeated form parameters".into(),
            FORM,
            b"grant_type=refresh_token&grant_type=authorization_code&client_id={client}&client_id=x&token=a&token=b"
                .to_vec(),
        ),
        ("invalid UTF-8 form".into(), FORM, b"client_id=\xff&grant_type=%FF%FE&token=%C3%28".to_vec()),
        (
            "form with an odd charset".into(),
            Some("application/x-www-form-urlencoded; charset=ISO-8859-1; x=\"y"),
            b"grant_type=refresh_token&client_id={client}&refresh_token=%00".to_vec(),
        ),
        ("multipart".into(), Some("multipart/form-data; boundary=x"), b"--x\r\n\r\n--x--".to_vec()),
    ];
    v.push(("content type with invalid bytes".into(), None, b"{}".to_vec()));
    v
}

/// Values of the wrong type (or of absurd size) for any JSON field, as raw JSON text.
fn wrong_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1.5",
        "1e308",
        "1e999999",
        "18446744073709551615",
        "1180591620717411303424",
        "-1180591620717411303424",
        "\"\"",
        "\"x\"",
        "\"\\u0000\"",
        "[]",
        "[1,\"a\",null]",
        "{}",
        "{\"a\":{\"b\":[]}}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("\"{}\"", "x".repeat(10_000)));
    v.push(format!("{}{}", "[".repeat(120), "]".repeat(120)));
    v
}

const MARK: &str = "@@wrong@@";

/// Every path to a field of `v` (objects only), e.g. `["identifier", "user"]`.
fn field_paths(v: &Value, prefix: &[String], out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let mut p = prefix.to_vec();
            p.push(k.clone());
            out.push(p.clone());
            field_paths(child, &p, out);
        }
    }
}

fn with_field(v: &Value, path: &[String], new: Option<Value>) -> Value {
    let mut out = v.clone();
    let mut cur = &mut out;
    for (i, k) in path.iter().enumerate() {
        let Value::Object(m) = cur else { break };
        if i + 1 == path.len() {
            match &new {
                Some(n) => {
                    m.insert(k.clone(), n.clone());
                }
                None => {
                    m.remove(k);
                }
            }
            break;
        }
        let Some(next) = m.get_mut(k) else { break };
        cur = next;
    }
    out
}

/// For each field of the base body: each wrong value, and the field left out.
fn wrong_type_probes(target: &Target) -> Vec<Probe> {
    let mut probes = Vec::new();
    match &target.base {
        Base::Json(base) => {
            let mut paths = Vec::new();
            field_paths(base, &[], &mut paths);
            for path in paths {
                let name = path.join(".");
                let gone = with_field(base, &path, None);
                probes.push(Probe::new(
                    target,
                    format!("{name} missing"),
                    JSON,
                    gone.to_string().into_bytes(),
                ));
                let marked = with_field(base, &path, Some(json!(MARK))).to_string();
                for w in wrong_values() {
                    let body = marked.replace(&format!("\"{MARK}\""), &w);
                    let shown: String = w.chars().take(24).collect();
                    probes.push(Probe::new(
                        target,
                        format!("{name} = {shown}"),
                        JSON,
                        body.into_bytes(),
                    ));
                }
            }
        }
        Base::Form(base) => {
            let pairs: Vec<(&str, &str)> = base.split('&').filter_map(|p| p.split_once('=')).collect();
            let odd: Vec<String> = vec![
                String::new(),
                "%FF%FE".into(),
                "%00".into(),
                "%ZZ".into(),
                "x".repeat(10_000),
                "a%26b%3Dc".into(),
                "%F0%9F%92%A9".into(),
            ];
            for (i, (key, _)) in pairs.iter().enumerate() {
                let without: Vec<String> = pairs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (k, v))| format!("{k}={v}"))
                    .collect();
                probes.push(Probe::new(
                    target,
                    format!("{key} missing"),
                    FORM,
                    without.join("&").into_bytes(),
                ));
                let repeated = format!("{base}&{key}=again");
                probes.push(Probe::new(
                    target,
                    format!("{key} repeated"),
                    FORM,
                    repeated.into_bytes(),
                ));
                for value in &odd {
                    let body: Vec<String> = pairs
                        .iter()
                        .enumerate()
                        .map(|(j, (k, v))| {
                            if j == i {
                                format!("{k}={value}")
                            } else {
                                format!("{k}={v}")
                            }
                        })
                        .collect();
                    let shown: String = value.chars().take(24).collect();
                    probes.push(Probe::new(
                        target,
                        format!("{key} = {shown}"),
                        FORM,
                        body.join("&").into_bytes(),
                    ));
                }
            }
        }
        Base::None => {}
    }
    probes
}

// ---------------------------------------------------------------------------------------------
// Running probes and judging answers.

const OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "unsupported_token_type",
    "access_denied",
    "unsupported_response_type",
];
const REGISTRATION_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_redirect_uri",
    "invalid_client_metadata",
];

fn is_matrix_error(body: &Map<String, Value>) -> bool {
    let errcode_ok = body
        .get("errcode")
        .and_then(Value::as_str)
        .is_some_and(|c| c.starts_with("M_"));
    errcode_ok && body.get("error").is_some_and(Value::is_string)
}

fn is_rfc_error(body: &Map<String, Value>, codes: &[&str]) -> bool {
    body.get("error")
        .and_then(Value::as_str)
        .is_some_and(|e| codes.contains(&e))
        && body.get("error_description").is_none_or(Value::is_string)
}

/// Why an answer is wrong for its probe, if it is.
fn judge(probe: &Probe, a: &Answer) -> Result<(), String> {
    let Some(status) = a.status else {
        return Err("the connection closed without an answer".into());
    };
    if status >= 500 {
        return Err(format!("status {status}"));
    }
    let cors = a.header("access-control-allow-origin").is_some();
    match probe.expect {
        Expect::Traced(..) | Expect::Preflight if !cors => {
            return Err("no CORS headers: the answer did not come from the client-server API".into());
        }
        Expect::Control if cors => return Err("a control answer with CORS headers".into()),
        _ => {}
    }
    if probe.expect == Expect::Preflight || probe.method == "HEAD" {
        return if status < 400 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        };
    }
    let body = a.json();
    if status >= 400 {
        let Some(Value::Object(m)) = &body else {
            return Err(format!("a {status} whose body is not a JSON object"));
        };
        if !a
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return Err(format!("a {status} without a JSON content type"));
        }
        let uia = status == 401 && m.get("flows").is_some_and(Value::is_array);
        let ok = match probe.expect {
            Expect::Traced(_, Shape::OAuth) => is_matrix_error(m) || is_rfc_error(m, OAUTH_ERRORS),
            Expect::Traced(_, Shape::Registration) => {
                is_matrix_error(m) || is_rfc_error(m, REGISTRATION_ERRORS)
            }
            _ => is_matrix_error(m) || uia,
        };
        if !ok {
            return Err(format!("a {status} with an error body of the wrong shape"));
        }
    } else if (300..400).contains(&status) {
        if probe.expect != Expect::Traced("oauth_authorize", Shape::OAuth) || a.header("location").is_none() {
            return Err(format!("an unexpected redirect {status}"));
        }
    } else if status != 204 && body.is_none() {
        return Err(format!("a {status} whose body is not JSON"));
    }
    Ok(())
}

/// Live values for one request: fresh sessions (legacy and, with OAuth on, OAuth) and a room.
struct Live {
    at: String,
    rt: String,
    dev: String,
    oat: String,
    ort: String,
    client: String,
}

fn mint(server: &MockHomeserver, user: &str) -> Live {
    let s = server
        .mint_session_with(&MintRequest::for_user(user))
        .expect("mint a session");
    let (oat, ort, client) = match server.mint_oauth_session(user) {
        Ok(o) => (
            o.issued.access_token,
            o.issued.refresh_token.unwrap_or_default(),
            o.client_id,
        ),
        Err(_) => ("mat_none".into(), "mar_none".into(), "NOCLIENT".into()),
    };
    Live {
        at: s.access_token,
        rt: s.refresh_token.unwrap_or_default(),
        dev: s.device_id,
        oat,
        ort,
        client,
    }
}

fn fill(bytes: &[u8], live: &Live, rooms: &Rooms, uniq: usize) -> Vec<u8> {
    // Only valid UTF-8 holds placeholders; anything else is sent byte for byte. (std's string
    // search is optimised even in a debug build, unlike a hand-written loop.)
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes.to_vec();
    };
    if !text.contains('{') {
        return bytes.to_vec();
    }
    let mut text = text.to_owned();
    for (from, to) in [
        ("{at}", live.at.as_str()),
        ("{rt}", live.rt.as_str()),
        ("{dev}", live.dev.as_str()),
        ("{oat}", live.oat.as_str()),
        ("{ort}", live.ort.as_str()),
        ("{client}", live.client.as_str()),
        ("{room}", rooms.alice.as_str()),
        ("{droom}", rooms.dave.as_str()),
        ("{uniq}", &uniq.to_string()),
    ] {
        if text.contains(from) {
            text = text.replace(from, to);
        }
    }
    text.into_bytes()
}

/// Alice's room (read by `messages` and `sync` probes) and dave's (where `send` probes write:
/// whatever garbage they manage to store stays out of alice's timeline, so reads stay small).
struct Rooms {
    alice: String,
    dave: String,
}

/// A server for probing: alice and dave (each with a room) and carol.
async fn probe_server(profile: Profile) -> (MockHomeserver, Rooms) {
    let server = MockHomeserver::builder()
        .profile(profile)
        .user("carol", "pw")
        .user("dave", "pw")
        .start()
        .await
        .expect("server starts");
    let rooms = Rooms {
        alice: server.create_room("alice", Some("robust")).expect("room"),
        dave: server.create_room("dave", Some("junk")).expect("room"),
    };
    (server, rooms)
}

/// Sends every probe (a few at a time) and returns what is wrong: bad answers, trace entries
/// that do not match the requests the client-server API answered, a server that stopped answering.
async fn run_probes(server: &MockHomeserver, rooms: &Rooms, probes: Vec<Probe>) -> Vec<String> {
    let before = server.trace_len();
    let addr = server.addr();
    let total = probes.len();
    let answers: Vec<(Probe, Answer)> = stream::iter(probes.into_iter().enumerate())
        .map(|(i, p)| async move {
            let user = match p.auth {
                Auth::Carol => "carol",
                Auth::Dave => "dave",
                Auth::None | Auth::Alice => "alice",
            };
            let live = mint(server, user);
            let path = String::from_utf8_lossy(&fill(p.path.as_bytes(), &live, rooms, i)).into_owned();
            let mut headers: Vec<(String, Vec<u8>)> = p
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, &live, rooms, i)))
                .collect();
            if p.auth != Auth::None {
                headers.push(("Authorization".into(), format!("Bearer {}", live.at).into_bytes()));
            }
            let body = fill(&p.body, &live, rooms, i);
            let answer = exchange(addr, http_request(&p.method, &path, &headers, &body)).await;
            (p, answer)
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let mut problems = Vec::new();
    let mut expected: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for (p, a) in &answers {
        if let Err(why) = judge(p, a) {
            let path: String = p.path.chars().take(80).collect();
            problems.push(format!(
                "[{}] {} {path}: {why}; body {}",
                p.label,
                p.method,
                a.short_body()
            ));
        }
        if let (Expect::Traced(name, _), Some(status)) = (p.expect, a.status)
            && a.traced_responses() == 1
        {
            *expected.entry((name.to_owned(), status)).or_default() += 1;
        }
    }
    problems.extend(trace_problems(server, before, &expected).await);
    if let Err(e) = answers_whoami(server).await {
        problems.push(e);
    }
    assert_eq!(answers.len(), total);
    problems
}

/// The trace after `before` must hold exactly the requests the client-server API answered, each
/// finished and delivered.
async fn trace_problems(
    server: &MockHomeserver,
    before: u64,
    expected: &BTreeMap<(String, u16), usize>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let trace = server.trace_after(before);
    let mut seen: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for e in &trace {
        if e.delivery != Delivery::Sent {
            problems.push(format!(
                "trace #{} ({} {}) delivery {:?}",
                e.seq, e.endpoint, e.path, e.delivery
            ));
        }
        match e.status {
            Some(s) => *seen.entry((e.endpoint.to_string(), s)).or_default() += 1,
            None => problems.push(format!("trace #{} ({}) has no status", e.seq, e.endpoint)),
        }
    }
    if &seen != expected {
        let mut diff = Vec::new();
        for key in expected.keys().chain(seen.keys()) {
            let (want, got) = (
                expected.get(key).copied().unwrap_or(0),
                seen.get(key).copied().unwrap_or(0),
            );
            if want != got {
                diff.push(format!("{key:?}: answered {want}, traced {got}"));
            }
        }
        diff.dedup();
        problems.push(format!(
            "the trace does not match the answers: {}",
            diff.join("; ")
        ));
    }
    problems
}

/// The server still answers: a fresh session's whoami succeeds.
async fn answers_whoami(server: &MockHomeserver) -> Result<(), String> {
    let s = server
        .mint_session("alice")
        .map_err(|e| format!("mint after the batch: {e}"))?;
    let headers = vec![(
        "Authorization".to_owned(),
        format!("Bearer {}", s.access_token).into_bytes(),
    )];
    let a = exchange(
        server.addr(),
        http_request("GET", "/_matrix/client/v3/account/whoami", &headers, b""),
    )
    .await;
    match (a.status, a.json()) {
        (Some(200), Some(body)) if body["user_id"] == "@alice:localhost" => Ok(()),
        _ => Err(format!(
            "whoami after the batch: {:?} {}",
            a.status,
            a.short_body()
        )),
    }
}

fn assert_clean(what: &str, problems: &[String]) {
    assert_no_server_panics();
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn every_endpoint_has_a_probe_that_classifies_as_it() {
    let _gate = GATE.blocking_read();
    let targets = client_targets();
    for name in endpoint_names() {
        assert!(
            targets
                .iter()
                .any(|t| matches!(t.expect, Expect::Traced(n, _) if n == name)),
            "no robustness probe for the endpoint {name:?}: add one to client_targets()"
        );
    }
    for profile in [Profile::Synapse, Profile::Mas] {
        let cfg = ServerConfig::for_profile(profile);
        for target in &targets {
            let Expect::Traced(name, _) = target.expect else {
                continue;
            };
            let path = target
                .path
                .split('?')
                .next()
                .unwrap_or_default()
                .replace("{room}", "!r:localhost")
                .replace("{droom}", "!d:localhost");
            assert_eq!(
                classify(&path, target.method, &cfg).name(),
                name,
                "{} {path}",
                target.method
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_on_every_endpoint() {
    watch_panics();
    let _gate = GATE.read().await;
    for profile in [Profile::Synapse, Profile::Mas] {
        let (server, rooms) = probe_server(profile).await;
        let mut probes = Vec::new();
        for target in client_targets() {
            for (label, ct, body) in garbage_bodies() {
                let mut p = Probe::new(&target, label.clone(), ct, body);
                if label == "content type with invalid bytes" {
                    p = p.header("Content-Type", b"application/json\xff\xfe".to_vec());
                }
                probes.push(p);
            }
        }
        let problems = run_probes(&server, &rooms, probes).await;
        assert_clean(&format!("garbage bodies ({})", profile.name()), &problems);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_types_for_every_field() {
    watch_panics();
    let _gate = GATE.read().await;
    for profile in [Profile::Synapse, Profile::Mas] {
        let (server, rooms) = probe_server(profile).await;
        let probes: Vec<Probe> = client_targets().iter().flat_map(wrong_type_probes).collect();
        assert!(probes.len() > 300, "only {} probes", probes.len());
        let problems = run_probes(&server, &rooms, probes).await;
        assert_clean(&format!("wrong types ({})", profile.name()), &problems);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_survives_garbage() {
    watch_panics();
    let _gate = GATE.read().await;
    let (server, rooms) = probe_server(Profile::Mas).await;
    let original = server.config();
    let mut probes = Vec::new();
    for target in control_targets() {
        for (label, ct, body) in garbage_bodies() {
            // A route that takes no body does not read it, and hyper then closes the connection
            // with the unread bytes still queued: the kernel answers with a reset that can cut
            // the response short. Small bodies are read with the head, so only those go there.
            if matches!(target.base, Base::None) && body.len() > 8 * 1024 {
                continue;
            }
            probes.push(Probe::new(&target, label, ct, body));
        }
        probes.extend(wrong_type_probes(&target));
    }
    // Every knob with every wrong value, and the fault rule's forms.
    let patch = control("PATCH", "/_rotary/config", Base::None);
    let knobs = serde_json::to_value(&original).expect("config serialises");
    for knob in knobs.as_object().expect("an object").keys() {
        for w in wrong_values() {
            let body = format!("{{\"{knob}\": {w}}}").into_bytes();
            probes.push(Probe::new(&patch, format!("{knob} = {w:.24}"), JSON, body));
        }
    }
    let faults = control("POST", "/_rotary/faults", Base::None);
    for body in [
        json!([inert_fault(), {"action": 1}]),
        json!({"faults": [inert_fault()]}),
        json!({"faults": 1}),
    ] {
        probes.push(Probe::new(
            &faults,
            "fault list",
            JSON,
            body.to_string().into_bytes(),
        ));
    }
    // Huge clock advances, several times over (the clock must saturate, not overflow).
    let advance = control("POST", "/_rotary/clock/advance", Base::None);
    for by in [
        "18446744073709551615",
        "\"584542046years\"",
        "\"1000000000000000y\"",
        "1e999999",
        "-1",
        "\"-5m\"",
    ] {
        for _ in 0..5 {
            probes.push(Probe::new(
                &advance,
                format!("advance {by}"),
                JSON,
                format!("{{\"by\": {by}}}").into_bytes(),
            ));
        }
    }
    for query in [
        "/_rotary/trace?after=abc",
        "/_rotary/trace?after=-1",
        "/_rotary/trace?after=1180591620717411303424",
        "/_rotary/trace?after=%FF",
        "/_rotary/sessions?user=%FF%FE",
        "/_rotary/sessions?user=",
        "/_rotary/faults/%FF",
        "/_rotary/sessions/%FF/%FE/rotate",
        "/_rotary/rooms/%FF/join",
    ] {
        let target = control("GET", "/_rotary", Base::None);
        let mut p = Probe::new(&target, query, None, vec![]);
        p.path = query.to_owned();
        p.method = if query.contains("rotate") || query.contains("join") {
            "POST"
        } else {
            "GET"
        }
        .to_owned();
        probes.push(p);
    }
    let problems = run_probes(&server, &rooms, probes).await;
    server.clear_faults();
    server.set_config(original).expect("restore the config");
    assert_clean("control API", &problems);
    // The clock saturated rather than wrapped: it still reads as a time, and tokens still work.
    assert!(server.now_ms() > 0);
    answers_whoami(&server)
        .await
        .expect("alive after huge clock advances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_headers_queries_paths_and_methods() {
    watch_panics();
    let _gate = GATE.read().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    watch_panics();
    let _gate = GATE.read().await;
    let (server, rooms) = probe_server(Profile::Mas).await;
    let limit = server.config().max_body_bytes;
    let mut probes = Vec::new();
    for target in client_targets() {
        probes.push(Probe::new(&target, "limit + 1", JSON, vec![b'x'; limit + 1]));
        // Exactly at the limit: read, parsed, refused for what it says, never 413.
        let exact = format!("{{\"a\": \"{}\"}}", "y".repeat(limit - 9));
        assert_eq!(exact.len(), limit);
        probes.push(Probe::new(&target, "exactly the limit", JSON, exact.into_bytes()));
    }
    // Routes that read a body (axum's limit, 2 MiB): one byte over it, so that nothing is left
    // unread (see the_control_api_survives_garbage).
    for target in control_targets()
        .into_iter()
        .filter(|t| matches!(t.base, Base::Json(_)))
    {
        probes.push(Probe::new(&target, "2 MiB + 1", JSON, vec![b'z'; (2 << 20) + 1]));
    }
    let answers_before = server.trace_len();
    let problems = run_probes(&server, &rooms, probes).await;
    assert_clean("bodies over the limit", &problems);
    let trace = server.trace_after(answers_before);
    let too_large = trace.iter().filter(|e| e.status == Some(413)).count();
    assert_eq!(
        too_large,
        client_targets().len(),
        "every over-limit request is traced as 413"
    );
    assert!(
        trace
            .iter()
            .filter(|e| e.status == Some(413))
            .all(|e| e.errcode.as_deref() == Some("M_TOO_LARGE"))
    );
    // Chunked bodies count too, and so does a Content-Length that promises more than the limit.
    let chunk = vec![b'c'; 64 * 1024];
    let mut chunked = b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..(limit / chunk.len() + 2) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let a = exchange(server.addr(), chunked).await;
    assert_eq!(a.status, Some(413), "{}", a.short_body());
    assert_eq!(a.json().expect("JSON")["errcode"], "M_TOO_LARGE");
    let mut promise = b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    promise.extend(vec![b'p'; limit + 10]);
    let a = exchange(server.addr(), promise).await;
    assert_eq!(a.status, Some(413), "{}", a.short_body());
    answers_whoami(&server).await.expect("alive");
    assert_no_server_panics();
}

/// Requests that are not (quite) HTTP: hyper answers 400/414/431 or closes; what reaches the
/// client-server API is traced; nothing is a 5xx; the server answers afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_is_refused_cleanly() {
    watch_panics();
    let _gate = GATE.read().await;
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

/// Slowloris: clients that trickle their headers or their body one byte a second hold only their
/// own connection; everyone else is served meanwhile, and the server survives their departure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_block_others() {
    watch_panics();
    let _gate = GATE.read().await;
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
    let _gate = GATE.read().await;
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

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 2,000 bad requests (garbage, deep nesting, bodies over the limit, huge headers) grow the
/// process by far less than 50 MiB beyond what their trace entries take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_bad_requests() {
    watch_panics();
    if rss_kib() == 0 {
        eprintln!("no /proc/self/status: skipping the memory check");
        return;
    }
    let _gate = GATE.write().await;
    let (server, _rooms) = probe_server(Profile::Synapse).await;
    let addr = server.addr();
    let limit = server.config().max_body_bytes;
    let bodies = garbage_bodies();
    let bad = move |i: usize| -> Vec<u8> {
        match i % 5 {
            0 => http_request("POST", "/_matrix/client/v3/login", &[], &vec![b'x'; limit + 1]),
            1 => {
                let auth = vec![(
                    "Authorization".to_owned(),
                    format!("Bearer {}", "k".repeat(100_000)).into_bytes(),
                )];
                http_request("GET", "/_matrix/client/v3/account/whoami", &auth, b"")
            }
            2 => http_request("POST", "/_matrix/client/v3/refresh", &[], &vec![b'['; 100_000]),
            3 => http_request(
                "PUT",
                "/_matrix/client/v3/rooms/x/send/m/t",
                &[],
                &bodies[i % bodies.len()].2,
            ),
            _ => http_request("POST", "/oauth2/token", &[], &bodies[(i / 5) % bodies.len()].2),
        }
    };
    let run = |from: usize, to: usize| {
        let bad = bad.clone();
        async move {
            stream::iter(from..to)
                .map(|i| exchange(addr, bad(i)))
                .buffer_unordered(8)
                .for_each(|a| async move { assert!(a.status.is_some_and(|s| s < 500), "{:?}", a.status) })
                .await;
        }
    };
    run(0, 300).await;
    let before_kib = rss_kib();
    let traced_before = server.trace_len();
    run(300, 2_300).await;
    let after_kib = rss_kib();
    let traced = server.trace_len() - traced_before;
    assert_eq!(traced, 2_000, "every bad request that reached the API is traced");
    // About 0.5 KiB per trace entry; allow 2 KiB each, plus 50 MiB of slack for the allocator.
    let allowed_kib = 50 * 1024 + traced * 2;
    let grown_kib = after_kib.saturating_sub(before_kib);
    eprintln!("RSS {before_kib} KiB -> {after_kib} KiB (+{grown_kib} KiB) over 2,000 bad requests");
    assert!(
        grown_kib < allowed_kib,
        "RSS grew by {grown_kib} KiB (allowed {allowed_kib} KiB)"
    );
    answers_whoami(&server).await.expect("alive");
    assert_no_server_panics();
}

// ---------------------------------------------------------------------------------------------
// The fuzz targets' properties, on random inputs, in the normal test suite.

fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("r0".to_owned()),
        Just("v3".to_owned()),
        Just("v1".to_owned()),
        Just("unstable".to_owned()),
        Just("api".to_owned()),
        Just("rooms".to_owned()),
        Just("send".to_owned()),
        Just("login".to_owned()),
        Just("logout".to_owned()),
        Just("all".to_owned()),
        Just("refresh".to_owned()),
        Just("org.matrix.msc2918".to_owned()),
        Just("devices".to_owned()),
        Just("user".to_owned()),
        Just("filter".to_owned()),
        Just("profile".to_owned()),
        Just("pushrules".to_owned()),
        Just("account".to_owned()),
        Just("whoami".to_owned()),
        Just("%21room%3Ax".to_owned()),
        Just(String::new()),
        Just("..".to_owned()),
        Just("%FF".to_owned()),
        "[a-zA-Z0-9_%.~-]{0,12}",
        ".{0,6}",
    ];
    let root = prop_oneof![
        Just("/_matrix/client".to_owned()),
        Just("/_matrix/client/v3".to_owned()),
        Just("/oauth2".to_owned()),
        Just(String::new()),
        Just("/.well-known/matrix".to_owned()),
    ];
    (root, prop::collection::vec(segment, 0..20))
        .prop_map(|(root, segs)| format!("{root}/{}", segs.join("/")))
}

fn duration_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,22}",
        "[0-9]{1,12} ?(ns|us|ms|s|m|h|d|w|M|y|min|sec|hours|years|months|nsec|usec)",
        "([0-9]{1,6}(ms|s|m|h|d|y|ns|us) ?){1,4}",
        "(none|never|off|null|infinite|NONE| off )",
        ".{0,16}",
    ]
}

fn knob_value() -> impl Strategy<Value = String> {
    prop_oneof![
        duration_strategy().prop_map(|d| format!("{d:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("true".to_owned()),
        Just("\"synapse\"".to_owned()),
        Just("\"mas\"".to_owned()),
        Just("\"single-use\"".to_owned()),
        Just("\"grace-then-unknown\"".to_owned()),
        Just("{ per_second = 0.5, burst = 2 }".to_owned()),
        Just("[]".to_owned()),
        "\"[a-z0-9 .-]{0,12}\"",
    ]
}

fn knob_name() -> impl Strategy<Value = String> {
    let names: Vec<String> = serde_json::to_value(ServerConfig::default())
        .ok()
        .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
        .unwrap_or_default();
    prop_oneof![prop::sample::select(names), "[a-z_]{1,12}"]
}

proptest! {
    #[test]
    fn classify_holds_up(path in path_strategy(), method in "(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS|[A-Z]{1,8})", knobs in any::<u8>()) {
        let _gate = GATE.blocking_read();
        fuzz_checks::check_classify(&path, &method, &fuzz_checks::config_for(knobs));
    }

    #[test]
    fn classify_holds_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _gate = GATE.blocking_read();
        fuzz_checks::classify_input(&data);
    }

    #[test]
    fn durations_hold_up(s in duration_strategy()) {
        let _gate = GATE.blocking_read();
        fuzz_checks::check_duration(&s);
    }

    #[test]
    fn configs_hold_up(knobs in prop::collection::vec((knob_name(), knob_value()), 0..6)) {
        let _gate = GATE.blocking_read();
        let toml: String = knobs.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        fuzz_checks::config_input(toml.as_bytes());
        let json: String = knobs
            .iter()
            .map(|(k, v)| format!("{k:?}: {}", v.replace(" = ", ": ").replace("per_second", "\"per_second\"").replace("burst", "\"burst\"")))
            .collect::<Vec<_>>()
            .join(", ");
        fuzz_checks::config_input(format!("{{{json}}}").as_bytes());
    }

    #[test]
    fn configs_hold_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _gate = GATE.blocking_read();
        fuzz_checks::config_input(&data);
        fuzz_checks::duration_input(&data);
    }

    #[test]
    fn fault_rules_hold_up(
        endpoint in prop_oneof![prop::sample::select(endpoint_names()).prop_map(str::to_owned), "[a-z]{0,6}"],
        path in prop_oneof![path_strategy(), "[*/a-z]{0,10}"],
        nth in any::<u64>(),
        probability in any::<f64>(),
        kind in prop::sample::select(vec!["error", "oauth_error", "delay", "hang", "reset", "empty_reply", "garbage", "truncate", "html", "commit_then_drop", "nope"]),
        status in any::<u16>(),
        duration in duration_strategy(),
    ) {
        let _gate = GATE.blocking_read();
        let toml = format!(
            "endpoint = {endpoint:?}, path = {path:?}, nth = {}, probability = {probability:?}, action = {{ kind = {kind:?}, status = {status}, duration = {duration:?} }}",
            nth % (1 << 40)
        );
        fuzz_checks::fault_input(toml.as_bytes());
        let json = json!({"endpoint": endpoint, "path": path, "first": nth, "seed": nth, "action": {"kind": kind, "duration": duration}});
        fuzz_checks::fault_input(json.to_string().as_bytes());
    }

    #[test]
    fn globs_hold_up(pattern in "[ab*/]{0,12}", text in "[ab/]{0,12}") {
        let _gate = GATE.blocking_read();
        fuzz_checks::check_glob(&pattern, &text);
    }

    #[test]
    fn fault_rules_hold_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _gate = GATE.blocking_read();
        fuzz_checks::fault_input(&data);
        fuzz_checks::glob_input(&data);
    }

    #[test]
    fn oauth_inputs_hold_up(
        scope in "((urn:matrix:client:api:\\*|urn:matrix:org\\.matrix\\.msc2967\\.client:api:\\*|urn:matrix:client:device:[A-Za-z0-9._~-]{0,8}|urn:matrix:org\\.matrix\\.msc2967\\.client:device:[A-Z]{0,4}|openid|[!-~]{0,6}) ?){0,4}",
        uri in "(https?|com\\.example\\.app|javascript)://?(127\\.0\\.0\\.1|localhost|\\[::1\\]|example\\.org|user@host)?(:[0-9]{1,5})?(/[a-z#?]{0,6})?",
        verifier in "[A-Za-z0-9._~-]{40,130}",
    ) {
        let _gate = GATE.blocking_read();
        fuzz_checks::oauth_input(scope.as_bytes());
        fuzz_checks::oauth_input(uri.as_bytes());
        fuzz_checks::oauth_input(verifier.as_bytes());
        let metadata = json!({"redirect_uris": [uri], "application_type": "native", "grant_types": [scope]});
        fuzz_checks::oauth_input(metadata.to_string().as_bytes());
    }

    #[test]
    fn oauth_inputs_hold_up_on_bytes(data in prop::collection::vec(any::<u8>(), 0..120)) {
        let _gate = GATE.blocking_read();
        fuzz_checks::oauth_input(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The `request_parsing` fuzz target's exchange: raw and framed requests against live servers.
    #[test]
    fn raw_requests_hold_up(
        mode in any::<u8>(),
        method in prop_oneof![Just("POST".to_owned()), Just("GET".to_owned()), Just("PUT".to_owned()), "[A-Z]{0,5}"],
        path in prop_oneof![
            Just("login".to_owned()), Just("refresh".to_owned()), Just("account/whoami".to_owned()),
            Just("rooms/{room}/send/m.room.message/t1".to_owned()), Just("token".to_owned()),
            Just("clock/advance".to_owned()), Just("faults".to_owned()), Just("config".to_owned()),
            "[a-z/{}%?=&]{0,20}",
        ],
        body in prop_oneof![
            Just(r#"{"refresh_token":"{rt}"}"#.to_owned()),
            Just("grant_type=refresh_token&refresh_token={ort}&client_id={client}".to_owned()),
            Just(r#"{"type":"m.login.password","user":"alice","password":"wonderland","refresh_token":true}"#.to_owned()),
            Just(r#"{"by": "5m"}"#.to_owned()),
            ".{0,40}",
        ],
        raw in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let _gate = GATE.blocking_read();
        watch_panics();
        let mut framed = vec![mode | 0x02];
        framed.extend_from_slice(method.as_bytes());
        framed.push(0xFF);
        framed.extend_from_slice(path.as_bytes());
        framed.push(0xFF);
        framed.push(0xFF);
        framed.extend_from_slice(body.as_bytes());
        fuzz_request::exchange(&framed);
        let mut unframed = vec![mode & !0x02];
        unframed.extend_from_slice(&raw);
        fuzz_request::exchange(&unframed);
        assert_no_server_panics();
    }
}
