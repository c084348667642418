//! Refresh-token rotation: the rules of each kind of session, states, and the legacy `/refresh` exchange (Synapse's rules).

use super::{
    AccessGone, Issued, IssuedShared, Owner, RefreshError, RefreshGone, RefreshState, TokenStore, TokenView,
    add_ms, min_opt, rt_label,
};
use crate::config::{OAuthReusePolicy, ReusePolicy, ServerConfig};
use crate::token::{TokenKind, check_token_shape};

/// The refresh rules one refresh token follows, from the knobs of its kind of session.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rules {
    /// An exchanged token is accepted again while its successor pair is unused.
    grace: bool,
    /// A refresh revokes the access tokens of the refresh token it consumed.
    revoke_old_access: bool,
    /// Deleting the generation before the consumed token also deletes its access tokens
    /// (Synapse keeps two generations).
    drop_old_generation_access: bool,
    /// A token of a deleted generation counts as consumed (OAuth) rather than unknown (Synapse).
    superseded_is_consumed: bool,
    /// Presenting an invalidated token revokes the session.
    replay_revokes_session: bool,
}

impl Rules {
    pub(super) fn legacy(cfg: &ServerConfig) -> Self {
        Rules {
            grace: cfg.reuse_policy != ReusePolicy::SingleUse,
            revoke_old_access: cfg.revoke_old_access_token,
            drop_old_generation_access: true,
            superseded_is_consumed: false,
            replay_revokes_session: false,
        }
    }

    pub(super) fn oauth(cfg: &ServerConfig) -> Self {
        Rules {
            grace: cfg.oauth_reuse_policy == OAuthReusePolicy::Grace,
            revoke_old_access: cfg.oauth_revoke_old_access_token,
            drop_old_generation_access: false,
            superseded_is_consumed: true,
            replay_revokes_session: cfg.oauth_replay_revokes_session,
        }
    }

    pub(super) fn for_token(cfg: &ServerConfig, oauth: bool) -> Self {
        if oauth {
            Rules::oauth(cfg)
        } else {
            Rules::legacy(cfg)
        }
    }
}

impl TokenStore {
    pub(super) fn successor_used(&self, next: u32) -> bool {
        let n = &self.refresh[next as usize];
        n.next.is_some() || n.access.iter().any(|&a| self.access[a as usize].used)
    }

    /// The label and state of a refresh token, without changing anything.
    pub fn inspect_refresh(&self, cfg: &ServerConfig, now_ms: i64, token: &str) -> TokenView<RefreshState> {
        self.inspect_refresh_with_owner(cfg, now_ms, token).0
    }

    /// [`inspect_refresh`](Self::inspect_refresh) and the user and device the token was issued
    /// to (an access token presented as a refresh token names its owner too), from one lookup.
    pub fn inspect_refresh_with_owner(
        &self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
    ) -> (TokenView<RefreshState>, Option<Owner>) {
        let Some(&r) = self.refresh_by_token.get(token) else {
            let view = TokenView {
                label: rotary_judge::label::UNKNOWN_REFRESH.to_owned(),
                state: RefreshState::Unknown,
            };
            return (view, self.token_owner(token));
        };
        let rt = &self.refresh[r as usize];
        let state = match rt.gone {
            Some(RefreshGone::Revoked) => RefreshState::Revoked,
            Some(RefreshGone::Superseded) => RefreshState::Consumed,
            None if rt.expiry_ms.is_some_and(|e| e < now_ms)
                || rt.session_expiry_ms.is_some_and(|e| e < now_ms) =>
            {
                RefreshState::Expired
            }
            None => match rt.next {
                None => RefreshState::Current,
                Some(n) if Rules::for_token(cfg, rt.oauth).grace && !self.successor_used(n) => {
                    RefreshState::PreviousUnused
                }
                Some(_) => RefreshState::Consumed,
            },
        };
        let view = TokenView {
            label: rt_label(r),
            state,
        };
        (view, Some(self.owner_at(rt.device)))
    }

    /// Deletes a refresh token, and its access tokens unless `access_why` is `None`.
    /// Revokes the access tokens refresh token `r` was exchanged for (by index: revoking does not
    /// touch `r`'s list, so it need not be copied).
    fn revoke_access_of(&mut self, r: u32, why: AccessGone) {
        for i in 0..self.refresh[r as usize].access.len() {
            let a = self.refresh[r as usize].access[i];
            self.revoke_access(a, why);
        }
    }

    pub(super) fn delete_refresh(&mut self, r: u32, why: RefreshGone, access_why: Option<AccessGone>) {
        if self.refresh[r as usize].gone.is_some() {
            return;
        }
        self.refresh[r as usize].gone = Some(why);
        let device = self.refresh[r as usize].device as usize;
        self.devices[device].refresh.retain(|&x| x != r);
        if let Some(access_why) = access_why {
            self.revoke_access_of(r, access_why);
        }
    }

    /// Exchanges a legacy refresh token (`/refresh`), following the configured rotation and reuse
    /// rules exactly as Synapse's `AuthHandler.refresh_token` and `replace_refresh_token` do.
    /// OAuth refresh tokens are not accepted here.
    pub fn refresh(&mut self, cfg: &ServerConfig, now_ms: i64, token: &str) -> Result<Issued, RefreshError> {
        self.refresh_shared(cfg, now_ms, token).map(Issued::from)
    }

    /// [`refresh`](Self::refresh), answering with the store's shared strings: what `/refresh`
    /// uses.
    pub fn refresh_shared(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
    ) -> Result<IssuedShared, RefreshError> {
        let known = self
            .refresh_by_token
            .get(token)
            .copied()
            .filter(|&r| !self.refresh[r as usize].oauth);
        // The checksum only matters for a token the store does not know.
        if known.is_none() && !check_token_shape(cfg.dialect, TokenKind::Refresh, token) {
            return Err(RefreshError::Malformed);
        }
        let r = known.ok_or(RefreshError::Unknown)?;
        let (a, r) = self.exchange(cfg, now_ms, r, Rules::legacy(cfg))?;
        Ok(self.issued_shared(a, r))
    }

    /// The refusal of an invalidated token; under `replay_revokes_session` the session goes too.
    pub(super) fn replayed(&mut self, r: u32, rules: Rules) -> RefreshError {
        if rules.replay_revokes_session {
            let device = self.refresh[r as usize].device;
            self.delete_device_at(device);
            RefreshError::ReplayRevokedSession
        } else {
            RefreshError::Consumed
        }
    }

    pub(super) fn exchange(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        r: u32,
        rules: Rules,
    ) -> Result<(u32, Option<u32>), RefreshError> {
        let rt = &self.refresh[r as usize];
        if self.devices[rt.device as usize].deleted {
            return Err(RefreshError::Unknown);
        }
        match rt.gone {
            Some(RefreshGone::Superseded) if rules.superseded_is_consumed => {
                return Err(self.replayed(r, rules));
            }
            Some(_) => return Err(RefreshError::Unknown),
            None => {}
        }
        if let Some(next) = rt.next
            && (!rules.grace || self.successor_used(next))
        {
            return Err(self.replayed(r, rules));
        }
        let rt = &self.refresh[r as usize];
        if rt.expiry_ms.is_some_and(|e| e < now_ms) {
            return Err(RefreshError::Expired);
        }
        if rt.session_expiry_ms.is_some_and(|e| e < now_ms) {
            return Err(RefreshError::SessionExpired);
        }
        let session_expiry = rt.session_expiry_ms;
        let device = rt.device;
        let oauth = rt.oauth;
        let at_exp = min_opt(
            cfg.refreshable_access_token_lifetime.map(|d| add_ms(now_ms, d)),
            session_expiry,
        );
        let rt_exp = min_opt(
            cfg.refresh_token_lifetime.map(|d| add_ms(now_ms, d)),
            session_expiry,
        )
        .or(session_expiry);
        if rules.revoke_old_access {
            self.revoke_access_of(r, AccessGone::Revoked);
        }
        if !cfg.rotate_refresh_tokens {
            let a = self.new_access(cfg, device, at_exp, Some(r), oauth);
            return Ok((a, None));
        }
        let new_r = self.new_refresh(cfg, device, rt_exp, session_expiry, oauth);
        let a = self.new_access(cfg, device, at_exp, Some(new_r), oauth);
        // replace_refresh_token: point at the successor, delete an earlier unused successor (and
        // its access token), and delete the generation before this one.
        let old_next = self.refresh[r as usize].next.replace(new_r);
        self.refresh[new_r as usize].prev = Some(r);
        if let Some(old) = old_next {
            self.delete_refresh(old, RefreshGone::Revoked, Some(AccessGone::Revoked));
        }
        if let Some(prev) = self.refresh[r as usize].prev.take() {
            let access_why = rules.drop_old_generation_access.then_some(AccessGone::Dropped);
            self.delete_refresh(prev, RefreshGone::Superseded, access_why);
        }
        Ok((a, Some(new_r)))
    }
}
