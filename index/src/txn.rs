//! The write transaction handed to writers: every mutation of the index, with nested savepoints.
//!
//! Savepoints are Strata's own, not the engine's: each write records the row's previous value in
//! an undo log, and rolling back to a savepoint replays that log backwards. This lets the writer
//! run many callers' work inside one engine transaction (one fsync for all) while each caller, and
//! each step inside a caller, can still fail alone.

use std::collections::HashMap;
use std::ops::{Bound, ControlFlow};
use std::path::Path;

use crate::changes::{Change, ChangeKind};
use crate::error::{IndexError, Result};
use crate::model::{
    BodyLocation, Flags, Guid, KeywordId, MailboxId, MailboxRecord, MessageRecord, Modseq,
    NewMailbox, NewMessage, StoreOp, SystemFlags, Timestamp, Uid, Usage,
};
use crate::schema::{self, StoredContent, Table, UserState};
use crate::store::{KeyRange, RawRead, Reader, RowFn, get_in, len_in, scan_in};
use crate::threads::{self, Known, ThreadKeys, ThreadRows};

/// Longest mailbox name (one hierarchy level) the index stores, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// Most distinct keywords per user.
pub const MAX_KEYWORDS: usize = 4096;

/// The engine's tables, opened once per engine transaction.
pub(crate) struct Tables<'t> {
    tables: Vec<redb::Table<'t, &'static [u8], &'static [u8]>>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(path: &Path, txn: &'t redb::WriteTransaction) -> Result<Self> {
        let tables = Table::ALL
            .iter()
            .map(|t| {
                txn.open_table(t.def())
                    .map_err(|e| IndexError::engine(path, e))
            })
            .collect::<Result<_>>()?;
        Ok(Tables { tables })
    }

    pub(crate) fn get_raw(&self, path: &Path, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get_in(path, self.get_ref(t), key)
    }

    pub(crate) fn scan_raw(
        &self,
        path: &Path,
        t: Table,
        range: KeyRange<'_>,
        f: &mut RowFn<'_>,
    ) -> Result<()> {
        scan_in(path, self.get_ref(t), range, f)
    }

    pub(crate) fn len_raw(&self, path: &Path, t: Table) -> Result<u64> {
        len_in(path, self.get_ref(t))
    }

    fn get(&mut self, t: Table) -> &mut redb::Table<'t, &'static [u8], &'static [u8]> {
        &mut self.tables[t as usize]
    }

    fn get_ref(&self, t: Table) -> &redb::Table<'t, &'static [u8], &'static [u8]> {
        &self.tables[t as usize]
    }

    /// Writes a row and returns its previous value.
    pub(crate) fn put(
        &mut self,
        path: &Path,
        t: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let old = self
            .get(t)
            .insert(key, value)
            .map_err(|e| IndexError::engine(path, e))?;
        Ok(old.map(|g| g.value().to_vec()))
    }

    /// Removes a row and returns its previous value.
    pub(crate) fn remove(&mut self, path: &Path, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self
            .get(t)
            .remove(key)
            .map_err(|e| IndexError::engine(path, e))?;
        Ok(old.map(|g| g.value().to_vec()))
    }
}

struct Undo {
    table: Table,
    key: Vec<u8>,
    old: Option<Vec<u8>>,
}

/// A savepoint inside a [`Txn`]: [`Txn::rollback_to`] undoes everything written since.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Savepoint {
    depth: usize,
}

struct SavepointState {
    undo_len: usize,
    changes_len: usize,
    state: UserState,
    mailboxes: HashMap<MailboxId, Option<MailboxRecord>>,
}

/// One writer's view of the index inside the current engine transaction.
///
/// Every method validates before it writes, so a failed call leaves nothing behind; use
/// [`Txn::nested`] to make several calls all-or-nothing.
pub struct Txn<'a, 't> {
    path: &'a Path,
    tables: &'a mut Tables<'t>,
    state: UserState,
    undo: Vec<Undo>,
    changes: Vec<Change>,
    savepoints: Vec<SavepointState>,
    op_modseq: Option<Modseq>,
    now: Timestamp,
    /// Mailbox records changed in this transaction (`None`: deleted), written once at flush:
    /// a batch of appends to one mailbox then writes its record once, not once per message.
    mailboxes: HashMap<MailboxId, Option<MailboxRecord>>,
}

impl ThreadRows for Txn<'_, '_> {
    fn known(&self, key: &[u8]) -> Result<Option<Known>> {
        self.decoded(Table::Threads, key)
    }

    fn record(&mut self, key: &[u8], known: &Known) -> Result<()> {
        self.put(Table::Threads, key, known)
    }

    fn forget(&mut self, key: &[u8]) -> Result<()> {
        self.delete(Table::Threads, key)
    }
}

impl RawRead for Txn<'_, '_> {
    fn path(&self) -> &Path {
        self.path
    }

    fn get_raw(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tables.get_raw(self.path, t, key)
    }

    fn scan_raw(&self, t: Table, range: KeyRange<'_>, f: &mut RowFn<'_>) -> Result<()> {
        self.tables.scan_raw(self.path, t, range, f)
    }

    fn len_raw(&self, t: Table) -> Result<u64> {
        self.tables.len_raw(self.path, t)
    }
}

/// What a STORE did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Messages whose flags changed: UID, new flags, new MODSEQ.
    pub changed: Vec<(Uid, Flags, Modseq)>,
    /// Messages left alone because they changed after `unchanged_since` (CONDSTORE).
    pub conflicts: Vec<Uid>,
}

impl<'a, 't> Txn<'a, 't> {
    pub(crate) fn new(path: &'a Path, tables: &'a mut Tables<'t>, state: UserState) -> Self {
        Txn {
            path,
            tables,
            state,
            undo: Vec::new(),
            changes: Vec::new(),
            savepoints: Vec::new(),
            op_modseq: None,
            now: Timestamp::now(),
            mailboxes: HashMap::new(),
        }
    }

    /// The user counters as this transaction leaves them.
    pub(crate) fn into_parts(self) -> (UserState, Vec<Change>) {
        (self.state, self.changes)
    }

    /// Opens a savepoint.
    pub fn savepoint(&mut self) -> Savepoint {
        self.savepoints.push(SavepointState {
            undo_len: self.undo.len(),
            changes_len: self.changes.len(),
            state: self.state.clone(),
            mailboxes: self.mailboxes.clone(),
        });
        Savepoint {
            depth: self.savepoints.len(),
        }
    }

    /// Undoes everything written since `sp` and closes it (and every savepoint opened after it).
    pub fn rollback_to(&mut self, sp: Savepoint) -> Result<()> {
        if sp.depth == 0 || sp.depth > self.savepoints.len() {
            return Err(IndexError::InvalidSavepoint(sp.depth));
        }
        self.savepoints.truncate(sp.depth);
        let saved = self.savepoints.pop().expect("depth checked above");
        while self.undo.len() > saved.undo_len {
            let u = self.undo.pop().expect("length checked");
            match u.old {
                Some(old) => self.tables.put(self.path, u.table, &u.key, &old)?,
                None => self.tables.remove(self.path, u.table, &u.key)?,
            };
        }
        self.changes.truncate(saved.changes_len);
        self.state = saved.state;
        self.mailboxes = saved.mailboxes;
        self.op_modseq = None;
        Ok(())
    }

    /// Closes `sp`, keeping what was written since (it stays undoable by an outer savepoint).
    pub fn release(&mut self, sp: Savepoint) -> Result<()> {
        if sp.depth == 0 || sp.depth > self.savepoints.len() {
            return Err(IndexError::InvalidSavepoint(sp.depth));
        }
        self.savepoints.truncate(sp.depth - 1);
        if self.savepoints.is_empty() {
            // Nothing can roll back past here any more.
            self.undo.clear();
        }
        Ok(())
    }

    /// Runs `f` as a nested transaction: if it fails, everything it wrote is undone.
    pub fn nested<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let sp = self.savepoint();
        let depth = sp.depth;
        match f(self) {
            Ok(r) => {
                self.release(Savepoint { depth })?;
                Ok(r)
            }
            Err(e) => {
                self.rollback_to(Savepoint { depth })?;
                Err(e)
            }
        }
    }

    /// The user's highest MODSEQ so far in this transaction.
    pub fn highest_modseq(&self) -> Modseq {
        self.state.modseq
    }

    fn begin_op(&mut self) {
        self.op_modseq = None;
    }

    /// The MODSEQ of the current operation, allocated at its first change.
    fn op_modseq(&mut self) -> Modseq {
        if let Some(m) = self.op_modseq {
            return m;
        }
        self.state.modseq = Modseq(self.state.modseq.0 + 1);
        self.op_modseq = Some(self.state.modseq);
        self.state.modseq
    }

    fn write_raw(&mut self, t: Table, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let old = match value {
            Some(v) => self.tables.put(self.path, t, key, v)?,
            None => self.tables.remove(self.path, t, key)?,
        };
        let new_len = value.map_or(0, |v| key.len() + v.len());
        let old_len = old.as_ref().map_or(0, |v| key.len() + v.len());
        self.state.live_bytes =
            (self.state.live_bytes + new_len as u64).saturating_sub(old_len as u64);
        if !self.savepoints.is_empty() {
            self.undo.push(Undo {
                table: t,
                key: key.to_vec(),
                old,
            });
        }
        Ok(())
    }

    fn put<T: serde::Serialize>(&mut self, t: Table, key: &[u8], value: &T) -> Result<()> {
        let raw = schema::encode(key, value);
        self.write_raw(t, key, Some(&raw))
    }

    fn delete(&mut self, t: Table, key: &[u8]) -> Result<()> {
        self.write_raw(t, key, None)
    }

    fn log(&mut self, mailbox: MailboxId, uid: Uid, kind: ChangeKind) -> Result<Modseq> {
        let m = self.op_modseq();
        let key = schema::change_key(m, mailbox, uid);
        self.put(Table::Changes, &key, &kind)?;
        Ok(m)
    }

    /// Logs a mailbox-level change and announces it; returns its MODSEQ.
    fn mailbox_changed(&mut self, id: MailboxId, kind: ChangeKind) -> Result<Modseq> {
        let m = self.log(id, Uid(0), kind.clone())?;
        self.changes.push(Change::Mailbox {
            mailbox: id,
            kind,
            modseq: m,
        });
        Ok(m)
    }

    fn put_name(&mut self, rec: &MailboxRecord) -> Result<()> {
        self.put(
            Table::MailboxNames,
            &schema::name_key(rec.parent, &rec.name),
            &rec.id.0,
        )
    }

    fn put_mailbox(&mut self, mb: &MailboxRecord) -> Result<()> {
        self.mailboxes.insert(mb.id, Some(mb.clone()));
        Ok(())
    }

    fn mailbox_now(&self, id: MailboxId) -> Result<Option<MailboxRecord>> {
        match self.mailboxes.get(&id) {
            Some(cached) => Ok(cached.clone()),
            None => self.mailbox(id),
        }
    }

    fn must_mailbox(&self, id: MailboxId) -> Result<MailboxRecord> {
        self.mailbox_now(id)?.ok_or(IndexError::NoSuchMailbox(id))
    }

    /// Writes the changed mailbox records and the user counters; called once before commit,
    /// with no savepoint open.
    pub(crate) fn flush_state(&mut self) -> Result<()> {
        let mut changed: Vec<(MailboxId, Option<MailboxRecord>)> = self.mailboxes.drain().collect();
        changed.sort_by_key(|(id, _)| *id);
        for (id, rec) in changed {
            match rec {
                Some(rec) => self.put(Table::Mailboxes, &schema::mailbox_key(id), &rec)?,
                None => self.delete(Table::Mailboxes, &schema::mailbox_key(id))?,
            }
        }
        // Encoding the state changes live_bytes only by the state row's own size, which is
        // counted on the next flush; the drift is bounded by one row.
        let state = self.state.clone();
        self.put(Table::Meta, schema::META_STATE, &state)
    }

    // ----- reads inside the transaction -----

    /// A mailbox, as this transaction sees it.
    pub fn get_mailbox(&self, id: MailboxId) -> Result<Option<MailboxRecord>> {
        self.mailbox_now(id)
    }

    /// Finds a mailbox by parent and name.
    pub fn find_mailbox(&self, parent: Option<MailboxId>, name: &str) -> Result<Option<MailboxId>> {
        self.lookup_mailbox(parent, name)
    }

    /// A message, as this transaction sees it.
    pub fn get_message(&self, mailbox: MailboxId, uid: Uid) -> Result<Option<MessageRecord>> {
        self.message(mailbox, uid)
    }

    /// What the user's mail takes up, as this transaction sees it.
    pub fn usage(&self) -> Result<Usage> {
        // The stored records, each replaced by this transaction's version where it has one.
        let mut all: Vec<MailboxRecord> = self
            .mailboxes()?
            .into_iter()
            .filter(|m| !self.mailboxes.contains_key(&m.id))
            .collect();
        all.extend(self.mailboxes.values().flatten().cloned());
        Ok(Usage::of(&all))
    }

    /// The UIDs of a mailbox's messages, ascending.
    pub fn uids(&self, mailbox: MailboxId) -> Result<Vec<Uid>> {
        Ok(self.messages(mailbox)?.iter().map(|m| m.uid).collect())
    }

    /// Child mailboxes of `parent`.
    pub fn child_mailboxes(&self, parent: Option<MailboxId>) -> Result<Vec<MailboxId>> {
        self.children(parent)
    }

    // ----- mailboxes -----

    fn check_name(name: &str) -> Result<()> {
        let bad = |reason| {
            Err(IndexError::InvalidName {
                name: name.chars().take(64).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return bad("empty");
        }
        if name.len() > MAX_NAME_BYTES {
            return bad("too long");
        }
        if name.chars().any(|c| c.is_control()) {
            return bad("contains a control character");
        }
        Ok(())
    }

    /// Creates a mailbox and returns it.
    pub fn create_mailbox(&mut self, new: NewMailbox) -> Result<MailboxRecord> {
        self.begin_op();
        Self::check_name(&new.name)?;
        if let Some(p) = new.parent {
            self.must_mailbox(p)?;
        }
        if self.lookup_mailbox(new.parent, &new.name)?.is_some() {
            return Err(IndexError::MailboxExists { name: new.name });
        }
        let id = MailboxId(self.state.next_mailbox_id.max(1));
        self.state.next_mailbox_id = id.0 + 1;
        let clock = u32::try_from(self.now.unix.max(0)).unwrap_or(u32::MAX);
        let uid_validity = clock.max(self.state.last_uid_validity.saturating_add(1));
        self.state.last_uid_validity = uid_validity;
        let m = self.mailbox_changed(id, ChangeKind::MailboxCreated)?;
        let rec = MailboxRecord {
            id,
            parent: new.parent,
            name: new.name,
            special_use: new.special_use,
            uid_validity,
            uid_next: Uid(1),
            highest_modseq: m,
            first_recent_uid: Uid(1),
            messages: 0,
            unseen: 0,
            recent: 0,
            size: 0,
            created: self.now,
        };
        self.put_mailbox(&rec)?;
        self.put_name(&rec)?;
        Ok(rec)
    }

    /// Renames a mailbox and/or moves it under another parent. Children move with it.
    pub fn rename_mailbox(
        &mut self,
        id: MailboxId,
        new_parent: Option<MailboxId>,
        new_name: &str,
    ) -> Result<MailboxRecord> {
        self.begin_op();
        Self::check_name(new_name)?;
        let mut rec = self.must_mailbox(id)?;
        let mut up = new_parent;
        while let Some(p) = up {
            if p == id {
                return Err(IndexError::RenameIntoSelf(id));
            }
            up = self.must_mailbox(p)?.parent;
        }
        match self.lookup_mailbox(new_parent, new_name)? {
            Some(existing) if existing == id => return Ok(rec),
            Some(_) => {
                return Err(IndexError::MailboxExists {
                    name: new_name.to_string(),
                });
            }
            None => {}
        }
        self.delete(
            Table::MailboxNames,
            &schema::name_key(rec.parent, &rec.name),
        )?;
        rec.parent = new_parent;
        rec.name = new_name.to_string();
        rec.highest_modseq = self.mailbox_changed(id, ChangeKind::MailboxRenamed)?;
        self.put_mailbox(&rec)?;
        self.put_name(&rec)?;
        Ok(rec)
    }

    /// Deletes a mailbox without children, expunging its messages. Returns the UIDs expunged.
    pub fn delete_mailbox(&mut self, id: MailboxId) -> Result<Vec<Uid>> {
        self.begin_op();
        let rec = self.must_mailbox(id)?;
        if !self.children(Some(id))?.is_empty() {
            return Err(IndexError::HasChildren(id));
        }
        let uids: Vec<Uid> = self.messages(id)?.iter().map(|m| m.uid).collect();
        let expunged = self.expunge_in_op(id, &uids)?;
        self.delete(
            Table::MailboxNames,
            &schema::name_key(rec.parent, &rec.name),
        )?;
        self.mailboxes.insert(id, None);
        self.mailbox_changed(id, ChangeKind::MailboxDeleted)?;
        Ok(expunged)
    }

    /// Sets or clears a mailbox's special use.
    pub fn set_special_use(
        &mut self,
        id: MailboxId,
        special_use: Option<crate::model::SpecialUse>,
    ) -> Result<()> {
        self.begin_op();
        let mut rec = self.must_mailbox(id)?;
        if rec.special_use == special_use {
            return Ok(());
        }
        rec.special_use = special_use;
        rec.highest_modseq = self.mailbox_changed(id, ChangeKind::MailboxUpdated)?;
        self.put_mailbox(&rec)?;
        Ok(())
    }

    /// Marks the mailbox's messages below `below` as no longer `\Recent` and returns the UID
    /// range `[first, end)` that was recent for the caller (RFC 3501: the first session to see a
    /// message gets it as recent). A session passes one past the last UID it numbers, so a
    /// message that arrives meanwhile stays for whoever sees it. Does not change MODSEQ.
    pub fn claim_recent(&mut self, id: MailboxId, below: Uid) -> Result<(Uid, Uid)> {
        self.begin_op();
        let mut rec = self.must_mailbox(id)?;
        let end = below.min(rec.uid_next);
        let range = (rec.first_recent_uid, end.max(rec.first_recent_uid));
        if end > rec.first_recent_uid {
            rec.first_recent_uid = end;
            rec.recent = if end == rec.uid_next {
                0
            } else {
                self.count_messages_from(id, end)?
            };
            self.put_mailbox(&rec)?;
        }
        Ok(range)
    }

    /// How many messages of `mailbox` have a UID of at least `from`.
    fn count_messages_from(&self, mailbox: MailboxId, from: Uid) -> Result<u32> {
        let mut n = 0;
        self.for_each_message(mailbox, from, &mut |_| {
            n += 1;
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(n)
    }

    /// Subscribes to a mailbox name (which need not exist).
    pub fn subscribe(&mut self, name: &str) -> Result<()> {
        self.set_subscription(name, true)
    }

    /// Removes a subscription.
    pub fn unsubscribe(&mut self, name: &str) -> Result<()> {
        self.set_subscription(name, false)
    }

    fn set_subscription(&mut self, name: &str, on: bool) -> Result<()> {
        self.begin_op();
        if name.is_empty() || name.len() > MAX_NAME_BYTES * 8 || name.contains('\0') {
            return Err(IndexError::InvalidName {
                name: name.chars().take(64).collect(),
                reason: "not a valid subscription name",
            });
        }
        let key = name.as_bytes();
        let present = self.get_raw(Table::Subscriptions, key)?.is_some();
        if present == on {
            return Ok(());
        }
        if on {
            self.put(Table::Subscriptions, key, &())?;
        } else {
            self.delete(Table::Subscriptions, key)?;
        }
        let m = self.log(MailboxId(0), Uid(0), ChangeKind::UserUpdated)?;
        self.changes.push(Change::User { modseq: m });
        Ok(())
    }

    /// The id of a keyword, adding it to the user's dictionary if new.
    pub fn intern_keyword(&mut self, name: &str) -> Result<KeywordId> {
        let valid = !name.is_empty()
            && name.len() <= 255
            && !name.starts_with('\\')
            && name.bytes().all(|b| {
                b > b' ' && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b']')
            });
        if !valid {
            return Err(IndexError::InvalidKeyword(name.to_string()));
        }
        if let Some((id, _)) = self
            .keywords()?
            .into_iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
        {
            return Ok(id);
        }
        if usize::from(self.state.next_keyword_id) >= MAX_KEYWORDS {
            return Err(IndexError::TooManyKeywords(MAX_KEYWORDS));
        }
        let id = KeywordId(self.state.next_keyword_id);
        self.state.next_keyword_id += 1;
        self.put(Table::Keywords, &schema::keyword_key(id), &name.to_string())?;
        Ok(id)
    }

    fn check_keywords(&self, flags: &Flags) -> Result<()> {
        match flags
            .keywords
            .iter()
            .find(|k| k.0 >= self.state.next_keyword_id)
        {
            Some(k) => Err(IndexError::InvalidKeyword(format!("#{}", k.0))),
            None => Ok(()),
        }
    }

    // ----- messages -----

    /// Appends a message and returns its UID. For MULTIAPPEND, call this for each message inside
    /// [`Txn::nested`].
    pub fn append(&mut self, mailbox: MailboxId, msg: NewMessage) -> Result<Uid> {
        self.begin_op();
        let mut rec = self.must_mailbox(mailbox)?;
        let flags = msg.flags.normalized();
        self.check_keywords(&flags)?;
        let guid = msg.content.guid;
        let size = msg.content.size;
        let stored = match self.stored_content(&guid)? {
            Some(mut existing) => {
                if existing.size != size {
                    return Err(IndexError::ContentMismatch(guid));
                }
                existing.refs += 1;
                existing
            }
            None => {
                let keys =
                    ThreadKeys::of(&msg.content.parsed.envelope, &msg.content.parsed.headers);
                let thread = threads::assign(self, guid, &keys)?;
                StoredContent::new(1, &msg.content, thread)
            }
        };
        let uid = rec.uid_next;
        if uid.0 == u32::MAX {
            return Err(IndexError::UidsExhausted(mailbox));
        }
        self.put(Table::Contents, schema::guid_key(&guid), &stored)?;
        let m = self.log(mailbox, uid, ChangeKind::Appended { guid })?;
        let message = MessageRecord {
            mailbox,
            uid,
            guid,
            flags,
            modseq: m,
            internal_date: msg.internal_date,
            save_date: self.now,
            size,
        };
        self.insert_message(&mut rec, &message, m)?;
        self.put_mailbox(&rec)?;
        Ok(uid)
    }

    fn insert_message(
        &mut self,
        rec: &mut MailboxRecord,
        message: &MessageRecord,
        m: Modseq,
    ) -> Result<()> {
        self.put(
            Table::Messages,
            &schema::message_key(rec.id, message.uid),
            message,
        )?;
        rec.uid_next = Uid(message.uid.0 + 1);
        rec.messages += 1;
        rec.unseen += u32::from(!message.flags.is_seen());
        rec.recent += 1;
        rec.size += message.size;
        rec.highest_modseq = m;
        self.changes.push(Change::Appended {
            mailbox: rec.id,
            uid: message.uid,
            guid: message.guid,
            flags: message.flags.clone(),
            modseq: m,
            size: message.size,
            internal_date: message.internal_date,
            save_date: message.save_date,
        });
        Ok(())
    }

    /// Changes the flags of the given messages (UIDs not in the mailbox are skipped). With
    /// `unchanged_since`, messages modified after it are left alone and reported as conflicts
    /// (CONDSTORE). Messages whose flags would not change keep their MODSEQ.
    pub fn store(
        &mut self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: StoreOp,
        flags: &Flags,
        unchanged_since: Option<Modseq>,
    ) -> Result<StoreOutcome> {
        self.begin_op();
        let mut rec = self.must_mailbox(mailbox)?;
        let change = flags.normalized();
        self.check_keywords(&change)?;
        let mut out = StoreOutcome::default();
        for &uid in uids {
            let Some(mut msg) = self.message(mailbox, uid)? else {
                continue;
            };
            if unchanged_since.is_some_and(|u| msg.modseq > u) {
                out.conflicts.push(uid);
                continue;
            }
            let new = msg.flags.apply(op, &change);
            if new == msg.flags {
                continue;
            }
            match (msg.flags.is_seen(), new.is_seen()) {
                (false, true) => rec.unseen -= 1,
                (true, false) => rec.unseen += 1,
                _ => {}
            }
            let m = self.log(mailbox, uid, ChangeKind::FlagsChanged)?;
            msg.flags = new;
            msg.modseq = m;
            rec.highest_modseq = m;
            self.put(Table::Messages, &schema::message_key(mailbox, uid), &msg)?;
            self.changes.push(Change::FlagsChanged {
                mailbox,
                uid,
                flags: msg.flags.clone(),
                modseq: m,
            });
            out.changed.push((uid, msg.flags, m));
        }
        if !out.changed.is_empty() {
            self.put_mailbox(&rec)?;
        }
        Ok(out)
    }

    /// Expunges the given messages (UIDs not in the mailbox are skipped) and returns the UIDs
    /// expunged.
    pub fn expunge(&mut self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>> {
        self.begin_op();
        self.expunge_in_op(mailbox, uids)
    }

    /// Expunges every message flagged `\Deleted`; returns their UIDs.
    pub fn expunge_deleted(&mut self, mailbox: MailboxId) -> Result<Vec<Uid>> {
        let uids: Vec<Uid> = self
            .messages(mailbox)?
            .into_iter()
            .filter(|m| m.flags.system.contains(SystemFlags::DELETED))
            .map(|m| m.uid)
            .collect();
        self.expunge(mailbox, &uids)
    }

    fn expunge_in_op(&mut self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>> {
        let mut rec = self.must_mailbox(mailbox)?;
        let mut done = Vec::new();
        for &uid in uids {
            let key = schema::message_key(mailbox, uid);
            let Some(msg) = self.message(mailbox, uid)? else {
                continue;
            };
            self.delete(Table::Messages, &key)?;
            self.release_content(&msg.guid)?;
            let m = self.log(mailbox, uid, ChangeKind::Expunged { guid: msg.guid })?;
            rec.messages -= 1;
            rec.unseen -= u32::from(!msg.flags.is_seen());
            if uid >= rec.first_recent_uid {
                rec.recent -= 1;
            }
            rec.size -= msg.size;
            rec.highest_modseq = m;
            self.changes.push(Change::Expunged {
                mailbox,
                uid,
                guid: msg.guid,
                modseq: m,
            });
            done.push(uid);
        }
        if !done.is_empty() {
            self.put_mailbox(&rec)?;
        }
        Ok(done)
    }

    fn release_content(&mut self, guid: &Guid) -> Result<()> {
        let key = schema::guid_key(guid);
        let mut stored = self
            .stored_content(guid)?
            .ok_or(IndexError::NoSuchContent(*guid))?;
        stored.refs = stored.refs.saturating_sub(1);
        if stored.refs == 0 {
            let keys = ThreadKeys::of_blobs(&stored.envelope, &stored.headers);
            threads::release(self, *guid, &keys)?;
            self.delete(Table::Contents, key)
        } else {
            self.put(Table::Contents, key, &stored)
        }
    }

    /// Copies messages to another mailbox (or the same one); returns (source UID, new UID) pairs
    /// in source UID order (COPYUID). UIDs not in the source are skipped.
    pub fn copy(
        &mut self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        self.begin_op();
        self.copy_in_op(from, uids, to)
    }

    fn copy_in_op(
        &mut self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        self.must_mailbox(from)?;
        let mut dest = self.must_mailbox(to)?;
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut pairs = Vec::new();
        for uid in sorted {
            let Some(src) = self.message(from, uid)? else {
                continue;
            };
            if dest.uid_next.0 == u32::MAX {
                return Err(IndexError::UidsExhausted(to));
            }
            let new_uid = dest.uid_next;
            let mut stored = self
                .stored_content(&src.guid)?
                .ok_or(IndexError::NoSuchContent(src.guid))?;
            stored.refs += 1;
            self.put(Table::Contents, schema::guid_key(&src.guid), &stored)?;
            let m = self.log(to, new_uid, ChangeKind::Appended { guid: src.guid })?;
            let message = MessageRecord {
                mailbox: to,
                uid: new_uid,
                guid: src.guid,
                flags: src.flags.clone(),
                modseq: m,
                internal_date: src.internal_date,
                save_date: self.now,
                size: src.size,
            };
            self.insert_message(&mut dest, &message, m)?;
            pairs.push((uid, new_uid));
        }
        if !pairs.is_empty() {
            self.put_mailbox(&dest)?;
        }
        Ok(pairs)
    }

    /// Moves messages: copy and expunge as one step (RFC 6851). Returns (source UID, new UID).
    pub fn move_messages(
        &mut self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        self.begin_op();
        let pairs = self.copy_in_op(from, uids, to)?;
        let moved: Vec<Uid> = pairs.iter().map(|p| p.0).collect();
        self.expunge_in_op(from, &moved)?;
        Ok(pairs)
    }

    /// Records that a content's body now lives elsewhere (migration between backends).
    pub fn set_body_location(&mut self, guid: Guid, location: BodyLocation) -> Result<()> {
        self.begin_op();
        let mut stored = self
            .stored_content(&guid)?
            .ok_or(IndexError::NoSuchContent(guid))?;
        if stored.location == location {
            return Ok(());
        }
        stored.location = location;
        self.put(Table::Contents, schema::guid_key(&guid), &stored)?;
        let m = self.log(MailboxId(0), Uid(0), ChangeKind::ContentMoved { guid })?;
        self.changes.push(Change::User { modseq: m });
        Ok(())
    }

    /// Records that a content's body moved from `from` to `to`, if the content still exists and
    /// is still at `from`; returns whether it did (a migration racing an expunge or another
    /// move).
    pub fn relocate_body(
        &mut self,
        guid: Guid,
        from: &BodyLocation,
        to: BodyLocation,
    ) -> Result<bool> {
        match self.stored_content(&guid)? {
            Some(stored) if stored.location == *from => {
                self.set_body_location(guid, to)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Writes raw rows from a diff or a copy; used by repack catch-up and backup import.
    pub(crate) fn apply_raw(&mut self, t: Table, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.write_raw(t, key, value)
    }

    /// Removes every row of a table (diff application replaces small tables whole).
    pub(crate) fn clear_table(&mut self, t: Table) -> Result<()> {
        let mut keys = Vec::new();
        self.scan_raw(t, (Bound::Unbounded, Bound::Unbounded), &mut |k, _| {
            keys.push(k.to_vec());
            Ok(ControlFlow::Continue(()))
        })?;
        for k in keys {
            self.write_raw(t, &k, None)?;
        }
        Ok(())
    }

    /// The user counters as they stand in this transaction.
    pub(crate) fn state_ref(&self) -> &UserState {
        &self.state
    }

    /// Replaces the user counters (diff application).
    pub(crate) fn set_state(&mut self, state: UserState) {
        self.state = state;
    }
}
