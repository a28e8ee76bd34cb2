//! Expunged messages that a session may still name. RFC 2180 4.1: a session that has not yet
//! been told of an expunge (it cannot be, during FETCH, STORE or SEARCH) still numbers the
//! message, and a FETCH of it returns its data. So an expunge keeps each message's record, and
//! defers deleting its body, until every session that had the mailbox selected before the
//! expunge has reported it; sessions that select later never see the message.
//!
//! The graves are in memory: after a crash, the bodies they held are deleted by the next
//! reconciliation, never read again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use strata_index::{BodyLocation, ContentRecord, MailboxId, Modseq, Uid, ViewEntry};

/// A session's watch over one selected mailbox: up to which MODSEQ it has told its client of
/// expunges. It starts at 0 (told nothing) until the session knows what it numbers.
#[derive(Debug, Default)]
pub(crate) struct Mark {
    told: AtomicU64,
}

/// One expunged message.
#[derive(Clone, Debug)]
pub(crate) struct Grave {
    pub mailbox: MailboxId,
    /// The message as the session's view had it.
    pub entry: ViewEntry,
    /// Its content as it was.
    pub content: ContentRecord,
    /// The MODSEQ of the expunge: a session told of changes up to it knows.
    pub modseq: Modseq,
}

/// The graves of one user, and the sessions that may still name them.
#[derive(Default)]
pub(crate) struct Graves {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watchers: Vec<(MailboxId, Weak<Mark>)>,
    dead: Vec<Grave>,
}

impl Graves {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `mailbox` for a session that is selecting it.
    pub fn watch(&self, mailbox: MailboxId) -> Arc<Mark> {
        let mark = Arc::new(Mark::default());
        let mut inner = self.inner();
        inner.watchers.retain(|(_, w)| w.strong_count() > 0);
        inner.watchers.push((mailbox, Arc::downgrade(&mark)));
        mark
    }

    /// Records what a session has now told its client.
    pub fn told(mark: &Mark, modseq: Modseq) {
        mark.told.fetch_max(modseq.0, Ordering::AcqRel);
    }

    /// Keeps expunged messages for the sessions that were not told yet, at most `max`: past
    /// it the oldest are given up (released at the next release whoever watches).
    pub fn bury(&self, graves: Vec<Grave>, max: usize) {
        if graves.is_empty() {
            return;
        }
        let mut inner = self.inner();
        inner.dead.extend(graves);
        let over = inner.dead.len().saturating_sub(max);
        if over > 0 {
            // Given up: stamped as told by everyone.
            for g in &mut inner.dead[..over] {
                g.modseq = Modseq(0);
            }
        }
    }

    /// An expunged message a session may still name.
    pub fn find(&self, mailbox: MailboxId, uid: Uid) -> Option<(ViewEntry, ContentRecord)> {
        self.inner()
            .dead
            .iter()
            .find(|g| g.mailbox == mailbox && g.entry.uid == uid)
            .map(|g| (g.entry.clone(), g.content.clone()))
    }

    /// Whether a grave holds a body at `location` (a migration must not delete it).
    pub fn holds(&self, location: &BodyLocation) -> bool {
        self.inner()
            .dead
            .iter()
            .any(|g| g.content.location == *location)
    }

    /// The body locations the graves hold.
    pub fn locations(&self) -> Vec<BodyLocation> {
        self.inner()
            .dead
            .iter()
            .map(|g| g.content.location.clone())
            .collect()
    }

    /// Whether any grave is waiting.
    pub fn any(&self) -> bool {
        !self.inner().dead.is_empty()
    }

    /// Takes out the graves every watching session has been told of.
    pub fn released(&self) -> Vec<Grave> {
        let mut inner = self.inner();
        inner.watchers.retain(|(_, w)| w.strong_count() > 0);
        let Inner { watchers, dead } = &mut *inner;
        let told = |g: &Grave| {
            watchers
                .iter()
                .filter(|(m, _)| *m == g.mailbox)
                .filter_map(|(_, w)| w.upgrade())
                .all(|mark| mark.told.load(Ordering::Acquire) >= g.modseq.0)
        };
        let (gone, kept): (Vec<Grave>, Vec<Grave>) = dead.drain(..).partition(told);
        *dead = kept;
        gone
    }
}
