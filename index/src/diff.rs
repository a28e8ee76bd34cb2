//! State diffs: every row that changed between two MODSEQs, with its value at the later one.
//!
//! The change log says *which* rows changed; the diff carries their current raw values (or their
//! absence). Small tables (meta, mailboxes, names, keywords, subscriptions) travel whole. The
//! same diff serves repack catch-up and the backup's incremental part, and applying it to a copy
//! taken at any MODSEQ between `from` and `to` yields the state at `to`.

use std::collections::BTreeSet;
use std::ops::{Bound, ControlFlow};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::changes::ChangeKind;
use crate::error::{IndexError, Result};
use crate::model::Modseq;
use crate::schema::{self, Table, UserState};
use crate::snapshot::Snapshot;
use crate::store::{RawRead, guard};
use crate::threads::ThreadKeys;
use crate::txn::Txn;

/// Tables small enough to be carried whole in every diff.
const WHOLE: [Table; 5] = [
    Table::Meta,
    Table::Mailboxes,
    Table::MailboxNames,
    Table::Keywords,
    Table::Subscriptions,
];

/// A raw row: key and value.
pub(crate) type Row = (Vec<u8>, Vec<u8>);

/// The rows that changed between two MODSEQs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// The MODSEQ the diff starts after.
    pub from: Modseq,
    /// The MODSEQ it brings a copy to.
    pub to: Modseq,
    pub(crate) whole: Vec<(Table, Vec<Row>)>,
    pub(crate) rows: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

impl Diff {
    /// Number of rows the diff carries.
    pub fn row_count(&self) -> usize {
        self.rows.len() + self.whole.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    /// Whether nothing changed between `from` and `to`.
    pub fn is_empty(&self) -> bool {
        self.from == self.to
    }
}

/// The diff from `from` to the snapshot's state.
pub(crate) fn since(snap: &Snapshot, from: Modseq) -> Result<Diff> {
    guard(snap.file(), || {
        if snap.log_floor() > from {
            return Err(IndexError::BackupMismatch(format!(
                "the change log of {} was trimmed up to MODSEQ {}, after {from}",
                snap.file().display(),
                snap.log_floor()
            )));
        }
        let mut diff = Diff {
            from,
            to: snap.modseq(),
            ..Diff::default()
        };
        for t in WHOLE {
            diff.whole.push((t, all_rows(snap, t)?));
        }
        let mut messages = BTreeSet::new();
        let mut contents = BTreeSet::new();
        let start = schema::changes_after(from);
        let path = snap.file().to_path_buf();
        snap.scan_raw(
            Table::Changes,
            (Bound::Included(&start[..]), Bound::Unbounded),
            &mut |k, v| {
                let (_, mailbox, uid) = schema::split_change_key(k)
                    .ok_or_else(|| IndexError::corrupt(&path, "malformed change-log key"))?;
                let kind: ChangeKind = schema::decode(&path, Table::Changes, k, v)?;
                match kind {
                    ChangeKind::Appended { guid } | ChangeKind::Expunged { guid } => {
                        messages.insert(schema::message_key(mailbox, uid));
                        contents.insert(guid);
                    }
                    ChangeKind::FlagsChanged => {
                        messages.insert(schema::message_key(mailbox, uid));
                    }
                    ChangeKind::ContentMoved { guid } => {
                        contents.insert(guid);
                    }
                    _ => {}
                }
                diff.rows
                    .push((Table::Changes, k.to_vec(), Some(v.to_vec())));
                Ok(ControlFlow::Continue(()))
            },
        )?;
        for key in messages {
            let v = snap.get_raw(Table::Messages, &key)?;
            diff.rows.push((Table::Messages, key.to_vec(), v));
        }
        for guid in contents {
            let key = schema::guid_key(&guid);
            let v = snap.get_raw(Table::Contents, key)?;
            if let Some(raw) = &v {
                // The Message-IDs a content brought, so that a copy threads the next reply
                // the same way. (Those of content gone since are left to the copy: a stale
                // row only joins a later reply to a thread that was.)
                let stored: schema::StoredContent =
                    schema::decode(&path, Table::Contents, key, raw)?;
                for k in ThreadKeys::of_blobs(&stored.envelope, &stored.headers).row_keys() {
                    let row = snap.get_raw(Table::Threads, &k)?;
                    diff.rows.push((Table::Threads, k, row));
                }
            }
            diff.rows.push((Table::Contents, key.to_vec(), v));
        }
        Ok(diff)
    })
}

fn all_rows(r: &dyn RawRead, t: Table) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    r.scan_raw(t, (Bound::Unbounded, Bound::Unbounded), &mut |k, v| {
        rows.push((k.to_vec(), v.to_vec()));
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(rows)
}

/// Applies a diff inside a transaction on a copy whose MODSEQ lies in `[from, to]`.
pub(crate) fn apply(txn: &mut Txn<'_, '_>, diff: &Diff, path: &Path) -> Result<()> {
    let current = txn.highest_modseq();
    if current < diff.from || current > diff.to {
        return Err(IndexError::BackupMismatch(format!(
            "a diff from MODSEQ {} to {} cannot apply to a copy at {current}",
            diff.from, diff.to
        )));
    }
    let mut state: Option<UserState> = None;
    for (t, rows) in &diff.whole {
        txn.clear_table(*t)?;
        for (k, v) in rows {
            // Every row is checked before it is trusted: a diff file may have been damaged.
            schema::verify(path, *t, k, v)?;
            if *t == Table::Meta && k.as_slice() == schema::META_STATE {
                state = Some(schema::decode(path, *t, k, v)?);
            }
            txn.apply_raw(*t, k, Some(v))?;
        }
    }
    for (t, k, v) in &diff.rows {
        if let Some(v) = v {
            schema::verify(path, *t, k, v)?;
        }
        txn.apply_raw(*t, k, v.as_deref())?;
    }
    let state =
        state.ok_or_else(|| IndexError::BackupMismatch("the diff has no user state".into()))?;
    if state.modseq != diff.to {
        return Err(IndexError::BackupMismatch(format!(
            "the diff's state is at MODSEQ {}, not {}",
            state.modseq, diff.to
        )));
    }
    txn.set_state(state);
    Ok(())
}
