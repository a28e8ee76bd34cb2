//! Errors of the mail store: which layer failed, with its cause.

use strata_backend_api::BackendError;
use strata_index::IndexError;
use thiserror::Error;

use crate::names::NameError;

/// A mail-store failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The user's index failed (or is locked by another process).
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The body store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A mailbox name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// No mailbox by that name.
    #[error("no mailbox named \"{0}\"")]
    NoSuchMailbox(String),
    /// A mailbox by that name already exists.
    #[error("a mailbox named \"{0}\" already exists")]
    MailboxExists(String),
    /// An operation the mailbox does not allow (deleting INBOX, deleting a parent...).
    #[error("{0}")]
    NotAllowed(String),
    /// DELETE of a mailbox that has children (RFC 9051's HASCHILDREN).
    #[error("\"{0}\" has child mailboxes; delete them first")]
    HasChildren(String),
    /// A migration between stores could not run or go on.
    #[error("migration: {0}")]
    Migration(String),
    /// An intent file (the copies an interrupted operation may leave) cannot be used.
    #[error("intent file {0}")]
    Intent(String),
    /// The shipped index in the store cannot be read or restored.
    #[error(transparent)]
    Chain(#[from] crate::ship::chain::ChainError),
    /// A change is committed here but not yet confirmed by the store.
    #[error(transparent)]
    NotShipped(#[from] crate::ship::NotShipped),
    /// The full-text index failed or is turned off (SEARCH never sees this: it reads bodies).
    #[error("full-text index: {0}")]
    FullText(String),
    /// The change would take the user past a quota limit.
    #[error(transparent)]
    OverQuota(#[from] crate::quota::OverQuota),
    /// The message has been expunged by another session.
    #[error("message was expunged")]
    Expunged,
    /// A message body in the store does not match what the index recorded.
    #[error("body of {key} is {actual} bytes, the index recorded {expected}")]
    BodyMismatch {
        /// The backend key.
        key: String,
        /// Bytes read.
        actual: u64,
        /// Bytes recorded at APPEND.
        expected: u64,
    },
}

/// A mail-store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
