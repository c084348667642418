//! Saving the session in the state dir, so that a new process can resume it.
//!
//! The file is replaced atomically (write a temporary file, flush it to disk, rename it over the
//! old one): a crash leaves either the old or the new session, never half of one. The client writes
//! rotated tokens here *before* it uses them — a process killed right after a refresh must not be
//! left holding only a refresh token the server has already consumed.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::session::Expiry;

/// The file name inside the state dir.
pub const SESSION_FILE: &str = "session.json";

/// Why the session could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading, writing, renaming or deleting failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a session this client wrote.
    #[error("{path} is not a valid session file: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// The session as stored on disk. Instants do not survive a process, so the expiry is stored as a
/// wall-clock time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedSession {
    /// The full user id.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, if any.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token expires, in ms since the Unix epoch.
    #[serde(default)]
    pub expires_at_unix_ms: Option<u64>,
    /// The lifetime the server gave the access token (`expires_in_ms`), for the margin rule.
    #[serde(default)]
    pub lifetime_ms: Option<u64>,
    /// For an OAuth 2.0 session, what refreshing and revoking need; absent for a legacy session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<PersistedOAuth>,
}

/// The OAuth 2.0 side of a persisted session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedOAuth {
    /// The client id the tokens were issued to.
    pub client_id: String,
    /// The issuer, if known.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The token endpoint, if discovered (else it is discovered again).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The revocation endpoint, if discovered and the server has one.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl PersistedSession {
    /// Converts an in-memory expiry (an `Instant`) to wall-clock time.
    pub fn expiry_to_wall(expiry: Option<Expiry>) -> (Option<u64>, Option<u64>) {
        match expiry {
            None => (None, None),
            Some(e) => {
                let left = e.remaining(Instant::now());
                let at = unix_ms(SystemTime::now() + left);
                let lifetime = u64::try_from(e.lifetime.as_millis()).unwrap_or(u64::MAX);
                (Some(at), Some(lifetime))
            }
        }
    }

    /// The stored expiry as an `Instant` of this process.
    pub fn expiry(&self) -> Option<Expiry> {
        let at = self.expires_at_unix_ms?;
        let now_wall = unix_ms(SystemTime::now());
        let now = Instant::now();
        let left = Duration::from_millis(at.saturating_sub(now_wall));
        let lifetime = Duration::from_millis(self.lifetime_ms.unwrap_or(at.saturating_sub(now_wall)));
        Some(Expiry {
            at: now + left,
            lifetime,
        })
    }
}

/// The session file in a state dir.
#[derive(Clone, Debug)]
pub struct SessionStore {
    dir: PathBuf,
}

/// Makes temporary file names unique within the process (concurrent writers never share one).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl SessionStore {
    /// The store in `dir` (which must exist).
    pub fn new(dir: impl Into<PathBuf>) -> SessionStore {
        SessionStore { dir: dir.into() }
    }

    /// The session file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(SESSION_FILE)
    }

    /// Replaces the stored session atomically.
    pub fn save(&self, session: &PersistedSession) -> Result<(), PersistError> {
        let path = self.path();
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{SESSION_FILE}.{}.{n}.tmp", std::process::id()));
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| PersistError::Io { action, path, source }
        };
        let bytes = serde_json::to_vec_pretty(session).map_err(|source| PersistError::Format {
            path: path.clone(),
            source,
        })?;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("writing", &tmp)(e));
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("renaming to", &path)(e));
        }
        // Make the rename itself durable. Best effort: not every platform can open a directory.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The stored session; `None` if there is none.
    pub fn load(&self) -> Result<Option<PersistedSession>, PersistError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PersistError::Io {
                    action: "reading",
                    path,
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| PersistError::Format { path, source })
    }

    /// Deletes the stored session (no error if there is none).
    pub fn delete(&self) -> Result<(), PersistError> {
        let path = self.path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PersistError::Io {
                action: "deleting",
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PersistedSession {
        PersistedSession {
            user_id: "@alice:localhost".into(),
            device_id: "DEV".into(),
            access_token: "syt_a".into(),
            refresh_token: Some("syr_a".into()),
            expires_at_unix_ms: None,
            lifetime_ms: None,
            oauth: None,
        }
    }

    #[test]
    fn round_trip_replace_delete() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        assert_eq!(store.load()?, None);
        store.save(&sample())?;
        assert_eq!(store.load()?, Some(sample()));

        let newer = PersistedSession {
            access_token: "syt_b".into(),
            refresh_token: None,
            ..sample()
        };
        store.save(&newer)?;
        assert_eq!(store.load()?, Some(newer));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, vec![std::ffi::OsString::from(SESSION_FILE)]);

        store.delete()?;
        assert_eq!(store.load()?, None);
        store.delete()?;
        Ok(())
    }

    #[test]
    fn oauth_sessions_round_trip_and_legacy_files_still_load() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        let oauth = PersistedSession {
            oauth: Some(PersistedOAuth {
                client_id: "01CLIENT".into(),
                issuer: Some("http://127.0.0.1:8008/".into()),
                token_endpoint: Some("http://127.0.0.1:8008/oauth2/token".into()),
                revocation_endpoint: None,
            }),
            ..sample()
        };
        store.save(&oauth)?;
        assert_eq!(store.load()?, Some(oauth));
        // A legacy session is written without the key, and a file without it loads as legacy.
        store.save(&sample())?;
        let text = std::fs::read_to_string(store.path())?;
        assert!(!text.contains("oauth"), "{text}");
        std::fs::write(
            store.path(),
            r#"{"user_id": "@a:b", "device_id": "D", "access_token": "t"}"#,
        )?;
        assert_eq!(store.load()?.and_then(|s| s.oauth), None);
        Ok(())
    }

    #[test]
    fn garbage_is_an_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        std::fs::write(store.path(), b"{not json")?;
        assert!(matches!(store.load(), Err(PersistError::Format { .. })));
        Ok(())
    }

    #[test]
    fn expiry_survives_the_trip_through_wall_time() {
        let expiry = Expiry {
            at: Instant::now() + Duration::from_secs(100),
            lifetime: Duration::from_secs(300),
        };
        let (at, lifetime) = PersistedSession::expiry_to_wall(Some(expiry));
        let back = PersistedSession {
            expires_at_unix_ms: at,
            lifetime_ms: lifetime,
            ..sample()
        }
        .expiry()
        .unwrap_or_else(|| panic!("an expiry"));
        assert_eq!(back.lifetime, Duration::from_secs(300));
        let left = back.remaining(Instant::now());
        assert!(
            left > Duration::from_secs(90) && left <= Duration::from_secs(100),
            "{left:?}"
        );
        assert_eq!(PersistedSession::expiry_to_wall(None), (None, None));
    }
}
