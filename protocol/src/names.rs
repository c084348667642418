//! The protocol's names: its version, the capabilities a driver may list, the error kinds it may
//! report, and the environment the harness starts it with.
//!
//! ```
//! use rotary_protocol::{CAPABILITIES, ErrorKind};
//! assert!(CAPABILITIES.contains(&"legacy-refresh"));
//! assert_eq!(ErrorKind::SoftLoggedOut.as_str(), "soft_logged_out");
//! assert_eq!("network".parse::<ErrorKind>(), Ok(ErrorKind::Network));
//! ```

use std::path::PathBuf;

/// The protocol version this crate speaks (`initialize`'s `protocol` param).
pub const PROTOCOL_VERSION: u64 = 1;

/// The methods a driver may implement beyond `initialize`, `shutdown` and `session`.
pub const METHODS: &[&str] = &[
    "login", "register", "restore", "resume", "whoami", "sync", "send", "parallel", "logout",
];

/// The features a driver may claim: which refresh mechanisms (and logins) its client has.
pub const FEATURES: &[&str] = &["legacy-refresh", "oauth-refresh", "oauth-login"];

/// Every capability `initialize` may list and a scenario's `needs` may name: [`METHODS`], then
/// [`FEATURES`].
pub const CAPABILITIES: &[&str] = &[
    "login",
    "register",
    "restore",
    "resume",
    "whoami",
    "sync",
    "send",
    "parallel",
    "logout",
    "legacy-refresh",
    "oauth-refresh",
    "oauth-login",
];

/// The `data.kind` of a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The client considers the session ended (hard logout).
    LoggedOut,
    /// The session needs a new login, but the device and its data are kept.
    SoftLoggedOut,
    /// The server answered an error that the client passed up (give `status`, `errcode`).
    Http,
    /// Connection refused, reset, timed out, no or a cut-off response.
    Network,
    /// The client cannot do this.
    Unsupported,
    /// Anything else (say what in `message`).
    Other,
}

impl ErrorKind {
    /// Every kind, in the order of the protocol document.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::LoggedOut,
        ErrorKind::SoftLoggedOut,
        ErrorKind::Http,
        ErrorKind::Network,
        ErrorKind::Unsupported,
        ErrorKind::Other,
    ];

    /// The name on the wire (`logged_out`, `http`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::LoggedOut => "logged_out",
            ErrorKind::SoftLoggedOut => "soft_logged_out",
            ErrorKind::Http => "http",
            ErrorKind::Network => "network",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ErrorKind, String> {
        ErrorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown error kind {s:?}; known: {}", ERROR_KINDS.join(", ")))
    }
}

/// The error kinds a scenario may expect: the protocol's [`ErrorKind`]s, plus `method_not_found`,
/// which the harness records for a JSON-RPC `-32601` answer.
pub const ERROR_KINDS: &[&str] = &[
    "logged_out",
    "soft_logged_out",
    "http",
    "network",
    "unsupported",
    "other",
    "method_not_found",
];

/// The variable holding the homeserver's base URL.
pub const ENV_HOMESERVER_URL: &str = "ROTARY_HOMESERVER_URL";
/// The variable holding the scenario id.
pub const ENV_SCENARIO: &str = "ROTARY_SCENARIO";
/// The variable holding the state folder, which survives a `kill_driver`.
pub const ENV_STATE_DIR: &str = "ROTARY_STATE_DIR";

/// What the harness tells a driver through its environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverEnv {
    /// [`ENV_HOMESERVER_URL`].
    pub homeserver_url: Option<String>,
    /// [`ENV_SCENARIO`].
    pub scenario: Option<String>,
    /// [`ENV_STATE_DIR`].
    pub state_dir: Option<PathBuf>,
}

impl DriverEnv {
    /// Reads the `ROTARY_*` variables (empty ones count as unset).
    pub fn from_env() -> DriverEnv {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        DriverEnv {
            homeserver_url: var(ENV_HOMESERVER_URL),
            scenario: var(ENV_SCENARIO),
            state_dir: var(ENV_STATE_DIR).map(PathBuf::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_methods_then_features() {
        let joined: Vec<&str> = METHODS.iter().chain(FEATURES).copied().collect();
        assert_eq!(joined, CAPABILITIES);
    }

    #[test]
    fn error_kinds_round_trip() {
        for k in ErrorKind::ALL {
            assert_eq!(k.as_str().parse::<ErrorKind>(), Ok(k));
            assert!(ERROR_KINDS.contains(&k.as_str()));
        }
        assert!("nope".parse::<ErrorKind>().is_err());
    }
}
