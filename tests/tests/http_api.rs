//! Every client-server endpoint and every error over real HTTP, with insta snapshots of the bodies.

mod common;

use common::{Reply, default_env, redact};
use serde_json::{Value, json};

/// Records labelled exchanges for one snapshot.
#[derive(Default)]
struct Transcript(Vec<Value>);

impl Transcript {
    fn add(&mut self, label: &str, r: &Reply) {
        self.0
            .push(json!({"step": label, "status": r.status, "body": redact(&r.body)}));
    }
    fn value(&self) -> Value {
        Value::Array(self.0.clone())
    }
}

#[tokio::test]
async fn discovery_and_startup_endpoints() {
    let env = default_env().await;
    let (at, _) = env.alice().await;
    let mut t = Transcript::default();
    for (label, path) in [
        ("versions", "/_matrix/client/versions"),
        ("login flows", "/_matrix/client/v3/login"),
        ("well-known", "/.well-known/matrix/client"),
    ] {
        let r = env.get(path, None).await;
        assert_eq!(r.status, 200, "{label}");
        if label != "well-known" {
            t.add(label, &r);
        }
    }
    let preflight = env
        .http
        .request(reqwest::Method::OPTIONS, env.url("/_matrix/client/v3/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let plain = env
        .http
        .get(env.url("/_matrix/client/versions"))
        .send()
        .await
        .unwrap();
    assert!(
        plain.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );
    let versions = env.get("/_matrix/client/versions", None).await;
    let list = versions.body["versions"].as_array().unwrap();
    assert!(list.contains(&json!("v1.3")) && list.contains(&json!("v1.15")));
    let r = env.get("/_matrix/client/v3/capabilities", Some(&at)).await;
    assert_eq!(r.body["capabilities"]["m.room_versions"]["default"], "12");
    t.add("capabilities", &r);
    let r = env.get("/_matrix/client/v3/pushrules/", Some(&at)).await;
    let overrides = r.body["global"]["override"].as_array().unwrap();
    assert_eq!(overrides[0]["rule_id"], ".m.rule.master");
    assert_eq!(r.body["global"]["content"][0]["pattern"], "alice");
    let r = env.get("/_matrix/client/v3/pushrules/global/", Some(&at)).await;
    assert!(r.body["underride"].is_array());
    let r = env.get("/_matrix/client/v3/pushrules/nope", Some(&at)).await;
    t.add("pushrules unknown", &r);
    let r = env
        .post(
            "/_matrix/client/v3/user/@alice:localhost/filter",
            Some(&at),
            json!({"room": {"timeline": {"limit": 5}}}),
        )
        .await;
    t.add("filter upload", &r);
    let id = r.str("filter_id");
    let r = env
        .get(
            &format!("/_matrix/client/v3/user/%40alice%3Alocalhost/filter/{id}"),
            Some(&at),
        )
        .await;
    assert_eq!(r.body["room"]["timeline"]["limit"], 5);
    t.add("filter get", &r);
    t.add(
        "filter missing",
        &env.get("/_matrix/client/v3/user/@alice:localhost/filter/99", Some(&at))
            .await,
    );
    t.add(
        "filter bad id",
        &env.get("/_matrix/client/v3/user/@alice:localhost/filter/x", Some(&at))
            .await,
    );
    t.add(
        "filter other user",
        &env.post(
            "/_matrix/client/v3/user/@bob:localhost/filter",
            Some(&at),
            json!({}),
        )
        .await,
    );
    t.add(
        "profile",
        &env.get("/_matrix/client/v3/profile/@alice:localhost", None).await,
    );
    let r = env
        .call(
            "PUT",
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Some(&at),
            Some(json!({"displayname": "Alice"})),
        )
        .await;
    t.add("set displayname", &r);
    t.add(
        "displayname",
        &env.get("/_matrix/client/v3/profile/@alice:localhost/displayname", None)
            .await,
    );
    t.add(
        "profile unknown user",
        &env.get("/_matrix/client/v3/profile/@nobody:localhost", None)
            .await,
    );
    t.add(
        "profile invalid id",
        &env.get("/_matrix/client/v3/profile/nobody", None).await,
    );
    insta::assert_json_snapshot!("discovery", t.value());
}

#[tokio::test]
async fn login_and_register() {
    let env = default_env().await;
    let mut t = Transcript::default();
    let login = |body: Value| env.post("/_matrix/client/v3/login", None, body);
    t.add(
        "login without refresh",
        &env.login("alice", "wonderland", false).await,
    );
    t.add(
        "login with refresh",
        &env.login("alice", "wonderland", true).await,
    );
    t.add(
        "login deprecated user field",
        &login(json!({"type": "m.login.password", "user": "alice", "password": "wonderland"})).await,
    );
    t.add(
        "login full user id, device id and name",
        &login(json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "@alice:localhost"}, "password": "wonderland", "device_id": "MYDEVICE", "initial_device_display_name": "phone"})).await,
    );
    t.add("login wrong password", &env.login("alice", "nope", true).await);
    t.add("login unknown user", &env.login("mallory", "nope", true).await);
    t.add(
        "login unknown type",
        &login(json!({"type": "m.login.foo", "user": "alice"})).await,
    );
    t.add(
        "login missing type",
        &login(json!({"user": "alice", "password": "wonderland"})).await,
    );
    t.add("login type not a string", &login(json!({"type": 7})).await);
    t.add(
        "login missing password",
        &login(json!({"type": "m.login.password", "user": "alice"})).await,
    );
    t.add(
        "login no identifier",
        &login(json!({"type": "m.login.password", "password": "x"})).await,
    );
    t.add(
        "login identifier without type",
        &login(json!({"type": "m.login.password", "identifier": {"user": "alice"}, "password": "x"})).await,
    );
    t.add(
        "login identifier of another type",
        &login(json!({"type": "m.login.password", "identifier": {"type": "m.id.phone"}, "password": "x"}))
            .await,
    );
    t.add(
        "login refresh_token not a bool",
        &login(json!({"type": "m.login.password", "user": "alice", "password": "wonderland", "refresh_token": "yes"})).await,
    );
    t.add(
        "login unstable flag is ignored (synapse)",
        &login(json!({"type": "m.login.password", "user": "alice", "password": "wonderland", "org.matrix.msc2918.refresh_token": true})).await,
    );
    t.add(
        "login device_id too long",
        &login(json!({"type": "m.login.password", "user": "alice", "password": "wonderland", "device_id": "D".repeat(513)})).await,
    );
    t.add(
        "register without auth (UIA)",
        &env.post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "bob", "password": "pw"}),
        )
        .await,
    );
    t.add(
        "register with dummy auth and refresh",
        &env.post("/_matrix/client/v3/register", None, json!({"username": "bob", "password": "pw", "auth": {"type": "m.login.dummy"}, "refresh_token": true})).await,
    );
    t.add(
        "register taken",
        &env.post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "bob", "password": "pw", "auth": {"type": "m.login.dummy"}}),
        )
        .await,
    );
    t.add(
        "register inhibit_login",
        &env.post("/_matrix/client/v3/register", None, json!({"username": "carol", "password": "pw", "auth": {"type": "m.login.dummy"}, "inhibit_login": true, "refresh_token": true})).await,
    );
    t.add(
        "register invalid username",
        &env.post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "Bad Name!", "password": "pw", "auth": {"type": "m.login.dummy"}}),
        )
        .await,
    );
    t.add(
        "register without password",
        &env.post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "dave", "auth": {"type": "m.login.dummy"}}),
        )
        .await,
    );
    t.add(
        "register wrong auth type",
        &env.post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "erin", "password": "pw", "auth": {"type": "m.login.email.identity"}}),
        )
        .await,
    );
    t.add(
        "register guest",
        &env.post("/_matrix/client/v3/register?kind=guest", None, json!({}))
            .await,
    );
    let (at, _) = env.alice().await;
    t.add(
        "register with an access token",
        &env.post(
            "/_matrix/client/v3/register",
            Some(&at),
            json!({"username": "frank", "password": "pw"}),
        )
        .await,
    );
    let bob = env.login("bob", "pw", true).await;
    assert_eq!(bob.status, 200);
    assert!(bob.body["refresh_token"].is_string() && bob.body["expires_in_ms"].is_number());
    insta::assert_json_snapshot!("login_register", t.value());
}

#[tokio::test]
async fn refresh_logout_whoami_and_devices() {
    let env = default_env().await;
    let mut t = Transcript::default();
    let (at, rt) = env.alice().await;
    t.add("whoami", &env.whoami(&at).await);
    t.add(
        "whoami via query parameter",
        &env.get(
            &format!("/_matrix/client/v3/account/whoami?access_token={at}"),
            None,
        )
        .await,
    );
    t.add(
        "whoami missing token",
        &env.get("/_matrix/client/v3/account/whoami", None).await,
    );
    t.add(
        "whoami unknown token",
        &env.whoami("syt_bm9ib2R5_AAAAAAAAAAAAAAAAAAAAAAAA_000000").await,
    );
    let mixed = env
        .http
        .get(env.url(&format!("/_matrix/client/v3/account/whoami?access_token={at}")))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(mixed.status(), 401);
    let basic = env
        .http
        .get(env.url("/_matrix/client/v3/account/whoami"))
        .basic_auth("a", Some("b"))
        .send()
        .await
        .unwrap();
    let body: Value = basic.json().await.unwrap();
    assert_eq!(body["error"], "Invalid Authorization header.");
    let r = env.refresh(&rt).await;
    assert_ne!(r.str("access_token"), at);
    assert_ne!(r.str("refresh_token"), rt);
    assert_eq!(r.body["expires_in_ms"], 300_000);
    t.add("refresh", &r);
    let rt2 = r.str("refresh_token");
    t.add(
        "refresh not JSON",
        &env.raw("POST", "/_matrix/client/v3/refresh", "nope").await,
    );
    t.add(
        "refresh empty body",
        &env.raw("POST", "/_matrix/client/v3/refresh", "").await,
    );
    t.add(
        "refresh JSON array",
        &env.raw("POST", "/_matrix/client/v3/refresh", "[]").await,
    );
    t.add(
        "refresh missing token",
        &env.post("/_matrix/client/v3/refresh", None, json!({})).await,
    );
    t.add(
        "refresh token not a string",
        &env.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": 42}))
            .await,
    );
    t.add("refresh malformed token", &env.refresh("garbage").await);
    t.add(
        "refresh unknown token",
        &env.refresh("syr_YWxpY2U_AAAAAAAAAAAAAAAAAAAAAAAA_000000").await,
    );
    t.add(
        "refresh via r0",
        &env.post("/_matrix/client/r0/refresh", None, json!({"refresh_token": "x"}))
            .await,
    );
    t.add(
        "refresh via v1 (not served by synapse)",
        &env.post("/_matrix/client/v1/refresh", None, json!({"refresh_token": "x"}))
            .await,
    );
    t.add("refresh GET", &env.get("/_matrix/client/v3/refresh", None).await);
    t.add(
        "unknown endpoint",
        &env.get("/_matrix/client/v3/no/such/thing", None).await,
    );
    t.add("devices", &env.get("/_matrix/client/v3/devices", Some(&at)).await);
    let device = env.whoami(&at).await.str("device_id");
    t.add(
        "device",
        &env.get(&format!("/_matrix/client/v3/devices/{device}"), Some(&at))
            .await,
    );
    t.add(
        "rename device",
        &env.call(
            "PUT",
            &format!("/_matrix/client/v3/devices/{device}"),
            Some(&at),
            Some(json!({"display_name": "laptop"})),
        )
        .await,
    );
    t.add(
        "unknown device",
        &env.get("/_matrix/client/v3/devices/NOPE", Some(&at)).await,
    );
    t.add(
        "joined_rooms",
        &env.get("/_matrix/client/v3/joined_rooms", Some(&at)).await,
    );
    // Logout works with an expired token; afterwards the refresh token is gone.
    env.server.advance_clock(std::time::Duration::from_secs(600));
    t.add("whoami expired", &env.whoami(&at).await);
    t.add(
        "logout with an expired token",
        &env.post("/_matrix/client/v3/logout", Some(&at), json!({})).await,
    );
    t.add("refresh after logout", &env.refresh(&rt2).await);
    t.add("whoami after logout", &env.whoami(&at).await);
    let (a1, _) = env.alice().await;
    let (a2, _) = env.alice().await;
    t.add(
        "logout/all",
        &env.post("/_matrix/client/v3/logout/all", Some(&a1), json!({}))
            .await,
    );
    assert_eq!(env.whoami(&a2).await.status, 401);
    assert_eq!(env.server.live_token_counts(), (0, 0));
    insta::assert_json_snapshot!("refresh_logout_devices", t.value());
}

#[tokio::test]
async fn deleting_a_device_needs_the_password_and_revokes_its_tokens() {
    let env = default_env().await;
    let (at, rt) = env.alice().await;
    let (other, _) = env.alice().await;
    let device = env.whoami(&at).await.str("device_id");
    let path = format!("/_matrix/client/v3/devices/{device}");
    let mut t = Transcript::default();
    t.add(
        "delete without auth",
        &env.call("DELETE", &path, Some(&other), None).await,
    );
    let bad = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "wrong"}});
    t.add(
        "delete wrong password",
        &env.call("DELETE", &path, Some(&other), Some(bad)).await,
    );
    assert_eq!(env.whoami(&at).await.status, 200);
    let good = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "wonderland"}});
    t.add(
        "delete",
        &env.call("DELETE", &path, Some(&other), Some(good)).await,
    );
    t.add("whoami of deleted device", &env.whoami(&at).await);
    t.add("refresh of deleted device", &env.refresh(&rt).await);
    insta::assert_json_snapshot!("delete_device", t.value());
}

#[tokio::test]
async fn rooms_send_messages_and_sync() {
    let env = default_env().await;
    let (at, rt) = env.alice().await;
    let mut t = Transcript::default();
    let r = env
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&at),
            json!({"name": "test"}),
        )
        .await;
    t.add("createRoom", &r);
    let room = r.str("room_id");
    assert!(room.starts_with('!') && !room.contains(':'));
    t.add(
        "createRoom bad preset",
        &env.post(
            "/_matrix/client/v3/createRoom",
            Some(&at),
            json!({"preset": "nonsense"}),
        )
        .await,
    );
    let send_path = |txn: &str| {
        format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            room.replace('!', "%21")
        )
    };
    let msg = json!({"msgtype": "m.text", "body": "hello"});
    let first = env
        .call("PUT", &send_path("t1"), Some(&at), Some(msg.clone()))
        .await;
    t.add("send", &first);
    // The same txnId after a refresh is the same event: txn ids belong to the device.
    let refreshed = env.refresh(&rt).await;
    let at2 = refreshed.str("access_token");
    let again = env
        .call("PUT", &send_path("t1"), Some(&at2), Some(msg.clone()))
        .await;
    assert_eq!(first.str("event_id"), again.str("event_id"));
    assert_eq!(env.server.count_events(&room, "m.room.message"), 1);
    let post = env
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message"),
            Some(&at2),
            msg.clone(),
        )
        .await;
    assert_eq!(post.status, 200);
    assert_eq!(env.server.count_events(&room, "m.room.message"), 2);
    t.add(
        "send not JSON",
        &env.raw_with_token("PUT", &send_path("t2"), &at2, "x").await,
    );
    t.add(
        "send to unknown room",
        &env.call(
            "PUT",
            "/_matrix/client/v3/rooms/%21nope/send/m.room.message/t3",
            Some(&at2),
            Some(msg.clone()),
        )
        .await,
    );
    let r = env
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2"),
            Some(&at2),
        )
        .await;
    assert_eq!(r.body["chunk"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["chunk"][0]["content"]["body"], "hello");
    t.add("messages", &r);
    t.add(
        "messages bad dir",
        &env.get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=x"),
            Some(&at2),
        )
        .await,
    );
    t.add(
        "messages not in room",
        &env.get("/_matrix/client/v3/rooms/%21nope/messages", Some(&at2))
            .await,
    );
    let initial = env.get("/_matrix/client/v3/sync", Some(&at2)).await;
    assert!(initial.body["rooms"]["join"][&room]["timeline"]["events"].is_array());
    let since = initial.str("next_batch");
    t.add(
        "sync bad timeout",
        &env.get("/_matrix/client/v3/sync?timeout=abc", Some(&at2)).await,
    );
    t.add(
        "sync bad filter",
        &env.get("/_matrix/client/v3/sync?filter=abc", Some(&at2)).await,
    );
    t.add(
        "sync missing filter",
        &env.get("/_matrix/client/v3/sync?filter=7", Some(&at2)).await,
    );
    t.add(
        "sync bad since",
        &env.get("/_matrix/client/v3/sync?since=zzz", Some(&at2)).await,
    );
    let empty = env
        .get(
            &format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
            Some(&at2),
        )
        .await;
    t.add("sync nothing new", &empty);
    assert!(empty.body.get("rooms").is_none());
    // A long-poll wakes up when a message arrives.
    let waiter = {
        let http = env.http.clone();
        let url = env.url(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000"));
        let token = at2.clone();
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    env.call(
        "PUT",
        &send_path("t9"),
        Some(&at2),
        Some(json!({"msgtype": "m.text", "body": "wake up"})),
    )
    .await;
    let woke = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .expect("sync returns")
        .unwrap();
    let events = woke["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(events.last().unwrap()["content"]["body"], "wake up");
    assert_eq!(events.last().unwrap()["unsigned"]["transaction_id"], "t9");
    insta::assert_json_snapshot!("rooms", t.value());
}

#[tokio::test]
async fn bad_bodies_never_crash_the_server() {
    let env = default_env().await;
    let (at, _) = env.alice().await;
    let huge = vec![b'a'; 1024 * 1024 + 1];
    let r = env.raw("POST", "/_matrix/client/v3/login", huge).await;
    assert_eq!((r.status, r.errcode()), (413, Some("M_TOO_LARGE")));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = env.raw("POST", "/_matrix/client/v3/refresh", deep).await;
    assert_eq!((r.status, r.errcode()), (400, Some("M_NOT_JSON")));
    // A JSON array is JSON but not an object: Synapse's 400 M_BAD_JSON, not a refresh attempt
    // (serde would read `["rt"]` as the struct of the fast path).
    let r = env
        .raw("POST", "/_matrix/client/v3/refresh", r#"["some-refresh-token"]"#)
        .await;
    assert_eq!((r.status, r.errcode()), (400, Some("M_BAD_JSON")));
    let r = env
        .raw("POST", "/_matrix/client/v3/login", vec![0xff, 0xfe, b'{'])
        .await;
    assert_eq!(r.errcode(), Some("M_NOT_JSON"));
    let r = env
        .raw("POST", "/_matrix/client/v3/login", "{\"type\": 1e999999}")
        .await;
    assert_eq!(r.status, 400);
    let long = "syt_".to_owned() + &"x".repeat(200_000);
    let resp = env
        .http
        .get(env.url("/_matrix/client/v3/account/whoami"))
        .bearer_auth(&long)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
    // Still alive and consistent.
    assert_eq!(env.whoami(&at).await.status, 200);
    let trace = env.server.trace();
    assert!(
        trace.iter().all(|e| e.status.is_some_and(|s| s < 500)),
        "{trace:?}"
    );
}

#[tokio::test]
async fn every_endpoint_survives_garbage() {
    let env = default_env().await;
    let (at, _) = env.alice().await;
    let room = env.server.create_room("alice", None).unwrap().replace('!', "%21");
    let paths = [
        "/_matrix/client/versions".to_owned(),
        "/_matrix/client/v3/login".to_owned(),
        "/_matrix/client/v3/register".to_owned(),
        "/_matrix/client/v3/refresh".to_owned(),
        "/_matrix/client/v3/account/whoami".to_owned(),
        "/_matrix/client/v3/sync?timeout=-5&since=s-1".to_owned(),
        "/_matrix/client/v3/createRoom".to_owned(),
        format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/%00"),
        format!("/_matrix/client/v3/rooms/{room}/messages?limit=99999999999999999999&from=s&dir=b"),
        "/_matrix/client/v3/joined_rooms".to_owned(),
        "/_matrix/client/v3/devices/%FF%FE".to_owned(),
        "/_matrix/client/v3/capabilities".to_owned(),
        "/_matrix/client/v3/pushrules/global/override/x/y".to_owned(),
        "/_matrix/client/v3/user/%40alice%3Alocalhost/filter".to_owned(),
        "/_matrix/client/v3/profile/%40alice%3Alocalhost/displayname".to_owned(),
        "/_matrix/client/v3/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s".to_owned(),
        // Last, as it logs alice out.
        "/_matrix/client/v3/logout/all".to_owned(),
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"\xff\xfe\x00",
        b"[]",
        b"{\"refresh_token\": [1, {}]}",
        b"123456789012345678901234567890",
        b"{\"a\":",
    ];
    let mut answered = 0;
    for path in &paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            for body in bodies {
                let req = env
                    .http
                    .request(
                        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                        env.url(path),
                    )
                    .bearer_auth(&at)
                    .body(body.to_vec());
                let resp = req.send().await.expect("always answered");
                let status = resp.status().as_u16();
                let json: Value = resp.json().await.expect("always a JSON body");
                assert!(status < 500, "{method} {path}: {status} {json}");
                if status >= 400 && json.get("flows").is_none() {
                    assert!(
                        json["errcode"].as_str().is_some_and(|c| c.starts_with("M_")),
                        "{method} {path}: {json}"
                    );
                }
                answered += 1;
            }
        }
    }
    assert_eq!(answered, paths.len() * 5 * 6);
    assert_eq!(env.get("/_matrix/client/versions", None).await.status, 200);
    assert!(env.server.trace().len() >= answered);
}
