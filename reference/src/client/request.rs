//! One authenticated request: refresh first when the token is near its expiry, send, and on a 401
//! decide between retrying with a newer token, refreshing, and ending the session.

use super::*;

impl Client {
    /// Sends an authenticated request, refreshing before it (near expiry) and after a 401 as needed.
    pub(super) async fn authed(&self, call: &Call, preempt: bool) -> Result<Value, CallFailure> {
        let mut rounds = 0u32;
        let mut stale_retries = 0u32;
        // Only set by the `old-token-after-refresh` bug: the token to send next.
        let mut carried: Option<Captured> = None;
        loop {
            let cap = match carried.take() {
                Some(cap) => cap,
                None => self.prepare(preempt).await.map_err(CallFailure::Failed)?,
            };
            debug!(method = %call.method, path = call.url.path(), "request");
            let reply = api::execute(&self.http, call, Some(&cap.access_token))
                .await
                .map_err(CallFailure::Transport)?;
            if reply.is_success() {
                return reply.into_success_body().map_err(CallFailure::Failed);
            }
            if !reply.is_unknown_token() {
                return Err(CallFailure::Failed(reply.to_error()));
            }
            let rejected = reply.to_error();
            let may_refresh_again = rounds < MAX_REFRESH_ROUNDS || self.bug(Bug::RetryForever);
            match self.after_401(&cap, reply.soft_logout()) {
                After401::Over(e) => return Err(CallFailure::Failed(e)),
                After401::RetryCurrent => {
                    stale_retries += 1;
                    if stale_retries > MAX_STALE_RETRIES {
                        return Err(CallFailure::Failed(rejected));
                    }
                    debug!("the token was replaced while the request was out; retrying with the current one");
                }
                After401::RefreshWithEmptyToken => {
                    if !may_refresh_again {
                        return Err(CallFailure::Failed(rejected));
                    }
                    rounds += 1;
                    self.run_refresh(Some(String::new()))
                        .await
                        .map_err(CallFailure::Failed)?;
                }
                After401::Refresh { epoch } => {
                    if !may_refresh_again {
                        warn!(rounds, "still 401 after refreshing; giving up on this request");
                        return Err(CallFailure::Failed(rejected));
                    }
                    rounds += 1;
                    let run = self
                        .refresh_for(epoch, cap.refresh_token.clone())
                        .await
                        .map_err(CallFailure::Failed)?;
                    if self.bug(Bug::NoRetry) {
                        return Err(CallFailure::Failed(rejected));
                    }
                    if run == RefreshRun::Joined && self.bug(Bug::OldTokenAfterRefresh) {
                        carried = Some(cap);
                    }
                }
            }
        }
    }

    /// Reads the token for a request: waits for a refresh in flight, and refreshes first if the
    /// token is about to expire.
    pub(super) async fn prepare(&self, preempt: bool) -> Result<Captured, ClientError> {
        let early = self.capture()?;
        if !self.bug(Bug::RefreshPer401) {
            // Wait until no refresh is running.
            drop(self.refresh_gate.lock().await);
        }
        let mut cap = self.capture()?;
        let wants_refresh = preempt
            && !self.bug(Bug::NoPreempt)
            && cap.refresh_token.is_some()
            && cap.expiry.is_some_and(|e| {
                e.wants_refresh(Instant::now(), self.config.margin, self.bug(Bug::PreemptStorm))
            });
        if wants_refresh {
            debug!("access token near expiry; refreshing first");
            match self.refresh_for(cap.epoch, cap.refresh_token.clone()).await {
                Ok(_) => cap = self.capture()?,
                Err(e) if e.is_logout() => return Err(e),
                Err(e) => {
                    if cap.expiry.is_some_and(|x| x.has_passed(Instant::now())) {
                        return Err(e);
                    }
                    // The old token is still good for a while: use it, refresh again next time.
                    warn!(error = %e, "preemptive refresh failed; using the current token");
                }
            }
        }
        if self.bug(Bug::OldTokenAfterRefresh) && early.generation != cap.generation {
            return Ok(early);
        }
        Ok(cap)
    }

    pub(super) fn capture(&self) -> Result<Captured, ClientError> {
        let st = self.state();
        let held = st.session.as_ref().ok_or_else(no_session)?;
        if let Some(soft) = held.logged_out
            && !self.bug(Bug::KeepTokensAfterLogout)
        {
            return Err(ClientError::LoggedOut { soft });
        }
        let access_token = held.access_token.clone().ok_or(ClientError::LoggedOut {
            soft: held.logged_out.unwrap_or(false),
        })?;
        Ok(Captured {
            access_token,
            refresh_token: held.refresh_token.clone(),
            expiry: held.expiry,
            expiry_from_refresh: held.expiry_from_refresh,
            generation: st.generation,
            epoch: st.refresh_epoch,
        })
    }

    /// Decides, in one look at the state, what a 401 on a request sent with `cap` means.
    pub(super) fn after_401(&self, cap: &Captured, soft_logout: bool) -> After401 {
        let per_401 = self.bug(Bug::RefreshPer401);
        let mut st = self.state();
        let Some(held) = st.session.as_ref() else {
            return After401::Over(no_session());
        };
        if let Some(soft) = held.logged_out
            && !self.bug(Bug::KeepTokensAfterLogout)
        {
            return After401::Over(ClientError::LoggedOut { soft });
        }
        if self.bug(Bug::TrustLocalExpiry)
            && cap.expiry_from_refresh
            && cap
                .expiry
                .is_some_and(|e| e.remaining(Instant::now()) >= TRUSTED_EXPIRY_LEFT)
        {
            // As matrix-js-sdk does, before anything else: a refresh said when this token expires,
            // so it "cannot" have expired yet, and the 401 is taken as the end of the session, with
            // the 401's own soft_logout flag (the SDK emits the 401 as its logout).
            info!("401 although the token should still be valid: taking it as a logout");
            return After401::Over(self.logout_locked(&mut st, soft_logout));
        }
        if !per_401 && st.generation != cap.generation {
            return After401::RetryCurrent;
        }
        let has_refresh_token = if per_401 {
            cap.refresh_token.is_some()
        } else {
            held.refresh_token.is_some()
        };
        if has_refresh_token {
            After401::Refresh {
                epoch: st.refresh_epoch,
            }
        } else if self.bug(Bug::RefreshWithoutToken) {
            After401::RefreshWithEmptyToken
        } else {
            info!("401 and no refresh token: the session is over");
            After401::Over(self.logout_locked(&mut st, soft_logout))
        }
    }
}
