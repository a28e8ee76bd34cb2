//! What each body records about its message in a store that keeps metadata (SQL, S3): the
//! user, the mailbox it is filed in, its GUID and dates ([`BodyMeta`]), written with the body
//! and written again when a MOVE files it elsewhere, so that `strata index rebuild` can find
//! every message from the store alone. It is a recovery record, not a second index: flags,
//! UIDs and MODSEQs are only in the index and its shipped chain.

use strata_backend_api::{Batch, BodyMeta, Key};
use strata_index::{Guid, MailboxId, Parts, Snapshot, Timestamp, Uid};

use crate::error::Result;
use crate::names::join_name;
use crate::store::UserStore;

/// Messages filed in one mailbox: each body's GUID and the message's UID.
type Filed = (MailboxId, Vec<(Guid, Uid)>);

impl UserStore {
    /// The name a mailbox has now, as body metadata records it.
    pub(crate) fn meta_name(snap: &Snapshot, mailbox: MailboxId) -> Result<String> {
        Ok(join_name(&snap.path_of(mailbox)?.unwrap_or_default()))
    }

    /// The metadata of a body filed in `mailbox`, named `mailbox_name` (see `meta_name`).
    pub(crate) fn body_meta(
        &self,
        mailbox: MailboxId,
        mailbox_name: &str,
        guid: &Guid,
        internal_date: Timestamp,
        size: u64,
    ) -> BodyMeta {
        BodyMeta {
            user: self.name().to_string(),
            mailbox: u64::from(mailbox.0),
            mailbox_name: mailbox_name.to_string(),
            guid: guid.to_string(),
            internal_date: internal_date.unix,
            zone_minutes: internal_date.offset_minutes,
            saved: Timestamp::now().unix,
            size,
        }
    }

    /// Records `dest` in the bodies of moved messages that no other message shares (a COPY's
    /// body keeps naming its original). A failure is logged, not returned: the MOVE is done,
    /// and the record only matters to a rebuild.
    pub(crate) async fn refile_meta(&self, dest: MailboxId, moved: &[(Guid, Uid)]) {
        if let Err(e) = self.try_refile_meta(dest, moved).await {
            tracing::warn!(user = self.name(), error = %e, "could not record a MOVE in the bodies' metadata");
        }
    }

    /// Records the new names in the bodies of a renamed mailbox and every mailbox under it.
    pub(crate) async fn rename_meta(&self, path: &[String]) {
        if !self.stores().main().capabilities().metadata {
            return;
        }
        let plan = || -> Result<Vec<Filed>> {
            let snap = self.snapshot()?;
            let Some(top) = snap.lookup_path(path)? else {
                return Ok(Vec::new());
            };
            // The subtree, walked with a stack: no recursion whose depth the names choose.
            let mut out = Vec::new();
            let mut todo = vec![top];
            while let Some(id) = todo.pop() {
                todo.extend(snap.children(Some(id))?);
                let moved = snap.messages(id)?.into_iter().map(|m| (m.guid, m.uid));
                out.push((id, moved.collect()));
            }
            Ok(out)
        };
        match plan() {
            Ok(plan) => {
                for (id, moved) in plan {
                    self.refile_meta(id, &moved).await;
                }
            }
            Err(e) => {
                tracing::warn!(user = self.name(), error = %e, "could not record a RENAME in the bodies' metadata")
            }
        }
    }

    async fn try_refile_meta(&self, dest: MailboxId, moved: &[(Guid, Uid)]) -> Result<()> {
        let main = self.stores().main_id();
        if moved.is_empty() || !self.stores().main().capabilities().metadata {
            return Ok(());
        }
        let snap = self.snapshot()?;
        let name = Self::meta_name(&snap, dest)?;
        let mut batch = Batch::new();
        for (guid, uid) in moved {
            let Some(c) = snap.content_parts(guid, Parts::default())? else {
                continue;
            };
            if c.location.store != main || snap.content_refs(guid)? != 1 {
                continue;
            }
            let Some(m) = snap.message(dest, *uid)? else {
                continue;
            };
            let meta = self.body_meta(dest, &name, guid, m.internal_date, c.size);
            batch = batch.meta(Key::new(c.location.key)?, meta);
        }
        drop(snap);
        if !batch.ops.is_empty() {
            self.stores().main().commit(batch).await?;
        }
        Ok(())
    }
}
