//! The records the index stores: mailboxes, messages, content and their identifiers.
//!
//! These are mail-domain records. They are not IMAP wire types: the protocol layer turns them
//! into responses.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::parsed::ParsedMessage;

/// A mailbox's id, unique within one user's index and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxId(pub u32);

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A message's UID within its mailbox (1 and up, strictly ascending, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uid(pub u32);

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A modification sequence number. One counter per user: every change gets a higher one, so
/// the change log of a user is totally ordered (CONDSTORE only needs it per mailbox).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Modseq(pub u64);

impl fmt::Display for Modseq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The stable id of a message's content (RFC 8474 EMAILID-like): copies share it, and the
/// content record (size, body location, parsed data) is stored once per id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Guid {
    type Err = String;

    /// Reads the 32 hex digits [`fmt::Display`] writes.
    fn from_str(s: &str) -> Result<Guid, String> {
        let bad = || format!("{s:?} is not 32 hex digits");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut g = [0u8; 16];
        for (i, b) in g.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Guid(g))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// The id of a keyword in the user's keyword dictionary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeywordId(pub u16);

bitflags::bitflags! {
    /// The system flags of RFC 3501, as a bitset. `\Recent` is not here: it is derived from the
    /// mailbox's `first_recent_uid`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct SystemFlags: u8 {
        /// `\Seen`
        const SEEN = 1;
        /// `\Answered`
        const ANSWERED = 1 << 1;
        /// `\Flagged`
        const FLAGGED = 1 << 2;
        /// `\Deleted`
        const DELETED = 1 << 3;
        /// `\Draft`
        const DRAFT = 1 << 4;
    }
}

/// A message's flags: system flags and keywords (sorted, without duplicates).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flags {
    /// System flags.
    pub system: SystemFlags,
    /// Keyword ids, ascending.
    pub keywords: Vec<KeywordId>,
}

impl Flags {
    /// Flags with the given system flags and no keywords.
    pub fn system(system: SystemFlags) -> Self {
        Flags {
            system,
            keywords: Vec::new(),
        }
    }

    /// Whether `\Seen` is set.
    pub fn is_seen(&self) -> bool {
        self.system.contains(SystemFlags::SEEN)
    }

    /// Whether the keyword is set.
    pub fn has_keyword(&self, k: KeywordId) -> bool {
        self.keywords.binary_search(&k).is_ok()
    }

    /// Applies a STORE-style change and returns the result.
    pub fn apply(&self, op: StoreOp, change: &Flags) -> Flags {
        match op {
            StoreOp::Replace => change.normalized(),
            StoreOp::Add => {
                let mut keywords = self.keywords.clone();
                keywords.extend_from_slice(&change.keywords);
                Flags {
                    system: self.system | change.system,
                    keywords,
                }
                .normalized()
            }
            StoreOp::Remove => Flags {
                system: self.system - change.system,
                keywords: self
                    .keywords
                    .iter()
                    .copied()
                    .filter(|k| !change.keywords.contains(k))
                    .collect(),
            },
        }
    }

    /// The same flags with keywords sorted and deduplicated.
    pub fn normalized(&self) -> Flags {
        let mut keywords = self.keywords.clone();
        keywords.sort_unstable();
        keywords.dedup();
        Flags {
            system: self.system,
            keywords,
        }
    }
}

/// How STORE combines the given flags with a message's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreOp {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// A point in time with the UTC offset it was given in (INTERNALDATE keeps the zone).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Seconds since the Unix epoch, UTC.
    pub unix: i64,
    /// The zone's offset from UTC in minutes (east positive).
    pub offset_minutes: i16,
}

impl Timestamp {
    /// The current time, in UTC.
    pub fn now() -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Timestamp {
            unix,
            offset_minutes: 0,
        }
    }
}

/// The RFC 6154 special uses a mailbox can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    /// `\All`
    All,
    /// `\Archive`
    Archive,
    /// `\Drafts`
    Drafts,
    /// `\Flagged`
    Flagged,
    /// `\Junk`
    Junk,
    /// `\Sent`
    Sent,
    /// `\Trash`
    Trash,
}

/// A mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// Its id.
    pub id: MailboxId,
    /// Its parent, or `None` at the top level.
    pub parent: Option<MailboxId>,
    /// Its own name (one level of the hierarchy, without delimiter).
    pub name: String,
    /// Its special use, if any.
    pub special_use: Option<SpecialUse>,
    /// UIDVALIDITY: changes only if the mailbox is recreated.
    pub uid_validity: u32,
    /// The UID the next message will get.
    pub uid_next: Uid,
    /// The highest MODSEQ of any change in this mailbox.
    pub highest_modseq: Modseq,
    /// Messages with a UID at or above this are `\Recent` (not yet seen by any session).
    pub first_recent_uid: Uid,
    /// Number of messages.
    pub messages: u32,
    /// Number of messages without `\Seen`.
    pub unseen: u32,
    /// Number of `\Recent` messages.
    pub recent: u32,
    /// Sum of the messages' sizes in octets.
    pub size: u64,
    /// When it was created.
    pub created: Timestamp,
}

/// What a user's mail takes up: every message in every mailbox, a copy counted again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Messages.
    pub messages: u64,
    /// Their sizes, in octets.
    pub storage: u64,
}

impl Usage {
    /// The sum of the mailboxes' own counters: no message is read.
    pub fn of<'a>(mailboxes: impl IntoIterator<Item = &'a MailboxRecord>) -> Usage {
        mailboxes.into_iter().fold(Usage::default(), |u, m| Usage {
            messages: u.messages + u64::from(m.messages),
            storage: u.storage + m.size,
        })
    }
}

/// A message in a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Its mailbox.
    pub mailbox: MailboxId,
    /// Its UID.
    pub uid: Uid,
    /// Its content id.
    pub guid: Guid,
    /// Its flags.
    pub flags: Flags,
    /// The MODSEQ of its last change.
    pub modseq: Modseq,
    /// INTERNALDATE.
    pub internal_date: Timestamp,
    /// SAVEDATE (RFC 8514): when it was stored in this mailbox.
    pub save_date: Timestamp,
    /// RFC822.SIZE, copied from the content so that the view needs no content lookup.
    pub size: u64,
}

/// Which backend store holds a body. Ids are assigned by the server's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoreId(pub u16);

/// Where a message's body lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BodyLocation {
    /// The store.
    pub store: StoreId,
    /// The key within that store.
    pub key: String,
}

/// A message's content: what copies of it share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    /// Its id.
    pub guid: Guid,
    /// Size in octets (RFC822.SIZE).
    pub size: u64,
    /// Where the body is stored.
    pub location: BodyLocation,
    /// What was parsed from it once, at APPEND.
    pub parsed: ParsedMessage,
}

/// A message to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Its content. If content with this id is already stored, that record is shared and
    /// this one must have the same size.
    pub content: ContentRecord,
    /// Its initial flags.
    pub flags: Flags,
    /// INTERNALDATE.
    pub internal_date: Timestamp,
}

/// A mailbox to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMailbox {
    /// The parent, or `None` for the top level.
    pub parent: Option<MailboxId>,
    /// Its name at that level.
    pub name: String,
    /// Its special use.
    pub special_use: Option<SpecialUse>,
}
