//! The control API under `/_rotary/` over HTTP: every route, and clear errors for bad requests.

mod common;

use common::{default_env, redact};
use serde_json::{Value, json};

#[tokio::test]
async fn every_control_route_works() {
    let env = default_env().await;
    let index = env.get("/_rotary", None).await;
    assert!(index.body["routes"].as_array().unwrap().len() >= 15);

    // config
    let cfg = env.get("/_rotary/config", None).await;
    assert_eq!(cfg.body["profile"], "synapse");
    assert_eq!(cfg.body["refreshable_access_token_lifetime"], "5m");
    let patched = env
        .call(
            "PATCH",
            "/_rotary/config",
            None,
            Some(json!({"refreshable_access_token_lifetime": "3s", "rotate_refresh_tokens": false})),
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["refreshable_access_token_lifetime"], "3s");
    let bad = env
        .call("PATCH", "/_rotary/config", None, Some(json!({"rotate": 1})))
        .await;
    assert_eq!((bad.status, bad.errcode()), (400, Some("M_INVALID_PARAM")));
    assert!(bad.str("error").contains("unknown field"), "{:?}", bad.body);

    // users and sessions
    let r = env
        .post("/_rotary/users", None, json!({"user": "bob", "password": "pw"}))
        .await;
    assert_eq!(r.body["user_id"], "@bob:localhost");
    let r = env
        .post("/_rotary/users", None, json!({"user": "bob", "password": "pw"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        env.get("/_rotary/users", None).await.body["users"],
        json!(["@alice:localhost", "@bob:localhost"])
    );
    let minted = env
        .post(
            "/_rotary/sessions",
            None,
            json!({"user": "bob", "device_id": "BOBDEV"}),
        )
        .await;
    assert_eq!(minted.status, 200);
    assert_eq!(minted.body["access_label"], "at#1");
    let at = minted.str("access_token");
    assert_eq!(env.whoami(&at).await.body["device_id"], "BOBDEV");
    let unknown = env
        .post("/_rotary/sessions", None, json!({"user": "nobody"}))
        .await;
    assert_eq!((unknown.status, unknown.errcode()), (404, Some("M_NOT_FOUND")));
    let list = env.get("/_rotary/sessions?user=bob", None).await;
    assert_eq!(list.body["sessions"][0]["device_id"], "BOBDEV");

    // rotate out of band (rotation is off now: switch it back on first)
    env.call(
        "PATCH",
        "/_rotary/config",
        None,
        Some(json!({"rotate_refresh_tokens": true})),
    )
    .await;
    let rotated = env
        .post("/_rotary/sessions/bob/BOBDEV/rotate", None, json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    assert_eq!(rotated.body["refresh_label"], "rt#2");
    let stale = env.refresh(&minted.str("refresh_token")).await;
    assert_eq!(stale.status, 403, "the other process used its new token");

    // expire and revoke
    let expired = env
        .post(
            &format!("/_rotary/sessions/{}/BOBDEV/expire", "%40bob%3Alocalhost"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(expired.body["expired"], json!(["at#1", "at#2"]));
    assert_eq!(
        env.whoami(&rotated.str("access_token")).await.soft_logout(),
        Some(true)
    );
    assert_eq!(
        env.post("/_rotary/sessions/bob/BOBDEV/revoke", None, json!({}))
            .await
            .status,
        200
    );
    assert_eq!(env.refresh(&rotated.str("refresh_token")).await.status, 401);
    assert_eq!(
        env.post("/_rotary/sessions/bob/NOPE/revoke", None, json!({}))
            .await
            .status,
        404
    );

    // clock
    let before = env.get("/_rotary/clock", None).await.body["offset_ms"]
        .as_u64()
        .unwrap();
    let after = env
        .post("/_rotary/clock/advance", None, json!({"by": "90s"}))
        .await;
    assert_eq!(after.body["offset_ms"].as_u64().unwrap(), before + 90_000);
    assert_eq!(
        env.post("/_rotary/clock/advance", None, json!({"by": "soon"}))
            .await
            .status,
        400
    );

    // faults
    let added = env
        .post(
            "/_rotary/faults",
            None,
            json!({"endpoint": "versions", "action": {"kind": "error", "status": 503}}),
        )
        .await;
    let id = added.body["ids"][0].as_u64().unwrap();
    assert_eq!(env.get("/_matrix/client/versions", None).await.status, 503);
    let listed = env.get("/_rotary/faults", None).await;
    assert_eq!(listed.body["faults"][0]["fired"], 1);
    assert_eq!(
        env.call("DELETE", &format!("/_rotary/faults/{id}"), None, None)
            .await
            .status,
        200
    );
    assert_eq!(env.get("/_matrix/client/versions", None).await.status, 200);
    let many = env
        .call("POST", "/_rotary/faults", None, Some(json!([{"endpoint": "sync", "action": {"kind": "hang"}}, {"action": {"kind": "reset"}, "path": "/x"}])))
        .await;
    assert_eq!(many.body["ids"], json!([2, 3]));
    let bad = env
        .post(
            "/_rotary/faults",
            None,
            json!({"endpoint": "nope", "action": {"kind": "hang"}}),
        )
        .await;
    assert!(bad.str("error").contains("unknown endpoint"), "{:?}", bad.body);
    assert_eq!(
        env.call("DELETE", "/_rotary/faults", None, None).await.status,
        200
    );
    assert_eq!(env.get("/_rotary/faults", None).await.body["faults"], json!([]));

    // rooms
    let room = env
        .post("/_rotary/rooms", None, json!({"user": "alice", "name": "lobby"}))
        .await;
    let room_id = room.str("room_id");
    let (alice, _) = env.alice().await;
    assert_eq!(
        env.get("/_matrix/client/v3/joined_rooms", Some(&alice))
            .await
            .body["joined_rooms"],
        json!([room_id])
    );
    env.post("/_rotary/users", None, json!({"user": "carol", "password": "pw"}))
        .await;
    let joined = env
        .post(
            &format!("/_rotary/rooms/{}/join", room_id.replace('!', "%21")),
            None,
            json!({"user": "carol"}),
        )
        .await;
    assert_eq!(joined.status, 200);

    // labels and trace
    let labels = env
        .post("/_rotary/labels", None, json!({"tokens": [alice, "nope"]}))
        .await;
    assert_eq!(labels.body["labels"][1], Value::Null);
    let trace = env.get("/_rotary/trace", None).await;
    let entries = trace.body["trace"].as_array().unwrap();
    assert!(!entries.is_empty());
    let text = trace.body.to_string();
    assert!(
        !text.contains(&alice) && !text.contains(&at),
        "raw tokens never appear in the trace"
    );
    let tail = env
        .get(&format!("/_rotary/trace?after={}", entries.len() - 1), None)
        .await;
    assert_eq!(tail.body["trace"].as_array().unwrap().len(), 1);

    // reset
    assert_eq!(env.post("/_rotary/reset", None, json!({})).await.status, 200);
    assert_eq!(env.get("/_rotary/trace", None).await.body["trace"], json!([]));
    assert_eq!(
        env.get("/_rotary/users", None).await.body["users"],
        json!(["@alice:localhost"])
    );
    assert_eq!(
        env.get("/_rotary/config", None).await.body["refreshable_access_token_lifetime"],
        "5m"
    );
    assert_eq!(env.whoami(&alice).await.status, 401);

    // errors
    let r = env.get("/_rotary/nope", None).await;
    assert_eq!((r.status, r.errcode()), (404, Some("M_UNRECOGNIZED")));
    let r = env.raw("POST", "/_rotary/users", "not json").await;
    assert_eq!((r.status, r.errcode()), (400, Some("M_BAD_JSON")));
    let r = env.get("/_rotary/trace?after=minus-one", None).await;
    assert_eq!((r.status, r.errcode()), (400, Some("M_BAD_JSON")), "{:?}", r.body);
    let r = env
        .raw("POST", "/_rotary/users", vec![b' '; 3 * 1024 * 1024])
        .await;
    assert_eq!(
        (r.status, r.errcode()),
        (413, Some("M_TOO_LARGE")),
        "{:?}",
        r.body
    );
    let r = env.call("PUT", "/_rotary/reset", None, None).await;
    assert_eq!((r.status, r.errcode()), (405, Some("M_UNRECOGNIZED")));
}

#[tokio::test]
async fn trace_entries_snapshot() {
    let env = default_env().await;
    let (at, rt) = env.alice().await;
    env.whoami(&at).await;
    let next = env.refresh(&rt).await;
    env.whoami(&next.str("access_token")).await;
    env.refresh(&rt).await;
    env.whoami("syt_unknown").await;
    env.get("/_matrix/client/v3/account/whoami", None).await;
    let trace = env.get("/_rotary/trace", None).await;
    insta::assert_json_snapshot!("trace", redact(&trace.body));
}

#[tokio::test]
async fn the_server_stops_when_dropped() {
    let server = rotary_server::MockHomeserver::builder().start().await.unwrap();
    let addr = server.addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(server);
    // The listener closes as soon as the accept loop sees the shutdown; allow it a moment.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting connections after drop");
}
