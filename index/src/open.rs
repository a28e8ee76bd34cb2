//! Opening an index file: create it atomically, recover it after a crash, validate it, upgrade
//! its schema, and report what was done and how long it took.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redb::{ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase};

use crate::error::{IndexError, Result};
use crate::model::Modseq;
use crate::schema::{self, SCHEMA_VERSION, Table, UserState};
use crate::snapshot::Snapshot;
use crate::store::{Reader, guard};

/// What opening an index did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The index file.
    pub path: std::path::PathBuf,
    /// The file did not exist and was created.
    pub created: bool,
    /// The last writer did not close the file (it crashed or was killed): its owner label was
    /// still there.
    pub unclean_shutdown: bool,
    /// The engine ran a repair of its own (allocator rebuild) while opening.
    pub repaired: bool,
    /// The schema was upgraded from this version.
    pub upgraded_from: Option<u32>,
    /// Time from the start of the open until the index was ready.
    pub duration: Duration,
    /// File size after the open.
    pub file_bytes: u64,
    /// The user's highest MODSEQ.
    pub modseq: Modseq,
}

/// The engine's settings. `exclusive`: no other process may open the file while it is open
/// for writing, which the engine requires for commits without an fsync (deferred flag
/// changes); otherwise one writer process and `strata index check` may read alongside it.
pub(crate) fn builder(cache_bytes: usize, exclusive: bool) -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(cache_bytes);
    b.set_concurrency_mode(if exclusive {
        ConcurrencyMode::ExclusiveWriter
    } else {
        ConcurrencyMode::SingleWriter
    });
    b
}

/// Fsyncs the directory holding `path`, so a rename or create in it is durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(dir, e))
}

/// Writes the tables and meta rows of an empty index into a new database.
pub(crate) fn initialize(db: &Database, path: &Path, state: &UserState) -> Result<()> {
    let mut wtxn = db.begin_write().map_err(|e| IndexError::engine(path, e))?;
    wtxn.set_quick_repair(true);
    {
        for t in Table::ALL {
            wtxn.open_table(t.def())
                .map_err(|e| IndexError::engine(path, e))?;
        }
        let mut meta = wtxn
            .open_table(Table::Meta.def())
            .map_err(|e| IndexError::engine(path, e))?;
        let rows = [
            (
                schema::META_MAGIC,
                schema::encode(schema::META_MAGIC, &schema::MAGIC),
            ),
            (
                schema::META_VERSION,
                schema::encode(schema::META_VERSION, &SCHEMA_VERSION),
            ),
            (
                schema::META_STATE,
                schema::encode(schema::META_STATE, state),
            ),
        ];
        for (k, v) in rows {
            meta.insert(k, v.as_slice())
                .map_err(|e| IndexError::engine(path, e))?;
        }
    }
    wtxn.commit().map_err(|e| IndexError::engine(path, e))
}

/// Creates an empty index at `path` atomically: built beside it, then renamed into place.
fn create(path: &Path, cache_bytes: usize) -> Result<()> {
    let tmp = crate::repack::sibling(path, "creating");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut b = Database::builder();
        b.set_cache_size(cache_bytes);
        let db = b.create(&tmp).map_err(|e| IndexError::engine(&tmp, e))?;
        let state = UserState {
            next_mailbox_id: 1,
            ..UserState::default()
        };
        initialize(&db, &tmp, &state)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))?;
    sync_dir(path)
}

/// Opens the writable database at `path`, creating it if absent.
pub(crate) fn open_writable(
    path: &Path,
    cache_bytes: usize,
    exclusive: bool,
) -> Result<(Arc<Database>, UserState, RecoveryReport)> {
    let start = Instant::now();
    let created = match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => {
            return Err(IndexError::corrupt(
                path,
                "the file is empty (zero length); restore it from a backup or rebuild it",
            ));
        }
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
            }
            create(path, cache_bytes)?;
            true
        }
        Err(e) => return Err(IndexError::io(path, e)),
    };
    let unclean_shutdown = !created && crate::owner::owner_path(path).exists();
    let repaired = Arc::new(AtomicBool::new(false));
    let flag = repaired.clone();
    let db = guard(path, || {
        let mut b = builder(cache_bytes, exclusive);
        b.set_repair_callback(move |_| flag.store(true, Ordering::Relaxed));
        b.open(path).map_err(|e| IndexError::engine(path, e))
    })?;
    let upgraded_from = check_and_upgrade(&db, path)?;
    let db = Arc::new(db);
    let snap = Snapshot::begin(path, db.clone())?;
    let state = snap.state().clone();
    drop(snap);
    crate::owner::claim(path);
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let report = RecoveryReport {
        path: path.to_path_buf(),
        created,
        unclean_shutdown,
        repaired: repaired.load(Ordering::Relaxed),
        upgraded_from,
        duration: start.elapsed(),
        file_bytes,
        modseq: state.modseq,
    };
    Ok((db, state, report))
}

/// Opens `path` read-only, alongside a writer in another process.
pub(crate) fn open_read_only(path: &Path, cache_bytes: usize) -> Result<Arc<ReadOnlyDatabase>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => {
            return Err(IndexError::corrupt(path, "the file is empty (zero length)"));
        }
        Ok(_) => {}
        Err(e) => return Err(IndexError::io(path, e)),
    }
    let db = guard(path, || {
        builder(cache_bytes, false)
            .open_read_only(path)
            .map_err(|e| IndexError::engine(path, e))
    })?;
    let db = Arc::new(db);
    let snap = Snapshot::begin(path, db.clone())?;
    check_version(&snap, path)?;
    Ok(db)
}

fn check_version(r: &dyn crate::store::RawRead, path: &Path) -> Result<u32> {
    let magic: Option<Vec<u8>> = r.decoded(Table::Meta, schema::META_MAGIC)?;
    if magic.as_deref() != Some(schema::MAGIC) {
        return Err(IndexError::corrupt(path, "not a Strata index (no magic)"));
    }
    let version = r
        .schema_version()?
        .ok_or_else(|| IndexError::corrupt(path, "the schema version is missing"))?;
    if version > SCHEMA_VERSION {
        return Err(IndexError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < schema::OLDEST_UPGRADABLE {
        return Err(IndexError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// Validates the file and runs schema upgrades; returns the version upgraded from, if any.
fn check_and_upgrade(db: &Database, path: &Path) -> Result<Option<u32>> {
    guard(path, || {
        let version = {
            let rtxn = db.begin_read().map_err(|e| IndexError::engine(path, e))?;
            let meta = match rtxn.open_table(Table::Meta.def()) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => {
                    return Err(IndexError::corrupt(
                        path,
                        "not a Strata index (no meta table)",
                    ));
                }
                Err(e) => return Err(IndexError::engine(path, e)),
            };
            let probe = MetaProbe { path, meta };
            check_version(&probe, path)?
        };
        if version == SCHEMA_VERSION {
            return Ok(None);
        }
        let mut wtxn = db.begin_write().map_err(|e| IndexError::engine(path, e))?;
        wtxn.set_quick_repair(true);
        for up in schema::UPGRADES.iter().filter(|u| u.from >= version) {
            (up.run)(&wtxn, path)?;
        }
        {
            let mut meta = wtxn
                .open_table(Table::Meta.def())
                .map_err(|e| IndexError::engine(path, e))?;
            let v = schema::encode(schema::META_VERSION, &SCHEMA_VERSION);
            meta.insert(schema::META_VERSION, v.as_slice())
                .map_err(|e| IndexError::engine(path, e))?;
        }
        wtxn.commit().map_err(|e| IndexError::engine(path, e))?;
        tracing::info!(file = %path.display(), from = version, to = SCHEMA_VERSION, "index schema upgraded");
        Ok(Some(version))
    })
}

/// Reads the meta table alone, before the rest of the file is trusted.
struct MetaProbe<'p> {
    path: &'p Path,
    meta: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl crate::store::RawRead for MetaProbe<'_> {
    fn path(&self) -> &Path {
        self.path
    }

    fn get_raw(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        debug_assert_eq!(t, Table::Meta);
        crate::store::get_in(self.path, &self.meta, key)
    }

    fn scan_raw(
        &self,
        _t: Table,
        range: crate::store::KeyRange<'_>,
        f: &mut crate::store::RowFn<'_>,
    ) -> Result<()> {
        crate::store::scan_in(self.path, &self.meta, range, f)
    }

    fn len_raw(&self, _t: Table) -> Result<u64> {
        crate::store::len_in(self.path, &self.meta)
    }
}
