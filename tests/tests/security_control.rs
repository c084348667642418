//! Security of the control API: it refuses non-loopback peers unless the control token is presented,
//! checked on `control_allowed` directly and over real TCP from this machine's own non-loopback
//! address (IPv4, and IPv4-mapped on a dual-stack socket).

use rotary_server::{ControlAccess, MockHomeserver, control_allowed};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

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
