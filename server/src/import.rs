//! `strata import maildir` and `strata index rebuild`: filling a user's mail from a Maildir++
//! tree or from the store. Import copies messages in (through the backend, like APPEND);
//! rebuild records the bodies the user's own backend already holds in a fresh index: a
//! Maildir's folders and file names, or an SQL or S3 store's body metadata.

use std::path::Path;

use futures::StreamExt;
use strata_index::{Flags, IndexError, IndexOptions, UserIndex};
use strata_mailstore::{Adopted, Appended, StoreError, UserStore};
use thiserror::Error;

use crate::maildir_scan::{self, Folder, Found};

/// Messages written per backend commit and index transaction.
const BATCH: usize = 64;

/// Why an import or rebuild stopped.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The Maildir could not be read.
    #[error("{path}: {source}")]
    Read {
        /// What was being read.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The mail store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index is in use by a running server.
    #[error("{0}\nstop the server (or let it finish) before replacing this user's index")]
    InUse(IndexError),
}

/// What an import or rebuild did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Folders seen.
    pub folders: usize,
    /// Messages recorded.
    pub messages: u64,
}

async fn flags_of(store: &UserStore, m: &Found) -> Result<Flags, StoreError> {
    Ok(Flags {
        system: maildir_scan::system_flags(&m.flags),
        keywords: store.keywords(m.keywords.clone()).await?,
    }
    .normalized())
}

fn read(m: &Found) -> Result<Vec<u8>, ImportError> {
    std::fs::read(&m.file).map_err(|source| ImportError::Read {
        path: m.file.clone(),
        source,
    })
}

fn scan(root: &Path) -> Result<Vec<Folder>, ImportError> {
    maildir_scan::scan(root).map_err(|source| ImportError::Read {
        path: root.to_path_buf(),
        source,
    })
}

/// Copies every folder and message of the Maildir++ tree at `root` into `store`, keeping
/// flags (from file names) and dates (file times). `progress(done, total)` is called as it goes.
pub async fn import_maildir(
    store: &UserStore,
    root: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<ImportReport, ImportError> {
    fill(store, root, progress, false).await
}

/// Records in `store` (a fresh index) every body the user's Maildir backend at `root` holds,
/// keeping the flags their file names carry.
pub async fn adopt_maildir(
    store: &UserStore,
    root: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<ImportReport, ImportError> {
    fill(store, root, progress, true).await
}

// Copies the messages in through the backend, or (`adopt`) records the files where they are.
async fn fill(
    store: &UserStore,
    root: &Path,
    progress: &dyn Fn(u64, u64),
    adopt: bool,
) -> Result<ImportReport, ImportError> {
    let folders = scan(root)?;
    let total = folders.iter().map(|f| f.messages.len() as u64).sum();
    let mut report = ImportReport::default();
    // A rebuild skips (and deletes) the bodies an expunge gave up before a crash kept it from
    // deleting them: those messages were expunged, and stay so.
    let given_up = if adopt {
        given_up_keys(store)
    } else {
        Default::default()
    };
    let mut abandoned = Vec::new();
    for folder in &folders {
        let mailbox = store.ensure(folder.path.clone()).await?;
        report.folders += 1;
        for chunk in folder.messages.chunks(BATCH) {
            let mut copies = Vec::new();
            let mut found = Vec::new();
            for m in chunk {
                let key = if folder.dir_name.is_empty() {
                    m.unique.clone()
                } else {
                    format!("{}/{}", folder.dir_name, m.unique)
                };
                if adopt && given_up.contains(&key) {
                    abandoned.push(key);
                    continue;
                }
                let (raw, flags) = (read(m)?, flags_of(store, m).await?);
                if adopt {
                    found.push(Adopted {
                        key,
                        raw,
                        flags,
                        internal_date: m.date,
                        guid: None,
                    });
                } else {
                    copies.push(Appended {
                        raw: raw.into(),
                        flags,
                        internal_date: Some(m.date),
                    });
                }
            }
            report.messages += (found.len() + copies.len()) as u64;
            if adopt {
                store.adopt(mailbox.id, found).await?;
            } else {
                store.append(mailbox.id, copies).await?;
            }
            progress(report.messages, total);
        }
    }
    if adopt {
        discard_given_up(store, &abandoned).await?;
    }
    Ok(report)
}

/// The keys of bodies an expunge gave up before a crash kept it from deleting them: those
/// messages were expunged, and a rebuild leaves them so.
fn given_up_keys(store: &UserStore) -> std::collections::HashSet<String> {
    store
        .given_up()
        .into_iter()
        .filter(|l| l.store == store.stores().main_id())
        .map(|l| l.key)
        .collect()
}

/// Deletes the given-up bodies a rebuild skipped, then forgets them.
async fn discard_given_up(store: &UserStore, abandoned: &[String]) -> Result<(), ImportError> {
    let mut batch = strata_backend_api::Batch::new();
    for key in abandoned {
        batch = batch.delete(strata_backend_api::Key::new(key.clone()).map_err(StoreError::from)?);
    }
    if !abandoned.is_empty() {
        store
            .backend()
            .commit(batch)
            .await
            .map_err(StoreError::from)?;
        tracing::info!(
            user = store.name(),
            skipped = abandoned.len(),
            "rebuild: skipped and deleted bodies of messages expunged before a crash"
        );
    }
    store.forget_given_up()?;
    Ok(())
}

/// Records in `store` (a fresh index) every body the user's SQL or S3 store holds, in the
/// mailbox its metadata names (see `store_scan`): new UIDs, no flags.
pub async fn adopt_store(
    store: &UserStore,
    progress: &dyn Fn(u64, u64),
) -> Result<ImportReport, ImportError> {
    let scan = crate::store_scan::scan(store.backend().as_ref(), store.name())
        .await
        .map_err(StoreError::from)?;
    for key in &scan.foreign {
        tracing::warn!(
            user = store.name(),
            key,
            "rebuild: a body under this user's prefix names another user; left as it is"
        );
    }
    if scan.by_key > 0 {
        tracing::info!(
            user = store.name(),
            bodies = scan.by_key,
            "rebuild: bodies without metadata placed by their keys"
        );
    }
    let given_up = given_up_keys(store);
    let total = scan.mailboxes.iter().map(|m| m.bodies.len() as u64).sum();
    let mut report = ImportReport::default();
    let mut abandoned = Vec::new();
    let mut guids = std::collections::HashSet::new();
    for mailbox in scan.mailboxes {
        let id = store.ensure(mailbox.path.clone()).await?.id;
        report.folders += 1;
        let bodies: Vec<_> = mailbox
            .bodies
            .into_iter()
            .filter(|b| {
                let gone = given_up.contains(&b.key);
                if gone {
                    abandoned.push(b.key.clone());
                }
                !gone
            })
            .collect();
        for chunk in bodies.chunks(BATCH) {
            let reads = chunk
                .iter()
                .map(|b| {
                    Ok(strata_backend_api::Read::whole(crate::store_scan::key_of(
                        b,
                    )?))
                })
                .collect::<Result<Vec<_>, strata_backend_api::BackendError>>()
                .map_err(StoreError::from)?;
            let read: Vec<_> = store.backend().get_many(reads, 32).collect().await;
            let mut found = Vec::with_capacity(chunk.len());
            for (b, raw) in chunk.iter().zip(read) {
                let raw = raw.map_err(StoreError::from)?;
                if b.recorded_size.is_some_and(|s| s != raw.len() as u64) {
                    tracing::warn!(
                        user = store.name(),
                        key = b.key,
                        recorded = b.recorded_size,
                        actual = raw.len(),
                        "rebuild: a body's size is not what its metadata records; adopting what is stored"
                    );
                }
                // A GUID seen twice (a body copied in the store) is one content per body here.
                let guid = b.guid.filter(|g| guids.insert(*g));
                found.push(Adopted {
                    key: b.key.clone(),
                    raw: raw.to_vec(),
                    flags: Flags::default(),
                    internal_date: b.internal_date,
                    guid,
                });
            }
            report.messages += found.len() as u64;
            store.adopt(id, found).await?;
            progress(report.messages, total);
        }
    }
    discard_given_up(store, &abandoned).await?;
    Ok(report)
}

/// Refuses while a server holds the user's index at `index`.
pub async fn ensure_unused(index: &Path) -> Result<(), ImportError> {
    if !index.exists() {
        return Ok(());
    }
    match UserIndex::open(index, IndexOptions::default()).await {
        Ok((ix, _)) => ix.close().await,
        Err(e @ IndexError::Locked { .. }) => return Err(ImportError::InUse(e)),
        // A damaged index is exactly what a rebuild is for.
        Err(e) => tracing::warn!(error = %e, "the old index does not open; rebuilding anyway"),
    }
    Ok(())
}

/// Moves a user's index aside (refusing while a server holds it) so that the next open starts
/// a fresh one; returns where the old one went.
pub async fn retire_index(
    index: &Path,
    why: &str,
) -> Result<Option<std::path::PathBuf>, ImportError> {
    if !index.exists() {
        return Ok(None);
    }
    ensure_unused(index).await?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = index.with_extension(format!("redb.before-{why}-{secs}"));
    // The shipping note described the index set aside, not the one that replaces it.
    let _ = std::fs::remove_file(index.with_extension("redb.ship"));
    std::fs::rename(index, &aside).map_err(|source| ImportError::Read {
        path: index.to_path_buf(),
        source,
    })?;
    Ok(Some(aside))
}
