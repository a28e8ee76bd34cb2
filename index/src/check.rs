//! Consistency checks: every row's checksum and the invariants that tie the tables together.
//! Used by `strata index check` (read-only, alongside a running server), by import, and by
//! tests. [`check_file`] also runs the engine's own page-level integrity check, which needs the
//! file to itself.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, ControlFlow};
use std::path::Path;

use crate::error::{IndexError, Result};
use crate::model::{Guid, MailboxId, MailboxRecord, MessageRecord, Modseq};
use crate::schema::{self, StoredContent, Table};
use crate::snapshot::Snapshot;
use crate::store::{RawRead, Reader, guard};

/// What a check found in a sound index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Mailboxes.
    pub mailboxes: u64,
    /// Messages.
    pub messages: u64,
    /// Distinct contents.
    pub contents: u64,
    /// Change-log entries.
    pub changes: u64,
    /// The user's highest MODSEQ.
    pub modseq: Modseq,
}

/// Checks a snapshot: decodes every row and verifies the cross-table invariants. The first
/// problems found are reported as one corruption error naming the file.
pub fn verify(snap: &Snapshot) -> Result<CheckReport> {
    guard(snap.file(), || verify_inner(snap))
}

fn verify_inner(snap: &Snapshot) -> Result<CheckReport> {
    let path = snap.file().to_path_buf();
    let mut problems: Vec<String> = Vec::new();
    let state = snap.user_state()?;
    let mailboxes: BTreeMap<MailboxId, MailboxRecord> = Reader::mailboxes(snap)?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();

    // Names index and mailbox records agree.
    let mut named = 0u64;
    snap.scan_raw(
        Table::MailboxNames,
        (Bound::Unbounded, Bound::Unbounded),
        &mut |k, v| {
            let id = MailboxId(schema::decode(&path, Table::MailboxNames, k, v)?);
            named += 1;
            match mailboxes.get(&id) {
                Some(m) if schema::name_key(m.parent, &m.name) == k => {}
                _ => problems.push(format!(
                    "name entry {k:02x?} points at mailbox {id} wrongly"
                )),
            }
            Ok(ControlFlow::Continue(()))
        },
    )?;
    if named != mailboxes.len() as u64 {
        problems.push(format!(
            "{} mailboxes but {named} name entries",
            mailboxes.len()
        ));
    }
    for m in mailboxes.values() {
        if m.id.0 >= state.next_mailbox_id {
            problems.push(format!("mailbox {} is not below the next id", m.id));
        }
        if let Some(p) = m.parent.filter(|p| !mailboxes.contains_key(p)) {
            problems.push(format!("mailbox {} has a missing parent {p}", m.id));
        }
        if m.highest_modseq > state.modseq {
            problems.push(format!("mailbox {} is ahead of the user MODSEQ", m.id));
        }
    }

    // Messages: counts per mailbox and references to contents.
    #[derive(Default)]
    struct Counts {
        messages: u32,
        unseen: u32,
        recent: u32,
        size: u64,
    }
    let mut counts: HashMap<MailboxId, Counts> = HashMap::new();
    let mut refs: HashMap<Guid, u32> = HashMap::new();
    let mut n_messages = 0u64;
    snap.scan_raw(
        Table::Messages,
        (Bound::Unbounded, Bound::Unbounded),
        &mut |k, v| {
            let m: MessageRecord = schema::decode(&path, Table::Messages, k, v)?;
            n_messages += 1;
            if schema::split_message_key(k) != Some((m.mailbox, m.uid)) {
                problems.push(format!("message key {k:02x?} does not match its record"));
            }
            match mailboxes.get(&m.mailbox) {
                None => problems.push(format!(
                    "message {} in missing mailbox {}",
                    m.uid, m.mailbox
                )),
                Some(mb) => {
                    if m.uid >= mb.uid_next || m.uid.0 == 0 {
                        problems.push(format!(
                            "message {} in {} is not below UIDNEXT",
                            m.uid, m.mailbox
                        ));
                    }
                    let c = counts.entry(m.mailbox).or_default();
                    c.messages += 1;
                    c.unseen += u32::from(!m.flags.is_seen());
                    c.recent += u32::from(m.uid >= mb.first_recent_uid);
                    c.size += m.size;
                }
            }
            if m.modseq > state.modseq {
                problems.push(format!(
                    "message {} in {} is ahead of the user MODSEQ",
                    m.uid, m.mailbox
                ));
            }
            if m.flags
                .keywords
                .iter()
                .any(|k| k.0 >= state.next_keyword_id)
            {
                problems.push(format!(
                    "message {} in {} has an unknown keyword",
                    m.uid, m.mailbox
                ));
            }
            *refs.entry(m.guid).or_default() += 1;
            Ok(ControlFlow::Continue(()))
        },
    )?;
    for m in mailboxes.values() {
        let c = counts.remove(&m.id).unwrap_or_default();
        if (c.messages, c.unseen, c.recent, c.size) != (m.messages, m.unseen, m.recent, m.size) {
            problems.push(format!(
                "mailbox {} counts (messages {}, unseen {}, recent {}, size {}) do not match its messages ({}, {}, {}, {})",
                m.id, m.messages, m.unseen, m.recent, m.size, c.messages, c.unseen, c.recent, c.size
            ));
        }
    }

    let mut n_contents = 0u64;
    snap.scan_raw(
        Table::Contents,
        (Bound::Unbounded, Bound::Unbounded),
        &mut |k, v| {
            let c: StoredContent = schema::decode(&path, Table::Contents, k, v)?;
            n_contents += 1;
            let expected = refs.remove(&c.guid).unwrap_or(0);
            if c.refs != expected || k != c.guid.0 {
                problems.push(format!(
                    "content {} has {} references recorded and {expected} messages",
                    c.guid, c.refs
                ));
            }
            Ok(ControlFlow::Continue(()))
        },
    )?;
    for g in refs.keys() {
        problems.push(format!("messages refer to missing content {g}"));
    }

    let mut n_changes = 0u64;
    Reader::changes_since(snap, state.log_floor, &mut |e| {
        n_changes += 1;
        if e.modseq > state.modseq {
            problems.push(format!(
                "change-log entry {} is ahead of the user MODSEQ",
                e.modseq
            ));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    snap.keywords()?;
    snap.subscriptions()?;

    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
        return Err(IndexError::corrupt(
            &path,
            format!("{} problem(s): {}", problems.len(), shown.join("; ")),
        ));
    }
    Ok(CheckReport {
        mailboxes: mailboxes.len() as u64,
        messages: n_messages,
        contents: n_contents,
        changes: n_changes,
        modseq: state.modseq,
    })
}

/// Checks a file that no process has open: the engine's page checksums, then [`verify`].
pub fn check_file(path: &Path) -> Result<CheckReport> {
    if std::fs::metadata(path)
        .map_err(|e| IndexError::io(path, e))?
        .len()
        == 0
    {
        return Err(IndexError::corrupt(path, "the file is empty (zero length)"));
    }
    let db = guard(path, || {
        let mut db = crate::open::builder(16 << 20, false)
            .open(path)
            .map_err(|e| IndexError::engine(path, e))?;
        match db.check_integrity() {
            Ok(true) => Ok(db),
            Ok(false) => Err(IndexError::corrupt(
                path,
                "page checksums did not match; the engine repaired what it could",
            )),
            Err(e) => Err(IndexError::engine(path, e)),
        }
    })?;
    let snap = Snapshot::begin(path, std::sync::Arc::new(db))?;
    verify(&snap)
}
