//! Typed reads over the raw tables, shared by snapshots (read transactions) and the writer's
//! transaction, so that both answer from one implementation.

use std::ops::{Bound, ControlFlow};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use redb::{ReadableTable, ReadableTableMetadata};

use crate::changes::{ChangeKind, LogEntry};
use crate::error::{IndexError, Result};
use crate::model::{
    ContentRecord, Guid, KeywordId, MailboxId, MailboxRecord, MessageRecord, Modseq, Uid,
};
use crate::parsed::HeaderFieldRef;
use crate::schema::{self, Parts, StoredContent, StoredContentRef, Table, UserState};

/// A borrowed byte range over a table's keys.
pub(crate) type KeyRange<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A visitor of raw rows: returns whether to go on.
pub(crate) type RowFn<'f> = dyn FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>> + 'f;

/// Reads raw rows. Implemented by snapshots and by the writer's transaction.
pub(crate) trait RawRead {
    /// The index file, for errors.
    fn path(&self) -> &Path;
    /// One row's raw value.
    fn get_raw(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Calls `f` for each row in `range`, in key order, until it breaks.
    fn scan_raw(&self, t: Table, range: KeyRange<'_>, f: &mut RowFn<'_>) -> Result<()>;
    /// Number of rows in a table.
    fn len_raw(&self, t: Table) -> Result<u64>;
    /// Calls `f` with one row's raw value, borrowed where the engine allows (no copy).
    fn with_raw<R>(
        &self,
        t: Table,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>>
    where
        Self: Sized,
    {
        self.get_raw(t, key)?.map(|v| f(&v)).transpose()
    }
}

pub(crate) fn get_in<T>(path: &Path, tbl: &T, key: &[u8]) -> Result<Option<Vec<u8>>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let v = tbl.get(key).map_err(|e| IndexError::engine(path, e))?;
    Ok(v.map(|g| g.value().to_vec()))
}

pub(crate) fn scan_in<T>(path: &Path, tbl: &T, range: KeyRange<'_>, f: &mut RowFn<'_>) -> Result<()>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let iter = tbl
        .range::<&[u8]>(range)
        .map_err(|e| IndexError::engine(path, e))?;
    for row in iter {
        let (k, v) = row.map_err(|e| IndexError::engine(path, e))?;
        if f(k.value(), v.value())?.is_break() {
            break;
        }
    }
    Ok(())
}

pub(crate) fn len_in<T>(path: &Path, tbl: &T) -> Result<u64>
where
    T: ReadableTableMetadata,
{
    tbl.len().map_err(|e| IndexError::engine(path, e))
}

/// Runs `f`, turning a panic inside the storage engine (which it may raise on a damaged file)
/// into a corruption error that names the file.
pub(crate) fn guard<R>(path: &Path, f: impl FnOnce() -> Result<R>) -> Result<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(IndexError::corrupt(
                path,
                format!("storage engine failed: {msg}"),
            ))
        }
    }
}

/// Runs blocking file work on tokio's blocking pool; a task that died becomes an engine error
/// naming the file and `what` was being done.
pub(crate) async fn blocking<R: Send + 'static>(
    path: &Path,
    what: &str,
    f: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IndexError::Engine {
            path: path.to_path_buf(),
            detail: format!("{what} task failed: {e}"),
        })?
}

fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    // The end of a prefix range is the prefix with its last non-0xff byte incremented.
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return (prefix.to_vec(), Some(end));
        }
    }
    (prefix.to_vec(), None)
}

/// Typed reads, for anything that reads raw rows.
pub(crate) trait Reader: RawRead {
    fn decoded<T: serde::de::DeserializeOwned>(&self, t: Table, key: &[u8]) -> Result<Option<T>> {
        match self.get_raw(t, key)? {
            Some(raw) => schema::decode(self.path(), t, key, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], f: &mut RowFn<'_>) -> Result<()> {
        let (start, end) = prefix_range(prefix);
        let end = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.scan_raw(t, (Bound::Included(start.as_slice()), end), f)
    }

    fn schema_version(&self) -> Result<Option<u32>> {
        self.decoded(Table::Meta, schema::META_VERSION)
    }

    fn user_state(&self) -> Result<UserState> {
        self.decoded(Table::Meta, schema::META_STATE)?
            .ok_or_else(|| IndexError::corrupt(self.path(), "the user state record is missing"))
    }

    fn mailbox(&self, id: MailboxId) -> Result<Option<MailboxRecord>> {
        self.decoded(Table::Mailboxes, &schema::mailbox_key(id))
    }

    fn mailboxes(&self) -> Result<Vec<MailboxRecord>> {
        let path = self.path().to_path_buf();
        let mut out = Vec::new();
        self.scan_raw(
            Table::Mailboxes,
            (Bound::Unbounded, Bound::Unbounded),
            &mut |k, v| {
                out.push(schema::decode(&path, Table::Mailboxes, k, v)?);
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(out)
    }

    fn lookup_mailbox(&self, parent: Option<MailboxId>, name: &str) -> Result<Option<MailboxId>> {
        Ok(self
            .decoded::<u32>(Table::MailboxNames, &schema::name_key(parent, name))?
            .map(MailboxId))
    }

    fn children(&self, parent: Option<MailboxId>) -> Result<Vec<MailboxId>> {
        let path = self.path().to_path_buf();
        let mut out = Vec::new();
        let prefix = parent.map_or(0, |p| p.0).to_be_bytes();
        self.scan_prefix(Table::MailboxNames, &prefix, &mut |k, v| {
            out.push(MailboxId(schema::decode(&path, Table::MailboxNames, k, v)?));
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    fn message(&self, mailbox: MailboxId, uid: Uid) -> Result<Option<MessageRecord>> {
        self.decoded(Table::Messages, &schema::message_key(mailbox, uid))
    }

    fn for_each_message(
        &self,
        mailbox: MailboxId,
        from: Uid,
        f: &mut dyn FnMut(MessageRecord) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let path = self.path().to_path_buf();
        let start = schema::message_key(mailbox, from);
        let end = schema::mailbox_key(MailboxId(mailbox.0.wrapping_add(1)));
        let end_bound = if mailbox.0 == u32::MAX {
            Bound::Unbounded
        } else {
            Bound::Excluded(&end[..])
        };
        self.scan_raw(
            Table::Messages,
            (Bound::Included(&start[..]), end_bound),
            &mut |k, v| f(schema::decode(&path, Table::Messages, k, v)?),
        )
    }

    fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageRecord>> {
        let mut out = Vec::new();
        self.for_each_message(mailbox, Uid(0), &mut |m| {
            out.push(m);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    fn stored_content(&self, guid: &Guid) -> Result<Option<StoredContent>> {
        self.decoded(Table::Contents, schema::guid_key(guid))
    }

    /// `f` of a content row borrowed from the file, none of its parsed parts decoded.
    fn with_content<R>(
        &self,
        guid: &Guid,
        f: impl FnOnce(&StoredContentRef<'_>, &Path) -> Result<R>,
    ) -> Result<Option<R>>
    where
        Self: Sized,
    {
        let key = schema::guid_key(guid);
        let path = self.path();
        self.with_raw(Table::Contents, key, |raw| {
            let body = schema::verify(path, Table::Contents, key, raw)?;
            let stored: StoredContentRef<'_> = postcard::from_bytes(body).map_err(|e| {
                IndexError::corrupt(path, format!("undecodable content {guid}: {e}"))
            })?;
            f(&stored, path)
        })
    }

    /// A content record with only the wanted parsed parts decoded.
    fn content_parts(&self, guid: &Guid, want: Parts) -> Result<Option<ContentRecord>>
    where
        Self: Sized,
    {
        self.with_content(guid, |stored, path| stored.record(path, want))
    }

    /// Calls `f` with a content's synced header fields, borrowed from the stored record.
    fn with_header_fields<R>(
        &self,
        guid: &Guid,
        f: impl FnOnce(&[HeaderFieldRef<'_>]) -> R,
    ) -> Result<Option<R>>
    where
        Self: Sized,
    {
        self.with_content(guid, |stored, path| Ok(f(&stored.header_fields(path)?)))
    }

    /// A content's thread (RFC 8474 THREADID).
    fn thread_of(&self, guid: &Guid) -> Result<Option<Guid>>
    where
        Self: Sized,
    {
        self.with_content(guid, |stored, _| Ok(stored.thread))
    }

    fn changes_since(
        &self,
        after: Modseq,
        f: &mut dyn FnMut(LogEntry) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let path = self.path().to_path_buf();
        if after.0 == u64::MAX {
            return Ok(());
        }
        let start = schema::changes_after(after);
        self.scan_raw(
            Table::Changes,
            (Bound::Included(&start[..]), Bound::Unbounded),
            &mut |k, v| {
                let (modseq, mailbox, uid) = schema::split_change_key(k)
                    .ok_or_else(|| IndexError::corrupt(&path, "malformed change-log key"))?;
                let kind: ChangeKind = schema::decode(&path, Table::Changes, k, v)?;
                f(LogEntry {
                    modseq,
                    mailbox,
                    uid,
                    kind,
                })
            },
        )
    }

    fn keywords(&self) -> Result<Vec<(KeywordId, String)>> {
        let path = self.path().to_path_buf();
        let mut out = Vec::new();
        self.scan_raw(
            Table::Keywords,
            (Bound::Unbounded, Bound::Unbounded),
            &mut |k, v| {
                let id = u16::from_be_bytes(
                    k.try_into()
                        .map_err(|_| IndexError::corrupt(&path, "malformed keyword key"))?,
                );
                out.push((KeywordId(id), schema::decode(&path, Table::Keywords, k, v)?));
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(out)
    }

    fn subscriptions(&self) -> Result<Vec<String>> {
        let path = self.path().to_path_buf();
        let mut out = Vec::new();
        self.scan_raw(
            Table::Subscriptions,
            (Bound::Unbounded, Bound::Unbounded),
            &mut |k, v| {
                schema::verify(&path, Table::Subscriptions, k, v)?;
                out.push(
                    String::from_utf8(k.to_vec()).map_err(|_| {
                        IndexError::corrupt(&path, "subscription name is not UTF-8")
                    })?,
                );
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(out)
    }
}

impl<T: RawRead + ?Sized> Reader for T {}
