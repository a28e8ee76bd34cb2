//! Read-only access for administration (`strata index check`): opens a user's index alongside a
//! server that has it open for writing, and follows that server's commits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::check::{self, CheckReport};
use crate::error::Result;
use crate::snapshot::Snapshot;

/// A read-only handle on an index file.
pub struct ReadOnlyIndex {
    path: PathBuf,
    db: Arc<redb::ReadOnlyDatabase>,
}

impl ReadOnlyIndex {
    /// Opens `path` without writing to it. Works while a server holds the file for writing.
    pub fn open(path: impl AsRef<Path>) -> Result<ReadOnlyIndex> {
        let path = path.as_ref().to_path_buf();
        let db = crate::open::open_read_only(&path, 16 << 20)?;
        Ok(ReadOnlyIndex { path, db })
    }

    /// A snapshot as of the writer's latest commit.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::begin(&self.path, self.db.clone())
    }

    /// Checks every row and the invariants between tables.
    pub fn verify(&self) -> Result<CheckReport> {
        check::verify(&self.snapshot()?)
    }
}
