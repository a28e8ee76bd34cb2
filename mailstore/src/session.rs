//! What an IMAP session asks of a user's index besides APPEND, expunge and MOVE: views,
//! `\Recent` claims, flag changes, COPY, subscriptions and the commit events IDLE waits on.
//! Each picks its durability here, so no caller chooses one.

use std::sync::Arc;

use strata_index::{
    ChangeKind, CommitEvent, Durability, Flags, MailboxId, MailboxView, Modseq, StoreOp,
    StoreOutcome, SystemFlags, Uid, Usage,
};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::store::UserStore;

/// Views kept per open user after their sessions end (a few megabytes for mailboxes of
/// 100,000 messages).
pub const KEPT_VIEWS: usize = 4;

/// What the change log can say about a mailbox's expunges since some MODSEQ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vanished {
    /// Exactly these UIDs (ascending) were expunged since then.
    Exactly(Vec<Uid>),
    /// The log was trimmed past that MODSEQ: any UID not in the mailbox now may have been
    /// expunged (RFC 7162 3.2.5.1 lets a server report such UIDs, even ones never used).
    Unknown,
}

impl UserStore {
    /// The shared in-memory view of a mailbox. The last [`KEPT_VIEWS`] asked for are kept while
    /// the user is open, so selecting one again finds it built and current.
    pub async fn view(&self, mailbox: MailboxId) -> Result<Arc<MailboxView>> {
        let view = self.index().view(mailbox).await?;
        let mut kept = self.kept_views.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|v| v.mailbox() != mailbox && !v.is_deleted());
        kept.push_front(view.clone());
        kept.truncate(KEPT_VIEWS);
        Ok(view)
    }

    /// How many of the mailbox's messages are flagged `\Deleted`, and their total size (STATUS
    /// DELETED and DELETED-STORAGE, RFC 9051 and RFC 9208): counted on the mailbox's view,
    /// which is kept once built.
    pub async fn deleted_messages(&self, mailbox: MailboxId) -> Result<(u32, u64)> {
        let view = self.view(mailbox).await?;
        Ok(view.with_entries(|entries| {
            entries
                .iter()
                .filter(|e| e.flags.system.contains(SystemFlags::DELETED))
                .fold((0, 0), |(n, bytes), e| (n + 1, bytes + e.size))
        }))
    }

    /// Claims the mailbox's not-yet-claimed messages below `below` (all with `None`) as
    /// `\Recent` for the caller; returns the UID range `[from, to)` it got. Claims share fsyncs
    /// with other sessions' changes: a claim lost in a crash only shows `\Recent` once more.
    pub async fn claim_recent(&self, mailbox: MailboxId, below: Option<Uid>) -> Result<(Uid, Uid)> {
        let below = below.unwrap_or(Uid(u32::MAX));
        Ok(self
            .index()
            .write(Durability::Grouped, move |t| t.claim_recent(mailbox, below))
            .await?)
    }

    /// Changes flags (group-committed with other sessions' changes). With `unchanged_since`,
    /// messages changed after that MODSEQ are left alone and listed as conflicts (RFC 7162).
    pub async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: Vec<Uid>,
        op: StoreOp,
        flags: Flags,
        unchanged_since: Option<Modseq>,
    ) -> Result<StoreOutcome> {
        Ok(self
            .index()
            .store(mailbox, uids, op, flags, unchanged_since)
            .await?)
    }

    /// Copies messages (durable before return); returns (source UID, new UID) pairs.
    pub async fn copy(
        &self,
        from: MailboxId,
        uids: Vec<Uid>,
        to: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        let limits = self.limits();
        let copied = self
            .index()
            .write(Durability::Immediate, move |t| {
                if !limits.is_unlimited() {
                    let mut adding = Usage::default();
                    for &uid in &uids {
                        if let Some(m) = t.get_message(from, uid)? {
                            adding.messages += 1;
                            adding.storage += m.size;
                        }
                    }
                    if let Err(over) = limits.check(t.usage()?, adding) {
                        return Ok(Err(over));
                    }
                }
                t.copy(from, &uids, to).map(Ok)
            })
            .await?;
        Ok(copied?)
    }

    /// Subscribes to a mailbox name or unsubscribes from it (durable before return).
    pub async fn set_subscribed(&self, name: String, on: bool) -> Result<()> {
        Ok(self
            .index()
            .write(Durability::Immediate, move |t| {
                if on {
                    t.subscribe(&name)
                } else {
                    t.unsubscribe(&name)
                }
            })
            .await?)
    }

    /// Every commit from now on, for a session waiting in IDLE.
    pub fn commits(&self) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.index().subscribe()
    }

    /// The UIDs expunged from `mailbox` after `since` (QRESYNC's VANISHED), from the change log.
    pub fn vanished_since(&self, mailbox: MailboxId, since: Modseq) -> Result<Vanished> {
        let snap = self.snapshot()?;
        if snap.log_floor() > since {
            return Ok(Vanished::Unknown);
        }
        let mut uids: Vec<Uid> = snap
            .changes_since(since)?
            .into_iter()
            .filter(|e| e.mailbox == mailbox && matches!(e.kind, ChangeKind::Expunged { .. }))
            .map(|e| e.uid)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        Ok(Vanished::Exactly(uids))
    }
}
