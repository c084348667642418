//! What is sent where: a representative request for every client-server endpoint, every control
//! route, a few unknown paths, and the probe (one request to make) built from them.

use serde_json::{Value, json};

/// Who the request authenticates as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
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
pub enum Shape {
    /// `{"errcode", "error"}` (or a user-interactive-auth 401 with `flows`).
    Matrix,
    /// Matrix, or RFC 6749 §5.2 `{"error", "error_description"}`.
    OAuth,
    /// Matrix, or RFC 7591 §3.2.2.
    Registration,
}

/// Where a request is expected to land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The client-server API: traced under this endpoint name.
    Traced(&'static str, Shape),
    /// The control API (never traced).
    Control,
    /// A CORS preflight: answered, not traced.
    Preflight,
}

#[derive(Clone, Debug)]
pub enum Base {
    None,
    Json(Value),
    Form(&'static str),
}

#[derive(Clone, Debug)]
pub struct Target {
    pub expect: Expect,
    pub method: &'static str,
    pub path: &'static str,
    pub auth: Auth,
    pub base: Base,
}

pub fn t(endpoint: &'static str, method: &'static str, path: &'static str, auth: Auth, base: Base) -> Target {
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

pub fn login_body() -> Value {
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
pub fn client_targets() -> Vec<Target> {
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

pub fn control(method: &'static str, path: &'static str, base: Base) -> Target {
    Target {
        expect: Expect::Control,
        method,
        path,
        auth: Auth::None,
        base,
    }
}

/// A fault rule that is valid but never fires, whatever single field a probe breaks.
pub fn inert_fault() -> Value {
    json!({
        "name": "never", "endpoint": "versions", "method": "TRACE", "path": "/never/*",
        "token": "at#999999", "user": "nobody", "nth": 1, "first": 1, "after": 0,
        "probability": 0.0, "seed": 1,
        "action": {"kind": "error", "status": 503, "errcode": "M_X", "error": "x",
                   "soft_logout": false, "retry_after_ms": 1},
    })
}

/// Every control route (except `reset`, which would clear the trace the checks compare).
pub fn control_targets() -> Vec<Target> {
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
pub struct Probe {
    pub label: String,
    pub expect: Expect,
    pub method: String,
    /// May hold placeholders: `{at}`, `{rt}`, `{dev}`, `{room}`, `{oat}`, `{ort}`, `{client}`,
    /// `{uniq}` (filled just before sending).
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub auth: Auth,
}

impl Probe {
    pub fn new(
        target: &Target,
        label: impl Into<String>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Probe {
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

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Probe {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}
