//! Steps that start, carry and end a session on the client: `login`, `register`, `restore`,
//! `resume`, `session`, `logout` and `kill_driver`.

use super::context::{Broken, Ctx, StepAt};
use super::kind::{StepKind, Validation};
use crate::record::StepOutcome;
use rotary_judge::SessionView;
use rotary_judge::label::{UNKNOWN_ACCESS, UNKNOWN_REFRESH, label_number};
use rotary_server::MintRequest;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(super) fn alice() -> String {
    "alice".to_owned()
}
fn wonderland() -> String {
    "wonderland".to_owned()
}
fn yes() -> bool {
    true
}

/// Which authentication API a session uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// `/login` and `/refresh` (spec v1.3, MSC2918).
    #[default]
    Legacy,
    /// OAuth 2.0 (spec v1.15): the token endpoint from `auth_metadata`.
    Oauth,
}

impl Auth {
    /// The name used in the driver protocol's `Session.auth` and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Auth::Legacy => "legacy",
            Auth::Oauth => "oauth",
        }
    }
}

/// Driver `login` with a password (or, with `auth = "oauth"`, the headless authorization-code flow).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Localpart (default `alice`).
    #[serde(default = "alice")]
    pub user: String,
    /// Password (default `wonderland`).
    #[serde(default = "wonderland")]
    pub password: String,
    /// Ask for a refresh token (default true).
    #[serde(default = "yes")]
    pub refresh_token: bool,
    /// Re-use a device id.
    #[serde(default)]
    pub device_id: Option<String>,
    /// `oauth` logs in with the headless authorization-code flow (capability `oauth-login`).
    #[serde(default)]
    pub auth: Auth,
}

impl StepKind for Login {
    const SUMMARY: &'static str =
        "driver `login` with a password, or through OAuth 2.0 with `auth = \"oauth\"`";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("user", "localpart (default `alice`)"),
        ("password", "default `wonderland`"),
        ("refresh_token", "ask for a refresh token (default true)"),
        ("device_id", "re-use a device id"),
        ("auth", "`legacy` (default) or `oauth` (needs `oauth-login`)"),
    ];
    const METHOD: Option<&'static str> = Some("login");

    fn summary(&self) -> String {
        let mut s = format!("{}, refresh_token={}", self.user, self.refresh_token);
        if self.auth == Auth::Oauth {
            s.push_str(", auth=oauth");
        }
        if let Some(d) = &self.device_id {
            s.push_str(&format!(", device_id={d}"));
        }
        s
    }

    fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
        if self.auth == Auth::Oauth {
            v.need("oauth-login", "logs in through OAuth")?;
            v.need("oauth-refresh", "logs in through OAuth")?;
        }
        Ok(())
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        let mut p =
            json!({"user": self.user, "password": self.password, "refresh_token": self.refresh_token});
        if let Some(d) = &self.device_id {
            p["device_id"] = json!(d);
        }
        if self.auth == Auth::Oauth {
            p["auth"] = json!(self.auth.name());
        }
        ctx.call(at, "login", p).await
    }
}

/// Driver `register` (m.login.dummy).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The new localpart.
    pub user: String,
    /// Password (default `wonderland`).
    #[serde(default = "wonderland")]
    pub password: String,
    /// Ask for a refresh token (default true).
    #[serde(default = "yes")]
    pub refresh_token: bool,
}

impl StepKind for Register {
    const SUMMARY: &'static str = "driver `register` (m.login.dummy)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("user", "the new localpart (required)"),
        ("password", "default `wonderland`"),
        ("refresh_token", "ask for a refresh token (default true)"),
    ];
    const METHOD: Option<&'static str> = Some("register");

    fn summary(&self) -> String {
        format!("{}, refresh_token={}", self.user, self.refresh_token)
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        let p = json!({"user": self.user, "password": self.password, "refresh_token": self.refresh_token});
        ctx.call(at, "register", p).await
    }
}

/// The harness mints a session on the server and hands it to the driver's `restore`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// Whose session (default `alice`).
    #[serde(default = "alice")]
    pub user: String,
    /// Mint a refresh token too (default true).
    #[serde(default = "yes")]
    pub refresh_token: bool,
    /// Expire the access token on the server before handing it over.
    #[serde(default)]
    pub expired: bool,
    /// Leave `expires_in_ms` out of the session.
    #[serde(default)]
    pub omit_expiry: bool,
    /// `oauth` mints an OAuth 2.0 session (with a registered client) instead of a legacy one.
    #[serde(default)]
    pub auth: Auth,
}

impl StepKind for Restore {
    const SUMMARY: &'static str =
        "the harness mints a session on the server and hands it to the driver's `restore`";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("user", "whose session (default `alice`)"),
        ("refresh_token", "mint a refresh token too (default true)"),
        ("expired", "expire the access token on the server first"),
        ("omit_expiry", "leave `expires_in_ms` out of the session"),
        (
            "auth",
            "`legacy` (default) or `oauth` (an OAuth 2.0 session; needs `oauth-refresh`)",
        ),
    ];
    const METHOD: Option<&'static str> = Some("restore");

    fn summary(&self) -> String {
        format!(
            "{}, refresh_token={}, expired={}, omit_expiry={}",
            self.user, self.refresh_token, self.expired, self.omit_expiry
        )
    }

    fn validate(&self, v: &mut Validation<'_>) -> Result<(), String> {
        if self.auth == Auth::Oauth {
            v.need("oauth-refresh", "restores an OAuth session")?;
        }
        Ok(())
    }

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        let minted = match self.auth {
            Auth::Legacy => ctx
                .server
                .mint_session_with(&MintRequest {
                    user: self.user.clone(),
                    device_id: None,
                    refresh_token: self.refresh_token,
                })
                .map(|i| (i, None)),
            Auth::Oauth => ctx
                .server
                .mint_oauth_session(&self.user)
                .map(|o| (o.issued, Some(o.client_id))),
        };
        let (issued, client_id) =
            minted.map_err(|e| ctx.error(Some(at), format!("cannot mint a session: {e}")))?;
        if self.expired {
            let _ = ctx.server.expire_session(&self.user, &issued.device_id);
        }
        // What the client is told of the session: no expiry when it is omitted or the token was
        // expired first (an expiry the client never heard of is not a known one).
        let told_expiry = !self.omit_expiry && !self.expired;
        ctx.minted.push(rotary_judge::MintedSession {
            t_ms: ctx.server.trace_now_ms(),
            device_id: Some(issued.device_id.clone()),
            issued: rotary_judge::trace::IssuedLabels {
                access_token: Some(issued.access_label.clone()),
                refresh_token: issued.refresh_label.clone(),
                expires_in_ms: issued.expires_in_ms(ctx.server.now_ms()).filter(|_| told_expiry),
                expires_at_ms: issued
                    .valid_until_ms
                    .filter(|_| told_expiry)
                    .map(|v| ctx.server.to_trace_time(v)),
            },
        });
        let mut session = json!({
            "auth": self.auth.name(),
            "user_id": issued.user_id,
            "device_id": issued.device_id,
            "access_token": issued.access_token,
        });
        if let Some(rt) = &issued.refresh_token {
            session["refresh_token"] = json!(rt);
        }
        if let Some(c) = client_id {
            session["client_id"] = json!(c);
            session["issuer"] = json!(ctx.server.issuer());
        }
        if !self.omit_expiry
            && !self.expired
            && let Some(e) = issued.expires_in_ms(ctx.server.now_ms())
        {
            session["expires_in_ms"] = json!(e);
        }
        ctx.call(at, "restore", json!({"session": session})).await
    }
}

/// Driver `resume` (normally implied by `kill_driver`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {}

impl StepKind for Resume {
    const SUMMARY: &'static str = "driver `resume`: load the session persisted by an earlier process";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];
    const METHOD: Option<&'static str> = Some("resume");

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        ctx.call(at, "resume", json!({})).await
    }
}

/// Driver `session`: what the client holds now, beside the server's newest tokens.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Session {}

impl StepKind for Session {
    const SUMMARY: &'static str =
        "driver `session`: the tokens the client holds now (for the `session_*` checks)";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];
    const METHOD: Option<&'static str> = Some("session");

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        let out = ctx.call(at, "session", json!({})).await?;
        let mut view = SessionView::default();
        if let StepOutcome::Ok { result } = &out {
            let label = |k: &str, unknown: &str| {
                result
                    .get(k)
                    .and_then(Value::as_str)
                    .map(|t| ctx.server.label_of(t).unwrap_or_else(|| unknown.to_owned()))
            };
            view.access_token = label("access_token", UNKNOWN_ACCESS);
            view.refresh_token = label("refresh_token", UNKNOWN_REFRESH);
        }
        // The server's newest tokens of the client's device (found from the token it holds, else
        // the newest device of the scenario's users).
        let devices = ctx.server.sessions(None);
        let device = devices.iter().find(|d| {
            view.access_token
                .as_ref()
                .is_some_and(|a| d.live_access_tokens.contains(a))
                || view
                    .refresh_token
                    .as_ref()
                    .is_some_and(|r| d.live_refresh_tokens.contains(r))
        });
        if let Some(d) = device.or_else(|| devices.last()) {
            view.server_access_token = d
                .live_access_tokens
                .iter()
                .max_by_key(|l| label_number(l))
                .cloned();
            view.server_refresh_token = d.current_refresh_token.clone();
        }
        ctx.sessions.insert(at.index, view);
        Ok(out)
    }
}

/// Driver `logout`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Logout {}

impl StepKind for Logout {
    const SUMMARY: &'static str = "driver `logout`";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];
    const METHOD: Option<&'static str> = Some("logout");

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        ctx.call(at, "logout", json!({})).await
    }
}

/// SIGKILL the driver, start a new process and ask it to `resume`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KillDriver {}

impl StepKind for KillDriver {
    const SUMMARY: &'static str = "SIGKILL the driver (its whole process group), start a new process, `initialize` it and ask it to `resume`";
    const FIELDS: &'static [(&'static str, &'static str)] = &[];
    const METHOD: Option<&'static str> = Some("resume");

    async fn run(&self, ctx: &mut Ctx, at: StepAt) -> Result<StepOutcome, Broken> {
        if let Some(d) = ctx.driver.as_mut() {
            d.kill().await;
        }
        ctx.start_driver(Some(at)).await?;
        ctx.call(at, "resume", json!({})).await
    }
}
