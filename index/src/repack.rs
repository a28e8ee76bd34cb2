//! Repack off the request path: a dense copy of a user's file is written from a snapshot while
//! the user keeps reading and writing, caught up from the change log, and swapped in atomically
//! (write, fsync, rename, fsync the directory). Only the last catch-up and the swap hold the
//! writer. One [`Maintenance`] worker serves the whole server, so no request ever pays for a
//! repack.

use std::collections::HashSet;
use std::ops::{Bound, ControlFlow};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::{mpsc, oneshot};

use crate::diff::{self, Diff};
use crate::error::{IndexError, Result};
use crate::index::{Shared, UserIndex, WeakIndex};
use crate::model::Modseq;
use crate::open::{self, sync_dir};
use crate::schema::{self, Table, UserState};
use crate::snapshot::Snapshot;
use crate::store::{RawRead, Reader, RowFn, blocking, guard};
use crate::txn::{Tables, Txn};

/// `path` with a suffix, in the same directory (so a rename over `path` is atomic).
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".");
    p.push(suffix);
    PathBuf::from(p)
}

/// Rows copied per engine transaction when writing a dense copy.
const COPY_CHUNK: usize = 20_000;

/// Writes every row of the snapshot, in key order, into a new file at `dest`, dropping change
/// log entries at or below `log_floor`. The file is fsynced before this returns.
pub(crate) fn dense_copy(snap: &Snapshot, dest: &Path, log_floor: Modseq) -> Result<u64> {
    let _ = std::fs::remove_file(dest);
    let db = guard(dest, || {
        Database::builder()
            .set_cache_size(64 << 20)
            .create(dest)
            .map_err(|e| IndexError::engine(dest, e))
    })?;
    let mut rows = 0u64;
    let floor_key = schema::changes_after(log_floor);
    for t in Table::ALL {
        let start: Bound<&[u8]> = if t == Table::Changes {
            Bound::Included(&floor_key[..])
        } else {
            Bound::Unbounded
        };
        let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(COPY_CHUNK);
        let flush = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>, last: bool| -> Result<()> {
            let mut w = db.begin_write().map_err(|e| IndexError::engine(dest, e))?;
            if !last {
                // Only the final commit needs to be durable: a crash before it leaves a
                // half-written copy that is never renamed into place.
                w.set_durability(redb::Durability::None)
                    .map_err(|e| IndexError::Engine {
                        path: dest.to_path_buf(),
                        detail: e.to_string(),
                    })?;
            }
            {
                let mut tbl = w
                    .open_table(t.def())
                    .map_err(|e| IndexError::engine(dest, e))?;
                for (k, v) in batch.drain(..) {
                    tbl.insert(k.as_slice(), v.as_slice())
                        .map_err(|e| IndexError::engine(dest, e))?;
                }
            }
            w.commit().map_err(|e| IndexError::engine(dest, e))
        };
        snap.scan_raw(t, (start, Bound::Unbounded), &mut |k, v| {
            batch.push((k.to_vec(), v.to_vec()));
            rows += 1;
            if batch.len() >= COPY_CHUNK {
                flush(&mut batch, false)?;
            }
            Ok(ControlFlow::Continue(()))
        })?;
        flush(&mut batch, t == Table::Subscriptions)?;
    }
    drop(db);
    if log_floor > snap.log_floor() {
        rewrite_state(dest, |s| s.log_floor = log_floor.max(s.log_floor))?;
    }
    compact_file(dest)?;
    Ok(rows)
}

/// Moves live pages down into free space and truncates the file. The engine grows a file by
/// doubling it, so a fresh copy ends with free space that compaction gives back.
pub(crate) fn compact_file(dest: &Path) -> Result<()> {
    guard(dest, || {
        let mut db = Database::builder()
            .set_cache_size(64 << 20)
            .open(dest)
            .map_err(|e| IndexError::engine(dest, e))?;
        while db.compact().map_err(|e| IndexError::Engine {
            path: dest.to_path_buf(),
            detail: e.to_string(),
        })? {}
        Ok(())
    })
}

/// Opens a copy exclusively, runs `f` in one durable transaction, and closes it.
fn with_copy<R>(dest: &Path, f: impl FnOnce(&mut Txn<'_, '_>) -> Result<R>) -> Result<R> {
    guard(dest, || {
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .open(dest)
            .map_err(|e| IndexError::engine(dest, e))?;
        let mut w = db.begin_write().map_err(|e| IndexError::engine(dest, e))?;
        w.set_quick_repair(true);
        let r = {
            let mut tables = Tables::open(dest, &w)?;
            let state = {
                let probe = CopyProbe {
                    path: dest,
                    tables: &tables,
                };
                probe.user_state()?
            };
            let mut txn = Txn::new(dest, &mut tables, state);
            let r = f(&mut txn)?;
            txn.flush_state()?;
            r
        };
        w.commit().map_err(|e| IndexError::engine(dest, e))?;
        Ok(r)
    })
}

fn rewrite_state(dest: &Path, f: impl FnOnce(&mut UserState)) -> Result<()> {
    with_copy(dest, |txn| {
        let mut s = txn.user_state()?;
        f(&mut s);
        txn.set_state(s);
        Ok(())
    })
}

/// Applies a diff to a copy, keeping the copy's own log floor.
pub(crate) fn apply_to_copy(dest: &Path, d: &Diff) -> Result<()> {
    apply_all_to_copy(dest, std::slice::from_ref(d))
}

/// Applies diffs in order to a copy, in one durable transaction.
pub(crate) fn apply_all_to_copy(dest: &Path, diffs: &[Diff]) -> Result<()> {
    with_copy(dest, |txn| {
        let floor = txn.user_state()?.log_floor;
        for d in diffs {
            diff::apply(txn, d, dest)?;
        }
        let mut s = txn.state_ref().clone();
        s.log_floor = s.log_floor.max(floor);
        txn.set_state(s);
        Ok(())
    })
}

struct CopyProbe<'a, 't> {
    path: &'a Path,
    tables: &'a Tables<'t>,
}

impl RawRead for CopyProbe<'_, '_> {
    fn path(&self) -> &Path {
        self.path
    }
    fn get_raw(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tables.get_raw(self.path, t, key)
    }
    fn scan_raw(
        &self,
        t: Table,
        range: crate::store::KeyRange<'_>,
        f: &mut RowFn<'_>,
    ) -> Result<()> {
        self.tables.scan_raw(self.path, t, range, f)
    }
    fn len_raw(&self, t: Table) -> Result<u64> {
        self.tables.len_raw(self.path, t)
    }
}

/// Disk space a file occupies: its allocated blocks, not its length. The engine grows files by
/// extending them, and the unwritten tail is a hole that takes no space.
pub fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// What a repack did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepackReport {
    /// Disk space of the file before ([`disk_bytes`]).
    pub bytes_before: u64,
    /// Disk space of the file after.
    pub bytes_after: u64,
    /// Live key and value bytes.
    pub live_bytes: u64,
    /// Rows in the dense copy.
    pub rows: u64,
    /// Catch-up rounds run while the user kept writing.
    pub catch_up_rounds: u32,
    /// How long the final catch-up and swap held the writer.
    pub swap_hold: Duration,
    /// Total time.
    pub duration: Duration,
}

/// Catch-up rounds made without the writer before the final, held one.
const MAX_ROUNDS: u32 = 4;

/// A round that carries fewer rows than this is small enough to finish under the writer.
const SMALL_ROUND: usize = 2_000;

/// Repacks one user's index. The user keeps reading and writing; the final swap holds the writer
/// for as long as the last catch-up takes.
pub async fn repack(index: &UserIndex, log_retention: Option<u64>) -> Result<RepackReport> {
    let shared = index.shared().clone();
    if shared.repacking.swap(true, Ordering::AcqRel) {
        return Err(IndexError::RepackInProgress(shared.path.clone()));
    }
    // Cleared however this ends, a dropped future included.
    let _running = RepackFlag(&shared);
    let result = repack_inner(index, &shared, log_retention).await;
    if result.is_err() {
        let _ = std::fs::remove_file(sibling(&shared.path, "repack"));
    }
    result
}

struct RepackFlag<'a>(&'a Shared);

impl Drop for RepackFlag<'_> {
    fn drop(&mut self) {
        self.0.repacking.store(false, Ordering::Release);
    }
}

async fn repack_inner(
    index: &UserIndex,
    shared: &Arc<Shared>,
    log_retention: Option<u64>,
) -> Result<RepackReport> {
    let start = Instant::now();
    let shared = shared.clone();
    let path = shared.path.clone();
    let tmp = sibling(&path, "repack");
    let bytes_before = disk_bytes(&path);
    let sh = shared.clone();
    let t = tmp.clone();
    let (mut at, rows) = blocking(&path, "maintenance", move || {
        let snap = sh.snapshot()?;
        let floor = match log_retention {
            Some(keep) => Modseq(snap.modseq().0.saturating_sub(keep)).max(snap.log_floor()),
            None => snap.log_floor(),
        };
        let rows = dense_copy(&snap, &t, floor)?;
        Ok((snap.modseq(), rows))
    })
    .await?;
    let mut rounds = 0;
    while rounds < MAX_ROUNDS {
        let sh = shared.clone();
        let t = tmp.clone();
        let (to, n) = blocking(&path, "maintenance", move || {
            let snap = sh.snapshot()?;
            if snap.modseq() == at {
                return Ok((at, 0));
            }
            let d = diff::since(&snap, at)?;
            apply_to_copy(&t, &d)?;
            Ok((d.to, d.rows.len()))
        })
        .await?;
        rounds += 1;
        at = to;
        if n < SMALL_ROUND {
            break;
        }
    }
    let (reply, rx) = oneshot::channel();
    let t = tmp.clone();
    index
        .exclusive(Box::new(
            move |shared: &Arc<Shared>, state: &mut UserState| {
                let held = Instant::now();
                let r = swap(shared, &t, at, state);
                let hold = held.elapsed();
                shared
                    .last_swap_hold_us
                    .store(hold.as_micros() as u64, Ordering::Relaxed);
                let _ = reply.send(r.map(|old| (hold, old)));
            },
        ))
        .await?;
    let (swap_hold, old) = rx.await.map_err(|_| IndexError::Closed)??;
    // Closing the replaced file writes its engine state back, which takes long on a big file;
    // it happens here, after the writer has been let go.
    blocking(&path, "maintenance", move || {
        drop(old);
        Ok(())
    })
    .await?;
    shared.repacks.fetch_add(1, Ordering::Relaxed);
    if let Some(o) = &shared.observer {
        o.repacked();
    }
    let snap = shared.snapshot()?;
    let report = RepackReport {
        bytes_before,
        bytes_after: disk_bytes(&path),
        live_bytes: snap.live_bytes(),
        rows,
        catch_up_rounds: rounds,
        swap_hold,
        duration: start.elapsed(),
    };
    tracing::info!(
        file = %path.display(),
        before = report.bytes_before,
        after = report.bytes_after,
        hold_us = report.swap_hold.as_micros() as u64,
        "index repacked"
    );
    Ok(report)
}

/// The final step, with the writer held: last catch-up, then the atomic replacement. Returns the
/// replaced database handle, for the caller to close once the writer runs again.
fn swap(
    shared: &Arc<Shared>,
    tmp: &Path,
    at: Modseq,
    state: &mut UserState,
) -> Result<Option<Arc<Database>>> {
    let path = shared.path.clone();
    let snap = shared.snapshot()?;
    if snap.modseq() != at {
        let d = diff::since(&snap, at)?;
        apply_to_copy(tmp, &d)?;
    }
    drop(snap);
    std::fs::rename(tmp, &path).map_err(|e| IndexError::io(&path, e))?;
    sync_dir(&path)?;
    let db = guard(&path, || {
        open::builder(shared.cache_bytes, shared.exclusive)
            .open(&path)
            .map_err(|e| IndexError::engine(&path, e))
    });
    match db {
        Ok(db) => {
            let db = Arc::new(db);
            let fresh = Snapshot::begin(&path, db.clone())?;
            *state = fresh.state().clone();
            drop(fresh);
            let old = shared.replace_db(Some(db));
            crate::owner::claim(&path);
            Ok(old)
        }
        Err(e) => {
            // The renamed copy is complete and durable, but this process cannot use it: stop
            // writing through the old handle, whose file is no longer the index.
            shared.poison(format!("reopening after repack failed: {e}"));
            Err(e)
        }
    }
}

/// When the maintenance worker repacks a file.
#[derive(Clone, Debug)]
pub struct MaintenanceOptions {
    /// Repack when the file takes more than this many times its live data on disk.
    pub sparse_ratio: f64,
    /// Never repack files smaller than this.
    pub min_file_bytes: u64,
    /// Check a user's file size every this many commits.
    pub check_every_commits: u64,
    /// Keep at most this many MODSEQs of change log (older entries are dropped at repack);
    /// `None` keeps the whole log.
    pub log_retention: Option<u64>,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        MaintenanceOptions {
            sparse_ratio: 2.0,
            min_file_bytes: 4 << 20,
            check_every_commits: 64,
            log_retention: Some(1_000_000),
        }
    }
}

/// The server-wide maintenance worker. Cloned into every index's options; the worker repacks
/// one index at a time, so maintenance never competes with itself for the disk.
#[derive(Clone)]
pub struct Maintenance {
    tx: mpsc::UnboundedSender<WeakIndex>,
    queued: Arc<Mutex<HashSet<PathBuf>>>,
    opts: Arc<MaintenanceOptions>,
}

impl Maintenance {
    /// Starts the worker on the current tokio runtime.
    pub fn spawn(opts: MaintenanceOptions) -> Maintenance {
        let (tx, mut rx) = mpsc::unbounded_channel::<WeakIndex>();
        let queued: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        let opts = Arc::new(opts);
        let q = queued.clone();
        let o = opts.clone();
        tokio::spawn(async move {
            while let Some(weak) = rx.recv().await {
                let Some(index) = weak.upgrade() else {
                    continue;
                };
                let path = index.path().to_path_buf();
                if let Err(e) = repack(&index, o.log_retention).await {
                    tracing::warn!(file = %path.display(), error = %e, "index repack failed");
                }
                drop(index);
                q.lock().unwrap_or_else(|p| p.into_inner()).remove(&path);
            }
        });
        Maintenance { tx, queued, opts }
    }

    /// Called by a writer after a commit: queues the index if its file has grown sparse.
    pub(crate) fn consider(&self, shared: &Shared, weak: &WeakIndex, live_bytes: u64) {
        let commits = shared.commits_done();
        if self.opts.check_every_commits == 0
            || !commits.is_multiple_of(self.opts.check_every_commits)
        {
            return;
        }
        let len = disk_bytes(&shared.path);
        if len < self.opts.min_file_bytes
            || (len as f64) < self.opts.sparse_ratio * live_bytes as f64
        {
            return;
        }
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        if q.insert(shared.path.clone()) {
            tracing::debug!(file = %shared.path.display(), len, live_bytes, "index queued for repack");
            let _ = self.tx.send(weak.clone());
        }
    }
}
