//! Access tokens: their state, authentication, owners and labels, revocation.

use super::{
    AccessError, AccessGone, AccessState, AccessToken, Authed, Owner, TokenStore, TokenView, at_label,
    rt_label,
};
use crate::config::ServerConfig;

impl TokenStore {
    pub(super) fn access_live(&self, cfg: &ServerConfig, at: &AccessToken) -> bool {
        match at.gone {
            None => true,
            Some(AccessGone::Dropped) => at.used && cfg.keep_used_access_token_of_dropped_generation,
            Some(AccessGone::Revoked) => false,
        }
    }

    /// The label and state of an access token, without changing anything.
    pub fn inspect_access(
        &self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: Option<&str>,
    ) -> TokenView<AccessState> {
        self.inspect_access_with_owner(cfg, now_ms, token).0
    }

    /// [`inspect_access`](Self::inspect_access) and the user and device the token was issued
    /// to, from one lookup (what the trace records on every request's arrival).
    pub fn inspect_access_with_owner(
        &self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: Option<&str>,
    ) -> (TokenView<AccessState>, Option<Owner>) {
        let Some(token) = token else {
            let view = TokenView {
                label: rotary_judge::label::NO_TOKEN.to_owned(),
                state: AccessState::Missing,
            };
            return (view, None);
        };
        let Some(&a) = self.access_by_token.get(token) else {
            let view = TokenView {
                label: rotary_judge::label::UNKNOWN_ACCESS.to_owned(),
                state: AccessState::Unknown,
            };
            // A refresh token presented as an access token still names its owner.
            return (view, self.token_owner(token));
        };
        let at = &self.access[a as usize];
        let state = if !self.access_live(cfg, at) {
            AccessState::Revoked
        } else if at.valid_until_ms.is_some_and(|v| v < now_ms) {
            AccessState::Expired
        } else {
            AccessState::Valid
        };
        let view = TokenView {
            label: at_label(a),
            state,
        };
        (view, Some(self.owner_at(at.device)))
    }

    /// Authenticates a request. Marks the token as used (which, under the grace policies,
    /// invalidates the refresh token it was exchanged for). `allow_expired` is what `/logout` uses.
    pub fn authenticate(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
        allow_expired: bool,
    ) -> Result<Authed, AccessError> {
        let (owner, a) = self.authenticate_inner(cfg, now_ms, token, allow_expired)?;
        Ok(Authed {
            user_id: owner.user_id.to_string(),
            device_id: owner.device_id.to_string(),
            label: at_label(a),
        })
    }

    /// [`authenticate`](Self::authenticate), answering with the store's shared strings and no
    /// label: what the request path uses.
    pub fn authenticate_shared(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
        allow_expired: bool,
    ) -> Result<Owner, AccessError> {
        Ok(self.authenticate_inner(cfg, now_ms, token, allow_expired)?.0)
    }

    fn authenticate_inner(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        token: &str,
        allow_expired: bool,
    ) -> Result<(Owner, u32), AccessError> {
        let a = *self.access_by_token.get(token).ok_or(AccessError::Unknown)?;
        let at = &self.access[a as usize];
        if !self.access_live(cfg, at) {
            return Err(AccessError::Revoked);
        }
        if !allow_expired && at.valid_until_ms.is_some_and(|v| v < now_ms) {
            return Err(AccessError::Expired);
        }
        let device = at.device;
        self.access[a as usize].used = true;
        Ok((self.owner_at(device), a))
    }

    /// The device an access or refresh token was issued to, whatever its state.
    pub(super) fn device_of_token(&self, token: &str) -> Option<u32> {
        self.access_by_token
            .get(token)
            .map(|&a| self.access[a as usize].device)
            .or_else(|| {
                self.refresh_by_token
                    .get(token)
                    .map(|&r| self.refresh[r as usize].device)
            })
    }

    /// The user and device an access or refresh token was issued to, whatever its state.
    pub fn owner_of(&self, token: &str) -> Option<(String, String)> {
        let owner = self.token_owner(token)?;
        Some((owner.user_id.to_string(), owner.device_id.to_string()))
    }

    /// [`owner_of`](Self::owner_of), sharing the store's strings.
    pub fn token_owner(&self, token: &str) -> Option<Owner> {
        Some(self.owner_at(self.device_of_token(token)?))
    }

    pub(super) fn owner_at(&self, device: u32) -> Owner {
        let dev = &self.devices[device as usize];
        Owner {
            user_id: self.users[dev.user as usize].user_id.clone(),
            device_id: dev.device_id.clone(),
        }
    }

    /// The label of any token this store issued.
    pub fn label_of(&self, token: &str) -> Option<String> {
        self.access_by_token
            .get(token)
            .map(|&a| at_label(a))
            .or_else(|| self.refresh_by_token.get(token).map(|&r| rt_label(r)))
    }

    pub(super) fn revoke_access(&mut self, a: u32, why: AccessGone) {
        let at = &mut self.access[a as usize];
        if at.gone.is_none() {
            at.gone = Some(why);
            let device = at.device as usize;
            self.devices[device].access.retain(|&x| x != a);
        }
    }
}
