//! # strata-index
//!
//! The per-user mail index of Strata. Everything an IMAP server answers except message bodies
//! comes from here: mailboxes, UIDs, flags, MODSEQ, sizes, dates and the data parsed once at
//! APPEND (envelope, MIME structure with offsets, synced header fields, preview). Bodies live in
//! a backend; the index records only where.
//!
//! It is **not** an IMAP implementation: it holds mail-domain records and knows nothing of
//! sequence-set syntax, responses or sessions. It is also not a body store.
//!
//! One file per user, on [redb] underneath, behind this crate's own API:
//!
//! - [`UserIndex::open`] creates or recovers the file and says what it did ([`RecoveryReport`]).
//! - [`UserIndex::snapshot`] gives a consistent [`Snapshot`] that never blocks the writer.
//! - [`UserIndex::write`] runs a closure in the user's single writer, inside a nested
//!   transaction ([`Txn::nested`], [`Txn::savepoint`]); the writer commits many callers' work
//!   with one fsync.
//! - [`UserIndex::view`] gives the shared in-memory [`MailboxView`] of a mailbox.
//! - [`UserIndex::subscribe`] delivers every commit's [`Change`]s in order.
//! - [`repack`] and the server-wide [`Maintenance`] worker rewrite a sparse file off the request
//!   path; [`export_base`], [`export_diff`] and [`import`] are the backup form.
//! - [`ReadOnlyIndex`] reads a file that a server has open, for administration.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> strata_index::Result<()> {
//! use strata_index::*;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (index, report) = UserIndex::open(dir.path().join("alice.redb"), IndexOptions::default()).await?;
//! assert!(report.created);
//!
//! let inbox = index
//!     .create_mailbox(NewMailbox { parent: None, name: "INBOX".into(), special_use: None })
//!     .await?;
//! let content = ContentRecord {
//!     guid: Guid([7; 16]),
//!     size: 1234,
//!     location: BodyLocation { store: StoreId(0), key: "ab/cdef".into() },
//!     parsed: ParsedMessage::default(),
//! };
//! let uids = index
//!     .append(inbox.id, vec![NewMessage { content, flags: Flags::default(), internal_date: Timestamp::now() }])
//!     .await?;
//! assert_eq!(uids, vec![Uid(1)]);
//!
//! // Flag changes are group-committed with other sessions' changes.
//! index
//!     .store(inbox.id, uids, StoreOp::Add, Flags::system(SystemFlags::SEEN), None)
//!     .await?;
//!
//! let view = index.view(inbox.id).await?;
//! assert_eq!(view.uid_at(1), Some(Uid(1)));
//! assert!(view.get(Uid(1)).unwrap().flags.is_seen());
//!
//! let snap = index.snapshot()?;
//! assert_eq!(snap.mailbox(inbox.id)?.unwrap().unseen, 0);
//! # index.close().await;
//! # Ok(())
//! # }
//! ```

mod backup;
mod changes;
mod check;
mod diff;
mod error;
mod index;
mod model;
mod open;
mod owner;
mod parsed;
mod readonly;
mod repack;
mod schema;
mod shipped;
mod snapshot;
mod store;
mod threads;
mod txn;
mod view;

pub use backup::{export_base, export_diff, import, read_diff};
pub use changes::{Change, ChangeKind, CommitEvent, LogEntry};
pub use check::{CheckReport, check_file, verify};
pub use diff::Diff;
pub use error::{IndexError, Result};
pub use index::{Durability, IndexOptions, Observer, UserIndex, WriterStats};
pub use model::{
    BodyLocation, ContentRecord, Flags, Guid, KeywordId, MailboxId, MailboxRecord, MessageRecord,
    Modseq, NewMailbox, NewMessage, SpecialUse, StoreId, StoreOp, SystemFlags, Timestamp, Uid,
    Usage,
};
pub use open::RecoveryReport;
pub use parsed::{
    Address, Disposition, Envelope, HeaderField, HeaderFieldRef, MAX_STORED_DEPTH, MimePart, Param,
    ParsedMessage,
};
pub use readonly::ReadOnlyIndex;
pub use repack::{Maintenance, MaintenanceOptions, RepackReport, disk_bytes, repack};
pub use schema::{Parts, SCHEMA_VERSION, Table};
pub use shipped::{
    ChainObject, HEADER_BYTES, ObjectHeader, ObjectKind, decode as decode_object, decode_header,
    diff_since, encode_base, encode_diff, peek_header, restore as restore_chain,
};
pub use snapshot::Snapshot;
pub use txn::{MAX_KEYWORDS, MAX_NAME_BYTES, Savepoint, StoreOutcome, Txn};
pub use view::{MailboxView, ViewEntry};
