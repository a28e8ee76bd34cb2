//! The on-disk schema: tables, key layouts, value encoding, the schema version and its upgrades.
//! `docs/index-format.md` describes the same thing for readers of the file.
//!
//! Every table maps byte keys to byte values. Keys are big-endian so that byte order is numeric
//! order. Every value is `postcard(record) ‖ crc32(key ‖ postcard(record))`, so a damaged key or
//! value is found on read instead of being answered.

use std::ops::Bound;
use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{IndexError, Result};
use crate::model::{
    BodyLocation, ContentRecord, Guid, KeywordId, MailboxId, Modseq, ParsedMessage, StoreId, Uid,
};
use crate::parsed::{HeaderField, HeaderFieldRef, MAX_STORED_DEPTH, MimePart};
use crate::threads::{self, Known, ThreadKeys, ThreadRows};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 3;

/// The oldest schema version this build can upgrade from.
pub const OLDEST_UPGRADABLE: u32 = 1;

/// Marks a file as a Strata index (stored under the `magic` meta key).
pub const MAGIC: &[u8] = b"strata-index";

pub(crate) type Tbl = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The tables, in a fixed order (their index is used in undo logs and diffs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    /// `meta`: `magic`, `schema_version`, `state` (user counters).
    Meta = 0,
    /// `mailboxes`: mailbox id → [`crate::MailboxRecord`].
    Mailboxes = 1,
    /// `mailbox_names`: parent id ‖ name → mailbox id.
    MailboxNames = 2,
    /// `messages`: mailbox id ‖ UID → [`crate::MessageRecord`].
    Messages = 3,
    /// `contents`: GUID → [`StoredContent`] (the record and its reference count).
    Contents = 4,
    /// `changes`: MODSEQ ‖ mailbox id ‖ UID → [`crate::ChangeKind`].
    Changes = 5,
    /// `keywords`: keyword id → name.
    Keywords = 6,
    /// `subscriptions`: mailbox name → ().
    Subscriptions = 7,
    /// `threads`: `m` ‖ Message-ID → [`crate::threads::Known`] (its thread, for THREADID).
    Threads = 8,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 9] = [
        Table::Meta,
        Table::Mailboxes,
        Table::MailboxNames,
        Table::Messages,
        Table::Contents,
        Table::Changes,
        Table::Keywords,
        Table::Subscriptions,
        Table::Threads,
    ];

    pub(crate) fn def(self) -> Tbl {
        TableDefinition::new(self.name())
    }

    /// The table's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Mailboxes => "mailboxes",
            Table::MailboxNames => "mailbox_names",
            Table::Messages => "messages",
            Table::Contents => "contents",
            Table::Changes => "changes",
            Table::Keywords => "keywords",
            Table::Subscriptions => "subscriptions",
            Table::Threads => "threads",
        }
    }
}

pub(crate) const META_MAGIC: &[u8] = b"magic";
pub(crate) const META_VERSION: &[u8] = b"schema_version";
pub(crate) const META_STATE: &[u8] = b"state";

/// The user-level counters, stored under the `state` meta key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// The highest MODSEQ given out.
    pub modseq: Modseq,
    /// The next mailbox id.
    pub next_mailbox_id: u32,
    /// The last UIDVALIDITY given out (new ones are strictly greater).
    pub last_uid_validity: u32,
    /// The next keyword id.
    pub next_keyword_id: u16,
    /// Bytes of keys and values stored, for the repack trigger.
    pub live_bytes: u64,
    /// Change-log entries at or below this MODSEQ have been trimmed.
    pub log_floor: Modseq,
}

/// A content record with the number of messages that refer to it; kept together so that an
/// APPEND writes one row for its content. The parsed parts are encoded separately (each a
/// postcard blob) so that a reader decodes only the part it answers from: FETCH ENVELOPE never
/// decodes the MIME tree, and a reference-count change never decodes any of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredContent {
    /// How many messages refer to it.
    pub refs: u32,
    /// Its id.
    pub guid: Guid,
    /// Size in octets.
    pub size: u64,
    /// Where the body is stored.
    pub location: BodyLocation,
    /// `postcard(Envelope)`.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// `postcard(MimePart)`.
    #[serde(with = "serde_bytes")]
    pub structure: Vec<u8>,
    /// `postcard(Vec<HeaderField>)`.
    #[serde(with = "serde_bytes")]
    pub headers: Vec<u8>,
    /// The preview.
    pub preview: String,
    /// Its thread (RFC 8474 THREADID): the GUID of the content that started it.
    pub thread: Guid,
    /// The positions of the header fields no space followed the colon of
    /// ([`HeaderField::unspaced`](crate::HeaderField::unspaced)). Records written before it
    /// end without it and read as none; versions that do not know it ignore it.
    #[serde(deserialize_with = "trailing")]
    pub unspaced: Vec<u32>,
}

/// A field a record may end without (it was added after records were written): read as its
/// default when the record ends before it.
fn trailing<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(T::deserialize(d).unwrap_or_default())
}

/// [`StoredContent`] borrowed from the stored value, for readers that decode one part.
#[derive(Deserialize)]
pub(crate) struct StoredContentRef<'a> {
    // Decoded for its position in the record; readers of one part do not need it.
    pub _refs: u32,
    pub guid: Guid,
    pub size: u64,
    #[serde(borrow)]
    pub location: BodyLocationRef<'a>,
    #[serde(borrow)]
    pub envelope: &'a [u8],
    #[serde(borrow)]
    pub structure: &'a [u8],
    #[serde(borrow)]
    pub headers: &'a [u8],
    /// UTF-8, checked only when the preview is wanted.
    #[serde(borrow, with = "serde_bytes")]
    pub preview: &'a [u8],
    pub thread: Guid,
    #[serde(deserialize_with = "trailing")]
    pub unspaced: Vec<u32>,
}

/// [`BodyLocation`] borrowed from the stored record (the same fields in the same order).
#[derive(Deserialize)]
pub(crate) struct BodyLocationRef<'a> {
    pub store: StoreId,
    #[serde(borrow)]
    pub key: &'a str,
}

/// Which parsed parts of a content record a reader wants decoded; the others are left empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    /// The envelope.
    pub envelope: bool,
    /// The MIME structure (with offsets).
    pub structure: bool,
    /// The synced header fields.
    pub headers: bool,
    /// The preview.
    pub preview: bool,
}

impl Parts {
    /// Every part.
    pub const ALL: Parts = Parts {
        envelope: true,
        structure: true,
        headers: true,
        preview: true,
    };
}

impl StoredContent {
    /// Encodes a content record's parts.
    pub(crate) fn new(refs: u32, c: &ContentRecord, thread: Guid) -> StoredContent {
        let v2 = StoredContentV2::new(refs, c);
        StoredContent {
            refs,
            guid: v2.guid,
            size: v2.size,
            location: v2.location,
            envelope: v2.envelope,
            structure: v2.structure,
            headers: v2.headers,
            preview: v2.preview,
            thread,
            unspaced: (0u32..)
                .zip(&c.parsed.headers)
                .filter(|(_, h)| h.unspaced)
                .map(|(i, _)| i)
                .collect(),
        }
    }
}

impl StoredContentRef<'_> {
    /// Decodes the wanted parts into a record; `path` names the file in errors.
    pub(crate) fn record(&self, path: &Path, want: Parts) -> Result<ContentRecord> {
        let part = |bytes: &[u8], what: &str| -> Result<()> {
            Err(IndexError::corrupt(
                path,
                format!(
                    "undecodable {what} of content {} ({} bytes)",
                    self.guid,
                    bytes.len()
                ),
            ))
        };
        let mut parsed = ParsedMessage::default();
        if want.envelope {
            match postcard::from_bytes(self.envelope) {
                Ok(e) => parsed.envelope = e,
                Err(_) => part(self.envelope, "envelope")?,
            }
        }
        if want.structure {
            match postcard::from_bytes(self.structure) {
                Ok(s) => parsed.structure = s,
                // Written before the parser bounded nesting: readable whole, as one part.
                Err(postcard::Error::SerdeDeCustom) => {
                    tracing::warn!(
                        content = %self.guid,
                        "MIME tree nested deeper than {MAX_STORED_DEPTH} levels; answered as one part"
                    );
                    parsed.structure = MimePart::opaque(self.size);
                }
                Err(_) => part(self.structure, "structure")?,
            }
        }
        if want.headers {
            match postcard::from_bytes::<Vec<HeaderField>>(self.headers) {
                Ok(mut h) => {
                    for &i in &self.unspaced {
                        if let Some(f) = h.get_mut(i as usize) {
                            f.unspaced = true;
                        }
                    }
                    parsed.headers = h;
                }
                Err(_) => part(self.headers, "header fields")?,
            }
        }
        if want.preview {
            match std::str::from_utf8(self.preview) {
                Ok(p) => parsed.preview = p.to_string(),
                Err(_) => part(self.preview, "preview")?,
            }
        }
        Ok(ContentRecord {
            guid: self.guid,
            size: self.size,
            location: BodyLocation {
                store: self.location.store,
                key: self.location.key.to_string(),
            },
            parsed,
        })
    }

    /// The synced header fields, borrowed from the record; `path` names the file in errors.
    pub(crate) fn header_fields(&self, path: &Path) -> Result<Vec<HeaderFieldRef<'_>>> {
        let mut fields: Vec<HeaderFieldRef<'_>> =
            postcard::from_bytes(self.headers).map_err(|_| {
                IndexError::corrupt(
                    path,
                    format!(
                        "undecodable header fields of content {} ({} bytes)",
                        self.guid,
                        self.headers.len()
                    ),
                )
            })?;
        for &i in &self.unspaced {
            if let Some(f) = fields.get_mut(i as usize) {
                f.unspaced = true;
            }
        }
        Ok(fields)
    }
}

fn blob<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("serializing into memory cannot fail")
}

pub(crate) fn mailbox_key(id: MailboxId) -> [u8; 4] {
    id.0.to_be_bytes()
}

pub(crate) fn message_key(mailbox: MailboxId, uid: Uid) -> [u8; 8] {
    let mut k = [0; 8];
    k[..4].copy_from_slice(&mailbox.0.to_be_bytes());
    k[4..].copy_from_slice(&uid.0.to_be_bytes());
    k
}

pub(crate) fn split_message_key(k: &[u8]) -> Option<(MailboxId, Uid)> {
    let mb = u32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let uid = u32::from_be_bytes(k.get(4..8)?.try_into().ok()?);
    (k.len() == 8).then_some((MailboxId(mb), Uid(uid)))
}

pub(crate) fn change_key(modseq: Modseq, mailbox: MailboxId, uid: Uid) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&modseq.0.to_be_bytes());
    k[8..12].copy_from_slice(&mailbox.0.to_be_bytes());
    k[12..].copy_from_slice(&uid.0.to_be_bytes());
    k
}

/// The first change-log key after `after`.
pub(crate) fn changes_after(after: Modseq) -> [u8; 16] {
    change_key(Modseq(after.0.saturating_add(1)), MailboxId(0), Uid(0))
}

pub(crate) fn split_change_key(k: &[u8]) -> Option<(Modseq, MailboxId, Uid)> {
    if k.len() != 16 {
        return None;
    }
    let m = u64::from_be_bytes(k[..8].try_into().ok()?);
    let (mb, uid) = split_message_key(&k[8..])?;
    Some((Modseq(m), mb, uid))
}

pub(crate) fn name_key(parent: Option<MailboxId>, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + name.len());
    k.extend_from_slice(&parent.map_or(0, |p| p.0).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn keyword_key(id: KeywordId) -> [u8; 2] {
    id.0.to_be_bytes()
}

pub(crate) fn guid_key(g: &Guid) -> &[u8] {
    &g.0
}

/// Encodes a record with its checksum over key and value.
pub(crate) fn encode<T: Serialize>(key: &[u8], value: &T) -> Vec<u8> {
    let mut out = postcard::to_stdvec(value).expect("serializing into memory cannot fail");
    let crc = checksum(key, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a record, checking its checksum; `path` names the file in errors.
pub(crate) fn decode<T: DeserializeOwned>(
    path: &Path,
    table: Table,
    key: &[u8],
    raw: &[u8],
) -> Result<T> {
    let body = verify(path, table, key, raw)?;
    postcard::from_bytes(body).map_err(|e| {
        IndexError::corrupt(
            path,
            format!("undecodable record in {} key {key:02x?}: {e}", table.name()),
        )
    })
}

/// Checks a raw value's checksum and returns the record bytes without it.
pub(crate) fn verify<'a>(path: &Path, table: Table, key: &[u8], raw: &'a [u8]) -> Result<&'a [u8]> {
    let Some(split) = raw.len().checked_sub(4) else {
        return Err(IndexError::corrupt(
            path,
            format!("short record in {} key {key:02x?}", table.name()),
        ));
    };
    let (body, crc) = raw.split_at(split);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if checksum(key, body) != stored {
        return Err(IndexError::corrupt(
            path,
            format!("checksum mismatch in {} key {key:02x?}", table.name()),
        ));
    }
    Ok(body)
}

fn checksum(key: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&(key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(body);
    h.finalize()
}

/// One schema upgrade: rewrites a file of version `from` into version `from + 1` inside one
/// write transaction.
pub(crate) struct Upgrade {
    pub from: u32,
    pub run: fn(&redb::WriteTransaction, &Path) -> Result<()>,
}

/// The upgrade path, oldest first. Each entry takes a file one version forward; opening a file
/// runs the entries from its version up to [`SCHEMA_VERSION`] in one transaction, so an
/// interrupted upgrade leaves the old version intact.
pub(crate) const UPGRADES: &[Upgrade] = &[
    Upgrade {
        from: 1,
        run: v1_split_contents,
    },
    Upgrade {
        from: 2,
        run: v2_thread_contents,
    },
];

/// Version 1 kept a content record as one postcard value.
#[derive(Deserialize)]
struct StoredContentV1 {
    refs: u32,
    content: ContentRecord,
}

/// 1 → 2: content rows get their parsed parts as separate blobs.
fn v1_split_contents(w: &redb::WriteTransaction, path: &Path) -> Result<()> {
    rewrite_contents(w, path, |k, v| {
        let old: StoredContentV1 = decode(path, Table::Contents, k, v)?;
        Ok(encode(k, &StoredContentV2::new(old.refs, &old.content)))
    })
}

/// Rewrites every `contents` row with `rewrite(key, value)`, in batches, since a table cannot
/// be written while it is iterated and a big mailbox's contents do not all fit in memory.
fn rewrite_contents(
    w: &redb::WriteTransaction,
    path: &Path,
    mut rewrite: impl FnMut(&[u8], &[u8]) -> Result<Vec<u8>>,
) -> Result<()> {
    let mut t = w
        .open_table(Table::Contents.def())
        .map_err(|e| IndexError::engine(path, e))?;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut rows = Vec::new();
        {
            let range = match &after {
                Some(k) => t.range::<&[u8]>((Bound::Excluded(k.as_slice()), Bound::Unbounded)),
                None => t.range::<&[u8]>(..),
            }
            .map_err(|e| IndexError::engine(path, e))?;
            for row in range.take(1024) {
                let (k, v) = row.map_err(|e| IndexError::engine(path, e))?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
            }
        }
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = Some(last.clone());
        for (k, v) in rows {
            let new = rewrite(&k, &v)?;
            t.insert(k.as_slice(), new.as_slice())
                .map_err(|e| IndexError::engine(path, e))?;
        }
    }
    Ok(())
}

/// Version 2's content row: version 3's without the thread.
#[derive(Serialize, Deserialize)]
struct StoredContentV2 {
    refs: u32,
    guid: Guid,
    size: u64,
    location: BodyLocation,
    #[serde(with = "serde_bytes")]
    envelope: Vec<u8>,
    #[serde(with = "serde_bytes")]
    structure: Vec<u8>,
    #[serde(with = "serde_bytes")]
    headers: Vec<u8>,
    preview: String,
}

impl StoredContentV2 {
    fn new(refs: u32, c: &ContentRecord) -> StoredContentV2 {
        StoredContentV2 {
            refs,
            guid: c.guid,
            size: c.size,
            location: c.location.clone(),
            envelope: blob(&c.parsed.envelope),
            structure: blob(&c.parsed.structure),
            headers: blob(&c.parsed.headers),
            preview: c.parsed.preview.clone(),
        }
    }
}

/// Threading rows written straight into the file, during an upgrade.
struct UpgradeThreads<'a, 't> {
    path: &'a Path,
    table: redb::Table<'t, &'static [u8], &'static [u8]>,
}

impl ThreadRows for UpgradeThreads<'_, '_> {
    fn known(&self, key: &[u8]) -> Result<Option<Known>> {
        match self
            .table
            .get(key)
            .map_err(|e| IndexError::engine(self.path, e))?
        {
            Some(v) => decode(self.path, Table::Threads, key, v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn record(&mut self, key: &[u8], known: &Known) -> Result<()> {
        self.table
            .insert(key, encode(key, known).as_slice())
            .map_err(|e| IndexError::engine(self.path, e))?;
        Ok(())
    }

    fn forget(&mut self, key: &[u8]) -> Result<()> {
        self.table
            .remove(key)
            .map_err(|e| IndexError::engine(self.path, e))?;
        Ok(())
    }
}

/// 2 → 3: every content gets a thread, worked out from the messages already there (a reply
/// met before its original still joins it: the original finds its own Message-ID recorded).
fn v2_thread_contents(w: &redb::WriteTransaction, path: &Path) -> Result<()> {
    let mut threads = UpgradeThreads {
        path,
        table: w
            .open_table(Table::Threads.def())
            .map_err(|e| IndexError::engine(path, e))?,
    };
    rewrite_contents(w, path, |k, v| {
        let old: StoredContentV2 = decode(path, Table::Contents, k, v)?;
        let keys = ThreadKeys::of_blobs(&old.envelope, &old.headers);
        let thread = threads::assign(&mut threads, old.guid, &keys)?;
        let new = StoredContent {
            refs: old.refs,
            guid: old.guid,
            size: old.size,
            location: old.location,
            envelope: old.envelope,
            structure: old.structure,
            headers: old.headers,
            preview: old.preview,
            thread,
            unspaced: Vec::new(),
        };
        Ok(encode(k, &new))
    })
}
