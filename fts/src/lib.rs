//! Strata's per-user full-text index, on tantivy.
//!
//! It answers one question fast: which messages *might* contain a string, as SEARCH BODY and
//! TEXT compare (ASCII case folded on the raw bytes of the header and of each text part, and
//! Unicode lowercase on the decoded text). Every folded text is indexed as character trigrams,
//! so a string of three characters or more narrows to the messages holding all of its trigrams:
//! a superset of the matches, never missing one. It also keeps the searchable bytes themselves
//! (the header block and each text part as written), so the caller's own comparison, run on
//! those bytes, makes the answer exact without reading a body from the store.
//!
//! It is a cache of what the store holds: the caller decides what goes in (and rebuilds it
//! from the index and the store whenever it is lost), and treats a message the index does not
//! hold as one to read from the store. It knows nothing of IMAP, mailboxes or UIDs: a message
//! is its content GUID.

mod fold;
mod text_index;

pub use text_index::{Guid, Kept, MAX_TEXT, Message, Opened, Scope, StoredText, TextIndex};

/// What can go wrong with the full-text index; the caller falls back to reading bodies.
#[derive(Debug, thiserror::Error)]
pub enum FtsError {
    /// tantivy failed (I/O, a damaged file, a writer held elsewhere).
    #[error("full-text index at {path}: {source}")]
    Tantivy {
        /// The index directory.
        path: std::path::PathBuf,
        /// What tantivy said.
        source: tantivy::TantivyError,
    },
    /// The directory could not be created or cleared.
    #[error("full-text index at {path}: {source}")]
    Io {
        /// The index directory.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}
