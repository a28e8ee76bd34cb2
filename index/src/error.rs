//! Errors of the index. Every error that comes from the file names the file.

use std::path::PathBuf;

use crate::model::{Guid, MailboxId, Uid};

/// Result with [`IndexError`].
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// What went wrong in the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file is damaged: it cannot be trusted, and nothing is answered from it.
    #[error("index file {path} is corrupt: {detail}")]
    Corrupt {
        /// The index file.
        path: PathBuf,
        /// What was found wrong.
        detail: String,
    },
    /// The file was written by a newer Strata than this one.
    #[error(
        "index file {path} has schema version {found}; this Strata reads versions up to {supported}"
    )]
    UnsupportedVersion {
        /// The index file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Another process has the file open for writing.
    #[error("index file {path} is open for writing by another process ({holder})")]
    Locked {
        /// The index file.
        path: PathBuf,
        /// Who holds it, as recorded in the owner file beside it.
        holder: String,
    },
    /// The file was not closed cleanly (the process holding it was killed) and only a writer
    /// can recover it: opening it for writing does, in milliseconds.
    #[error(
        "index file {path} needs recovery after an unclean shutdown; opening it for writing recovers it"
    )]
    NeedsRecovery {
        /// The index file.
        path: PathBuf,
    },
    /// An I/O error reading or writing the file.
    #[error("I/O error on index file {path}: {source}")]
    Io {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The storage engine reported an error that is neither I/O nor corruption.
    #[error("storage engine error on index file {path}: {detail}")]
    Engine {
        /// The index file.
        path: PathBuf,
        /// The engine's message.
        detail: String,
    },
    /// A previous write failed in a way that leaves the in-memory state uncertain; the index
    /// refuses further writes until it is reopened.
    #[error("index file {path} refuses writes after an earlier failure: {detail}")]
    Poisoned {
        /// The index file.
        path: PathBuf,
        /// The failure that poisoned it.
        detail: String,
    },
    /// The index has been closed.
    #[error("index is closed")]
    Closed,
    /// A repack of this index is already running.
    #[error("index file {0} is already being repacked")]
    RepackInProgress(PathBuf),
    /// No mailbox with this id.
    #[error("no mailbox with id {0}")]
    NoSuchMailbox(MailboxId),
    /// A mailbox of this name already exists under the same parent.
    #[error("a mailbox named {name:?} already exists there")]
    MailboxExists {
        /// The name asked for.
        name: String,
    },
    /// The mailbox has children and cannot be deleted or moved under itself.
    #[error("mailbox {0} has child mailboxes")]
    HasChildren(MailboxId),
    /// A rename would move a mailbox below itself.
    #[error("mailbox {0} cannot be moved below itself")]
    RenameIntoSelf(MailboxId),
    /// The name is not allowed in the index (empty, too long or with control characters).
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A message's content id is already stored with a different size.
    #[error("content {0} exists with a different size")]
    ContentMismatch(Guid),
    /// A message refers to content that is not in the index.
    #[error("no content with id {0}")]
    NoSuchContent(Guid),
    /// The mailbox has used every UID.
    #[error("mailbox {0} has no UIDs left")]
    UidsExhausted(MailboxId),
    /// No message with this UID in the mailbox.
    #[error("no message with UID {1} in mailbox {0}")]
    NoSuchMessage(MailboxId, Uid),
    /// Too many distinct keywords for one user.
    #[error("too many keywords: at most {0} per user")]
    TooManyKeywords(usize),
    /// A keyword name the index does not accept.
    #[error("invalid keyword {0:?}")]
    InvalidKeyword(String),
    /// A savepoint that is not open in this transaction.
    #[error("savepoint {0} is not open in this transaction")]
    InvalidSavepoint(usize),
    /// A backup artifact that does not fit the index it is applied to.
    #[error("backup does not apply: {0}")]
    BackupMismatch(String),
}

impl IndexError {
    /// Whether the error says the file itself is damaged or unreadable (as opposed to a request
    /// that does not fit the data).
    pub fn is_file_error(&self) -> bool {
        matches!(
            self,
            IndexError::Corrupt { .. }
                | IndexError::UnsupportedVersion { .. }
                | IndexError::Io { .. }
                | IndexError::Engine { .. }
                | IndexError::Poisoned { .. }
        )
    }

    /// Whether the file is damaged: its content is wrong, as opposed to unreadable for now
    /// (a full disk, a lock) or newer than this build.
    pub fn is_damage(&self) -> bool {
        match self {
            IndexError::Corrupt { .. } => true,
            IndexError::Io { source, .. } => source.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, detail: impl Into<String>) -> Self {
        IndexError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Maps an engine error, keeping I/O and corruption apart from the rest.
    pub(crate) fn engine(path: &std::path::Path, err: impl Into<redb::Error>) -> Self {
        match err.into() {
            redb::Error::Io(source) => IndexError::io(path, source),
            redb::Error::Corrupted(detail) => IndexError::corrupt(path, detail),
            redb::Error::ValueTooLarge(n) => {
                IndexError::corrupt(path, format!("value of {n} bytes is too large"))
            }
            redb::Error::RepairAborted => IndexError::NeedsRecovery {
                path: path.to_path_buf(),
            },
            redb::Error::DatabaseAlreadyOpen => IndexError::Locked {
                path: path.to_path_buf(),
                holder: crate::owner::describe_holder(path),
            },
            redb::Error::UpgradeRequired(v) => IndexError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: u32::from(v),
                supported: crate::schema::SCHEMA_VERSION,
            },
            other => IndexError::Engine {
                path: path.to_path_buf(),
                detail: other.to_string(),
            },
        }
    }
}
