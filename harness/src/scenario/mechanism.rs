//! The auth axis: which refresh mechanisms a scenario's requirement holds for (`auth = ["legacy",
//! "oauth"]`), and how one scenario file becomes one case per mechanism.
//!
//! A file states its mechanisms (default: `legacy` alone). Each mechanism is a case with its own
//! id and verdict: a file with one mechanism keeps its id; a file with both keeps the bare id for
//! the legacy case and names the OAuth case `ID@oauth`. The steps and checks are written
//! mechanism-neutrally and adapted per case here:
//!
//! - "the login": a password `login` (legacy) becomes, under OAuth, the minted OAuth session a
//!   `restore` with `auth = "oauth"` hands to the driver (no browser login is needed); a legacy
//!   `restore` becomes an OAuth one.
//! - "a refresh": a `/refresh` request or an `oauth_token` request with
//!   `grant_type=refresh_token` ([`rotary_judge::refresh`]); fault rules and `request_count` name
//!   it `refresh` either way.
//! - the server: `[server] profile` is the legacy case's profile; `oauth_profile` the OAuth case's
//!   (default `mas` when the legacy profile is `mas`, else `oauth-spec`). Every other knob applies
//!   to both.
//! - `needs`: `legacy-refresh` becomes `oauth-refresh`; a converted `login` needs `restore`.
//!
//! What cannot be said under OAuth (registration, a login without a refresh token or with a
//! device id, `login_requested_refresh`, counting `login` requests) is refused for an OAuth case,
//! naming the entry.

use super::parse::ScenarioFile;
use crate::steps::Auth;

/// The separator between a file's id and the mechanism of a case that is not the file's only one.
pub const CASE_SEPARATOR: char = '@';

/// The server table key naming the OAuth case's profile.
pub const OAUTH_PROFILE: &str = "oauth_profile";

/// The id of a file's case under `auth`, given all the file's mechanisms.
///
/// ```
/// use rotary_harness::scenario::mechanism::case_id;
/// use rotary_harness::Auth;
/// assert_eq!(case_id("expiry.preemptive", Auth::Legacy, &[Auth::Legacy, Auth::Oauth]), "expiry.preemptive");
/// assert_eq!(case_id("expiry.preemptive", Auth::Oauth, &[Auth::Legacy, Auth::Oauth]), "expiry.preemptive@oauth");
/// assert_eq!(case_id("oauth.token-503", Auth::Oauth, &[Auth::Oauth]), "oauth.token-503");
/// ```
pub fn case_id(file_id: &str, auth: Auth, mechanisms: &[Auth]) -> String {
    if auth == Auth::Legacy || mechanisms.len() <= 1 {
        file_id.to_owned()
    } else {
        format!("{file_id}{CASE_SEPARATOR}{}", auth.name())
    }
}

/// The capability a mechanism's refresh needs.
pub fn refresh_capability(auth: Auth) -> &'static str {
    match auth {
        Auth::Legacy => "legacy-refresh",
        Auth::Oauth => "oauth-refresh",
    }
}

/// A mistake adapting a file to a mechanism: where and what.
pub(super) struct AdaptError {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> AdaptError {
    AdaptError {
        field: field.into(),
        message: message.into(),
    }
}

fn str_of<'a>(t: &'a toml::Table, key: &str) -> Option<&'a str> {
    t.get(key).and_then(toml::Value::as_str)
}

/// The file as its case under `auth` sees it: server profile chosen, steps and `needs` adapted.
pub(super) fn adapt(raw: &ScenarioFile, auth: Auth) -> Result<ScenarioFile, AdaptError> {
    let mut out = raw.clone();
    let oauth_profile = out.server.remove(OAUTH_PROFILE);
    if auth == Auth::Legacy {
        return Ok(out);
    }
    let profile = match oauth_profile {
        Some(p) => p,
        None => {
            let legacy = str_of(&raw.server, "profile").unwrap_or("synapse");
            toml::Value::String(if legacy == "mas" { "mas" } else { "oauth-spec" }.to_owned())
        }
    };
    out.server.insert("profile".to_owned(), profile);
    let mut converted_login = false;
    let mut login_left = false;
    for (i, step) in out.step.iter_mut().enumerate() {
        let field = format!("step {} ({})", i + 1, str_of(step, "do").unwrap_or(""));
        let explicit = str_of(step, "auth").map(str::to_owned);
        match str_of(step, "do") {
            Some("register") => {
                return Err(refuse(field, "registers a user, which the OAuth case cannot say"));
            }
            Some("login") if explicit.is_none() => {
                if step.get("refresh_token").and_then(toml::Value::as_bool) == Some(false) {
                    return Err(refuse(field, "a login without a refresh token has no OAuth case"));
                }
                if step.contains_key("device_id") {
                    return Err(refuse(field, "a login with a device id has no OAuth case"));
                }
                let user = step.get("user").cloned();
                step.clear();
                step.insert("do".to_owned(), "restore".into());
                if let Some(u) = user {
                    step.insert("user".to_owned(), u);
                }
                step.insert("auth".to_owned(), "oauth".into());
                converted_login = true;
            }
            Some("login") => login_left = true,
            Some("restore") if explicit.is_none() => {
                if step.get("refresh_token").and_then(toml::Value::as_bool) == Some(false) {
                    return Err(refuse(
                        field,
                        "a session without a refresh token has no OAuth case",
                    ));
                }
                step.insert("auth".to_owned(), "oauth".into());
            }
            _ => {}
        }
    }
    for (i, check) in out.expect.iter().enumerate() {
        let name = str_of(check, "check").unwrap_or("");
        let field = format!("expect {} ({name})", i + 1);
        if name == "login_requested_refresh" {
            return Err(refuse(
                field,
                "judges the password login, which the OAuth case has not",
            ));
        }
        if name == "request_count" && matches!(str_of(check, "endpoint"), Some("login" | "register")) {
            return Err(refuse(
                field,
                "counts password logins, which the OAuth case has not",
            ));
        }
    }
    let mut needs = Vec::new();
    for n in &raw.needs {
        let n = match n.as_str() {
            "legacy-refresh" => refresh_capability(Auth::Oauth),
            "login" if converted_login && !login_left => continue,
            other => other,
        };
        if !needs.iter().any(|have| have == n) {
            needs.push(n.to_owned());
        }
    }
    if converted_login && !needs.iter().any(|n| n == "restore") {
        needs.insert(0, "restore".to_owned());
    }
    if !needs.iter().any(|n| n == refresh_capability(Auth::Oauth)) {
        needs.push(refresh_capability(Auth::Oauth).to_owned());
    }
    out.needs = needs;
    Ok(out)
}
