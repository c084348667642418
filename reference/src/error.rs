//! What a client call can fail with, sorted into the kinds the driver protocol reports.

/// The protocol's error kinds (re-exported: one list for every Rust driver).
pub use rotary_protocol::ErrorKind;

/// Why a client call failed. `Clone` because one refresh outcome is shared by every request that
/// waited for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The session is over; `soft` says whether the device may log in again and keep its data.
    #[error("{}", if *soft { "soft logged out: log in again" } else { "logged out" })]
    LoggedOut {
        /// A soft logout.
        soft: bool,
    },
    /// The server answered with an error status.
    #[error("HTTP {status}{}: {message}", errcode.as_deref().map(|e| format!(" {e}")).unwrap_or_default())]
    Http {
        /// The HTTP status.
        status: u16,
        /// The Matrix `errcode`, if the body had one.
        errcode: Option<String>,
        /// The Matrix `error` text, or a description of the body.
        message: String,
    },
    /// No usable response: connection refused or reset, timeout, empty or cut-off reply.
    #[error("network error: {0}")]
    Network(String),
    /// The client cannot do this.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Anything else (no session yet, a malformed success response, …).
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// The protocol kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::LoggedOut { soft: true } => ErrorKind::SoftLoggedOut,
            ClientError::LoggedOut { soft: false } => ErrorKind::LoggedOut,
            ClientError::Http { .. } => ErrorKind::Http,
            ClientError::Network(_) => ErrorKind::Network,
            ClientError::Unsupported(_) => ErrorKind::Unsupported,
            ClientError::Other(_) => ErrorKind::Other,
        }
    }

    /// The HTTP status, for [`ClientError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Matrix errcode, for [`ClientError::Http`].
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Http { errcode, .. } => errcode.as_deref(),
            _ => None,
        }
    }

    /// Whether this error means the session is over.
    pub fn is_logout(&self) -> bool {
        matches!(self, ClientError::LoggedOut { .. })
    }

    /// A network error from reqwest, with its cause chain (reqwest's own message is terse).
    pub(crate) fn network(e: &reqwest::Error) -> ClientError {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        ClientError::Network(text)
    }
}

/// A client error as the protocol reports it: `-32000` with `data.kind`, and `status` and
/// `errcode` when the server answered.
impl From<ClientError> for rotary_protocol::RpcError {
    fn from(e: ClientError) -> rotary_protocol::RpcError {
        let mut r = rotary_protocol::RpcError::call(e.kind(), e.to_string());
        if let Some(status) = e.status() {
            r = r.status(status);
        }
        if let Some(errcode) = e.errcode() {
            r = r.errcode(errcode);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        assert_eq!(
            ClientError::LoggedOut { soft: true }.kind().as_str(),
            "soft_logged_out"
        );
        assert_eq!(
            ClientError::LoggedOut { soft: false }.kind().as_str(),
            "logged_out"
        );
        let e = ClientError::Http {
            status: 401,
            errcode: Some("M_UNKNOWN_TOKEN".into()),
            message: "Access token has expired".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Http);
        assert_eq!(
            e.to_string(),
            "HTTP 401 M_UNKNOWN_TOKEN: Access token has expired"
        );
        assert_eq!(e.status(), Some(401));
        assert_eq!(e.errcode(), Some("M_UNKNOWN_TOKEN"));
    }
}
