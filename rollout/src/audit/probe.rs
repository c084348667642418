//! The probe: a fixed sequence of real requests (about 17 steps, 25 requests against Synapse)
//! that observes every behaviour of [`Behaviour`]. The same probe runs against the server under
//! audit and against the embedded mocks that predict each profile's values.
//!
//! Steps, in order (docs/audit.md explains each):
//! 1. `versions`: `GET /versions` — is it Matrix at all;
//! 2. `auth_metadata`: is the OAuth 2.0 API offered;
//! 3. `login` (or `register` with m.login.dummy) with `refresh_token: true`: refresh token,
//!    `expires_in_ms`, token prefixes (device 1);
//! 4. `whoami` with the first access token;
//! 5. `refresh paths`: an unknown refresh token at v3, r0, v1 and unstable (404/405
//!    `M_UNRECOGNIZED` = not served; nothing is consumed);
//! 6. `refresh`: the first refresh (rotation, `expires_in_ms`);
//! 7. `old access token`: the old access token while the new pair is unused;
//! 8. `reuse before use`: the old refresh token again while the new pair is unused;
//! 9. `discarded pair`: the access token of the pair that reuse replaced;
//! 10. `use new`: the newest access token (now the successor is used);
//! 11. `old access token after use`;
//! 12. `reuse after use`: the old refresh token once more; `drop generation`: the newest
//!     refresh token is refreshed (Synapse keeps two generations, so the first one's rows go) and
//!     the first, used access token is presented again;
//! 13. `expiry`: wait out the announced lifetime (only when it is within `--max-wait`), then the
//!     expired token;
//! 14. `refresh after expiry`;
//! 15. `logout`, then the access and refresh tokens of the logged-out device;
//! 16. `logout/all` (only with `--register`): a second device, `logout/all`, its refresh token;
//! 17. cleanup: every device still logged in is logged out (also after an error or Ctrl-C).

use super::devices::Devices;
use super::error::AuditError;
use super::http::{Answer, Http};
use super::observation::{Behaviour as B, Observations, skipped};
use hyper::Method;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;

/// Who the probe logs in as.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// An existing account (`--user`, `--password`); `logout/all` is not probed, so the user's
    /// other sessions survive.
    Login {
        /// User name or full user id.
        user: String,
        /// Password.
        password: String,
    },
    /// A fresh account registered with m.login.dummy (`--register`).
    Register,
}

/// What the probe needs to know.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Who logs in.
    pub credentials: Credentials,
    /// The longest wait for an expiry: longer lifetimes are not waited out (the rows say so).
    pub max_wait: Duration,
}

/// What is running, for a clean stop: the current step and the refresh path found.
#[derive(Debug, Default)]
pub struct Progress {
    step: Mutex<String>,
    refresh_path: Mutex<Option<String>>,
}

impl Progress {
    fn set_step(&self, step: &str) {
        *lock(&self.step) = step.to_owned();
    }

    /// The step running now (or last).
    pub fn step(&self) -> String {
        lock(&self.step).clone()
    }

    /// The refresh path the probe found served, if any.
    pub fn refresh_path(&self) -> Option<String> {
        lock(&self.refresh_path).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The refresh paths probed, in order of preference.
pub const REFRESH_PATHS: [(&str, &str); 4] = [
    ("v3", "/_matrix/client/v3/refresh"),
    ("r0", "/_matrix/client/r0/refresh"),
    ("v1", "/_matrix/client/v1/refresh"),
    ("unstable", "/_matrix/client/unstable/org.matrix.msc2918/refresh"),
];

/// A token the probe checks only while it is this far from its announced expiry (so that a slow
/// server does not turn a "still valid" into an "expired").
const EXPIRY_GUARD: Duration = Duration::from_millis(700);
/// How long after the announced expiry the expired token is presented.
const EXPIRY_MARGIN: Duration = Duration::from_millis(500);

/// An access token (with its refresh token) and when it was issued, on the probe's clock.
#[derive(Clone, Debug)]
struct Pair {
    at: String,
    rt: Option<String>,
    issued: Duration,
    lifetime: Option<Duration>,
}

/// A lifetime as the table shows it, rounded to 100 ms (Synapse announces a few ms less at login).
pub fn lifetime_value(ms: u64) -> String {
    let rounded = ms.saturating_add(50) / 100 * 100;
    rotary_server::format_duration(Duration::from_millis(rounded))
}

/// Reads a lifetime value back (`3s`), for the predictions' mocks.
pub fn parse_lifetime(value: &str) -> Option<Duration> {
    rotary_server::parse_duration(value).ok()
}

fn expires_in(a: &Answer) -> Option<Duration> {
    a.body
        .get("expires_in_ms")
        .and_then(Value::as_u64)
        .map(Duration::from_millis)
}

fn expires_value(a: &Answer) -> String {
    a.body
        .get("expires_in_ms")
        .and_then(Value::as_u64)
        .map_or_else(|| "absent".to_owned(), lifetime_value)
}

fn prefix(token: &str) -> &str {
    token.find('_').map_or("?", |i| &token[..=i])
}

fn newest_version(body: &Value) -> Option<String> {
    let versions = body.get("versions")?.as_array()?;
    let parse = |s: &str| -> Option<(u32, u32, u32)> {
        let rest = s.strip_prefix('v').or_else(|| s.strip_prefix('r'))?;
        let mut it = rest.split('.').map(|p| p.parse::<u32>().ok());
        let major = it.next()??;
        let minor = it.next().flatten().unwrap_or(0);
        Some((u32::from(s.starts_with('v')), major, minor))
    };
    versions
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|s| parse(s).map(|k| (k, s)))
        .max()
        .map(|(_, s)| s.to_owned())
}

/// Runs the probe; every device it creates is recorded in `devices` (the caller logs them out).
pub async fn probe(
    http: &Http,
    devices: &Devices,
    progress: &Progress,
    opts: &ProbeOptions,
) -> Result<Observations, AuditError> {
    let mut p = Probe {
        http,
        devices,
        progress,
        opts,
        obs: Observations::default(),
        refresh_path: None,
    };
    p.run().await?;
    Ok(p.obs)
}

struct Probe<'a> {
    http: &'a Http,
    devices: &'a Devices,
    progress: &'a Progress,
    opts: &'a ProbeOptions,
    obs: Observations,
    refresh_path: Option<String>,
}

impl Probe<'_> {
    fn step(&self, name: &str) -> String {
        self.progress.set_step(name);
        tracing::debug!(step = name, "audit step");
        name.to_owned()
    }

    async fn get(&self, step: &str, path: &str, token: Option<&str>) -> Result<Answer, AuditError> {
        self.http.send(step, Method::GET, path, token, None).await
    }

    async fn post(
        &self,
        step: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Answer, AuditError> {
        self.http.send(step, Method::POST, path, token, Some(body)).await
    }

    /// `whoami` with a token, unless the token is too near its announced expiry to say anything.
    async fn whoami(&self, step: &str, pair: &Pair) -> Result<String, AuditError> {
        if let Some(l) = pair.lifetime
            && self.http.now().saturating_sub(pair.issued) + EXPIRY_GUARD >= l
        {
            return Ok("n/a (the token was about to expire)".to_owned());
        }
        Ok(self
            .get(step, "/_matrix/client/v3/account/whoami", Some(&pair.at))
            .await?
            .outcome())
    }

    async fn refresh(&self, step: &str, rt: &str) -> Result<Answer, AuditError> {
        let path = self.refresh_path.clone().unwrap_or_default();
        self.post(step, &path, None, &json!({"refresh_token": rt})).await
    }

    /// The pair a successful refresh answered (keeping `rt` when no new refresh token came).
    fn pair_from(&self, a: &Answer, device: &str, rt: &str, issued: Duration) -> Option<Pair> {
        let at = a.str("access_token")?.to_owned();
        let new_rt = a.str("refresh_token").map(str::to_owned);
        self.devices.update(device, &at, new_rt.as_deref());
        Some(Pair {
            at,
            rt: Some(new_rt.unwrap_or_else(|| rt.to_owned())),
            issued,
            lifetime: expires_in(a),
        })
    }

    async fn run(&mut self) -> Result<(), AuditError> {
        let step = self.step("versions");
        let a = self.get(&step, "/_matrix/client/versions", None).await?;
        match (a.ok(), newest_version(&a.body)) {
            (true, Some(v)) => self.obs.set(B::Versions, v),
            _ => {
                return Err(AuditError::NotMatrix {
                    step,
                    url: self.http.url().to_owned(),
                    detail: format!(
                        "GET /_matrix/client/versions answered {} {}",
                        a.status,
                        if a.content_type.is_empty() {
                            "without a content type"
                        } else {
                            &a.content_type
                        }
                    ),
                });
            }
        }

        let step = self.step("auth_metadata");
        let a = self.get(&step, "/_matrix/client/v1/auth_metadata", None).await?;
        self.obs.set(
            B::OAuthOffered,
            if a.ok() && a.str("token_endpoint").is_some() {
                "yes".to_owned()
            } else {
                format!("no ({})", a.outcome())
            },
        );

        let (user, password, login) = self.log_in().await?;
        let device = login.str("device_id").unwrap_or("?").to_owned();
        let Some(at0) = login.str("access_token").map(str::to_owned) else {
            return Err(AuditError::Unexpected {
                step: self.progress.step(),
                answer: "200 without access_token".to_owned(),
            });
        };
        let rt0 = login.str("refresh_token").map(str::to_owned);
        self.devices.add(&device, &at0, rt0.as_deref());
        self.obs.set(
            B::RefreshTokenIssued,
            if rt0.is_some() { "issued" } else { "not issued" },
        );
        self.obs.set(B::LoginExpiresIn, expires_value(&login));
        self.obs.set(
            B::TokenShape,
            format!("{} {}", prefix(&at0), rt0.as_deref().map_or("-", prefix)),
        );
        let first = Pair {
            at: at0,
            rt: rt0,
            issued: self.http.now(),
            lifetime: expires_in(&login),
        };

        let step = self.step("whoami");
        let a = self
            .get(&step, "/_matrix/client/v3/account/whoami", Some(&first.at))
            .await?;
        if !a.ok() {
            return Err(AuditError::Unexpected {
                step,
                answer: format!("{} for the fresh access token", a.describe()),
            });
        }

        let step = self.step("refresh paths");
        let mut served = Vec::new();
        let mut unknown = None;
        for (name, path) in REFRESH_PATHS {
            let a = self
                .post(
                    &step,
                    path,
                    None,
                    &json!({"refresh_token": "rotary-audit-unknown-token"}),
                )
                .await?;
            let not_served = matches!(a.status, 404 | 405) || a.errcode() == Some("M_UNRECOGNIZED");
            if !not_served {
                served.push(name);
                if self.refresh_path.is_none() {
                    self.refresh_path = Some(path.to_owned());
                    *lock(&self.progress.refresh_path) = Some(path.to_owned());
                    unknown = Some(a.outcome());
                }
            }
        }
        self.obs.set(
            B::RefreshPaths,
            if served.is_empty() {
                "none".to_owned()
            } else {
                served.join(" ")
            },
        );
        self.obs.set(
            B::RefreshUnknownToken,
            unknown.unwrap_or_else(|| skipped("no refresh path")),
        );

        let mut current = first.clone();
        match (&first.rt, &self.refresh_path) {
            (Some(rt0), Some(_)) => {
                if let Some(c) = self.refreshes(&device, &first, rt0).await? {
                    current = c;
                }
            }
            (rt, _) => {
                let why = if rt.is_none() {
                    "no refresh token"
                } else {
                    "no refresh path"
                };
                for b in [
                    B::RefreshAnswer,
                    B::Rotation,
                    B::RefreshExpiresIn,
                    B::OldAccessBeforeUse,
                    B::ReuseBeforeUse,
                    B::DiscardedPairAccess,
                    B::OldAccessAfterUse,
                    B::ReuseAfterUse,
                    B::OldAccessDropped,
                    B::RefreshAfterExpiry,
                ] {
                    self.obs.set(b, skipped(why));
                }
            }
        }

        current = self.expiry(&device, current).await?;

        let step = self.step("logout");
        let a = self
            .post(&step, "/_matrix/client/v3/logout", Some(&current.at), &json!({}))
            .await?;
        if !a.ok() {
            return Err(AuditError::Unexpected {
                step,
                answer: format!("{} for /logout", a.describe()),
            });
        }
        self.devices.logged_out(Some(&device));
        let step = self.step("after logout");
        let a = self
            .get(&step, "/_matrix/client/v3/account/whoami", Some(&current.at))
            .await?;
        self.obs.set(B::LogoutAccess, a.outcome());
        match (&current.rt, &self.refresh_path) {
            (Some(rt), Some(_)) => {
                let a = self.refresh(&step, rt).await?;
                self.obs.set(B::LogoutRefresh, a.outcome());
            }
            _ => self.obs.set(B::LogoutRefresh, skipped("no refresh token")),
        }

        if matches!(self.opts.credentials, Credentials::Register) {
            self.logout_all(&user, &password).await?;
        } else {
            self.obs.set(
                B::LogoutAllRefresh,
                skipped("only with --register (it would end the user's other sessions)"),
            );
        }
        Ok(())
    }

    /// Steps 6–12: the first refresh, rotation and the reuse rules; answers the newest pair.
    async fn refreshes(&mut self, device: &str, first: &Pair, rt0: &str) -> Result<Option<Pair>, AuditError> {
        let step = self.step("refresh");
        let a = self.refresh(&step, rt0).await?;
        self.obs.set(B::RefreshAnswer, a.outcome());
        let issued = self.http.now();
        let Some(second) = self.pair_from(&a, device, rt0, issued).filter(|_| a.ok()) else {
            for b in [
                B::Rotation,
                B::RefreshExpiresIn,
                B::OldAccessBeforeUse,
                B::ReuseBeforeUse,
                B::DiscardedPairAccess,
                B::OldAccessAfterUse,
                B::ReuseAfterUse,
                B::OldAccessDropped,
                B::RefreshAfterExpiry,
            ] {
                self.obs.set(b, skipped("the refresh failed"));
            }
            return Ok(None);
        };
        let rotated = match a.str("refresh_token") {
            Some(rt) if rt != rt0 => "yes",
            Some(_) => "no (same refresh token)",
            None => "no (no refresh token)",
        };
        self.obs.set(B::Rotation, rotated);
        self.obs.set(B::RefreshExpiresIn, expires_value(&a));

        let step = self.step("old access token");
        let v = self.whoami(&step, first).await?;
        self.obs.set(B::OldAccessBeforeUse, v);

        let mut current = second.clone();
        if rotated == "yes" {
            let step = self.step("reuse before use");
            let a = self.refresh(&step, rt0).await?;
            self.obs.set(B::ReuseBeforeUse, a.outcome());
            let issued = self.http.now();
            match self.pair_from(&a, device, rt0, issued).filter(|_| a.ok()) {
                Some(third) => {
                    let step = self.step("discarded pair");
                    let v = self.whoami(&step, &second).await?;
                    self.obs.set(B::DiscardedPairAccess, v);
                    current = third;
                }
                None => self.obs.set(B::DiscardedPairAccess, "n/a (reuse refused)"),
            }
        } else {
            self.obs.set(B::ReuseBeforeUse, "n/a (no rotation)");
            self.obs.set(B::DiscardedPairAccess, "n/a (no rotation)");
        }

        let step = self.step("use new");
        let a = self
            .get(&step, "/_matrix/client/v3/account/whoami", Some(&current.at))
            .await?;
        if !a.ok() {
            return Err(AuditError::Unexpected {
                step,
                answer: format!("{} for the newest access token", a.describe()),
            });
        }

        let step = self.step("old access token after use");
        let v = self.whoami(&step, first).await?;
        self.obs.set(B::OldAccessAfterUse, v);

        if rotated == "yes" {
            let step = self.step("reuse after use");
            let a = self.refresh(&step, rt0).await?;
            self.obs.set(B::ReuseAfterUse, a.outcome());
            let issued = self.http.now();
            if let Some(next) = self.pair_from(&a, device, rt0, issued).filter(|_| a.ok()) {
                current = next;
            }
            let step = self.step("drop generation");
            if let Some(rt) = current.rt.clone() {
                let a = self.refresh(&step, &rt).await?;
                let issued = self.http.now();
                match self.pair_from(&a, device, &rt, issued).filter(|_| a.ok()) {
                    Some(next) => {
                        current = next;
                        let v = self.whoami(&step, first).await?;
                        self.obs.set(B::OldAccessDropped, v);
                    }
                    None => self
                        .obs
                        .set(B::OldAccessDropped, format!("n/a (refresh {})", a.outcome())),
                }
            }
        } else {
            self.obs.set(B::ReuseAfterUse, "n/a (no rotation)");
            self.obs.set(B::OldAccessDropped, "n/a (no rotation)");
        }
        Ok(Some(current))
    }

    /// Steps 13–14: waits out the newest access token (within `--max-wait`), presents it, and
    /// refreshes.
    async fn expiry(&mut self, device: &str, current: Pair) -> Result<Pair, AuditError> {
        let Some(lifetime) = current.lifetime else {
            let why = "no expires_in_ms announced";
            self.obs.set(B::ExpiredAccess, skipped(why));
            if !self.obs.0.contains_key(&B::RefreshAfterExpiry) {
                self.obs.set(B::RefreshAfterExpiry, skipped(why));
            }
            return Ok(current);
        };
        if lifetime > self.opts.max_wait {
            let why = format!(
                "lifetime {} > --max-wait {}",
                lifetime_value(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX)),
                rotary_server::format_duration(self.opts.max_wait)
            );
            self.obs.set(B::ExpiredAccess, skipped(&why));
            if !self.obs.0.contains_key(&B::RefreshAfterExpiry) {
                self.obs.set(B::RefreshAfterExpiry, skipped(&why));
            }
            return Ok(current);
        }
        let step = self.step("expiry");
        let wait = (current.issued + lifetime + EXPIRY_MARGIN).saturating_sub(self.http.now());
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            "waiting for the access token to expire"
        );
        self.http.wait(wait).await;
        let a = self
            .get(&step, "/_matrix/client/v3/account/whoami", Some(&current.at))
            .await?;
        self.obs.set(B::ExpiredAccess, a.outcome());
        if let (Some(rt), Some(_)) = (current.rt.clone(), &self.refresh_path) {
            let step = self.step("refresh after expiry");
            let a = self.refresh(&step, &rt).await?;
            self.obs.set(B::RefreshAfterExpiry, a.outcome());
            let issued = self.http.now();
            if let Some(next) = self.pair_from(&a, device, &rt, issued).filter(|_| a.ok()) {
                return Ok(next);
            }
        } else if !self.obs.0.contains_key(&B::RefreshAfterExpiry) {
            self.obs.set(B::RefreshAfterExpiry, skipped("no refresh token"));
        }
        Ok(current)
    }

    /// Step 3: log in (or register) with `refresh_token: true`; answers user, password and the
    /// answer.
    async fn log_in(&mut self) -> Result<(String, String, Answer), AuditError> {
        match self.opts.credentials.clone() {
            Credentials::Login { user, password } => {
                let a = self.login(&user, &password).await?;
                Ok((user, password, a))
            }
            Credentials::Register => {
                let step = self.step("register");
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let user = format!("rotary-audit-{}-{}", nanos / 1_000_000, std::process::id());
                let password = format!("rotary-{:x}", nanos ^ u128::from(std::process::id()) << 64);
                let mut body = json!({
                    "username": user,
                    "password": password,
                    "refresh_token": true,
                    "initial_device_display_name": "rotary audit",
                    "auth": {"type": "m.login.dummy"},
                });
                let mut a = self
                    .post(&step, "/_matrix/client/v3/register", None, &body)
                    .await?;
                if a.status == 401
                    && let Some(session) = a.str("session").map(str::to_owned)
                {
                    body["auth"] = json!({"type": "m.login.dummy", "session": session});
                    a = self
                        .post(&step, "/_matrix/client/v3/register", None, &body)
                        .await?;
                }
                if a.status == 403 || a.errcode() == Some("M_FORBIDDEN") {
                    return Err(AuditError::RegistrationClosed {
                        url: self.http.url().to_owned(),
                        detail: a.describe(),
                    });
                }
                if a.status == 401 {
                    return Err(AuditError::Unexpected {
                        step,
                        answer: format!(
                            "{}: the server asks for interactive auth beyond m.login.dummy; use --user and --password",
                            a.describe()
                        ),
                    });
                }
                if !a.ok() {
                    return Err(AuditError::Unexpected {
                        step,
                        answer: a.describe(),
                    });
                }
                Ok((user, password, a))
            }
        }
    }

    async fn login(&self, user: &str, password: &str) -> Result<Answer, AuditError> {
        let step = self.step("login");
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "refresh_token": true,
            "initial_device_display_name": "rotary audit",
        });
        let a = self.post(&step, "/_matrix/client/v3/login", None, &body).await?;
        if a.status == 403 || a.errcode() == Some("M_FORBIDDEN") {
            return Err(AuditError::WrongPassword {
                user: user.to_owned(),
            });
        }
        if !a.ok() {
            return Err(AuditError::Unexpected {
                step,
                answer: a.describe(),
            });
        }
        Ok(a)
    }

    /// Step 16: a second device, `/logout/all`, then that device's refresh token.
    async fn logout_all(&mut self, user: &str, password: &str) -> Result<(), AuditError> {
        let a = self.login(user, password).await?;
        let (Some(at), Some(device)) = (a.str("access_token"), a.str("device_id")) else {
            return Err(AuditError::Unexpected {
                step: "login".to_owned(),
                answer: "200 without access_token or device_id".to_owned(),
            });
        };
        let rt = a.str("refresh_token").map(str::to_owned);
        self.devices.add(device, at, rt.as_deref());
        let step = self.step("logout/all");
        let a = self
            .post(&step, "/_matrix/client/v3/logout/all", Some(at), &json!({}))
            .await?;
        if !a.ok() {
            return Err(AuditError::Unexpected {
                step,
                answer: format!("{} for /logout/all", a.describe()),
            });
        }
        self.devices.logged_out(None);
        let step = self.step("after logout/all");
        let v = match (&rt, &self.refresh_path) {
            (Some(rt), Some(_)) => self.refresh(&step, rt).await?.outcome(),
            _ => format!(
                "{} (access token)",
                self.get(&step, "/_matrix/client/v3/account/whoami", Some(at))
                    .await?
                    .outcome()
            ),
        };
        self.obs.set(B::LogoutAllRefresh, v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_round_to_100_ms() {
        assert_eq!(lifetime_value(2995), "3s");
        assert_eq!(lifetime_value(299_995), "5m");
        assert_eq!(lifetime_value(1500), "1s 500ms");
        assert_eq!(parse_lifetime("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_lifetime("absent"), None);
    }

    #[test]
    fn newest_version_prefers_v_over_r() {
        let body = json!({"versions": ["r0.6.1", "v1.1", "v1.12", "v1.3"]});
        assert_eq!(newest_version(&body).as_deref(), Some("v1.12"));
        assert_eq!(newest_version(&json!({"versions": "x"})), None);
        assert_eq!(newest_version(&Value::Null), None);
    }

    #[test]
    fn token_prefixes() {
        assert_eq!(prefix("syt_YWxpY2U_abc_123"), "syt_");
        assert_eq!(prefix("opaque"), "?");
    }
}
