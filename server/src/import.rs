//! `strata import maildir` and `strata index rebuild`: filling a user's mail from a Maildir++
//! tree. Import copies messages in (through the backend, like APPEND); rebuild records the
//! bodies the user's own Maildir backend already holds in a fresh index.

use std::path::Path;

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
    let given_up: std::collections::HashSet<String> = if adopt {
        store
            .given_up()
            .into_iter()
            .filter(|l| l.store == store.stores().main_id())
            .map(|l| l.key)
            .collect()
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
                    });
                } else {
                    copies.push(Appended {
                        raw,
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
        let mut batch = strata_backend_api::Batch::new();
        for key in &abandoned {
            batch =
                batch.delete(strata_backend_api::Key::new(key.clone()).map_err(StoreError::from)?);
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
    }
    Ok(report)
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
    match UserIndex::open(index, IndexOptions::default()).await {
        Ok((ix, _)) => ix.close().await,
        Err(e @ IndexError::Locked { .. }) => return Err(ImportError::InUse(e)),
        // A damaged index is exactly what a rebuild is for.
        Err(e) => tracing::warn!(error = %e, "the old index does not open; rebuilding anyway"),
    }
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
