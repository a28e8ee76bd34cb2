//! The index's records as the protocol sees them: plain data (ids, flags, envelopes, MIME trees,
//! views and read snapshots), re-exported so that the protocol names them through mailstore and
//! reaches the index only through [`crate::UserStore`]'s operations.

pub use strata_index::{
    Address, CommitEvent, ContentRecord, Envelope, Flags, Guid, HeaderField, HeaderFieldRef,
    IndexError, KeywordId, MailboxId, MailboxRecord, MailboxView, MimePart, Modseq, Param, Parts,
    Snapshot, SpecialUse, StoreOp, StoreOutcome, SystemFlags, Timestamp, Uid, ViewEntry,
};
