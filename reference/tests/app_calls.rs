//! The calls an application (and a soak's simulated session) makes beyond the protocol's: a shared
//! connection pool, creating a room, and reading timeline events from a sync.

use rotary_reference::{Client, ClientConfig};
use rotary_server::MockHomeserver;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn quiet() -> rotary_reference::EventSink {
    Arc::new(|_| {})
}

/// A one-request HTTP server that answers `whoami` and reports the request's `User-Agent`.
async fn user_agent_server() -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback socket");
    let url = format!("http://{}", listener.local_addr().expect("loopback socket"));
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("loopback socket");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.expect("loopback socket");
            assert!(n > 0, "the client closed before sending a request");
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"user_id":"@pool:localhost"}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(answer.as_bytes()).await.expect("loopback socket");
        String::from_utf8_lossy(&head)
            .lines()
            .find_map(|l| l.strip_prefix("user-agent: ").map(str::to_owned))
            .unwrap_or_default()
    });
    (url, task)
}

#[tokio::test]
async fn requests_go_through_the_given_http_client() {
    let (url, seen) = user_agent_server().await;
    let pool = reqwest::Client::builder()
        .user_agent("shared-pool/7")
        .build()
        .unwrap();
    let client = Client::new(ClientConfig::new(&url).http_client(pool), quiet()).unwrap();
    client.restore(rotary_reference::SessionData {
        user_id: "@pool:localhost".into(),
        device_id: "POOL".into(),
        access_token: "syt_x".into(),
        refresh_token: None,
        expires_in: None,
    });
    assert_eq!(client.whoami().await.unwrap(), "@pool:localhost");
    assert_eq!(seen.await.unwrap(), "shared-pool/7");
}

#[tokio::test]
async fn without_one_the_client_sends_its_own_user_agent() {
    let (url, seen) = user_agent_server().await;
    let client = Client::new(ClientConfig::new(&url), quiet()).unwrap();
    client.restore(rotary_reference::SessionData {
        user_id: "@pool:localhost".into(),
        device_id: "POOL".into(),
        access_token: "syt_x".into(),
        refresh_token: None,
        expires_in: None,
    });
    client.whoami().await.unwrap();
    assert!(seen.await.unwrap().starts_with("rotary-reference/"));
}

#[tokio::test]
async fn a_room_created_and_messages_sent_come_back_in_sync_once() {
    let server = MockHomeserver::builder()
        .refreshable_access_token_lifetime(Duration::from_secs(300))
        .start()
        .await
        .unwrap();
    let pool = reqwest::Client::new();
    let client = Client::new(ClientConfig::new(server.url()).http_client(pool), quiet()).unwrap();
    let me = client.login("alice", "wonderland", true, None).await.unwrap();
    let room = client.create_room(Some("soak")).await.unwrap();
    assert!(room.starts_with('!'), "{room}");

    let first = client.sync_events(Duration::ZERO, None).await.unwrap();
    let joined: Vec<&str> = first.rooms.iter().map(|r| r.room_id.as_str()).collect();
    assert_eq!(joined, [room.as_str()]);

    let event_id = client.send_text(&room, "hello 1").await.unwrap();
    let next = client
        .sync_events(Duration::from_secs(5), Some(&first.next_batch))
        .await
        .unwrap();
    assert_eq!(next.rooms.len(), 1);
    let timeline = &next.rooms[0];
    assert_eq!(
        (timeline.room_id.as_str(), timeline.limited),
        (room.as_str(), false)
    );
    assert_eq!(timeline.events.len(), 1, "{timeline:?}");
    let e = &timeline.events[0];
    assert_eq!(e.event_id, event_id);
    assert_eq!(e.sender, me.user_id);
    assert_eq!(e.event_type, "m.room.message");
    assert_eq!(e.body.as_deref(), Some("hello 1"));
    assert!(
        e.transaction_id.is_some(),
        "the sending device sees its transaction id"
    );

    // Nothing new: an incremental sync that times out brings no room.
    let quiet_sync = client
        .sync_events(Duration::from_millis(50), Some(&next.next_batch))
        .await
        .unwrap();
    assert!(quiet_sync.rooms.is_empty(), "{quiet_sync:?}");
    // `sync` still answers the same token.
    assert_eq!(
        client.sync(Duration::ZERO, Some(&next.next_batch)).await.unwrap(),
        quiet_sync.next_batch
    );
}
