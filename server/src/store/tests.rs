//! Unit tests of the token store: Synapse's and MAS's rotation rules, expiry, OAuth sessions.

use super::*;
use crate::config::{OAuthReusePolicy, Profile, ServerConfig};

fn setup(profile: Profile) -> (ServerConfig, TokenStore, Issued) {
    let cfg = ServerConfig::for_profile(profile);
    let mut s = TokenStore::new("localhost");
    s.add_user("alice", "wonderland").unwrap();
    let login = s.login(&cfg, 0, "@alice:localhost", None, None, true).unwrap();
    (cfg, s, login)
}

fn rt(i: &Issued) -> &str {
    i.refresh_token.as_deref().unwrap()
}

#[test]
fn fast_labels_are_the_judges_labels() {
    for i in [0u32, 1, 8, 9, 10, 99, 12_345, u32::MAX] {
        assert_eq!(at_label(i), access_label(i));
        assert_eq!(rt_label(i), refresh_label(i));
    }
}

#[test]
fn synapse_invalidation_chain() {
    let (cfg, mut s, login) = setup(Profile::Synapse);
    let first = s.refresh(&cfg, 1, rt(&login)).unwrap();
    // Reuse before the successor was used: accepted, the first successor is discarded.
    let second = s.refresh(&cfg, 2, rt(&login)).unwrap();
    assert_eq!(s.refresh(&cfg, 3, rt(&first)), Err(RefreshError::Unknown));
    assert_eq!(
        s.authenticate(&cfg, 3, &first.access_token, false),
        Err(AccessError::Revoked)
    );
    assert!(s.authenticate(&cfg, 3, &login.access_token, false).is_ok());
    assert!(s.authenticate(&cfg, 3, &second.access_token, false).is_ok());
    assert_eq!(s.refresh(&cfg, 4, rt(&login)), Err(RefreshError::Consumed));
    assert!(s.refresh(&cfg, 5, rt(&second)).is_ok());
}

#[test]
fn only_two_generations_are_kept() {
    let (cfg, mut s, login) = setup(Profile::Synapse);
    assert_eq!(s.live_token_counts(), (1, 1));
    let mut cur = login;
    for t in 1..=5 {
        cur = s.refresh(&cfg, t, rt(&cur)).unwrap();
    }
    assert_eq!(s.live_token_counts(), (2, 2));
    s.delete_device(&cur.user_id, &cur.device_id);
    assert_eq!(s.live_token_counts(), (0, 0));
    assert_eq!(s.refresh(&cfg, 9, rt(&cur)), Err(RefreshError::Unknown));
}

#[test]
fn mas_tokens_are_single_use_and_old_access_dies() {
    let (cfg, mut s, login) = setup(Profile::Mas);
    let next = s.refresh(&cfg, 1, rt(&login)).unwrap();
    assert_eq!(s.refresh(&cfg, 2, rt(&login)), Err(RefreshError::Consumed));
    assert_eq!(
        s.authenticate(&cfg, 2, &login.access_token, false),
        Err(AccessError::Revoked)
    );
    assert!(s.authenticate(&cfg, 2, &next.access_token, false).is_ok());
}

#[test]
fn expiry_is_inclusive_of_the_last_millisecond() {
    let (cfg, mut s, login) = setup(Profile::Synapse);
    let until = login.valid_until_ms.unwrap();
    assert!(s.authenticate(&cfg, until, &login.access_token, false).is_ok());
    assert_eq!(
        s.authenticate(&cfg, until + 1, &login.access_token, false),
        Err(AccessError::Expired)
    );
    assert!(s.authenticate(&cfg, until + 1, &login.access_token, true).is_ok());
}

#[test]
fn refresh_states_follow_the_chain() {
    let (cfg, mut s, login) = setup(Profile::Synapse);
    assert_eq!(
        s.inspect_refresh(&cfg, 0, rt(&login)).state,
        RefreshState::Current
    );
    let next = s.refresh(&cfg, 1, rt(&login)).unwrap();
    assert_eq!(
        s.inspect_refresh(&cfg, 1, rt(&login)).state,
        RefreshState::PreviousUnused
    );
    s.authenticate(&cfg, 2, &next.access_token, false).unwrap();
    assert_eq!(
        s.inspect_refresh(&cfg, 2, rt(&login)).state,
        RefreshState::Consumed
    );
    assert_eq!(
        s.inspect_refresh(&cfg, 2, "syr_nope").state,
        RefreshState::Unknown
    );
    assert_eq!(s.inspect_access(&cfg, 2, None).state, AccessState::Missing);
}

fn oauth_setup(profile: Profile) -> (ServerConfig, TokenStore, Issued) {
    let cfg = ServerConfig::for_profile(profile);
    let mut s = TokenStore::new("localhost");
    s.add_user("alice", "wonderland").unwrap();
    let grant = OAuthGrant {
        client_id: "CLIENT".into(),
        scope: "urn:matrix:client:api:* urn:matrix:client:device:DEV".into(),
    };
    let login = s
        .login_oauth(&cfg, 0, "@alice:localhost", Some("DEV"), &grant)
        .unwrap();
    (cfg, s, login)
}

#[test]
fn oauth_replay_is_accepted_while_the_successor_is_unused() {
    let (cfg, mut s, login) = oauth_setup(Profile::Mas);
    let first = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
    // MAS revokes the old access token at once.
    assert_eq!(
        s.authenticate(&cfg, 1, &login.access_token, false),
        Err(AccessError::Revoked)
    );
    assert_eq!(
        s.inspect_refresh(&cfg, 1, rt(&login)).state,
        RefreshState::PreviousUnused
    );
    // The response was lost: the replay revokes the unused pair and issues a new one.
    let second = s.refresh_oauth(&cfg, 2, rt(&login), Some("CLIENT")).unwrap();
    assert_eq!(
        s.authenticate(&cfg, 2, &first.access_token, false),
        Err(AccessError::Revoked)
    );
    assert_eq!(
        s.refresh_oauth(&cfg, 2, rt(&first), Some("CLIENT")),
        Err(RefreshError::Unknown)
    );
    s.authenticate(&cfg, 3, &second.access_token, false).unwrap();
    assert_eq!(
        s.refresh_oauth(&cfg, 3, rt(&login), Some("CLIENT")),
        Err(RefreshError::Consumed)
    );
    // Two generations on, the first token is still "consumed", not unknown.
    let third = s.refresh_oauth(&cfg, 4, rt(&second), Some("CLIENT")).unwrap();
    s.refresh_oauth(&cfg, 5, rt(&third), Some("CLIENT")).unwrap();
    assert_eq!(
        s.refresh_oauth(&cfg, 6, rt(&login), Some("CLIENT")),
        Err(RefreshError::Consumed)
    );
    assert_eq!(
        s.inspect_refresh(&cfg, 6, rt(&login)).state,
        RefreshState::Consumed
    );
    assert!(s.has_device("@alice:localhost", "DEV"));
}

#[test]
fn oauth_spec_replay_revokes_the_session() {
    let (cfg, mut s, login) = oauth_setup(Profile::OAuthSpec);
    let next = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
    s.authenticate(&cfg, 2, &next.access_token, false).unwrap();
    assert_eq!(
        s.refresh_oauth(&cfg, 3, rt(&login), Some("CLIENT")),
        Err(RefreshError::ReplayRevokedSession)
    );
    assert_eq!(
        s.authenticate(&cfg, 3, &next.access_token, false),
        Err(AccessError::Revoked)
    );
    assert!(!s.has_device("@alice:localhost", "DEV"));
    assert_eq!(
        s.refresh_oauth(&cfg, 4, rt(&login), Some("CLIENT")),
        Err(RefreshError::Unknown)
    );
}

#[test]
fn oauth_and_legacy_tokens_stay_apart() {
    let (cfg, mut s, login) = oauth_setup(Profile::Mas);
    assert!(login.access_token.starts_with("mat_"));
    assert_eq!(s.refresh(&cfg, 1, rt(&login)), Err(RefreshError::Malformed));
    assert_eq!(
        s.refresh_oauth(&cfg, 1, rt(&login), Some("OTHER")),
        Err(RefreshError::WrongClient)
    );
    let legacy = s.login(&cfg, 0, "@alice:localhost", None, None, true).unwrap();
    assert_eq!(
        s.refresh_oauth(&cfg, 1, rt(&legacy), Some("CLIENT")),
        Err(RefreshError::Malformed)
    );
    assert!(s.authenticate(&cfg, 1, &login.access_token, false).is_ok());
    assert_eq!(s.revoke_oauth_token(&cfg, 1, &legacy.access_token), None);
    assert_eq!(
        s.oauth_grant_of(&login.access_token)
            .map(|g| g.client_id.as_str()),
        Some("CLIENT")
    );
    assert_eq!(
        s.devices(None)
            .iter()
            .filter(|d| d.oauth_client_id.is_some())
            .count(),
        1
    );
}

#[test]
fn oauth_revocation_ends_the_session_only_for_valid_tokens() {
    let (cfg, mut s, login) = oauth_setup(Profile::Mas);
    let next = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
    // The exchanged refresh token and the revoked access token are no longer valid.
    assert_eq!(s.revoke_oauth_token(&cfg, 2, rt(&login)), None);
    assert_eq!(s.revoke_oauth_token(&cfg, 2, &login.access_token), None);
    let until = next.valid_until_ms.unwrap();
    assert_eq!(s.revoke_oauth_token(&cfg, until + 1, &next.access_token), None);
    assert_eq!(
        s.revoke_oauth_token(&cfg, 2, &next.access_token),
        Some(("@alice:localhost".into(), "DEV".into()))
    );
    assert_eq!(
        s.refresh_oauth(&cfg, 3, rt(&next), Some("CLIENT")),
        Err(RefreshError::Unknown)
    );
}

#[test]
fn oauth_knobs_single_use_no_rotation_and_old_access_kept() {
    let (mut cfg, mut s, login) = oauth_setup(Profile::Mas);
    cfg.oauth_reuse_policy = OAuthReusePolicy::SingleUse;
    cfg.oauth_revoke_old_access_token = false;
    s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
    assert!(s.authenticate(&cfg, 1, &login.access_token, false).is_ok());
    assert_eq!(
        s.refresh_oauth(&cfg, 2, rt(&login), Some("CLIENT")),
        Err(RefreshError::Consumed)
    );
    let (mut cfg, mut s, login) = oauth_setup(Profile::Mas);
    cfg.rotate_refresh_tokens = false;
    let a = s.refresh_oauth(&cfg, 1, rt(&login), Some("CLIENT")).unwrap();
    assert!(a.refresh_token.is_none());
    assert!(a.access_token.starts_with("mat_"));
    s.refresh_oauth(&cfg, 2, rt(&login), Some("CLIENT")).unwrap();
    assert_eq!(
        s.authenticate(&cfg, 2, &a.access_token, false),
        Err(AccessError::Revoked)
    );
}

#[test]
fn malformed_and_non_rotating() {
    let (mut cfg, mut s, login) = setup(Profile::Synapse);
    assert_eq!(s.refresh(&cfg, 1, "garbage"), Err(RefreshError::Malformed));
    cfg.rotate_refresh_tokens = false;
    let a = s.refresh(&cfg, 1, rt(&login)).unwrap();
    assert!(a.refresh_token.is_none());
    let b = s.refresh(&cfg, 2, rt(&login)).unwrap();
    assert_ne!(a.access_token, b.access_token);
}
