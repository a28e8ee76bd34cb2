//! The in-memory view of a selected mailbox: UID, flags, MODSEQ, size and dates of every message,
//! in UID order, so that sequence numbers, FETCH FLAGS, STORE and searches on flags, UIDs, sizes
//! and dates never scan the file. One view per mailbox is shared by all sessions of the user; the
//! writer keeps it current from each commit, and it is dropped when the last session lets go.
//!
//! The view is the mailbox's *current* committed state. A session that must delay reporting an
//! expunge (RFC 3501 forbids EXPUNGE during FETCH, STORE, SEARCH) keeps its own sequence mapping
//! on top; that belongs to the protocol layer.

use std::sync::RwLock;

use crate::changes::{Change, ChangeKind};
use crate::model::{Flags, Guid, MailboxId, MessageRecord, Modseq, Timestamp, Uid};

/// One message in a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewEntry {
    /// UID.
    pub uid: Uid,
    /// Its content, so that a FETCH of parsed data skips the message row.
    pub guid: Guid,
    /// Flags.
    pub flags: Flags,
    /// MODSEQ of its last change.
    pub modseq: Modseq,
    /// RFC822.SIZE.
    pub size: u64,
    /// INTERNALDATE.
    pub internal_date: Timestamp,
    /// SAVEDATE.
    pub save_date: Timestamp,
}

impl From<&MessageRecord> for ViewEntry {
    fn from(m: &MessageRecord) -> Self {
        ViewEntry {
            uid: m.uid,
            guid: m.guid,
            flags: m.flags.clone(),
            modseq: m.modseq,
            size: m.size,
            internal_date: m.internal_date,
            save_date: m.save_date,
        }
    }
}

#[derive(Default)]
struct ViewState {
    entries: Vec<ViewEntry>,
    applied: Modseq,
    /// The mailbox's HIGHESTMODSEQ as of `applied`: the last change to it or its messages.
    highest: Modseq,
    deleted: bool,
}

/// The shared in-memory view of one mailbox.
pub struct MailboxView {
    mailbox: MailboxId,
    state: RwLock<ViewState>,
}

impl MailboxView {
    pub(crate) fn new(
        mailbox: MailboxId,
        entries: Vec<ViewEntry>,
        applied: Modseq,
        highest: Modseq,
    ) -> Self {
        MailboxView {
            mailbox,
            state: RwLock::new(ViewState {
                entries,
                applied,
                highest,
                deleted: false,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ViewState> {
        // A panic while holding the lock cannot leave entries half-updated in a way readers
        // misread (each change is one Vec operation), so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ViewState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The mailbox.
    pub fn mailbox(&self) -> MailboxId {
        self.mailbox
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether the mailbox is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The user MODSEQ the view is current to.
    pub fn modseq(&self) -> Modseq {
        self.read().applied
    }

    /// The mailbox's HIGHESTMODSEQ (RFC 7162) as of [`Self::modseq`]: the MODSEQ of the last
    /// change to the mailbox or any of its messages, expunges included.
    pub fn highest_modseq(&self) -> Modseq {
        self.read().highest
    }

    /// Whether the mailbox has been deleted.
    pub fn is_deleted(&self) -> bool {
        self.read().deleted
    }

    /// The UID at a 1-based sequence number.
    pub fn uid_at(&self, seq: u32) -> Option<Uid> {
        let st = self.read();
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        st.entries.get(i).map(|e| e.uid)
    }

    /// The 1-based sequence number of a UID.
    pub fn seq_of(&self, uid: Uid) -> Option<u32> {
        let st = self.read();
        st.entries
            .binary_search_by_key(&uid, |e| e.uid)
            .ok()
            .map(|i| i as u32 + 1)
    }

    /// One message's entry.
    pub fn get(&self, uid: Uid) -> Option<ViewEntry> {
        let st = self.read();
        st.entries
            .binary_search_by_key(&uid, |e| e.uid)
            .ok()
            .map(|i| st.entries[i].clone())
    }

    /// The entries of `uids` (`None` for those not in the view), under one hold of the read
    /// lock; UIDs in ascending order are found walking forward, not searched for each.
    pub fn get_many(&self, uids: &[Uid]) -> Vec<Option<ViewEntry>> {
        let st = self.read();
        let all = &st.entries[..];
        let mut at = 0;
        uids.iter()
            .map(|&uid| {
                if all.get(at).is_none_or(|e| e.uid > uid) {
                    // Out of order (or past the end): search the whole view again.
                    at = all.partition_point(|e| e.uid < uid);
                } else if all[at].uid < uid {
                    at += all[at..].partition_point(|e| e.uid < uid);
                }
                let found = all.get(at).filter(|e| e.uid == uid).cloned();
                if found.is_some() {
                    at += 1;
                }
                found
            })
            .collect()
    }

    /// Runs `f` over the entries, in UID order, under the view's read lock (keep it short).
    pub fn with_entries<R>(&self, f: impl FnOnce(&[ViewEntry]) -> R) -> R {
        f(&self.read().entries)
    }

    /// Runs `f` over the entries with the view's MODSEQ and HIGHESTMODSEQ, all read under one
    /// hold of the read lock (taking it again inside `f` could wait behind a writer forever).
    pub fn with_entries_at<R>(&self, f: impl FnOnce(&[ViewEntry], Modseq, Modseq) -> R) -> R {
        let st = self.read();
        f(&st.entries, st.applied, st.highest)
    }

    /// A copy of every entry.
    pub fn entries(&self) -> Vec<ViewEntry> {
        self.read().entries.clone()
    }

    /// The UIDs of entries matching `pred`, in UID order.
    pub fn search(&self, mut pred: impl FnMut(&ViewEntry) -> bool) -> Vec<Uid> {
        self.read()
            .entries
            .iter()
            .filter(|e| pred(e))
            .map(|e| e.uid)
            .collect()
    }

    /// Applies one commit's changes. Changes at or below the view's MODSEQ were already folded
    /// in when the view was built, and are skipped.
    pub(crate) fn apply(&self, changes: &[Change], commit_modseq: Modseq) {
        let mut st = self.write();
        let seen = st.applied;
        // Expunges are removed in one pass at the end: removing them one by one would move the
        // tail of the vector once per message. UIDs are never reused, so no later change in the
        // same commit can refer to an expunged UID.
        let mut expunged = Vec::new();
        for c in changes {
            if c.mailbox() != Some(self.mailbox) || c.modseq() <= seen {
                continue;
            }
            st.highest = st.highest.max(c.modseq());
            match c {
                Change::Appended {
                    uid,
                    guid,
                    flags,
                    modseq,
                    size,
                    internal_date,
                    save_date,
                    ..
                } => upsert(
                    &mut st.entries,
                    ViewEntry {
                        uid: *uid,
                        guid: *guid,
                        flags: flags.clone(),
                        modseq: *modseq,
                        size: *size,
                        internal_date: *internal_date,
                        save_date: *save_date,
                    },
                ),
                Change::FlagsChanged {
                    uid, flags, modseq, ..
                } => {
                    if let Ok(i) = st.entries.binary_search_by_key(uid, |e| e.uid) {
                        st.entries[i].flags = flags.clone();
                        st.entries[i].modseq = *modseq;
                    }
                }
                Change::Expunged { uid, .. } => expunged.push(*uid),
                Change::Mailbox {
                    kind: ChangeKind::MailboxDeleted,
                    ..
                } => {
                    st.entries.clear();
                    st.deleted = true;
                }
                Change::Mailbox { .. } | Change::User { .. } => {}
            }
        }
        if !expunged.is_empty() {
            expunged.sort_unstable();
            st.entries
                .retain(|e| expunged.binary_search(&e.uid).is_err());
        }
        st.applied = st.applied.max(commit_modseq);
    }

    /// Folds in the current record of a message (or its absence) during catch-up.
    pub(crate) fn refresh(&self, uid: Uid, current: Option<&MessageRecord>) {
        let mut st = self.write();
        match current {
            Some(m) => upsert(&mut st.entries, ViewEntry::from(m)),
            None => remove(&mut st.entries, uid),
        }
    }

    pub(crate) fn finish_catch_up(&self, modseq: Modseq, highest: Modseq, deleted: bool) {
        let mut st = self.write();
        st.applied = st.applied.max(modseq);
        st.highest = st.highest.max(highest);
        if deleted {
            st.entries.clear();
            st.deleted = true;
        }
    }
}

fn upsert(entries: &mut Vec<ViewEntry>, e: ViewEntry) {
    // New UIDs are always the highest, so the common case is a push.
    match entries.last() {
        Some(last) if last.uid >= e.uid => match entries.binary_search_by_key(&e.uid, |x| x.uid) {
            Ok(i) => entries[i] = e,
            Err(i) => entries.insert(i, e),
        },
        _ => entries.push(e),
    }
}

fn remove(entries: &mut Vec<ViewEntry>, uid: Uid) {
    if let Ok(i) = entries.binary_search_by_key(&uid, |x| x.uid) {
        entries.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: u32) -> ViewEntry {
        ViewEntry {
            uid: Uid(uid),
            guid: Guid([uid as u8; 16]),
            flags: Flags::default(),
            modseq: Modseq(1),
            size: u64::from(uid),
            internal_date: Timestamp::default(),
            save_date: Timestamp::default(),
        }
    }

    #[test]
    fn many_entries_are_found_in_any_order() {
        let view = MailboxView::new(
            MailboxId(1),
            [2, 3, 5, 8, 13, 21, 34].into_iter().map(entry).collect(),
            Modseq(1),
            Modseq(1),
        );
        let asked: Vec<Uid> = [1, 2, 3, 4, 5, 21, 34, 35, 8, 2, 34, 3, 3]
            .into_iter()
            .map(Uid)
            .collect();
        let got: Vec<Option<u32>> = view
            .get_many(&asked)
            .into_iter()
            .map(|e| e.map(|e| e.uid.0))
            .collect();
        let one_by_one: Vec<Option<u32>> = asked
            .iter()
            .map(|u| view.get(*u).map(|e| e.uid.0))
            .collect();
        assert_eq!(got, one_by_one);
        assert_eq!(
            got,
            [
                None,
                Some(2),
                Some(3),
                None,
                Some(5),
                Some(21),
                Some(34),
                None,
                Some(8),
                Some(2),
                Some(34),
                Some(3),
                Some(3)
            ]
        );
    }
}
