//! Starting sessions: a login (legacy) mints a device's first tokens; how tokens are created.

use super::{
    AccessToken, Issued, IssuedShared, LoginError, OAuthGrant, RefreshToken, TokenStore, add_ms, at_label,
    idx, min_opt, rt_label,
};
use crate::config::ServerConfig;
use crate::token::{TokenKind, generate_oauth_token, generate_token};
use std::sync::Arc;

impl TokenStore {
    /// A fresh token string for a device: MAS's OAuth shape for an OAuth session, else the
    /// dialect's shape for the device's user.
    fn new_token_string(&self, cfg: &ServerConfig, device: u32, kind: TokenKind, oauth: bool) -> Arc<str> {
        Arc::from(if oauth {
            generate_oauth_token(kind)
        } else {
            let user = self.devices[device as usize].user as usize;
            generate_token(cfg.dialect, kind, &self.users[user].localpart)
        })
    }

    pub(super) fn new_access(
        &mut self,
        cfg: &ServerConfig,
        device: u32,
        valid_until_ms: Option<i64>,
        refresh: Option<u32>,
        oauth: bool,
    ) -> u32 {
        let token = self.new_token_string(cfg, device, TokenKind::Access, oauth);
        let a = idx(self.access.len());
        self.access.push(AccessToken {
            token: token.clone(),
            device,
            valid_until_ms,
            used: false,
            gone: None,
            oauth,
        });
        self.access_by_token.insert(token, a);
        self.devices[device as usize].access.push(a);
        if let Some(r) = refresh {
            self.refresh[r as usize].access.push(a);
        }
        a
    }

    pub(super) fn new_refresh(
        &mut self,
        cfg: &ServerConfig,
        device: u32,
        expiry_ms: Option<i64>,
        session_expiry_ms: Option<i64>,
        oauth: bool,
    ) -> u32 {
        let token = self.new_token_string(cfg, device, TokenKind::Refresh, oauth);
        let r = idx(self.refresh.len());
        self.refresh.push(RefreshToken {
            token: token.clone(),
            device,
            oauth,
            expiry_ms,
            session_expiry_ms,
            next: None,
            prev: None,
            access: Vec::new(),
            gone: None,
        });
        self.refresh_by_token.insert(token, r);
        self.devices[device as usize].refresh.push(r);
        r
    }

    pub(super) fn issued(&self, a: u32, r: Option<u32>) -> Issued {
        Issued::from(self.issued_shared(a, r))
    }

    pub(super) fn issued_shared(&self, a: u32, r: Option<u32>) -> IssuedShared {
        let at = &self.access[a as usize];
        IssuedShared {
            owner: self.owner_at(at.device),
            access_token: at.token.clone(),
            access_label: at_label(a),
            refresh_token: r.map(|r| self.refresh[r as usize].token.clone()),
            refresh_label: r.map(rt_label),
            valid_until_ms: at.valid_until_ms,
        }
    }

    /// Logs `user_id` in on a new (or the named) device, as Synapse's `register_device` does.
    /// A refresh token is issued only when asked for and refresh is enabled. Fails only for a user
    /// that does not exist.
    pub fn login(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        user_id: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
        want_refresh: bool,
    ) -> Result<Issued, LoginError> {
        self.start_session(cfg, now_ms, user_id, device_id, display_name, want_refresh, None)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_session(
        &mut self,
        cfg: &ServerConfig,
        now_ms: i64,
        user_id: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
        want_refresh: bool,
        oauth: Option<&OAuthGrant>,
    ) -> Result<Issued, LoginError> {
        let user = self.user_index(user_id).ok_or(LoginError::InvalidCredentials)?;
        let device = self.device_for(user, device_id, display_name, oauth);
        let is_oauth = oauth.is_some();
        let session_expiry = cfg.session_lifetime.map(|d| add_ms(now_ms, d));
        match cfg.refreshable_access_token_lifetime {
            Some(lifetime) if want_refresh => {
                let at_exp = min_opt(Some(add_ms(now_ms, lifetime)), session_expiry);
                let rt_exp = min_opt(
                    cfg.refresh_token_lifetime.map(|d| add_ms(now_ms, d)),
                    session_expiry,
                );
                let r = self.new_refresh(cfg, device, rt_exp, session_expiry, is_oauth);
                let a = self.new_access(cfg, device, at_exp, Some(r), is_oauth);
                Ok(self.issued(a, Some(r)))
            }
            _ => {
                let at_exp = min_opt(
                    cfg.nonrefreshable_access_token_lifetime
                        .map(|d| add_ms(now_ms, d)),
                    session_expiry,
                )
                .or(session_expiry);
                let a = self.new_access(cfg, device, at_exp, None, is_oauth);
                Ok(self.issued(a, None))
            }
        }
    }
}
