//! Snapshot readers: a consistent, read-only view of a user's index as of one commit. A snapshot
//! never blocks the writer and is never changed by it; it keeps the file it was taken from open,
//! even across a repack that replaces that file.

use std::any::Any;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableDatabase, TableError};

use crate::changes::LogEntry;
use crate::error::{IndexError, Result};
use crate::model::{
    ContentRecord, Guid, KeywordId, MailboxId, MailboxRecord, MessageRecord, Modseq, Uid, Usage,
};
use crate::parsed::HeaderFieldRef;
use crate::schema::{Parts, Table, UserState};
use crate::store::{KeyRange, RawRead, Reader, RowFn, get_in, guard, len_in, scan_in};

type RoTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A consistent read-only view of one user's index.
pub struct Snapshot {
    path: PathBuf,
    tables: Vec<RoTable>,
    state: UserState,
    txn: Option<redb::ReadTransaction>,
    db: Option<Arc<dyn Any + Send + Sync>>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.tables.clear();
        self.txn.take();
        if let Some(db) = self.db.take()
            && Arc::strong_count(&db) == 1
        {
            // The last holder of a file that a repack replaced: closing it writes the engine's
            // state back, which takes long on a big file. Not on the reader's thread.
            std::thread::spawn(move || drop(db));
        }
    }
}

impl RawRead for Snapshot {
    fn path(&self) -> &Path {
        &self.path
    }

    fn get_raw(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get_in(&self.path, &self.tables[t as usize], key)
    }

    fn scan_raw(&self, t: Table, range: KeyRange<'_>, f: &mut RowFn<'_>) -> Result<()> {
        scan_in(&self.path, &self.tables[t as usize], range, f)
    }

    fn len_raw(&self, t: Table) -> Result<u64> {
        len_in(&self.path, &self.tables[t as usize])
    }

    fn with_raw<R>(
        &self,
        t: Table,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        let v = self.tables[t as usize]
            .get(key)
            .map_err(|e| IndexError::engine(&self.path, e))?;
        v.map(|g| f(g.value())).transpose()
    }
}

impl Snapshot {
    /// Begins a read transaction on `db` (a `redb::Database` or `redb::ReadOnlyDatabase`).
    pub(crate) fn begin<D>(path: &Path, db: Arc<D>) -> Result<Snapshot>
    where
        D: ReadableDatabase + Send + Sync + 'static,
    {
        guard(path, || {
            let txn = db.begin_read().map_err(|e| IndexError::engine(path, e))?;
            let mut tables = Vec::with_capacity(Table::ALL.len());
            for t in Table::ALL {
                match txn.open_table(t.def()) {
                    Ok(tbl) => tables.push(tbl),
                    Err(TableError::TableDoesNotExist(name)) => {
                        return Err(IndexError::corrupt(
                            path,
                            format!("not a Strata index: table {name} is missing"),
                        ));
                    }
                    Err(e) => return Err(IndexError::engine(path, e)),
                }
            }
            let mut snap = Snapshot {
                path: path.to_path_buf(),
                tables,
                state: UserState::default(),
                txn: Some(txn),
                db: Some(db),
            };
            snap.state = snap.user_state()?;
            Ok(snap)
        })
    }

    /// The index file.
    pub fn file(&self) -> &Path {
        &self.path
    }

    /// The user's highest MODSEQ as of this snapshot.
    pub fn modseq(&self) -> Modseq {
        self.state.modseq
    }

    /// Change-log entries at or below this MODSEQ have been trimmed.
    pub fn log_floor(&self) -> Modseq {
        self.state.log_floor
    }

    /// Bytes of keys and values stored (the repack trigger compares the file size to this).
    pub fn live_bytes(&self) -> u64 {
        self.state.live_bytes
    }

    pub(crate) fn state(&self) -> &UserState {
        &self.state
    }

    /// Every mailbox, by id.
    pub fn mailboxes(&self) -> Result<Vec<MailboxRecord>> {
        guard(&self.path, || Reader::mailboxes(self))
    }

    /// What the user's mail takes up.
    pub fn usage(&self) -> Result<Usage> {
        Ok(Usage::of(&self.mailboxes()?))
    }

    /// One mailbox.
    pub fn mailbox(&self, id: MailboxId) -> Result<Option<MailboxRecord>> {
        guard(&self.path, || Reader::mailbox(self, id))
    }

    /// Finds a mailbox by its parent and name.
    pub fn lookup(&self, parent: Option<MailboxId>, name: &str) -> Result<Option<MailboxId>> {
        guard(&self.path, || self.lookup_mailbox(parent, name))
    }

    /// Finds a mailbox by its path of names from the top level.
    pub fn lookup_path<S: AsRef<str>>(&self, path: &[S]) -> Result<Option<MailboxId>> {
        let mut parent = None;
        for name in path {
            match self.lookup(parent, name.as_ref())? {
                Some(id) => parent = Some(id),
                None => return Ok(None),
            }
        }
        Ok(parent)
    }

    /// The names from the top level down to the mailbox.
    pub fn path_of(&self, id: MailboxId) -> Result<Option<Vec<String>>> {
        let mut names = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            let Some(rec) = self.mailbox(c)? else {
                return Ok(None);
            };
            names.push(rec.name);
            cur = rec.parent;
            if names.len() > 10_000 {
                return Err(IndexError::corrupt(
                    &self.path,
                    "mailbox parent chain loops",
                ));
            }
        }
        names.reverse();
        Ok(Some(names))
    }

    /// The mailboxes directly below `parent` (or at the top level).
    pub fn children(&self, parent: Option<MailboxId>) -> Result<Vec<MailboxId>> {
        guard(&self.path, || Reader::children(self, parent))
    }

    /// One message.
    pub fn message(&self, mailbox: MailboxId, uid: Uid) -> Result<Option<MessageRecord>> {
        guard(&self.path, || Reader::message(self, mailbox, uid))
    }

    /// Every message of a mailbox, by UID.
    pub fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageRecord>> {
        guard(&self.path, || Reader::messages(self, mailbox))
    }

    /// Calls `f` for each message of a mailbox from UID `from` on, until it breaks.
    pub fn for_each_message(
        &self,
        mailbox: MailboxId,
        from: Uid,
        mut f: impl FnMut(MessageRecord) -> ControlFlow<()>,
    ) -> Result<()> {
        guard(&self.path, || {
            Reader::for_each_message(self, mailbox, from, &mut |m| Ok(f(m)))
        })
    }

    /// A message's content record: size, body location and parsed data.
    pub fn content(&self, guid: &Guid) -> Result<Option<ContentRecord>> {
        self.content_parts(guid, Parts::ALL)
    }

    /// A message's content record with only the `want`ed parsed parts decoded; the others are
    /// left empty. FETCH ENVELOPE, for one, need not decode the MIME tree.
    pub fn content_parts(&self, guid: &Guid, want: Parts) -> Result<Option<ContentRecord>> {
        guard(&self.path, || Reader::content_parts(self, guid, want))
    }

    /// Calls `f` with a message content's synced header fields (those
    /// [`ParsedMessage::headers`](crate::ParsedMessage::headers) keeps), borrowed from the stored
    /// record: what a FETCH of those fields needs, without decoding the rest. `None` when there
    /// is no such content.
    pub fn with_header_fields<R>(
        &self,
        guid: &Guid,
        f: impl FnOnce(&[HeaderFieldRef<'_>]) -> R,
    ) -> Result<Option<R>> {
        guard(&self.path, || Reader::with_header_fields(self, guid, f))
    }

    /// A message content's thread (RFC 8474 THREADID): the GUID of the content that started
    /// it. `None` when there is no such content.
    pub fn thread(&self, guid: &Guid) -> Result<Option<Guid>> {
        guard(&self.path, || Reader::thread_of(self, guid))
    }

    /// How many messages refer to a content record.
    pub fn content_refs(&self, guid: &Guid) -> Result<u32> {
        guard(&self.path, || {
            Ok(self.stored_content(guid)?.map_or(0, |s| s.refs))
        })
    }

    /// Change-log entries after `after`, in MODSEQ order.
    pub fn changes_since(&self, after: Modseq) -> Result<Vec<LogEntry>> {
        guard(&self.path, || {
            let mut out = Vec::new();
            Reader::changes_since(self, after, &mut |e| {
                out.push(e);
                Ok(ControlFlow::Continue(()))
            })?;
            Ok(out)
        })
    }

    /// The keyword dictionary.
    pub fn keywords(&self) -> Result<Vec<(KeywordId, String)>> {
        guard(&self.path, || Reader::keywords(self))
    }

    /// Subscribed mailbox names.
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        guard(&self.path, || Reader::subscriptions(self))
    }

    /// Rows per table.
    pub fn table_rows(&self) -> Result<Vec<(&'static str, u64)>> {
        guard(&self.path, || {
            Table::ALL
                .iter()
                .map(|t| Ok((t.name(), self.len_raw(*t)?)))
                .collect()
        })
    }
}
