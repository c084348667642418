//! Why an audit could not run: one variant per failure a person can act on, each a one-line
//! message that names the step.

/// An audit that could not run (the CLI exits 2 with the message).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `--homeserver` is not a base URL.
    #[error("--homeserver {url:?}: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No TCP connection (closed port, unknown host, timeout).
    #[error("step {step}: cannot reach {url}: {reason}")]
    Unreachable {
        /// The probe step.
        step: String,
        /// The homeserver.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The TLS handshake failed (a plain-HTTP port behind `https://`, a bad certificate).
    #[error("step {step}: TLS error talking to {url}: {reason}")]
    Tls {
        /// The probe step.
        step: String,
        /// The homeserver.
        url: String,
        /// The TLS error.
        reason: String,
    },
    /// The server answered, but not as a Matrix homeserver (an HTML page, a 404 on /versions).
    #[error("step {step}: {url} is not a Matrix homeserver: {detail}")]
    NotMatrix {
        /// The probe step.
        step: String,
        /// The homeserver.
        url: String,
        /// What it answered.
        detail: String,
    },
    /// The login was refused with 403 `M_FORBIDDEN`.
    #[error("step login: wrong user or password for {user:?} (403 M_FORBIDDEN)")]
    WrongPassword {
        /// The user given.
        user: String,
    },
    /// `--register` on a server that refuses registration.
    #[error("step register: registration is closed on {url} ({detail}); use --user and --password")]
    RegistrationClosed {
        /// The homeserver.
        url: String,
        /// Its answer.
        detail: String,
    },
    /// Still rate-limited after the bounded retries.
    #[error(
        "step {step}: rate limited (429 M_LIMIT_EXCEEDED, retry_after_ms {retry_after_ms}) after {attempts} attempts"
    )]
    RateLimited {
        /// The probe step.
        step: String,
        /// The last `retry_after_ms` the server asked for.
        retry_after_ms: u64,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// An answer the probe cannot continue from.
    #[error("step {step}: unexpected answer {answer}")]
    Unexpected {
        /// The probe step.
        step: String,
        /// Status, errcode and message.
        answer: String,
    },
    /// Ctrl-C (every device was still logged out).
    #[error("interrupted at step {step}; the audit's devices were logged out")]
    Interrupted {
        /// The step that was running.
        step: String,
    },
    /// The embedded mock for the predictions did not start.
    #[error("the embedded mock homeserver for the predictions did not start: {0}")]
    Mock(String),
}

impl AuditError {
    /// The step the error names, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            AuditError::Unreachable { step, .. }
            | AuditError::Tls { step, .. }
            | AuditError::NotMatrix { step, .. }
            | AuditError::RateLimited { step, .. }
            | AuditError::Unexpected { step, .. }
            | AuditError::Interrupted { step } => Some(step),
            AuditError::WrongPassword { .. } => Some("login"),
            AuditError::RegistrationClosed { .. } => Some("register"),
            AuditError::BadUrl { .. } | AuditError::Mock(_) => None,
        }
    }
}
