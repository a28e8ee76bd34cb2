//! Backend errors: what went wrong, and whether trying again can help.

use std::sync::Arc;
use std::time::Duration;

/// What kind of failure a backend reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The key does not exist.
    NotFound,
    /// A batch's precondition did not hold (nothing was written).
    Conflict,
    /// The store cannot be reached or refused the request for now.
    Unavailable,
    /// Stored data failed a check.
    Corrupt,
    /// The backend refuses writes after a failure that left its durability uncertain (a failed
    /// fsync); it must be reopened.
    Poisoned,
    /// Another I/O failure.
    Io,
    /// A key that is not valid.
    InvalidKey,
    /// The request is not one this backend can serve.
    Unsupported,
}

/// Whether and when to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Trying again gives the same answer.
    Never,
    /// Try again with backoff.
    Backoff,
    /// Try again after at least this long (for example a server's Retry-After).
    After(Duration),
}

/// An error from a backend.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{backend}: {kind:?}: {message}")]
pub struct BackendError {
    /// Which backend.
    pub backend: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Whether a retry can help.
    pub retry: Retry,
    /// What happened, for people.
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// An error of `kind`, with the retry hint the kind usually has.
    pub fn new(backend: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        let retry = match kind {
            ErrorKind::Unavailable | ErrorKind::Io => Retry::Backoff,
            _ => Retry::Never,
        };
        BackendError {
            backend: backend.into(),
            kind,
            retry,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with another retry hint.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The same error with its cause attached.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        self.retry != Retry::Never
    }
}
