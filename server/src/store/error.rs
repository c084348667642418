//! Why the store refused: access, refresh, login and registration errors.

/// Why an access token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The server never issued it.
    #[error("unknown access token")]
    Unknown,
    /// It was revoked (logout, device deleted, a refresh that revokes the old token, or its
    /// generation dropped).
    #[error("revoked access token")]
    Revoked,
    /// Its lifetime is over.
    #[error("expired access token")]
    Expired,
}

/// Why a refresh was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The string does not have the shape or checksum of a refresh token.
    #[error("malformed refresh token")]
    Malformed,
    /// Never issued, or deleted (logout, device deletion, dropped generation).
    #[error("unknown refresh token")]
    Unknown,
    /// Already exchanged and its successor was used (or, single-use, exchanged at all).
    #[error("refresh token already used")]
    Consumed,
    /// The refresh token's own lifetime is over.
    #[error("refresh token expired")]
    Expired,
    /// The session lifetime is over.
    #[error("session expired")]
    SessionExpired,
    /// An OAuth refresh token presented by a client other than the one it was issued to.
    #[error("refresh token was issued to another client")]
    WrongClient,
    /// An invalidated OAuth refresh token was presented again and, as the spec recommends
    /// (`oauth_replay_revokes_session`), the whole session was revoked.
    #[error("refresh token already used; the session was revoked")]
    ReplayRevokedSession,
}

/// Why a password login was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (the server does not say which).
    #[error("invalid username or password")]
    InvalidCredentials,
}

/// Why a user could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The user id is taken.
    #[error("user id already taken")]
    UserInUse,
    /// The localpart has characters Matrix forbids.
    #[error("invalid username: {0}")]
    InvalidUsername(String),
}
