//! Keeping a Maildir's file names in step with the index's flags, off the request path: a task
//! per user follows the index's commits and, for each message whose flags were set (APPEND,
//! STORE, COPY), sets its body's label in the store that keeps labels. Changes that arrive
//! together are labelled together, the last flags of a message winning.
//!
//! Only a body in its own mailbox's folder is labelled: a COPY shares its source's body, whose
//! name carries the source message's flags.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use strata_backend_api::{Key, Label};
use strata_index::{Change, Flags, KeywordId, MailboxId, Parts, SystemFlags, Uid};
use tokio::sync::broadcast::error::RecvError;

use crate::store::UserStore;

/// Starts the labeller of `user` if its main store keeps labels.
pub(crate) fn spawn(user: &Arc<UserStore>) {
    if !user.stores().main().capabilities().labels {
        return;
    }
    let mut events = user.index().subscribe();
    let weak: Weak<UserStore> = Arc::downgrade(user);
    tokio::spawn(async move {
        loop {
            let mut changed: HashMap<(MailboxId, Uid), Flags> = HashMap::new();
            let mut take = |event: &strata_index::CommitEvent| {
                for c in &event.changes {
                    match c {
                        Change::Appended {
                            mailbox,
                            uid,
                            flags,
                            ..
                        }
                        | Change::FlagsChanged {
                            mailbox,
                            uid,
                            flags,
                            ..
                        } => {
                            changed.insert((*mailbox, *uid), flags.clone());
                        }
                        Change::Expunged { mailbox, uid, .. } => {
                            changed.remove(&(*mailbox, *uid));
                        }
                        _ => {}
                    }
                }
            };
            match events.recv().await {
                Ok(e) => take(&e),
                Err(RecvError::Closed) => return,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(
                        missed = n,
                        "labels: missed commits; they catch up at the next change"
                    );
                    continue;
                }
            }
            // Whatever else has committed meanwhile goes in the same round.
            while let Ok(e) = events.try_recv() {
                take(&e);
            }
            if changed.is_empty() {
                continue;
            }
            let Some(user) = weak.upgrade() else { return };
            if let Err(e) = user.label(changed).await {
                tracing::warn!(user = user.name(), error = %e, "could not label message files");
            }
        }
    });
}

/// Maildir's letters for the system flags.
fn letters(system: SystemFlags) -> String {
    [
        (SystemFlags::DRAFT, 'D'),
        (SystemFlags::FLAGGED, 'F'),
        (SystemFlags::ANSWERED, 'R'),
        (SystemFlags::SEEN, 'S'),
        (SystemFlags::DELETED, 'T'),
    ]
    .iter()
    .filter(|(f, _)| system.contains(*f))
    .map(|(_, c)| *c)
    .collect()
}

impl UserStore {
    /// Labels the bodies of messages whose flags changed (see the module).
    async fn label(&self, changed: HashMap<(MailboxId, Uid), Flags>) -> crate::Result<()> {
        let snap = self.snapshot()?;
        let names: HashMap<KeywordId, String> = snap.keywords()?.into_iter().collect();
        let mut per_store: HashMap<strata_index::StoreId, Vec<(Key, Label)>> = HashMap::new();
        for ((mailbox, uid), flags) in changed {
            let Some(m) = snap.message(mailbox, uid)? else {
                continue;
            };
            let Some(c) = snap.content_parts(&m.guid, Parts::default())? else {
                continue;
            };
            let folder = self.folder_of(&snap, mailbox)?;
            let in_own_folder = match c.location.key.rsplit_once('/') {
                Some((f, _)) => f == folder,
                None => folder.is_empty(),
            };
            if !in_own_folder {
                continue;
            }
            let label = Label {
                flags: letters(flags.system),
                keywords: flags
                    .keywords
                    .iter()
                    .filter_map(|k| names.get(k).cloned())
                    .collect(),
            };
            per_store
                .entry(c.location.store)
                .or_default()
                .push((Key::new(c.location.key)?, label));
        }
        drop(snap);
        for (store, labels) in per_store {
            self.stores().get(store)?.set_labels(labels).await?;
        }
        Ok(())
    }
}
