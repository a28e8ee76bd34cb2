//! Keeping a Maildir's file names in step with the index's flags, off the request path: a task
//! per user follows the index's commits and, for each message whose flags were set (APPEND,
//! STORE, COPY), sets its body's label in the store that keeps labels. Changes that arrive
//! together are labelled together, the last flags of a message winning.
//!
//! A MOVE's body is first refiled to its new mailbox's folder (see `refile`), so other Maildir
//! tools and a rebuild find the message where it is. Only a body in its own mailbox's folder
//! is labelled: a COPY shares its source's body, whose name carries the source's flags.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use strata_backend_api::{Batch, Key, Label};
use strata_index::{
    BodyLocation, Change, Flags, Guid, KeywordId, MailboxId, Parts, SystemFlags, Uid,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::store::UserStore;

/// Labels waiting to be set: the last flags of each message changed.
pub(crate) type Pending = HashMap<(MailboxId, Uid), Flags>;

/// A user's running labeller, stopped when the user's store closes.
pub(crate) struct Labeller {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Pending>,
}

impl Labeller {
    /// Stops the task and returns what it had not labelled yet, for the closing store to label.
    pub(crate) async fn stop(self) -> Pending {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Starts the labeller of `user` if its main store keeps labels. It works on the user only
/// while it holds `user.background` shared, so closing the user (which takes it exclusively)
/// never races with it.
pub(crate) fn spawn(user: &Arc<UserStore>) -> Option<Labeller> {
    if !user.stores().main().capabilities().labels {
        return None;
    }
    let mut events = user.index().subscribe();
    let weak: Weak<UserStore> = Arc::downgrade(user);
    let gate = user.background.clone();
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut changed = Pending::new();
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                e = events.recv() => match e {
                    Ok(e) => take(&mut changed, &e),
                    Err(RecvError::Closed) => break,
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(
                            missed = n,
                            "labels: missed commits; they catch up at the next change"
                        );
                        continue;
                    }
                },
            }
            // Whatever else has committed meanwhile goes in the same round.
            while let Ok(e) = events.try_recv() {
                take(&mut changed, &e);
            }
            if changed.is_empty() {
                continue;
            }
            let _held = tokio::select! {
                biased;
                _ = &mut stopped => break,
                g = gate.clone().read_owned() => g,
            };
            let Some(user) = weak.upgrade() else { break };
            if let Err(e) = user.label(std::mem::take(&mut changed)).await {
                tracing::warn!(user = user.name(), error = %e, "could not label message files");
            }
        }
        while let Ok(e) = events.try_recv() {
            take(&mut changed, &e);
        }
        changed
    });
    Some(Labeller { stop, task })
}

/// Adds what one commit changed to the pending labels.
fn take(changed: &mut Pending, event: &strata_index::CommitEvent) {
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
    pub(crate) async fn label(&self, changed: Pending) -> crate::Result<()> {
        self.refile(&changed).await?;
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

    /// Moves each body that only a message in another mailbox holds (a MOVE's) to that
    /// mailbox's folder, so the Maildir shows the message where it is. As a migration does:
    /// both keys go to the intent file first, the copy (a hard link) is written, the index
    /// switched, and then the key the index no longer names deleted; a crash in between leaves
    /// the intent, which the next reconciliation finishes.
    async fn refile(&self, changed: &Pending) -> crate::Result<()> {
        // A migration moves bodies itself; the next change refiles.
        let Ok(_one) = self.migration.try_lock() else {
            return Ok(());
        };
        let snap = self.snapshot()?;
        let main = self.stores().main_id();
        let mut moves: Vec<(Guid, BodyLocation, BodyLocation)> = Vec::new();
        for (mailbox, uid) in changed.keys() {
            let Some(m) = snap.message(*mailbox, *uid)? else {
                continue;
            };
            let Some(c) = snap.content_parts(&m.guid, Parts::default())? else {
                continue;
            };
            // A COPY shares its body with the original, which keeps it.
            if c.location.store != main || snap.content_refs(&m.guid)? != 1 {
                continue;
            }
            let folder = self.folder_of(&snap, *mailbox)?;
            let (old, name) = c
                .location
                .key
                .rsplit_once('/')
                .unwrap_or(("", &c.location.key));
            if old == folder {
                continue;
            }
            let key = if folder.is_empty() {
                name.to_string()
            } else {
                format!("{folder}/{name}")
            };
            let to = BodyLocation { store: main, key };
            moves.push((m.guid, c.location, to));
        }
        drop(snap);
        if moves.is_empty() {
            return Ok(());
        }
        let intents: Vec<(Guid, BodyLocation)> = moves
            .iter()
            .flat_map(|(g, from, to)| [(*g, from.clone()), (*g, to.clone())])
            .collect();
        crate::intents::write(&self.moves, &intents)?;
        let mut batch = Batch::new();
        for (_, from, to) in &moves {
            batch = batch.copy(Key::new(from.key.clone())?, Key::new(to.key.clone())?);
        }
        self.stores().main().commit(batch).await?;
        self.switch_bodies(moves).await?;
        self.collect(&intents).await?;
        crate::intents::clear(&self.moves)?;
        Ok(())
    }
}
