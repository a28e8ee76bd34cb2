//! The change log and the commit events sessions subscribe to.
//!
//! Every change gets a MODSEQ. The log, keyed by (MODSEQ, mailbox, UID), records *what* changed;
//! the current value is read from the records. CONDSTORE/QRESYNC, view catch-up, repack
//! catch-up and the backup diff all read it.

use serde::{Deserialize, Serialize};

use crate::model::{Flags, Guid, MailboxId, Modseq, Timestamp, Uid};

/// What one change-log entry says happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A message was added (APPEND, COPY, MOVE).
    Appended {
        /// Its content.
        guid: Guid,
    },
    /// A message's flags changed.
    FlagsChanged,
    /// A message was expunged.
    Expunged {
        /// Its content, whose reference count dropped.
        guid: Guid,
    },
    /// The mailbox was created.
    MailboxCreated,
    /// The mailbox was renamed or moved.
    MailboxRenamed,
    /// The mailbox's attributes changed (special use, recent claim).
    MailboxUpdated,
    /// The mailbox was deleted (its messages are logged as expunged first).
    MailboxDeleted,
    /// A subscription was added or removed.
    UserUpdated,
    /// A content's body moved to another store (migration, tiering).
    ContentMoved {
        /// The content.
        guid: Guid,
    },
}

/// A change-log entry as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Its MODSEQ.
    pub modseq: Modseq,
    /// Its mailbox (0 for user-level changes).
    pub mailbox: MailboxId,
    /// Its UID (0 for mailbox-level changes).
    pub uid: Uid,
    /// What happened.
    pub kind: ChangeKind,
}

/// One committed change, with the new values sessions need to report it without a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A message was added.
    Appended {
        /// Mailbox.
        mailbox: MailboxId,
        /// UID.
        uid: Uid,
        /// Its content.
        guid: Guid,
        /// Flags.
        flags: Flags,
        /// MODSEQ.
        modseq: Modseq,
        /// Size.
        size: u64,
        /// INTERNALDATE.
        internal_date: Timestamp,
        /// SAVEDATE.
        save_date: Timestamp,
    },
    /// A message's flags changed.
    FlagsChanged {
        /// Mailbox.
        mailbox: MailboxId,
        /// UID.
        uid: Uid,
        /// The new flags.
        flags: Flags,
        /// MODSEQ.
        modseq: Modseq,
    },
    /// A message was expunged.
    Expunged {
        /// Mailbox.
        mailbox: MailboxId,
        /// UID.
        uid: Uid,
        /// Its content (gone too when this was its last message).
        guid: Guid,
        /// MODSEQ.
        modseq: Modseq,
    },
    /// A mailbox was created, renamed, updated or deleted.
    Mailbox {
        /// Mailbox.
        mailbox: MailboxId,
        /// What happened.
        kind: ChangeKind,
        /// MODSEQ.
        modseq: Modseq,
    },
    /// A user-level change (subscriptions, keywords).
    User {
        /// MODSEQ.
        modseq: Modseq,
    },
}

impl Change {
    /// The mailbox the change is in, if any.
    pub fn mailbox(&self) -> Option<MailboxId> {
        match self {
            Change::Appended { mailbox, .. }
            | Change::FlagsChanged { mailbox, .. }
            | Change::Expunged { mailbox, .. }
            | Change::Mailbox { mailbox, .. } => Some(*mailbox),
            Change::User { .. } => None,
        }
    }

    /// Its MODSEQ.
    pub fn modseq(&self) -> Modseq {
        match self {
            Change::Appended { modseq, .. }
            | Change::FlagsChanged { modseq, .. }
            | Change::Expunged { modseq, .. }
            | Change::Mailbox { modseq, .. }
            | Change::User { modseq } => *modseq,
        }
    }
}

/// The changes of one commit, in the order they were made. Subscribers receive these in commit
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitEvent {
    /// The user's highest MODSEQ after the commit.
    pub modseq: Modseq,
    /// The changes.
    pub changes: Vec<Change>,
}
