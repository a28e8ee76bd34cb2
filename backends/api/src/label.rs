//! Labels: a message's flags written where other mail programs read them, for stores that
//! other programs share (a Maildir's file names, `:2,FRSab`). The index holds the flags; a
//! label is a copy for those programs and for rebuilding an index from the store.

/// The flags of one stored message, as a label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Label {
    /// Maildir's flag letters, among `D` (draft), `F` (flagged), `R` (replied), `S` (seen)
    /// and `T` (deleted), in any order.
    pub flags: String,
    /// Keyword names.
    pub keywords: Vec<String>,
}
