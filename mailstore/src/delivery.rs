//! One message filed into many users' mailboxes at once (a delivery to N recipients). Each
//! user's part is an APPEND (quota checked, keys chosen, records written), but the bodies of
//! users whose main store is one shared store go in one batch that puts the message once and
//! copies it to the others. So the store gets the bytes once and copies them its own way: a
//! Maildir tree links the file, a database copies the rows, S3 copies the object, the
//! journal logs the bytes once and the single-instance layer copies a skeleton. It is not a
//! protocol: LMTP calls it.

use std::sync::Arc;

use bytes::Bytes;
use strata_backend_api::{BackendError, Batch, Key, Op, Prefixed};
use strata_index::{MailboxId, Uid};

use crate::error::{Result, StoreError};
use crate::model::Flags;
use crate::store::{PendingAppend, Prepared, UserStore};

/// Targets whose bodies go in one batch: those of one shared store, or one alone (no store).
type Group = (Option<Arc<Prefixed>>, Vec<(usize, PendingAppend)>);

/// One recipient's outcome: the mailbox's UIDVALIDITY and the new UID.
pub type Delivered = Result<(u32, Uid)>;

/// Files `message` into each `(user, mailbox)`; one outcome per target, in order. Targets
/// that share a main store get the message's bytes written there once.
pub async fn deliver(
    targets: &[(Arc<UserStore>, MailboxId)],
    message: &Prepared,
) -> Vec<Delivered> {
    let mut outcomes: Vec<Option<Delivered>> = targets.iter().map(|_| None).collect();
    // Each target prepared, then grouped by the shared store it writes to (or alone).
    let mut groups: Vec<Group> = Vec::new();
    for (i, (user, mailbox)) in targets.iter().enumerate() {
        let prepared =
            user.prepare_append(*mailbox, vec![(message.clone(), Flags::default(), None)]);
        let pending = match prepared {
            Ok(p) => p,
            Err(e) => {
                outcomes[i] = Some(Err(e));
                continue;
            }
        };
        let view = user.stores.shared_main().cloned();
        let joins = view.as_ref().and_then(|v| {
            groups.iter().position(|(g, _)| {
                g.as_ref()
                    .is_some_and(|g| Arc::ptr_eq(g.shared(), v.shared()))
            })
        });
        match joins {
            Some(g) => groups[g].1.push((i, pending)),
            None => groups.push((view, vec![(i, pending)])),
        }
    }
    let runs = groups
        .into_iter()
        .map(|(_, members)| file_together(targets, members));
    for done in futures::future::join_all(runs).await {
        for (i, outcome) in done {
            outcomes[i] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::NotAllowed("not delivered".into()))))
        .collect()
}

/// Commits the bodies of `members` (targets sharing one main store, or one alone) in one batch,
/// then records each in its user's index.
async fn file_together(
    targets: &[(Arc<UserStore>, MailboxId)],
    mut members: Vec<(usize, PendingAppend)>,
) -> Vec<(usize, Delivered)> {
    let users: Vec<&Arc<UserStore>> = members.iter().map(|(i, _)| &targets[*i].0).collect();
    let batches: Vec<Batch> = members
        .iter_mut()
        .map(|(_, p)| std::mem::take(&mut p.batch))
        .collect();
    // Named as in flight before they are written, until each index names them.
    let _in_flight: Vec<_> = users
        .iter()
        .zip(&members)
        .map(|(u, (_, p))| u.in_flight_for(p))
        .collect();
    if let Err(e) = commit(&users, batches).await {
        return members
            .into_iter()
            .map(|(i, _)| (i, Err(StoreError::Backend(e.clone()))))
            .collect();
    }
    let records = members
        .into_iter()
        .zip(&users)
        .map(|((i, p), u)| async move {
            let outcome = u
                .record_append(p)
                .await
                .and_then(|(validity, uids)| match uids[..] {
                    [uid] => Ok((validity, uid)),
                    _ => Err(StoreError::NotAllowed(
                        "the index recorded another number of messages than one".into(),
                    )),
                });
            (i, outcome)
        });
    futures::future::join_all(records).await
}

/// Commits the users' batches: as one batch of their shared store when there are several (the
/// first put of the message stays a put, every later put of the same bytes becomes a copy of
/// it), else the one user's batch to their main store. Waits for the store's ack when APPENDs
/// do.
async fn commit(
    users: &[&Arc<UserStore>],
    batches: Vec<Batch>,
) -> std::result::Result<(), BackendError> {
    let views: Option<Vec<&Arc<Prefixed>>> = users.iter().map(|u| u.stores.shared_main()).collect();
    let receipt = match views {
        Some(views) if users.len() > 1 => {
            let mut batch = Batch::new();
            let mut source: Option<(Key, Bytes)> = None;
            for (view, part) in views.iter().zip(batches) {
                for op in part.ops {
                    batch = match op {
                        Op::Put { key, data } => {
                            let key = view.shared_key(&key)?;
                            match &source {
                                Some((from, bytes)) if same(bytes, &data) => {
                                    batch.copy(from.clone(), key)
                                }
                                _ => {
                                    source = Some((key.clone(), data.clone()));
                                    batch.put(key, data)
                                }
                            }
                        }
                        Op::Meta { key, meta } => batch.meta(view.shared_key(&key)?, *meta),
                        Op::Delete { key } => batch.delete(view.shared_key(&key)?),
                        Op::Copy { from, to } => {
                            batch.copy(view.shared_key(&from)?, view.shared_key(&to)?)
                        }
                    };
                }
            }
            views[0].shared().commit(batch).await?
        }
        _ => {
            let mut receipt = None;
            for (u, b) in users.iter().zip(batches) {
                receipt = Some(u.stores.main().commit(b).await?);
            }
            match receipt {
                Some(r) => r,
                None => return Ok(()),
            }
        }
    };
    if users.first().is_some_and(|u| u.waits_for_ack()) {
        receipt.acked().await?;
    }
    Ok(())
}

/// Whether two bodies are the same bytes (the same buffer, as every target's copy of one
/// message is, or equal ones).
fn same(a: &Bytes, b: &Bytes) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}
