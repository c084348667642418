//! The session file in `ROTARY_STATE_DIR`: written on every change the SDK reports (login,
//! register, restore, each refresh via the save-session callback) so that `resume` in a new
//! process after a SIGKILL restores the newest tokens.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What is kept on disk: enough to rebuild a `MatrixSession` or an `OAuthSession`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// `"legacy"` or `"oauth"`.
    pub auth: String,
    /// The full user id.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, if any.
    pub refresh_token: Option<String>,
    /// The OAuth 2.0 client id (OAuth sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The session file of one state dir.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `dir`.
    pub fn new(dir: &Path) -> Store {
        Store {
            path: dir.join("matrix-rust-sdk-session.json"),
        }
    }

    /// Writes `session` atomically (a temporary file renamed over the old one).
    pub fn save(&self, session: &Persisted) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(session).context("serializing the session")?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), self.path.display()))
    }

    /// The persisted session, if there is one.
    pub fn load(&self) -> anyhow::Result<Option<Persisted>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", self.path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// Forgets the persisted session (after a logout).
    pub fn delete(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("rust-sdk-driver-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let store = Store::new(&dir);
        assert_eq!(store.load()?, None);
        let s = Persisted {
            auth: "oauth".into(),
            user_id: "@a:localhost".into(),
            device_id: "D".into(),
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            client_id: Some("c".into()),
        };
        store.save(&s)?;
        assert_eq!(store.load()?, Some(s));
        store.delete()?;
        assert_eq!(store.load()?, None);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
