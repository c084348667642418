//! 64 concurrent `/refresh` calls with one refresh token: the outcome matches the profile and the
//! trace holds exactly one entry per request.

mod common;

use common::start;
use rotary_server::{MockHomeserver, Profile, RefreshState};
use std::collections::HashSet;

async fn storm(profile: Profile) -> (Vec<(u16, String, String)>, rotary_server::MockHomeserver, String) {
    let env = start(MockHomeserver::builder().profile(profile)).await;
    let (_, rt) = env.alice().await;
    let before = env.server.trace().len();
    let calls = (0..64).map(|_| {
        let http = env.http.clone();
        let url = env.url("/_matrix/client/v3/refresh");
        let body = serde_json::json!({"refresh_token": rt});
        tokio::spawn(async move {
            let resp = http.post(url).json(&body).send().await.expect("answered");
            let status = resp.status().as_u16();
            let v: serde_json::Value = resp.json().await.expect("json");
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
            (status, s("access_token"), s("refresh_token"))
        })
    });
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.expect("task"));
    }
    let trace = env.server.trace();
    assert_eq!(trace.len() - before, 64, "one trace entry per request");
    assert!(
        trace[before..]
            .iter()
            .all(|e| e.endpoint == "refresh" && e.status.is_some())
    );
    let seqs: HashSet<u64> = trace.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), trace.len());
    (results, env.server, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn synapse_answers_all_and_exactly_one_successor_survives() {
    let (results, server, rt) = storm(Profile::Synapse).await;
    assert!(results.iter().all(|(s, _, _)| *s == 200), "{results:?}");
    let live: Vec<_> = results
        .iter()
        .filter(|(_, _, r)| server.label_of(r).is_some())
        .collect();
    assert_eq!(live.len(), 64);
    let sessions = server.sessions(Some("alice"));
    assert_eq!(sessions.len(), 1);
    // The original refresh token and exactly one successor remain.
    assert_eq!(sessions[0].live_refresh_tokens.len(), 2, "{:?}", sessions[0]);
    let current = sessions[0].current_refresh_token.clone().unwrap();
    let survivors: Vec<_> = results
        .iter()
        .filter(|(_, _, r)| server.label_of(r) == Some(current.clone()))
        .collect();
    assert_eq!(survivors.len(), 1);
    // The one presented by everybody is now "previous-unused": its successor was never used.
    let view = server.label_of(&rt).unwrap();
    let last = server
        .trace()
        .into_iter()
        .rev()
        .find(|e| e.refresh_token.as_ref().is_some_and(|t| t.label == view));
    assert!(last.is_some_and(|e| {
        e.refresh_token
            .is_some_and(|t| t.state == RefreshState::PreviousUnused)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mas_answers_exactly_one_200() {
    let (results, _, _) = storm(Profile::Mas).await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    let refused = results.iter().filter(|(s, _, _)| *s == 401).count();
    assert_eq!((ok, refused), (1, 63), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spec_rate_limits_the_storm() {
    let started = std::time::Instant::now();
    let (results, _, _) = storm(Profile::Spec).await;
    let elapsed = started.elapsed();
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    let limited = results.iter().filter(|(s, _, _)| *s == 429).count();
    assert_eq!(ok + limited, 64);
    // Burst 5, refilled at 1/s of real time: a slow machine may refill a few during the storm.
    let refill = usize::try_from(elapsed.as_secs())
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    assert!(
        ok >= 1 && ok <= 5 + refill,
        "burst of 5 (+{refill} refilled) at most: {ok}"
    );
}
