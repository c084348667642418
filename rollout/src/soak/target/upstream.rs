//! `--upstream URL`: the fleet goes through Rotary's proxy in front of a real homeserver — the
//! proxy's faults, its trace feed, users registered on (or listed for) the real server.

use super::{BoxFuture, SoakTarget, SubscriptionFeed, TargetError, TraceFeed};
use crate::proxy::{DirectAnswer, Proxy, RunningProxy};
use crate::soak::fleet::Account;
use futures_util::StreamExt;
use hyper::Method;
use rotary_server::FaultRule;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Registrations (and logins for tidying up) in flight at once.
const CONCURRENCY: usize = 8;
/// How often a rate-limited request is tried again, at most.
const MAX_RATE_LIMITED: u32 = 20;
/// The longest wait a `retry_after_ms` is honoured for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How to put the soak in front of a real homeserver.
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// The homeserver (`https://staging.example.org`).
    pub url: String,
    /// Where the proxy listens (default: a free loopback port).
    pub listen: SocketAddr,
    /// Accounts to use instead of registering new ones: a file of `user password` lines.
    pub accounts_file: Option<PathBuf>,
    /// What registered user names carry to be unique per run (default: time and process id).
    pub tag: String,
}

impl UpstreamOptions {
    /// Defaults for `url`: a loopback port, registered users with a per-run tag.
    ///
    /// ```
    /// let o = rotary_rollout::soak::target::UpstreamOptions::new("http://127.0.0.1:8008");
    /// assert!(o.listen.ip().is_loopback());
    /// ```
    pub fn new(url: impl Into<String>) -> UpstreamOptions {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        UpstreamOptions {
            url: url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts_file: None,
            tag: format!("{:x}{:x}", secs % 0x100_0000, std::process::id() % 0x1000),
        }
    }
}

/// A target in front of the homeserver at `url`, with the default [`UpstreamOptions`].
pub async fn connect(url: &str) -> Result<Box<dyn SoakTarget>, TargetError> {
    Ok(Box::new(UpstreamTarget::start(UpstreamOptions::new(url)).await?))
}

/// The proxy in front of a real homeserver, as a soak target.
pub struct UpstreamTarget {
    proxy: RunningProxy,
    upstream: String,
    tag: String,
    /// Accounts from `--accounts`, handed out in order.
    listed: Option<Vec<Account>>,
    next_listed: AtomicUsize,
    /// Passwords by localpart (for revocations), and the accounts this soak registered.
    passwords: Mutex<HashMap<String, String>>,
    registered: Mutex<Vec<Account>>,
}

impl std::fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTarget")
            .field("proxy", &self.proxy.url())
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl UpstreamTarget {
    /// Starts the proxy in front of `opts.url` and checks that a Matrix homeserver answers there.
    pub async fn start(opts: UpstreamOptions) -> Result<UpstreamTarget, TargetError> {
        let listed = match &opts.accounts_file {
            Some(path) => Some(read_accounts(path)?),
            None => None,
        };
        let proxy = Proxy::builder(&opts.url)
            .map_err(|e| TargetError::Start(e.to_string()))?
            .listen(opts.listen)
            .start()
            .await
            .map_err(|e| TargetError::Start(e.to_string()))?;
        let versions = proxy
            .call_upstream(Method::GET, "/_matrix/client/versions", None, None)
            .await
            .map_err(|e| TargetError::Start(e.to_string()))?;
        if versions.status != 200 || !versions.body["versions"].is_array() {
            return Err(TargetError::Start(format!(
                "{} is not a Matrix homeserver: GET /_matrix/client/versions answered {} {}",
                opts.url,
                versions.status,
                if versions.body.is_null() {
                    "(not JSON)".to_owned()
                } else {
                    excerpt(&versions.body)
                }
            )));
        }
        Ok(UpstreamTarget {
            proxy,
            upstream: opts.url,
            tag: opts.tag,
            listed,
            next_listed: AtomicUsize::new(0),
            passwords: Mutex::new(HashMap::new()),
            registered: Mutex::new(Vec::new()),
        })
    }

    /// The proxy the fleet goes through (its violations, metrics, trace).
    pub fn proxy(&self) -> &RunningProxy {
        &self.proxy
    }

    fn remember(&self, a: &Account) {
        self.passwords
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(localpart(&a.user).to_owned(), a.password.clone());
    }

    /// Sends a request directly to the upstream, waiting out 429s (bounded).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<DirectAnswer, TargetError> {
        for _ in 0..MAX_RATE_LIMITED {
            let a = self
                .proxy
                .call_upstream(method.clone(), path, token, body)
                .await
                .map_err(|e| TargetError::Refused(e.to_string()))?;
            if a.status != 429 {
                return Ok(a);
            }
            let wait = a.body["retry_after_ms"]
                .as_u64()
                .map_or(Duration::from_secs(1), Duration::from_millis)
                .min(MAX_RETRY_AFTER);
            tokio::time::sleep(wait).await;
        }
        Err(TargetError::Refused(format!(
            "{method} {path}: still rate-limited after {MAX_RATE_LIMITED} tries"
        )))
    }

    async fn register(&self, account: Account) -> Result<Account, TargetError> {
        let mut body = json!({
            "username": account.user,
            "password": account.password,
            "auth": {"type": "m.login.dummy"},
            "inhibit_login": true,
        });
        for _ in 0..2 {
            let a = self
                .call(Method::POST, "/_matrix/client/v3/register", None, Some(&body))
                .await?;
            match (a.status, a.body["errcode"].as_str()) {
                (200, _) => return Ok(account),
                // Interactive auth that wants its session back.
                (401, _) if a.body["session"].is_string() => {
                    body["auth"]["session"] = a.body["session"].clone();
                }
                (_, Some("M_FORBIDDEN")) => {
                    return Err(TargetError::Refused(format!(
                        "registration is closed on {} ({}): list existing accounts with --accounts FILE",
                        self.upstream,
                        excerpt(&a.body)
                    )));
                }
                (status, _) => {
                    return Err(TargetError::Refused(format!(
                        "registering {} on {} failed: {status} {}",
                        account.user,
                        self.upstream,
                        excerpt(&a.body)
                    )));
                }
            }
        }
        Err(TargetError::Refused(format!(
            "registering {} on {}: the server asks for interactive auth beyond m.login.dummy; list existing accounts with --accounts FILE",
            account.user, self.upstream
        )))
    }

    /// A side session of `user` (a direct login), for deleting a device or logging out.
    async fn side_login(&self, user: &str, password: &str) -> Result<String, TargetError> {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": "rotary soak (tidying up)",
        });
        let a = self
            .call(Method::POST, "/_matrix/client/v3/login", None, Some(&body))
            .await?;
        match a.body["access_token"].as_str() {
            Some(t) if a.status == 200 => Ok(t.to_owned()),
            _ => Err(TargetError::Refused(format!(
                "logging in {user} on {} failed: {} {}",
                self.upstream,
                a.status,
                excerpt(&a.body)
            ))),
        }
    }

    async fn delete_device(&self, user_id: &str, device_id: &str) -> Result<(), TargetError> {
        let local = localpart(user_id).to_owned();
        let password = self
            .passwords
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&local)
            .cloned()
            .ok_or_else(|| TargetError::Refused(format!("{user_id} is not one of the soak's accounts")))?;
        let token = self.side_login(&local, &password).await?;
        let path = format!("/_matrix/client/v3/devices/{}", path_segment(device_id));
        let mut body = json!({});
        let mut done = Err(TargetError::Refused(format!(
            "deleting {device_id} of {user_id}: the server kept asking for interactive auth"
        )));
        for _ in 0..2 {
            let a = self
                .call(Method::DELETE, &path, Some(&token), Some(&body))
                .await?;
            if a.status == 200 {
                done = Ok(());
                break;
            }
            if a.status == 401 && a.body["flows"].is_array() {
                body = json!({"auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": local},
                    "password": password,
                    "session": a.body["session"],
                }});
                continue;
            }
            done = Err(TargetError::Refused(format!(
                "deleting {device_id} of {user_id}: {} {}",
                a.status,
                excerpt(&a.body)
            )));
            break;
        }
        let _ = self
            .call(Method::POST, "/_matrix/client/v3/logout", Some(&token), None)
            .await;
        done
    }
}

impl SoakTarget for UpstreamTarget {
    fn describe(&self) -> String {
        format!(
            "Rotary's proxy at {} in front of {}",
            self.proxy.url(),
            self.upstream
        )
    }

    fn base_url(&self) -> String {
        self.proxy.url()
    }

    fn accounts<'a>(&'a self, prefix: &'a str, n: usize) -> BoxFuture<'a, Result<Vec<Account>, TargetError>> {
        Box::pin(async move {
            if let Some(listed) = &self.listed {
                let from = self.next_listed.fetch_add(n, Ordering::SeqCst);
                let Some(taken) = listed.get(from..from + n) else {
                    return Err(TargetError::Refused(format!(
                        "--accounts lists {} accounts; the soak needs {} (sessions and drivers together)",
                        listed.len(),
                        from + n
                    )));
                };
                taken.iter().for_each(|a| self.remember(a));
                return Ok(taken.to_vec());
            }
            let wanted = (0..n).map(|i| {
                Account::new(
                    format!("rotary-{prefix}-{}-{i}", self.tag),
                    format!("rotary-pw-{}-{i}-{prefix}", self.tag),
                )
            });
            let made: Vec<Result<Account, TargetError>> = futures_util::stream::iter(wanted)
                .map(|a| self.register(a))
                .buffered(CONCURRENCY)
                .collect()
                .await;
            let made = made.into_iter().collect::<Result<Vec<_>, _>>()?;
            for a in &made {
                self.remember(a);
            }
            self.registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(made.iter().cloned());
            Ok(made)
        })
    }

    fn add_faults(&self, rules: &[FaultRule]) -> Result<(), TargetError> {
        for r in rules {
            self.proxy
                .add_fault(r.clone())
                .map_err(|e| TargetError::Refused(format!("fault rule refused: {e}")))?;
        }
        Ok(())
    }

    fn clear_faults(&self) -> Result<(), TargetError> {
        self.proxy.clear_faults();
        Ok(())
    }

    fn advance_clock(&self, _by: Duration) -> Result<(), TargetError> {
        Err(TargetError::Unsupported("move a real homeserver's clock"))
    }

    fn revoke<'a>(&'a self, user_id: &'a str, device_id: &'a str) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.delete_device(user_id, device_id).await?;
            self.proxy.session_revoked(user_id, device_id);
            Ok(())
        })
    }

    fn subscribe(&self) -> Box<dyn TraceFeed> {
        Box::new(SubscriptionFeed(self.proxy.subscribe_trace()))
    }

    /// Logs out every device of the accounts this soak registered (`logout/all`), so that a soak
    /// leaves no live session on the real server. Accounts from `--accounts` are left alone: they
    /// may have sessions of their own.
    fn cleanup(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async move {
            let accounts = std::mem::take(&mut *self.registered.lock().unwrap_or_else(|p| p.into_inner()));
            let failures: Vec<TargetError> = futures_util::stream::iter(accounts)
                .map(|a| async move {
                    let token = self.side_login(&a.user, &a.password).await?;
                    let r = self
                        .call(Method::POST, "/_matrix/client/v3/logout/all", Some(&token), None)
                        .await?;
                    if r.status == 200 {
                        Ok(())
                    } else {
                        Err(TargetError::Refused(format!(
                            "logout/all of {}: {} {}",
                            a.user,
                            r.status,
                            excerpt(&r.body)
                        )))
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .filter_map(|r| std::future::ready(r.err()))
                .collect()
                .await;
            match failures.into_iter().next() {
                None => Ok(()),
                Some(first) => Err(first),
            }
        })
    }
}

/// Reads `user password` lines (`#` comments and blank lines skipped).
fn read_accounts(path: &Path) -> Result<Vec<Account>, TargetError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TargetError::Start(format!("--accounts {}: {e}", path.display())))?;
    parse_accounts(&text).map_err(|e| TargetError::Start(format!("--accounts {}: {e}", path.display())))
}

fn parse_accounts(text: &str) -> Result<Vec<Account>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((user, password)) if !password.trim().is_empty() => {
                out.push(Account::new(user, password.trim()));
            }
            _ => return Err(format!("line {}: expected `user password`", n + 1)),
        }
    }
    if out.is_empty() {
        return Err("no account listed (lines of `user password`)".to_owned());
    }
    Ok(out)
}

/// `@alice:example.org` → `alice`; a bare localpart stays as it is.
fn localpart(user: &str) -> &str {
    let user = user.strip_prefix('@').unwrap_or(user);
    user.split_once(':').map_or(user, |(l, _)| l)
}

/// A device id as one path segment (percent-encoded).
fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The errcode and error of a Matrix error body, or the body, shortened.
fn excerpt(body: &serde_json::Value) -> String {
    match (body["errcode"].as_str(), body["error"].as_str()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_owned(),
        _ => body.to_string().chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_files_are_user_password_lines() {
        let a = parse_accounts("# staging users\nalice s3cret pass\n\n@bob:example.org hunter2\n")
            .expect("parses");
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].user.as_str(), a[0].password.as_str()),
            ("alice", "s3cret pass")
        );
        assert_eq!(localpart(&a[1].user), "bob");
        assert!(parse_accounts("alice\n").unwrap_err().contains("line 1"));
        assert!(parse_accounts("# nothing\n").is_err());
    }

    #[test]
    fn device_ids_are_one_segment() {
        assert_eq!(path_segment("AB/C D"), "AB%2FC%20D");
        assert_eq!(localpart("alice"), "alice");
    }
}
