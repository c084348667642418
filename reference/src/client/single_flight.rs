//! The refresh itself: one run at a time behind the gate, its outcome shared by every request that
//! waited, the new tokens adopted and persisted before use, and the logout on a definitive refusal.

use super::*;

impl Client {
    /// Refreshes for a request that found it needed to when the refresh epoch was `epoch`: runs the
    /// refresh, or, if a run ended since (i.e. while this request waited for the gate), takes its
    /// outcome. `read_token` is the refresh token the request read (only `refresh-per-401` uses it).
    pub(super) async fn refresh_for(
        &self,
        epoch: u64,
        read_token: Option<String>,
    ) -> Result<RefreshRun, ClientError> {
        if self.bug(Bug::RefreshPer401) {
            // Each request on its own, with the refresh token it read.
            let token = read_token.unwrap_or_default();
            return self
                .run_refresh(Some(token))
                .await
                .map(|()| RefreshRun::Performed);
        }
        let _gate = self.refresh_gate.lock().await;
        {
            let st = self.state();
            if st.refresh_epoch != epoch {
                debug!("a refresh ran while this request waited; sharing its outcome");
                return st.last_refresh.clone().map(|()| RefreshRun::Joined);
            }
        }
        let outcome = self.run_refresh(None).await;
        let mut st = self.state();
        st.refresh_epoch += 1;
        st.last_refresh = outcome.clone();
        outcome.map(|()| RefreshRun::Performed)
    }

    /// One refresh run: attempts `/refresh` until it succeeds, fails definitively, or the attempts run
    /// out. `presented` overrides the refresh token to present.
    pub(super) async fn run_refresh(&self, presented: Option<String>) -> Result<(), ClientError> {
        let token = match presented {
            Some(token) => token,
            None => {
                let st = self.state();
                let held = st.session.as_ref().ok_or_else(no_session)?;
                let token = if self.bug(Bug::StaleRefreshToken) {
                    &held.first_refresh_token
                } else {
                    &held.refresh_token
                };
                token
                    .clone()
                    .ok_or_else(|| ClientError::Other("no refresh token".into()))?
            }
        };
        let forever = self.bug(Bug::RetryForever);
        let no_wait = self.bug(Bug::IgnoreRetryAfter);
        let max_attempts = self.config.max_refresh_attempts.max(1);
        let mut failures = 0u32;
        loop {
            let outcome = self.refresh_once(&token).await;
            let received = Instant::now();
            match outcome {
                RefreshOutcome::Tokens(tokens) => {
                    self.adopt_refreshed(tokens, received);
                    return Ok(());
                }
                RefreshOutcome::Transient { error, retry_after } => {
                    failures += 1;
                    if self.bug(Bug::LogoutOnTransient) {
                        warn!(%error, "refresh failed; taking it as the end of the session");
                        let mut st = self.state();
                        return Err(self.logout_locked(&mut st, false));
                    }
                    if self.bug(Bug::RetryNextRequest) && !forever {
                        // As matrix-js-sdk does: the request fails (TokenRefreshError); the next
                        // one refreshes again, with the same refresh token.
                        warn!(%error, "refresh failed; failing the request, tokens kept for the next one");
                        return Err(error);
                    }
                    if failures >= max_attempts && !forever {
                        warn!(%error, failures, "refresh failed; giving up for now, tokens kept");
                        return Err(error);
                    }
                    let wait = refresh::retry_delay(failures, retry_after, no_wait);
                    info!(%error, failures, ?wait, "refresh failed; retrying with the same refresh token");
                    tokio::time::sleep(wait).await;
                }
                RefreshOutcome::Definitive { error, soft_logout } => {
                    failures += 1;
                    if forever {
                        let wait = refresh::retry_delay(failures, None, no_wait);
                        info!(%error, ?wait, "refresh refused; retrying anyway");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if self.bug(Bug::SwallowRefreshFailure) {
                        warn!(%error, "refresh refused; keeping the tokens");
                        return Err(error);
                    }
                    warn!(%error, soft_logout, "refresh refused: the session is over");
                    let mut st = self.state();
                    return Err(self.logout_locked(&mut st, soft_logout));
                }
            }
        }
    }

    /// One refresh attempt, through `/refresh` or the OAuth token endpoint as the session says.
    pub(super) async fn refresh_once(&self, refresh_token: &str) -> RefreshOutcome {
        let oauth = self.state().session.as_ref().and_then(|h| h.oauth.clone());
        match oauth {
            Some(session) => self.oauth_refresh_once(&session, refresh_token).await,
            None => self.legacy_refresh_once(refresh_token).await,
        }
    }

    /// One refresh token grant at the OAuth token endpoint (discovered first if need be).
    pub(super) async fn oauth_refresh_once(
        &self,
        session: &OAuthSession,
        refresh_token: &str,
    ) -> RefreshOutcome {
        let endpoints = match self.oauth_endpoints(session).await {
            Ok(endpoints) => endpoints,
            Err(error) => {
                // No endpoint to ask: nothing was refused, so nothing is over. Discover again on the
                // next attempt.
                return RefreshOutcome::Transient {
                    error,
                    retry_after: None,
                };
            }
        };
        debug!("POST token_endpoint (refresh_token grant)");
        let form = oauth::refresh_form(refresh_token, &session.client_id);
        match oauth::post_form(&self.http, &endpoints.token, form, self.config.refresh_timeout).await {
            Ok(reply) => oauth::classify(&reply, self.config.bugs),
            Err(error) => RefreshOutcome::Transient {
                error,
                retry_after: None,
            },
        }
    }

    /// The OAuth session's endpoints; discovered now if not known yet, and then remembered in the
    /// held session (if it is still the same one).
    pub(super) async fn oauth_endpoints(&self, session: &OAuthSession) -> Result<Endpoints, ClientError> {
        if let Some(endpoints) = &session.endpoints {
            return Ok(endpoints.clone());
        }
        debug!("GET auth_metadata");
        let metadata = oauth::discover(&self.http, &self.base, self.config.refresh_timeout).await?;
        let mut st = self.state();
        if let Some(held) = st.session.as_mut()
            && let Some(current) = held.oauth.as_mut()
            && current.client_id == session.client_id
        {
            match &current.issuer {
                Some(claimed) if *claimed != metadata.issuer => {
                    warn!(%claimed, discovered = %metadata.issuer, "the session names another issuer than the server");
                }
                Some(_) => {}
                None => current.issuer = Some(metadata.issuer.clone()),
            }
            current.endpoints = Some(metadata.endpoints());
        }
        Ok(metadata.endpoints())
    }

    /// One `POST /refresh`.
    pub(super) async fn legacy_refresh_once(&self, refresh_token: &str) -> RefreshOutcome {
        let call = match self.call(
            Method::POST,
            &["v3", "refresh"],
            Some(json!({ "refresh_token": refresh_token })),
            self.config.refresh_timeout,
        ) {
            Ok(call) => call,
            Err(error) => {
                return RefreshOutcome::Transient {
                    error,
                    retry_after: None,
                };
            }
        };
        debug!("POST /refresh");
        match api::execute(&self.http, &call, None).await {
            Ok(reply) => refresh::classify(&reply),
            Err(error) => RefreshOutcome::Transient {
                error,
                retry_after: None,
            },
        }
    }

    /// Persists, then adopts, the tokens of a successful refresh.
    pub(super) fn adopt_refreshed(&self, tokens: RefreshedTokens, received: Instant) {
        let expiry = Expiry::on_receipt(received, tokens.expires_in, self.bug(Bug::MissingExpiryIsZero));
        let next = {
            let st = self.state();
            let Some(held) = st.session.as_ref() else {
                return;
            };
            let refresh_token = match tokens.refresh_token {
                Some(new) => Some(new),
                None if self.bug(Bug::DropRefreshToken) => None,
                // No new refresh token: the old one stays valid (the spec's words).
                None => held.refresh_token.clone(),
            };
            Held {
                access_token: Some(tokens.access_token),
                refresh_token,
                expiry,
                expiry_from_refresh: true,
                logged_out: None,
                ..held.clone()
            }
        };
        // On disk first: a crash after this point must not lose tokens the server already rotated.
        if !self.bug(Bug::NoPersist) {
            self.persist(&next);
        }
        let mut st = self.state();
        let new = next.tokens();
        st.session = Some(next);
        st.generation += 1;
        info!(expires_in = ?tokens.expires_in, "refreshed");
        self.emit(ClientEvent::SessionChanged {
            access_token: new.access_token,
            refresh_token: new.refresh_token,
        });
    }

    /// Ends the session (once): reports the logout, forgets the tokens, and forgets the persisted
    /// session unless the logout is soft. Returns the error the failing calls get.
    pub(super) fn logout_locked(&self, st: &mut State, soft_logout: bool) -> ClientError {
        let soft = soft_logout && !self.bug(Bug::IgnoreSoftLogout);
        let Some(held) = st.session.as_mut() else {
            return no_session();
        };
        if let Some(already) = held.logged_out {
            return ClientError::LoggedOut { soft: already };
        }
        held.logged_out = Some(soft);
        if !self.bug(Bug::KeepTokensAfterLogout) {
            held.access_token = None;
            held.refresh_token = None;
            held.first_refresh_token = None;
            held.expiry = None;
        }
        self.emit(ClientEvent::LoggedOut { soft_logout: soft });
        if !soft {
            self.delete_persisted();
        }
        ClientError::LoggedOut { soft }
    }
}
