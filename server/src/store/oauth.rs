//! OAuth 2.0 sessions in the store: grants, the `refresh_token` grant under MAS's rules, and revocation (RFC 7009).

use super::refresh::Rules;
use super::{Issued, LoginError, OAuthGrant, RefreshError, TokenStore};
use crate::config::ServerConfig;
use crate::token::{TokenKind, check_oauth_token_shape};

impl TokenStore {
    /// Starts an OAuth 2.0 session for `user_id` on the named (or a new) device, bound to the
    /// grant's client and scope, as a successful authorization-code exchange does: `mat_`/`mar_`
    /// tokens, a refresh token whenever refresh is enabled. Fails only for a user that does not
    /// exist.
    ///
    /// ```
    /// use rotary_server::{OAuthGrant, Profile, ServerConfig, TokenStore};
    /// let cfg = ServerConfig::for_profile(Profile::Mas);
    /// let mut store = TokenStore::new("localhost");
    /// store.add_user("alice", "wonderland").unwrap();
    /// let grant = OAuthGrant { client_id: "C1".into(), scope: "urn:matrix:client:api:*".into() };
    /// let s = store.login_oauth(&cfg, 0, "alice", Some("DEV"), &grant).unwrap();
    /// assert!(s.access_token.starts_with("mat_"));
    /// let next = store.refresh_oauth(&cfg, 1, s.refresh_token.as_deref().unwrap(), Some("C1")).unwrap();
    /// assert!(next.refresh_token.unwrap().starts_with("mar_"));
    /// ```
    pub fn login_oauth(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        user_id: &str,
        device_id: Option<&str>,
        grant: &OAuthGrant,
    ) -> Result<Issued, LoginError> {
        self.start_session(cfg, now_ms, user_id, device_id, None, true, Some(grant))
    }

    /// Exchanges an OAuth 2.0 refresh token (the token endpoint's `refresh_token` grant) as MAS
    /// does: the client must be the session's (`None` skips that check, for out-of-band
    /// rotation); an exchanged token is accepted again only while its successor pair is unused
    /// (`oauth_reuse_policy = "grace"`), which revokes that pair; a refresh revokes the old access
    /// token (`oauth_revoke_old_access_token`); with `oauth_replay_revokes_session`, presenting an
    /// invalidated token revokes the whole session. Legacy refresh tokens are not accepted here.
    pub fn refresh_oauth(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
        client_id: Option<&str>,
    ) -> Result<Issued, RefreshError> {
        let known = self
            .refresh_by_token
            .get(token)
            .copied()
            .filter(|&r| self.refresh[r as usize].oauth);
        if !check_oauth_token_shape(TokenKind::Refresh, token) && known.is_none() {
            return Err(RefreshError::Malformed);
        }
        let r = known.ok_or(RefreshError::Unknown)?;
        // MAS's order: a finished session first, then the client, whatever the token's state.
        let dev = &self.devices[self.refresh[r as usize].device as usize];
        if dev.deleted {
            return Err(RefreshError::Unknown);
        }
        if let Some(client) = client_id
            && dev.oauth.as_ref().is_some_and(|g| g.client_id != client)
        {
            return Err(RefreshError::WrongClient);
        }
        let (a, r) = self.exchange(cfg, now_ms, r, Rules::oauth(cfg))?;
        Ok(self.issued(a, r))
    }

    /// Whether `token` is a refresh token of an OAuth 2.0 session.
    pub fn is_oauth_refresh_token(&self, token: &str) -> bool {
        self.refresh_by_token
            .get(token)
            .is_some_and(|&r| self.refresh[r as usize].oauth)
    }

    /// The OAuth grant of the session a token (access or refresh, any state) belongs to.
    pub fn oauth_grant_of(&self, token: &str) -> Option<&OAuthGrant> {
        let device = self.device_of_token(token)?;
        self.devices[device as usize].oauth.as_ref()
    }

    /// Revokes an OAuth 2.0 token as MAS's revocation endpoint does (RFC 7009): a valid OAuth
    /// access token (live and unexpired) or a valid OAuth refresh token (live, not yet exchanged)
    /// ends its whole session (the device and all its tokens). Anything else — unknown, already
    /// revoked, expired, exchanged, or a legacy token — changes nothing. Returns the user and
    /// device whose session ended.
    pub fn revoke_oauth_token(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
    ) -> Option<(String, String)> {
        let device = if let Some(&a) = self.access_by_token.get(token) {
            let at = &self.access[a as usize];
            let valid =
                at.oauth && self.access_live(cfg, at) && at.valid_until_ms.is_none_or(|v| v >= now_ms);
            valid.then_some(at.device)?
        } else {
            let &r = self.refresh_by_token.get(token)?;
            let rt = &self.refresh[r as usize];
            let valid = rt.oauth && rt.gone.is_none() && rt.next.is_none();
            valid.then_some(rt.device)?
        };
        let owner = self.owner_at(device);
        let owner = (owner.user_id.to_string(), owner.device_id.to_string());
        self.delete_device_at(device);
        Some(owner)
    }
}
