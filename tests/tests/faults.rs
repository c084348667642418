//! Fault injection over real sockets: every action, the match rules, and what the trace records.

mod common;

use common::{Env, start};
use rotary_server::{Delivery, FaultAction, FaultRule, MockHomeserver};
use serde_json::json;
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn error(status: u16) -> FaultAction {
    FaultAction::Error {
        status,
        errcode: None,
        error: None,
        soft_logout: None,
        retry_after_ms: None,
    }
}

/// Sends one raw HTTP/1.1 request and returns what the socket delivered: the bytes read before
/// EOF, or the read error.
async fn raw_exchange(env: &Env, request: &str) -> Result<Vec<u8>, std::io::Error> {
    let mut s = TcpStream::connect(env.server.addr()).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Err(_) => return Err(std::io::Error::new(ErrorKind::TimedOut, "no answer")),
            Ok(Ok(0)) => return Ok(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return if out.is_empty() { Err(e) } else { Ok(out) },
        }
    }
}

/// The trace entry of the first `/refresh`.
fn first_refresh(env: &Env) -> rotary_server::TraceEntry {
    env.server
        .trace()
        .into_iter()
        .find(|e| e.endpoint == "refresh")
        .expect("a refresh in the trace")
}

fn versions_request() -> String {
    "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned()
}

#[tokio::test]
async fn error_actions_answer_without_performing_the_request() {
    let env = start(MockHomeserver::builder().fault(FaultRule::on("refresh", error(503)).first(1))).await;
    let (_, rt) = env.alice().await;
    let r = env.refresh(&rt).await;
    assert_eq!((r.status, r.errcode()), (503, Some("M_UNKNOWN")));
    // Not performed: the same refresh token is still the current one and works.
    assert_eq!(env.refresh(&rt).await.status, 200);
    let trace = env.server.trace();
    let hit = trace.iter().find(|e| e.fault.is_some()).unwrap();
    assert_eq!((hit.status, hit.issued.is_none()), (Some(503), true));
    assert_eq!(hit.fault.as_ref().unwrap().action, "error");
}

#[tokio::test]
async fn rate_limit_and_soft_logout_bodies() {
    let limit = FaultAction::Error {
        status: 429,
        errcode: None,
        error: None,
        soft_logout: None,
        retry_after_ms: Some(1500),
    };
    let soft = FaultAction::Error {
        status: 401,
        errcode: None,
        error: None,
        soft_logout: Some(true),
        retry_after_ms: None,
    };
    let env = start(
        MockHomeserver::builder()
            .fault(FaultRule::on("refresh", limit))
            .fault(FaultRule::on("whoami", soft)),
    )
    .await;
    let resp = env
        .http
        .post(env.url("/_matrix/client/v3/refresh"))
        .json(&json!({"refresh_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    assert_eq!(body["retry_after_ms"], 1500);
    let r = env.whoami("anything").await;
    assert_eq!(
        (r.status, r.errcode(), r.soft_logout()),
        (401, Some("M_UNKNOWN_TOKEN"), Some(true))
    );
}

#[tokio::test]
async fn html_page_as_a_proxy_sends() {
    let env =
        start(MockHomeserver::builder().fault(FaultRule::on("refresh", FaultAction::Html { status: 502 })))
            .await;
    let resp = env
        .http
        .post(env.url("/_matrix/client/v3/refresh"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert!(resp.text().await.unwrap().contains("<h1>502 Bad Gateway</h1>"));
}

#[tokio::test]
async fn delay_then_normal_answer() {
    let rule = FaultRule::on(
        "versions",
        FaultAction::Delay {
            duration: Duration::from_millis(300),
        },
    );
    let env = start(MockHomeserver::builder().fault(rule)).await;
    let t = Instant::now();
    assert_eq!(env.get("/_matrix/client/versions", None).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn hang_never_answers_and_the_trace_says_so() {
    let env = start(MockHomeserver::builder().fault(FaultRule::on("versions", FaultAction::Hang))).await;
    let r = env
        .http
        .get(env.url("/_matrix/client/versions"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    let e = &env.server.trace()[0];
    assert_eq!(e.status, None);
    assert!(
        matches!(e.delivery, Delivery::Pending | Delivery::Abandoned),
        "{:?}",
        e.delivery
    );
}

#[tokio::test]
async fn connection_level_faults_on_the_wire() {
    let env = start(
        MockHomeserver::builder()
            .fault(FaultRule::on("versions", FaultAction::Reset).nth(1))
            .fault(FaultRule::on("versions", FaultAction::EmptyReply).nth(2))
            .fault(
                FaultRule::on(
                    "versions",
                    FaultAction::Garbage {
                        bytes: Some("\u{0}NOT HTTP".into()),
                    },
                )
                .nth(3),
            ),
    )
    .await;
    let reset = raw_exchange(&env, &versions_request()).await;
    assert_eq!(reset.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    let empty = raw_exchange(&env, &versions_request()).await.unwrap();
    assert!(empty.is_empty());
    let garbage = raw_exchange(&env, &versions_request()).await.unwrap();
    assert_eq!(garbage, b"\0NOT HTTP");
    let normal = raw_exchange(&env, &versions_request()).await.unwrap();
    assert!(normal.starts_with(b"HTTP/1.1 200"));
    let deliveries: Vec<Delivery> = env.server.trace().iter().map(|e| e.delivery).collect();
    assert_eq!(
        deliveries,
        [
            Delivery::Reset,
            Delivery::Empty,
            Delivery::Garbage,
            Delivery::Sent
        ]
    );
    // reqwest sees an error, not a response, for each of them.
    env.server.clear_faults();
    env.server
        .add_fault(FaultRule::on("versions", FaultAction::Reset))
        .unwrap();
    assert!(
        env.http
            .get(env.url("/_matrix/client/versions"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn truncated_body_performs_the_request_and_cuts_the_answer() {
    let env = start(MockHomeserver::builder().fault(FaultRule::on("refresh", FaultAction::Truncate))).await;
    let (_, rt) = env.alice().await;
    let body = json!({"refresh_token": rt}).to_string();
    let req = format!(
        "POST /_matrix/client/v3/refresh HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let bytes = raw_exchange(&env, &req).await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let (head, got) = text.split_once("\r\n\r\n").unwrap();
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert_eq!(got.len(), declared / 2, "{head}");
    let e = first_refresh(&env);
    assert_eq!((e.status, e.delivery), (Some(200), Delivery::Truncated));
    assert!(e.issued.as_ref().is_some_and(|i| i.refresh_token.is_some()));
}

#[tokio::test]
async fn commit_then_drop_rotates_and_the_old_token_recovers_under_synapse() {
    let env =
        start(MockHomeserver::builder().fault(FaultRule::on("refresh", FaultAction::CommitThenDrop).nth(1)))
            .await;
    let (_, rt) = env.alice().await;
    let lost = env
        .http
        .post(env.url("/_matrix/client/v3/refresh"))
        .json(&json!({"refresh_token": rt}))
        .send()
        .await;
    assert!(lost.is_err(), "the response must be lost");
    let e = first_refresh(&env);
    assert_eq!((e.status, e.delivery), (Some(200), Delivery::Dropped));
    let issued = e.issued.unwrap();
    assert_eq!(issued.refresh_token.as_deref(), Some("rt#2"));
    // The server rotated: rt#2 is current and rt#1 is previous-unused, so a retry works.
    let retry = env.refresh(&rt).await;
    assert_eq!(retry.status, 200);
}

#[tokio::test]
async fn commit_then_drop_under_mas_leaves_the_client_logged_out() {
    let env = start(
        MockHomeserver::builder()
            .profile(rotary_server::Profile::Mas)
            .fault(FaultRule::on("refresh", FaultAction::CommitThenDrop).nth(1)),
    )
    .await;
    let (_, rt) = env.alice().await;
    assert!(
        env.http
            .post(env.url("/_matrix/client/v3/refresh"))
            .json(&json!({"refresh_token": rt}))
            .send()
            .await
            .is_err()
    );
    let retry = env.refresh(&rt).await;
    assert_eq!((retry.status, retry.errcode()), (401, Some("M_UNKNOWN_TOKEN")));
}

#[tokio::test]
async fn match_rules_select_by_occurrence_token_user_and_path() {
    let env = start(MockHomeserver::builder().user("bob", "pw")).await;
    let (alice, _) = env.alice().await;
    let bob = env.login("bob", "pw", false).await.str("access_token");
    let mut by_user = FaultRule::on("whoami", error(500));
    by_user.user = Some("bob".into());
    env.server.add_fault(by_user).unwrap();
    assert_eq!(env.whoami(&alice).await.status, 200);
    assert_eq!(env.whoami(&bob).await.status, 500);
    env.server.clear_faults();
    let label = env.server.label_of(&alice).unwrap();
    let mut by_token = FaultRule::on("whoami", error(502));
    by_token.token = Some(label);
    by_token.nth = Some(2);
    env.server.add_fault(by_token).unwrap();
    let statuses: Vec<u16> = [
        env.whoami(&alice).await,
        env.whoami(&bob).await,
        env.whoami(&alice).await,
        env.whoami(&alice).await,
    ]
    .iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(statuses, [200, 200, 502, 200]);
    env.server.clear_faults();
    let mut by_path = FaultRule::on("whoami", error(504));
    by_path.endpoint = None;
    by_path.path = Some("/_matrix/client/r0/*".into());
    env.server.add_fault(by_path).unwrap();
    assert_eq!(
        env.get("/_matrix/client/r0/account/whoami", Some(&alice))
            .await
            .status,
        504
    );
    assert_eq!(env.whoami(&alice).await.status, 200);
    let listed = env.server.faults();
    assert_eq!((listed[0].matched, listed[0].fired), (1, 1));
}

#[tokio::test]
async fn unknown_endpoint_names_are_refused() {
    let env = start(MockHomeserver::builder()).await;
    let err = env
        .server
        .add_fault(FaultRule::on("refreshh", FaultAction::Hang))
        .unwrap_err();
    assert!(err.to_string().contains("refreshh"), "{err}");
    assert!(
        MockHomeserver::builder()
            .fault(FaultRule::on("nope", FaultAction::Hang))
            .start()
            .await
            .is_err()
    );
}
